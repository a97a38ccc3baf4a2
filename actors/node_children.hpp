#pragma once

#include "actors/node_context.hpp"
#include "runtime/supervisor.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace chime {

/// A child whose every incarnation is registered under `name` in the node's
/// directory, where the other actors look it up.
child_spec registered(std::string name, context_ptr ctx,
                      std::function<caf::actor(caf::actor_system&)> spawn);

/// The actors that differ between a real node and the simulator: journals,
/// the broker's publisher and consumers, the cluster's plumbing, the HTTP
/// server. Chime's own logic (delivery, dead-letter keeper, user commands,
/// shards, due poller, outbox sweeper) is the same in both.
struct node_seams {
  std::vector<child_spec> journals; ///< empty: they outlive the node
  child_spec handoff;
  child_spec consumer;      ///< feeds the delivery actor
  child_spec dead_consumer; ///< feeds the dead-letter keeper
  std::vector<child_spec> cluster; ///< in start order, each needing the last
  std::optional<child_spec> http;
};

/// The node's tree below its root, in start order: each group under a
/// supervisor whose strategy fits how its children depend on each other.
/// A consumer is restarted with the actor it feeds (rest_for_one): a
/// consumer whose target went may hold broker messages nobody will settle,
/// and its new channel gets them redelivered.
std::vector<child_spec> node_tree(context_ptr ctx, node_seams seams);

/// The options of the node's supervisors: the root's and each group's.
supervisor_options group_options(const node_context& ctx,
                                 restart_strategy strategy);

} // namespace chime
