#include "net/dashboard.hpp"

#include "actors/cluster_view.hpp"
#include "net/user_json.hpp"
#include "runtime/metrics.hpp"

#include <nlohmann/json.hpp>

#include <map>

namespace chime {

namespace {

using json = nlohmann::json;

json or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

json instant_or_null(int64_t ms) {
  return ms == 0 ? json(nullptr) : json(format_instant(from_ms(ms)));
}

json supervisor_json(const std::map<std::string, supervisor_entry>& all,
                     const supervisor_entry& sup, int depth) {
  auto children = json::array();
  for (auto& c : sup.children) {
    json child{{"name", c.name},
               {"kind", c.supervisor ? "supervisor" : "worker"},
               {"running", c.running},
               {"restarts", c.restarts},
               {"last_exit_reason", or_null(c.last_exit_reason)},
               {"last_exit_at", instant_or_null(c.last_exit_at_ms)}};
    auto sub = all.find(c.name);
    // Bounded: a board is a tree, but a name reused by mistake must not
    // recurse for ever.
    if (c.supervisor && sub != all.end() && depth < 8)
      child.update(supervisor_json(all, sub->second, depth + 1));
    children.push_back(std::move(child));
  }
  return json{{"strategy", to_string(sup.strategy)},
              {"restart_max", sup.restart_max},
              {"restart_window_ms", sup.restart_window_ms},
              {"children", std::move(children)}};
}

json supervision(const node_context& ctx) {
  std::map<std::string, supervisor_entry> all;
  for (auto& e : ctx.supervision->supervisors())
    all.emplace(e.name, e);
  json root{{"name", "node"},         {"kind", "supervisor"},
            {"running", true},          {"restarts", 0},
            {"last_exit_reason", nullptr}, {"last_exit_at", nullptr}};
  if (auto i = all.find("node"); i != all.end())
    root.update(supervisor_json(all, i->second, 0));
  uint64_t restarts = 0;
  for (auto& [name, n] : ctx.supervision->restarts())
    restarts += n;
  auto failures = json::array();
  for (auto& f : ctx.supervision->failures())
    failures.push_back({{"at", format_instant(from_ms(f.at_ms))},
                        {"kind", f.kind},
                        {"subject", f.subject},
                        {"detail", f.detail}});
  return json{{"node", ctx.cluster ? ctx.cluster->self() : std::string{}},
              {"root", std::move(root)},
              {"restarts_total", restarts},
              {"failures", std::move(failures)}};
}

/// Lateness of sent messages: count, mean and the bucket bound under which
/// 50 % and 99 % fell.
json lateness() {
  auto& h = get_histogram("chime_delivery_lateness_seconds");
  auto n = h.count();
  json out{{"count", n},
           {"mean_s", n ? static_cast<double>(h.sum_us()) / 1e6 / n : 0.0}};
  for (auto [name, q] : {std::pair{"p50_le_s", 0.5}, {"p99_le_s", 0.99}}) {
    json bound = nullptr;
    for (size_t i = 0; n && i < histogram::bounds_us.size(); ++i)
      if (static_cast<double>(h.bucket(i)) >= q * static_cast<double>(n)) {
        bound = static_cast<double>(histogram::bounds_us[i]) / 1e6;
        break;
      }
    out[name] = bound;
  }
  return out;
}

} // namespace

std::string supervision_json(const node_context& ctx) {
  return supervision(ctx).dump();
}

std::string dashboard_json(const node_context& ctx) {
  auto sup = supervision(ctx);
  json metrics = json::object();
  for (auto& [name, value] : metric_values())
    metrics[name] = value;
  json out{{"node", sup["node"]},
           {"at", format_instant(ctx.clock->now())},
           {"metrics", std::move(metrics)},
           {"lateness", lateness()},
           {"supervision", std::move(sup["root"])},
           {"restarts_total", sup["restarts_total"]},
           {"failures", std::move(sup["failures"])}};
  if (ctx.cluster)
    out["cluster"] = json::parse(cluster_json(*ctx.cluster));
  return out.dump();
}

} // namespace chime
