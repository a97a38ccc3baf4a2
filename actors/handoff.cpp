#include "actors/handoff.hpp"

#include "actors/node_context.hpp"
#include "runtime/directory.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace chime {

handoff_actor handoff_at(const directory& dir) {
  return dir.get_as<handoff_actor>(handoff_name);
}

void fired_deliveries::add(const handoff_actor& to,
                           std::vector<fire_request>&& fires,
                           const std::vector<bool>& recorded) {
  if (!to)
    return;
  auto i = std::find_if(by_handoff_.begin(), by_handoff_.end(),
                        [&](const auto& entry) { return entry.first == to; });
  if (i == by_handoff_.end())
    i = by_handoff_.insert(by_handoff_.end(), {to, {}});
  for (size_t k = 0; k < fires.size() && k < recorded.size(); ++k)
    if (recorded[k] && fires[k].delivery.status == delivery_status::scheduled)
      i->second.push_back(std::move(fires[k].delivery));
}

void fired_deliveries::submit() {
  for (auto& [to, deliveries] : by_handoff_)
    if (!deliveries.empty())
      caf::anon_send(to, submit_atom::value, std::move(deliveries));
  by_handoff_.clear();
}

} // namespace chime
