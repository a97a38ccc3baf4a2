#include "runtime/supervision_board.hpp"

#include "runtime/metrics.hpp"

#include <algorithm>

namespace chime {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace

const char* to_string(restart_strategy s) {
  switch (s) {
    case restart_strategy::one_for_one: return "one_for_one";
    case restart_strategy::one_for_all: return "one_for_all";
    case restart_strategy::rest_for_one: return "rest_for_one";
  }
  return "unknown";
}

void supervision_board::put(supervisor_entry e) {
  std::lock_guard<std::mutex> guard{mtx_};
  // A restarted supervisor keeps its children's history.
  if (auto old = entries_.find(e.name); old != entries_.end())
    for (auto& was : old->second.children) {
      auto now = std::find_if(e.children.begin(), e.children.end(),
                              [&](const supervised_child& c) { return c.name == was.name; });
      if (now == e.children.end())
        e.children.push_back(was); // a dynamic group's (the shards')
      else
        *now = was;
    }
  auto name = e.name;
  entries_[name] = std::move(e);
}

supervised_child* supervision_board::find(const std::string& sup,
                                          const std::string& child) {
  auto i = entries_.find(sup);
  if (i == entries_.end())
    return nullptr;
  for (auto& c : i->second.children)
    if (c.name == child)
      return &c;
  // Children come and go in a dynamic group (the shards): kept from their
  // first start on.
  i->second.children.push_back(supervised_child{child, false, false, 0, {}, 0});
  return &i->second.children.back();
}

void supervision_board::set_running(const std::string& sup,
                                    const std::string& child, bool running) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto c = find(sup, child))
    c->running = running;
}

void supervision_board::restarted(const std::string& sup,
                                  const std::string& child,
                                  const std::string& reason) {
  get_metric("chime_actor_restarts_total{actor=\"" + child + "\"}").add();
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto c = find(sup, child)) {
    ++c->restarts;
    c->last_exit_reason = reason;
    c->last_exit_at_ms = wall_ms();
  }
  note_failure("actor", child, reason);
}

void supervision_board::exited(const std::string& sup,
                               const std::string& child,
                               const std::string& reason) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto c = find(sup, child)) {
    c->running = false;
    c->last_exit_reason = reason;
    c->last_exit_at_ms = wall_ms();
  }
  note_failure("actor", child, reason);
}

void supervision_board::failed(std::string kind, std::string subject,
                               std::string detail) {
  std::lock_guard<std::mutex> guard{mtx_};
  note_failure(std::move(kind), std::move(subject), std::move(detail));
}

void supervision_board::note_failure(std::string kind, std::string subject,
                                     std::string detail) {
  failures_.push_back(
    failure_entry{wall_ms(), std::move(kind), std::move(subject), std::move(detail)});
  while (failures_.size() > failures_max)
    failures_.pop_front();
}

std::vector<supervisor_entry> supervision_board::supervisors() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<supervisor_entry> out;
  for (auto& [name, e] : entries_)
    out.push_back(e);
  return out;
}

std::vector<failure_entry> supervision_board::failures() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return {failures_.rbegin(), failures_.rend()};
}

std::map<std::string, uint64_t> supervision_board::restarts() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::map<std::string, uint64_t> out;
  for (auto& [name, e] : entries_)
    for (auto& c : e.children)
      out[c.name] += c.restarts;
  return out;
}

} // namespace chime
