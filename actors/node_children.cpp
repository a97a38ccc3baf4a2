#include "actors/node_children.hpp"

#include "actors/delivery.hpp"
#include "actors/shard.hpp"
#include "actors/user_commands.hpp"

#include <caf/actor.hpp>

namespace chime {

child_spec registered(std::string name, context_ptr ctx,
                      std::function<caf::actor(caf::actor_system&)> spawn) {
  return child_spec{name, [name, ctx, spawn](caf::actor_system& sys) {
                      auto handle = spawn(sys);
                      ctx->dir->put(name, handle);
                      return handle;
                    }};
}

std::vector<child_spec> logic_children(context_ptr ctx) {
  std::vector<child_spec> children;
  children.push_back(registered(delivery_name, ctx, [ctx](auto& sys) {
    return spawn_delivery(sys, ctx);
  }));
  children.push_back(registered(dead_letters_name, ctx, [ctx](auto& sys) {
    return spawn_dead_letter_keeper(sys, ctx);
  }));
  children.push_back(registered(user_commands_name, ctx, [ctx](auto& sys) {
    return spawn_user_commands(sys, ctx);
  }));
  if (ctx->cluster)
    children.push_back(registered(shard_host_name, ctx, [ctx](auto& sys) {
      return spawn_shard_host(sys, ctx);
    }));
  else
    for (auto s : ctx->owned_shards)
      children.push_back(registered(shard_name(s), ctx, [ctx, s](auto& sys) {
        return spawn_shard(sys, ctx, s);
      }));
  children.push_back(registered(due_poller_name, ctx, [ctx](auto& sys) {
    return spawn_due_poller(sys, ctx);
  }));
  if (!ctx->broken.no_outbox_sweeper)
    children.push_back(registered("outbox_sweeper", ctx, [ctx](auto& sys) {
      return spawn_outbox_sweeper(sys, ctx);
    }));
  return children;
}

} // namespace chime
