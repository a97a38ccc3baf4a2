#include "runtime/metrics.hpp"

#include <map>
#include <memory>
#include <mutex>

namespace chime {

namespace {

struct entry {
  std::string type;
  std::string help;
  std::unique_ptr<metric> value = std::make_unique<metric>();
};

std::mutex registry_mtx;

std::map<std::string, entry>& registry() {
  static std::map<std::string, entry> metrics;
  return metrics;
}

std::string family(const std::string& name) {
  return name.substr(0, name.find('{'));
}

} // namespace

metric& get_metric(const std::string& name, const char* type,
                   const char* help) {
  std::lock_guard<std::mutex> guard{registry_mtx};
  auto& e = registry()[name];
  if (e.type.empty()) {
    e.type = type;
    e.help = help;
  }
  return *e.value;
}

std::string render_metrics() {
  std::lock_guard<std::mutex> guard{registry_mtx};
  std::string out;
  std::string last_family;
  for (auto& [name, e] : registry()) {
    auto fam = family(name);
    if (fam != last_family) {
      if (!e.help.empty())
        out += "# HELP " + fam + " " + e.help + "\n";
      out += "# TYPE " + fam + " " + e.type + "\n";
      last_family = fam;
    }
    out += name + " " + std::to_string(e.value->value()) + "\n";
  }
  return out;
}

} // namespace chime
