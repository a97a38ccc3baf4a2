#include "sims/sim/memory_coordination.hpp"

#include "actors/errc.hpp"
#include "sims/sim/env.hpp"

#include <caf/all.hpp>

namespace chime::sim {

namespace {

/// Runs `op` unless `name` cannot reach the database now.
template <class F>
auto store_op(env& e, const std::string& name, F op)
  -> caf::result<decltype(op())> {
  if (!e.db_reachable(name))
    return make_error(journal_errc::unavailable);
  return op();
}

caf::behavior coordination(caf::event_based_actor* self,
                           std::shared_ptr<lease_store> store, env* e) {
  return {
    [=](member_atom, const member_info& m) {
      return store_op(*e, m.name, [&] {
        store->members[m.name] = {m, e->now_ms()};
        e->trace.add(e->now_ms(), "cluster.member", m.name + " " + m.state);
        return caf::ok_atom::value;
      });
    },
    [=](beat_atom, const std::string& name, const std::string& state) {
      return store_op(*e, name, [&] {
        auto i = store->members.find(name);
        if (i == store->members.end())
          return false;
        if (i->second.info.state != state)
          e->trace.add(e->now_ms(), "cluster.state", name + " " + state);
        i->second.info.state = state;
        i->second.heartbeat_ms = e->now_ms();
        return true;
      });
    },
    [=](members_atom, const std::string& name, int64_t lease_ms) {
      return store_op(*e, name, [&] {
        std::vector<member_info> out;
        for (auto& [n, m] : store->members) {
          if (m.info.state != "down" && m.heartbeat_ms < e->now_ms() - lease_ms) {
            m.info.state = "down";
            e->trace.add(e->now_ms(), "cluster.state", n + " down (stale)");
          }
          out.push_back(m.info);
        }
        return out;
      });
    },
    [=](renew_atom, const std::string& name, const std::vector<shard_lease>& held,
        int64_t lease_ms) {
      return store_op(*e, name, [&] {
        std::vector<shard_lease> out;
        for (auto& l : held) {
          auto& row = store->leases.at(l.shard);
          if (row.owner == name && row.epoch == l.epoch) {
            row.expires_ms = e->now_ms() + lease_ms;
            out.push_back(l);
          }
        }
        return out;
      });
    },
    [=](acquire_atom, const std::string& name, const std::vector<uint32_t>& shards,
        int64_t lease_ms) {
      return store_op(*e, name, [&] {
        std::vector<shard_lease> out;
        for (auto s : shards) {
          auto& row = store->leases.at(s);
          if (!row.owner.empty() && row.owner != name
              && row.expires_ms >= e->now_ms())
            continue;
          row.owner = name;
          ++row.epoch;
          row.expires_ms = e->now_ms() + lease_ms;
          out.push_back({s, row.epoch});
          e->trace.add(e->now_ms(), "cluster.acquire",
                       name + " " + std::to_string(s) + "@"
                         + std::to_string(row.epoch));
        }
        return out;
      });
    },
    [=](release_atom, const std::string& name,
        const std::vector<shard_lease>& leases) {
      return store_op(*e, name, [&] {
        for (auto& l : leases) {
          auto& row = store->leases.at(l.shard);
          if (row.owner == name && row.epoch == l.epoch) {
            row.owner.clear();
            row.expires_ms = 0;
          }
        }
        return caf::ok_atom::value;
      });
    },
    [=](leases_atom, const std::string& name, uint32_t count) {
      return store_op(*e, name, [&] {
        std::vector<shard_owner> out(count);
        for (uint32_t s = 0; s < count && s < store->leases.size(); ++s) {
          auto& row = store->leases[s];
          out[s].epoch = row.epoch;
          if (row.expires_ms > e->now_ms())
            out[s].owner = row.owner;
        }
        return out;
      });
    },
  };
}

struct link_state {
  deferred_replies later;
};

/// The network between node `from` and one of node `to`'s actors: each
/// message may be lost or delayed, and one a partition meets, on its way or
/// while delayed, is lost. A request that is lost ends in its sender's
/// time-out; answers go straight back (a lost request covers a lost answer).
caf::behavior link(caf::stateful_actor<link_state>* self, env* e,
                   std::string from, std::string to, caf::actor target) {
  // Gone with its target: nothing else ends a link.
  self->monitor(target);
  self->set_down_handler([=](caf::down_msg&) { self->quit(); });
  self->set_default_handler(
    [=](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      auto& me = *self->current_mailbox_element();
      auto sender = me.sender;
      auto mid = me.mid;
      auto stages = me.stages;
      auto msg = x.move_content_to_message();
      auto lost = [=] {
        e->trace.add(e->now_ms(), "link.lost", from + ">" + to);
      };
      if (!e->linked(from, to) || e->chance(e->faults.link_loss)) {
        lost();
        return caf::delegated<caf::message>{};
      }
      auto delay = e->chance(e->faults.link_delay) ? e->up_to(e->faults.link_delay_max)
                                                   : millis{0};
      self->state.later.run(self, delay, [=]() mutable {
        if (!e->linked(from, to)) {
          lost();
          return;
        }
        target->enqueue(caf::make_mailbox_element(std::move(sender), mid,
                                                  std::move(stages), std::move(msg)),
                        self->context());
      });
      return caf::delegated<caf::message>{};
    });
  return {
    [=](sim_reply_atom, uint64_t id) { self->state.later.fire(id); },
  };
}

caf::behavior transport(caf::event_based_actor* self,
                        std::shared_ptr<address_book> book, env* e,
                        std::string name) {
  return {
    [=](caf::publish_atom, const std::string& address, caf::actor& whom) {
      book->actors[address] = whom;
      book->names[address] = name;
      return caf::ok_atom::value;
    },
    [=](connect_atom, const std::string& address) -> caf::result<caf::actor> {
      auto i = book->actors.find(address);
      if (i == book->actors.end() || !e->linked(name, book->names[address]))
        return caf::make_error(caf::sec::cannot_connect_to_node);
      return spawn_link(self->system(), e, name, book->names[address], i->second);
    },
  };
}

} // namespace

caf::actor spawn_memory_coordination(caf::actor_system& sys,
                                     std::shared_ptr<lease_store> store, env* e) {
  return sys.spawn(coordination, std::move(store), e);
}

caf::actor spawn_link(caf::actor_system& sys, env* e, std::string from,
                      std::string to, caf::actor target) {
  return sys.spawn(link, e, std::move(from), std::move(to), std::move(target));
}

caf::actor spawn_memory_transport(caf::actor_system& sys,
                                  std::shared_ptr<address_book> book, env* e,
                                  std::string name) {
  return sys.spawn(transport, std::move(book), e, std::move(name));
}

} // namespace chime::sim
