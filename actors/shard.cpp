#include "actors/shard.hpp"

#include "actors/cluster_view.hpp"
#include "actors/protocol.hpp"
#include "actors/sharding.hpp"
#include "actors/user.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>

#include <map>
#include <unordered_map>

namespace chime {

namespace {

struct shard_state {
  context_ptr ctx;
  uint32_t id = 0;
  std::unordered_map<std::string, caf::actor> users;
  std::map<caf::actor_addr, std::string> ids;
  static inline const char* name = "chime.shard";
};

using shard_actor = caf::stateful_actor<shard_state>;

/// Keeps the node's count of resident users (the bound's) and its gauge.
void count_resident(const context_ptr& ctx, int64_t n) {
  *ctx->resident_users += n;
  static auto& gauge = get_metric("chime_resident_users");
  gauge.add(n);
}

bool due_within_horizon(const context_ptr& ctx, const user_view& v) {
  auto limit = to_ms(ctx->clock->now() + ctx->horizon);
  for (auto& d : v.due)
    if (d.due_at_ms <= limit)
      return true;
  return false;
}

caf::behavior shard(shard_actor* self, context_ptr ctx, uint32_t id) {
  self->state.ctx = std::move(ctx);
  self->state.id = id;
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    auto i = st.ids.find(msg.source);
    if (i == st.ids.end()) {
      // From our supervisor: the linked user actors exit with us.
      count_resident(st.ctx, -static_cast<int64_t>(st.users.size()));
      self->quit(msg.reason);
      return;
    }
    if (msg.reason && msg.reason != caf::exit_reason::user_shutdown)
      log(log_level::warn, "shard", "user actor failed",
          {{"user_id", i->second},
           {"reason", self->system().render(msg.reason)}});
    st.users.erase(i->second);
    st.ids.erase(i);
    count_resident(st.ctx, -1);
  });
  return {
    [=](upsert_atom, user_view& v, bool from_poll) {
      auto& st = self->state;
      auto i = st.users.find(v.user.id);
      if (i != st.users.end()) {
        // A resident actor already knows better than a poll's snapshot.
        if (!from_poll)
          self->send(i->second, upsert_atom::value, std::move(v));
        return;
      }
      if (!due_within_horizon(st.ctx, v))
        return;
      if (*st.ctx->resident_users >= st.ctx->resident_users_max) {
        // Full: the user stays in the due index, and a poll after some of
        // those due before it have fired brings it in (polls load the
        // earliest due first).
        static auto& hits = get_metric("chime_resident_limit_hits_total");
        hits.add();
        return;
      }
      auto user_id = v.user.id;
      auto actor = spawn_user(self, st.ctx, std::move(v));
      st.ids.emplace(actor.address(), user_id);
      st.users.emplace(std::move(user_id), std::move(actor));
      count_resident(st.ctx, 1);
    },
    [=](evict_atom, const std::string& user_id) {
      auto& st = self->state;
      auto i = st.users.find(user_id);
      if (i != st.users.end())
        self->send_exit(i->second, caf::exit_reason::user_shutdown);
    },
    [=](caf::get_atom) -> uint64_t { return self->state.users.size(); },
    [=](load_due_atom) {
      // A shard just taken over loads its due users at once instead of
      // waiting for the next poll.
      auto& ctx = self->state.ctx;
      auto until = to_ms(ctx->clock->now() + ctx->horizon);
      self
        ->request(ctx->dir->get(journal_name), journal_timeout,
                  load_due_atom::value, until,
                  std::vector<uint32_t>{self->state.id})
        .then(
          [=](std::vector<user_view>& users) {
            for (auto& v : users)
              self->send(self, upsert_atom::value, std::move(v), true);
          },
          [=](caf::error&) {}); // the next poll loads them
    },
  };
}

struct host_state {
  context_ptr ctx;
  std::map<uint32_t, caf::actor> shards;
  std::map<caf::actor_addr, uint32_t> by_addr;
  static inline const char* name = "chime.shard_host";
};

using host_actor = caf::stateful_actor<host_state>;

void host_start(host_actor* self, uint32_t id) {
  auto& st = self->state;
  if (st.shards.count(id) > 0)
    return;
  auto actor = self->spawn<caf::linked>(shard, st.ctx, id);
  st.by_addr.emplace(actor.address(), id);
  st.ctx->dir->put(shard_name(id), actor);
  self->send(actor, load_due_atom::value);
  st.shards.emplace(id, std::move(actor));
}

/// The shards of a node in a cluster, started and stopped as its leases
/// come and go; each shard registered in the directory while it runs here.
caf::behavior shard_host(host_actor* self, context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    auto i = st.by_addr.find(msg.source);
    if (i == st.by_addr.end()) {
      self->quit(msg.reason); // from our supervisor: the shards go with us
      return;
    }
    auto id = i->second;
    st.by_addr.erase(i);
    auto j = st.shards.find(id);
    if (j == st.shards.end() || j->second.address() != msg.source)
      return; // given away already
    st.shards.erase(j);
    st.ctx->dir->erase(shard_name(id));
    if (st.ctx->cluster->held_epoch(id) != 0) {
      log(log_level::warn, "shard", "shard failed; restarting it",
          {{"shard", int64_t{id}},
           {"reason", self->system().render(msg.reason)}});
      host_start(self, id);
    }
  });
  for (auto id : self->state.ctx->shards_here())
    host_start(self, id);
  return {
    [=](take_atom, uint32_t id) { host_start(self, id); },
    [=](give_atom, uint32_t id) {
      auto& st = self->state;
      auto i = st.shards.find(id);
      if (i == st.shards.end())
        return;
      st.ctx->dir->erase(shard_name(id));
      self->send_exit(i->second, caf::exit_reason::user_shutdown);
      st.shards.erase(i);
    },
  };
}

struct poller_state {
  context_ptr ctx;
  static inline const char* name = "chime.due_poller";
};

using poller_actor = caf::stateful_actor<poller_state>;

caf::behavior due_poller(poller_actor* self, context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      auto& ctx = self->state.ctx;
      auto until = ctx->clock->now() + ctx->horizon;
      auto real_interval = std::max<std::chrono::microseconds>(
        ctx->clock->real_delay(ctx->poll_interval), std::chrono::milliseconds{100});
      self->delayed_send(self, real_interval, tick_atom::value);
      self
        ->request(ctx->dir->get(journal_name), journal_timeout,
                  load_due_atom::value, to_ms(until), ctx->shards_here())
        .then(
          [=](std::vector<user_view>& users) {
            auto& ctx = self->state.ctx;
            for (auto& v : users) {
              auto shard = ctx->dir->get(
                shard_name(shard_of(v.user.id, ctx->shard_count)));
              self->send(shard, upsert_atom::value, std::move(v), true);
            }
          },
          [=](caf::error& err) {
            log(log_level::warn, "due_poller", "could not load due users",
                {{"error", self->system().render(err)}});
          });
    },
  };
}

} // namespace

caf::actor spawn_shard(caf::actor_system& sys, context_ptr ctx, uint32_t id) {
  return sys.spawn(shard, std::move(ctx), id);
}

caf::actor spawn_shard_host(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(shard_host, std::move(ctx));
}

caf::actor spawn_due_poller(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(due_poller, std::move(ctx));
}

} // namespace chime
