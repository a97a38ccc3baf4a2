#pragma once

#include "actors/node_context.hpp"
#include "runtime/supervisor.hpp"

#include <functional>
#include <string>
#include <vector>

namespace chime {

/// A child whose every incarnation is registered under `name` in the node's
/// directory, where the other actors look it up.
child_spec registered(std::string name, context_ptr ctx,
                      std::function<caf::actor(caf::actor_system&)> spawn);

/// The children that hold Chime's own logic, the same in a real node and in
/// the simulator: delivery, dead-letter keeper, user commands, the shards,
/// the due poller and the outbox sweeper. The seams they talk to (journal,
/// handoff, mailers, broker consumers) are started by the caller.
std::vector<child_spec> logic_children(context_ptr ctx);

} // namespace chime
