#include "actors/node_children.hpp"

#include "actors/delivery.hpp"
#include "actors/shard.hpp"
#include "actors/user_commands.hpp"

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/typed_actor.hpp>

namespace chime {

child_spec registered(std::string name, context_ptr ctx,
                      std::function<caf::actor(caf::actor_system&)> spawn) {
  return child_spec{name, [name, ctx, spawn](caf::actor_system& sys) {
                      auto handle = spawn(sys);
                      ctx->dir->put(name, handle);
                      return handle;
                    }};
}

supervisor_options group_options(const node_context& ctx,
                                 restart_strategy strategy) {
  supervisor_options opts;
  opts.strategy = strategy;
  opts.restart_max = ctx.restart_max;
  opts.restart_window = ctx.restart_window;
  opts.now = ctx.monotonic;
  opts.board = ctx.supervision;
  return opts;
}

std::vector<child_spec> node_tree(context_ptr ctx, node_seams seams) {
  auto group = [&](const char* name, restart_strategy strategy,
                   std::vector<child_spec> children) {
    return supervisor_child(name, group_options(*ctx, strategy),
                            std::move(children));
  };
  std::vector<child_spec> tree;
  if (!seams.journals.empty())
    tree.push_back(group("journals_sup", restart_strategy::one_for_one,
                         std::move(seams.journals)));
  tree.push_back(std::move(seams.handoff));
  tree.push_back(group(
    "sending_sup", restart_strategy::rest_for_one,
    {registered(delivery_name, ctx,
                [ctx](auto& sys) {
                  return caf::actor_cast<caf::actor>(spawn_delivery(sys, ctx));
                }),
     std::move(seams.consumer)}));
  tree.push_back(group(
    "dead_letters_sup", restart_strategy::rest_for_one,
    {registered(dead_letters_name, ctx,
                [ctx](auto& sys) { return spawn_dead_letter_keeper(sys, ctx); }),
     std::move(seams.dead_consumer)}));
  std::vector<child_spec> scheduling;
  scheduling.push_back(registered(user_commands_name, ctx, [ctx](auto& sys) {
    return spawn_user_commands(sys, ctx);
  }));
  if (ctx->cluster) {
    auto host = registered(shard_host_name, ctx, [ctx](auto& sys) {
      return spawn_shard_host(sys, ctx);
    });
    host.supervisor = true; // it supervises the shards it holds
    scheduling.push_back(std::move(host));
  } else {
    // Without leases (the simulator's single node) the shards are fixed.
    std::vector<child_spec> shards;
    for (auto s : ctx->owned_shards)
      shards.push_back(registered(shard_name(s), ctx, [ctx, s](auto& sys) {
        return spawn_shard(sys, ctx, s);
      }));
    scheduling.push_back(group(shard_host_name, restart_strategy::one_for_one,
                               std::move(shards)));
  }
  scheduling.push_back(registered(due_poller_name, ctx, [ctx](auto& sys) {
    return spawn_due_poller(sys, ctx);
  }));
  if (!ctx->broken.no_outbox_sweeper)
    scheduling.push_back(registered("outbox_sweeper", ctx, [ctx](auto& sys) {
      return spawn_outbox_sweeper(sys, ctx);
    }));
  tree.push_back(group("scheduling_sup", restart_strategy::one_for_one,
                       std::move(scheduling)));
  if (!seams.cluster.empty())
    tree.push_back(group("cluster_sup", restart_strategy::rest_for_one,
                         std::move(seams.cluster)));
  if (seams.http)
    tree.push_back(std::move(*seams.http));
  return tree;
}

} // namespace chime
