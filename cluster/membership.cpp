#include "cluster/membership.hpp"

#include "actors/cluster_view.hpp"
#include "actors/delivery.hpp"
#include "actors/protocol.hpp"
#include "actors/user_commands.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <random>
#include <set>

namespace chime {

std::string hmac_hex(const std::string& secret, const std::string& text) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(text.data()), text.size(), out,
       &len);
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += digits[out[i] >> 4];
    hex += digits[out[i] & 0xF];
  }
  return hex;
}

namespace {

using steady = std::chrono::steady_clock;

bool same_proof(const std::string& a, const std::string& b) {
  return a.size() == b.size()
         && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

struct membership_state {
  context_ptr ctx;
  membership_options opts;
  std::mt19937_64 rng; ///< nonces: from the node's seed (fixed in the simulator)
  bool admitted = false;
  bool joined = false;
  bool admitting = false;
  bool in_round = false;
  bool round_again = false;
  steady::time_point next_admission{};
  std::map<std::string, std::string> challenges;
  std::map<uint32_t, uint64_t> releasing; ///< shard -> epoch given away
  std::set<std::string> watching;
  /// When this node first saw itself up; it sends under a rate limit only
  /// two rounds later, once the others have seen it and lowered their shares.
  std::optional<steady::time_point> up_since;
  std::map<caf::actor_addr, std::string> peer_of;
  std::vector<caf::response_promise> leaves;
  std::string problem;
  static inline const char* name = "chime.membership";

  cluster_view& view() { return *ctx->cluster; }
  caf::actor store() const { return ctx->dir->get(coordination_name); }
  caf::actor transport() const { return ctx->dir->get(transport_name); }
  std::chrono::milliseconds tick() const {
    return std::max<std::chrono::milliseconds>(opts.lease / 6,
                                               std::chrono::milliseconds{200});
  }
  std::chrono::milliseconds wait() const { return opts.lease / 3; }
  int64_t lease_ms() const { return opts.lease.count(); }
  steady::time_point deadline(steady::time_point sent) const {
    // The store's expiry is at least a lease after the request left.
    return sent + opts.lease - opts.lease / 4;
  }
  std::string nonce() {
    return std::to_string(rng()) + std::to_string(rng());
  }
};

using membership_actor = caf::stateful_actor<membership_state>;

/// Logs a problem once, not at every round while it lasts.
void report(membership_actor* self, const std::string& what) {
  auto& st = self->state;
  if (what == st.problem)
    return;
  st.problem = what;
  log(log_level::warn, "cluster", what, {{"node", st.opts.name}});
}

void round(membership_actor* self);

void end_round(membership_actor* self) {
  auto& st = self->state;
  st.in_round = false;
  if (st.round_again) {
    st.round_again = false;
    self->send(self, tick_atom::value);
  }
}

void start_round_soon(membership_actor* self) {
  auto& st = self->state;
  if (st.in_round)
    st.round_again = true;
  else
    self->send(self, tick_atom::value);
}

template <class... Ts>
auto ask_store(membership_actor* self, Ts&&... xs) {
  auto& st = self->state;
  return self->request(st.store(), st.wait(), std::forward<Ts>(xs)...);
}

auto on_store_error(membership_actor* self, const char* what) {
  return [=](caf::error& err) {
    report(self, std::string{what} + ": " + self->system().render(err));
    end_round(self);
  };
}

// -- admission ------------------------------------------------------------------

void seek_admission(membership_actor* self) {
  auto& st = self->state;
  auto now = st.ctx->monotonic();
  if (st.admitting || now < st.next_admission)
    return;
  st.next_admission = now + std::chrono::seconds{2};
  std::vector<std::string> seeds;
  for (auto& s : st.opts.seeds)
    if (s != st.opts.cluster_address)
      seeds.push_back(s);
  if (seeds.empty())
    return;
  st.admitting = true;
  auto seed = seeds[st.rng() % seeds.size()];
  auto done = [=](const std::string& problem) {
    self->state.admitting = false;
    if (!problem.empty())
      report(self, problem);
  };
  self->request(st.transport(), std::chrono::seconds{10}, connect_atom::value, seed)
    .then(
      [=](caf::actor& gateway) {
        auto& st = self->state;
        self->request(gateway, std::chrono::seconds{5}, hello_atom::value, st.opts.name)
          .then(
            [=](std::string& nonce) {
              auto& st = self->state;
              auto client_nonce = st.nonce();
              auto mac = hmac_hex(st.opts.secret, "join|" + st.opts.name + "|"
                                                    + nonce + "|" + client_nonce);
              self
                ->request(gateway, std::chrono::seconds{10}, join_atom::value,
                          st.opts.name, st.opts.http_url, st.opts.cluster_address,
                          nonce, client_nonce, mac)
                .then(
                  [=](std::string& proof) {
                    auto& st = self->state;
                    auto expected = hmac_hex(st.opts.secret, "admit|" + st.opts.name
                                                               + "|" + client_nonce);
                    if (proof.empty())
                      return done("the seed " + seed + " refused this node: the"
                                  " cluster secret does not match");
                    if (!same_proof(proof, expected))
                      return done("the seed " + seed
                                  + " could not prove the cluster secret");
                    st.admitted = true;
                    log(log_level::info, "cluster", "admitted to the cluster",
                        {{"node", st.opts.name}, {"seed", seed}});
                    done({});
                    start_round_soon(self);
                  },
                  [=](caf::error& err) {
                    done("joining through " + seed + " failed: "
                         + self->system().render(err));
                  });
            },
            [=](caf::error& err) {
              done("the seed " + seed + " did not answer: "
                   + self->system().render(err));
            });
      },
      [=](caf::error& err) {
        done("cannot reach the seed " + seed + ": " + self->system().render(err));
      });
}

caf::result<std::string> admit(membership_actor* self, const std::string& name,
                               const std::string& http_url,
                               const std::string& address,
                               const std::string& nonce,
                               const std::string& client_nonce,
                               const std::string& mac) {
  auto& st = self->state;
  auto i = st.challenges.find(name);
  bool proven = i != st.challenges.end() && i->second == nonce
                && same_proof(mac, hmac_hex(st.opts.secret, "join|" + name + "|"
                                                              + nonce + "|"
                                                              + client_nonce));
  if (i != st.challenges.end())
    st.challenges.erase(i);
  if (!proven || name == st.opts.name) {
    log(log_level::warn, "cluster",
        proven ? "refused a node using this node's name"
               : "refused a node that could not prove the cluster secret",
        {{"node", name}, {"cluster_address", address}});
    return std::string{};
  }
  auto rp = self->make_response_promise<std::string>();
  auto proof = hmac_hex(st.opts.secret, "admit|" + name + "|" + client_nonce);
  ask_store(self, member_atom::value, member_info{name, "up", http_url, address, 0})
    .then(
      [=](caf::ok_atom) mutable {
        log(log_level::info, "cluster", "admitted a node",
            {{"node", name}, {"cluster_address", address}});
        rp.deliver(proof);
      },
      [=](caf::error&) mutable { rp.deliver(std::string{}); });
  return rp;
}

// -- one round --------------------------------------------------------------------

void snapshot(membership_actor* self, std::vector<member_info> members);

void give_away(membership_actor* self, const std::vector<uint32_t>& shards) {
  auto& st = self->state;
  if (shards.empty())
    return;
  for (auto s : shards) {
    st.view().retire(s);
    st.releasing[s] = st.view().held_epoch(s);
    self->send(st.ctx->dir->get(shard_host_name), give_atom::value, s);
  }
  log(log_level::info, "cluster", "giving shards away",
      {{"node", st.opts.name}, {"shards", static_cast<int64_t>(shards.size())}});
  auto delivery = delivery_at(*st.ctx->dir);
  if (!delivery) {
    self->send(self, release_atom::value, shards);
    return;
  }
  auto wait = st.ctx->email_timeout + std::chrono::seconds{5};
  self->request(delivery, wait, drain_atom::value, shards)
    .then([=](caf::ok_atom) { self->send(self, release_atom::value, shards); },
          [=](caf::error&) { self->send(self, release_atom::value, shards); });
}

void release(membership_actor* self, const std::vector<uint32_t>& shards) {
  auto& st = self->state;
  std::vector<shard_lease> leases;
  for (auto s : shards) {
    auto i = st.releasing.find(s);
    if (i == st.releasing.end() || st.view().held_epoch(s) != i->second)
      continue; // taken again meanwhile, or lost
    leases.push_back({s, i->second});
    st.releasing.erase(i);
  }
  if (leases.empty())
    return;
  // Dropped whether or not the store answers: unreleased, the leases
  // expire by themselves within a lease.
  for (auto& l : leases)
    st.view().drop(l.shard);
  ask_store(self, release_atom::value, st.opts.name, leases)
    .then([=](caf::ok_atom) { start_round_soon(self); },
          [=](caf::error& err) {
            report(self, "releasing leases: " + self->system().render(err));
          });
}

void acquire(membership_actor* self, std::vector<uint32_t> take,
             std::vector<member_info> members) {
  auto& st = self->state;
  if (take.empty())
    return snapshot(self, std::move(members));
  auto sent = st.ctx->monotonic();
  ask_store(self, acquire_atom::value, st.opts.name, take, st.lease_ms())
    .then(
      [=](std::vector<shard_lease>& got) mutable {
        auto& st = self->state;
        for (auto& l : got) {
          st.view().hold(l.shard, l.epoch, st.deadline(sent));
          self->send(st.ctx->dir->get(shard_host_name), take_atom::value, l.shard);
        }
        if (!got.empty())
          log(log_level::info, "cluster", "took shards",
              {{"node", st.opts.name},
               {"shards", static_cast<int64_t>(got.size())}});
        snapshot(self, std::move(members));
      },
      on_store_error(self, "taking shards"));
}

/// Renewed leases, lost ones dropped; then give and take.
void balance(membership_actor* self, std::vector<member_info> members) {
  auto& st = self->state;
  std::vector<std::string> up;
  size_t sending = 0; ///< up, or leaving and still finishing its sends
  for (auto& m : members) {
    if (m.state == "up")
      up.push_back(m.name);
    if (m.state == "up" || m.state == "leaving")
      ++sending;
  }
  bool self_up_now = std::count(up.begin(), up.end(), st.opts.name) > 0;
  if (!self_up_now)
    st.up_since.reset();
  else if (!st.up_since)
    st.up_since = st.ctx->monotonic();
  if (st.opts.email_rate_total > 0) {
    // Two rounds: every other member has had a full round to see this one.
    bool settled = st.up_since
                   && st.ctx->monotonic() - *st.up_since >= 2 * st.tick();
    // Each node's bucket may also spend its burst in any one second: with
    // several nodes, their bursts come out of the cluster's limit too.
    // A leaving member keeps its share until it is gone: it may still be
    // sending what it had re-checked.
    auto n = static_cast<double>(std::max<size_t>(1, sending));
    auto share = st.opts.email_rate_total / n;
    if (n > 1)
      share = std::max(share - st.ctx->email_burst, share / 2);
    st.view().set_rate_share(settled ? share : -1);
  }
  std::vector<shard_lease> leases;
  for (auto& [s, e] : st.view().leases())
    leases.push_back({s, e});
  auto sent = st.ctx->monotonic();
  ask_store(self, renew_atom::value, st.opts.name, leases, st.lease_ms())
    .then(
      [=](std::vector<shard_lease>& renewed) mutable {
        auto& st = self->state;
        std::map<uint32_t, uint64_t> ok;
        for (auto& l : renewed)
          ok[l.shard] = l.epoch;
        for (auto& l : leases) {
          if (ok.count(l.shard) > 0) {
            st.view().hold(l.shard, l.epoch, st.deadline(sent));
            continue;
          }
          log(log_level::warn, "cluster", "lost a shard's lease",
              {{"node", st.opts.name}, {"shard", int64_t{l.shard}},
               {"epoch", static_cast<int64_t>(l.epoch)}});
          st.view().drop(l.shard);
          st.releasing.erase(l.shard);
          self->send(st.ctx->dir->get(shard_host_name), give_atom::value, l.shard);
        }
        bool leaving = st.view().leaving();
        bool self_up = std::count(up.begin(), up.end(), st.opts.name) > 0;
        auto held = st.view().held();
        std::set<uint32_t> held_set(held.begin(), held.end());
        std::vector<uint32_t> give, take;
        for (uint32_t s = 0; s < st.view().shard_count(); ++s) {
          bool mine = self_up && !leaving && rendezvous_owner(s, up) == st.opts.name;
          if (mine && held_set.count(s) == 0 && st.releasing.count(s) == 0)
            take.push_back(s);
          if (!mine && held_set.count(s) > 0)
            give.push_back(s);
        }
        give_away(self, give);
        acquire(self, std::move(take), std::move(members));
      },
      on_store_error(self, "renewing leases"));
}

void finish_leave(membership_actor* self) {
  auto& st = self->state;
  ask_store(self, beat_atom::value, st.opts.name, std::string{"down"})
    .then(
      [=](bool) {
        auto& st = self->state;
        st.view().set_left();
        log(log_level::info, "cluster", "left the cluster", {{"node", st.opts.name}});
        for (auto& rp : st.leaves)
          rp.deliver(caf::ok_atom::value);
        st.leaves.clear();
        end_round(self);
      },
      on_store_error(self, "leaving"));
}

void watch_peers(membership_actor* self) {
  auto& st = self->state;
  if (st.opts.cluster_address.empty())
    return;
  for (auto& m : st.view().members()) {
    if (m.state != "up" || m.name == st.opts.name || m.cluster_address.empty()
        || st.watching.count(m.name) > 0)
      continue;
    auto name = m.name;
    st.watching.insert(name);
    auto forget = [=](caf::error&) { self->state.watching.erase(name); };
    self->request(st.transport(), std::chrono::seconds{10}, connect_atom::value,
                  m.cluster_address)
      .then(
        [=](caf::actor& gateway) {
          auto& st = self->state;
          if (st.peer_of.emplace(gateway.address(), name).second)
            self->monitor(gateway);
          // The handles are given only to a member that proves the secret
          // against the peer's nonce.
          self->request(gateway, std::chrono::seconds{5}, hello_atom::value,
                        st.opts.name)
            .then(
              [=](std::string& nonce) {
                auto& st = self->state;
                auto mac = hmac_hex(st.opts.secret,
                                    "peer|" + st.opts.name + "|" + nonce);
                self
                  ->request(gateway, std::chrono::seconds{5},
                            caf::get_atom::value, st.opts.name, nonce, mac)
                  .then(
                    [=](caf::actor& users, caf::actor& delivery) {
                      auto& st = self->state;
                      if (!users || !delivery) {
                        // The peer is restarting one of them: ask again at
                        // the next round.
                        st.watching.erase(name);
                        return;
                      }
                      // A peer's actor restarted by its supervisor is a new
                      // actor: watched, so that its successor is asked for.
                      for (auto& handle : {users, delivery})
                        if (st.peer_of.emplace(handle.address(), name).second)
                          self->monitor(handle);
                      st.view().set_peer(name, user_commands_name, users);
                      st.view().set_peer(name, delivery_name, delivery);
                    },
                    forget);
              },
              forget);
        },
        [=](caf::error&) { self->state.watching.erase(name); });
  }
}

void snapshot(membership_actor* self, std::vector<member_info> members) {
  auto& st = self->state;
  ask_store(self, leases_atom::value, st.opts.name, st.view().shard_count())
    .then(
      [=](std::vector<shard_owner>& shards) mutable {
        auto& st = self->state;
        for (auto& m : members)
          m.shards = static_cast<uint32_t>(
            std::count_if(shards.begin(), shards.end(),
                          [&](const shard_owner& o) { return o.owner == m.name; }));
        get_metric("chime_shards_owned")
          .set(static_cast<int64_t>(st.view().held().size()));
        st.view().set_snapshot(std::move(members), std::move(shards));
        watch_peers(self);
        if (st.view().leaving() && st.view().leases().empty()
            && !st.leaves.empty())
          return finish_leave(self);
        end_round(self);
      },
      on_store_error(self, "reading the lease table"));
}

void members_and_balance(membership_actor* self) {
  auto& st = self->state;
  ask_store(self, members_atom::value, st.opts.name, st.lease_ms())
    .then([=](std::vector<member_info>& members) { balance(self, std::move(members)); },
          on_store_error(self, "reading the members"));
}

void round(membership_actor* self) {
  auto& st = self->state;
  if (st.view().left())
    return; // gone: no heartbeat may bring the row back
  if (st.in_round) {
    st.round_again = true;
    return;
  }
  st.in_round = true;
  if (!st.admitted)
    seek_admission(self);
  auto state = st.view().leaving() ? std::string{"leaving"} : std::string{"up"};
  if (st.admitted && !st.joined) {
    ask_store(self, member_atom::value,
              member_info{st.opts.name, state, st.opts.http_url,
                          st.opts.cluster_address, 0})
      .then(
        [=](caf::ok_atom) {
          self->state.joined = true;
          self->state.problem.clear();
          members_and_balance(self);
        },
        on_store_error(self, "joining the membership table"));
    return;
  }
  if (!st.joined)
    return members_and_balance(self);
  ask_store(self, beat_atom::value, st.opts.name, state)
    .then(
      [=](bool found) {
        self->state.joined = found;
        self->state.problem.clear();
        members_and_balance(self);
      },
      on_store_error(self, "heartbeat"));
}

caf::behavior membership(membership_actor* self, context_ptr ctx,
                         membership_options opts) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.opts = std::move(opts);
  st.rng.seed(st.ctx->seed ^ std::hash<std::string>{}(st.opts.name));
  st.admitted = st.opts.seeds.empty();
  if (!st.opts.cluster_address.empty())
    self->request(st.transport(), std::chrono::seconds{10}, caf::publish_atom::value,
                  st.opts.cluster_address, caf::actor_cast<caf::actor>(self))
      .then([](caf::ok_atom) {},
            [=](caf::error& err) {
              log(log_level::error, "cluster", "cannot listen on the cluster port",
                  {{"address", self->state.opts.cluster_address},
                   {"error", self->system().render(err)}});
              self->quit(err);
            });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    auto i = st.peer_of.find(msg.source);
    if (i == st.peer_of.end())
      return;
    st.view().forget_peer(i->second);
    st.watching.erase(i->second);
    st.peer_of.erase(i);
  });
  return {
    [=](tick_atom) { round(self); },
    [=](flush_atom) {
      // The periodic clock of rounds, apart from rounds asked for early.
      self->delayed_send(self, self->state.tick(), flush_atom::value);
      round(self);
    },
    [=](hello_atom, const std::string& name) -> std::string {
      auto& st = self->state;
      if (st.challenges.size() > 64)
        st.challenges.clear(); // bounded: a joiner asks again
      return st.challenges[name] = st.nonce();
    },
    [=](join_atom, const std::string& name, const std::string& http_url,
        const std::string& address, const std::string& nonce,
        const std::string& client_nonce, const std::string& mac) {
      return admit(self, name, http_url, address, nonce, client_nonce, mac);
    },
    [=](join_atom, const std::string& seed) {
      auto& st = self->state;
      st.opts.seeds = {seed};
      st.admitted = false;
      st.next_admission = {};
      start_round_soon(self);
    },
    [=](caf::get_atom, const std::string& name, const std::string& nonce,
        const std::string& mac) -> caf::result<caf::actor, caf::actor> {
      auto& st = self->state;
      auto i = st.challenges.find(name);
      bool proven = i != st.challenges.end() && i->second == nonce
                    && same_proof(mac, hmac_hex(st.opts.secret,
                                                "peer|" + name + "|" + nonce));
      if (i != st.challenges.end())
        st.challenges.erase(i);
      if (!proven) {
        log(log_level::warn, "cluster",
            "refused handles to a node that could not prove the cluster secret",
            {{"node", name}});
        return caf::make_error(caf::sec::request_receiver_down);
      }
      return {st.ctx->dir->get(user_commands_name),
              st.ctx->dir->get(delivery_name)};
    },
    [=](leave_atom) {
      auto& st = self->state;
      // Stop sending before the others read "leaving" and raise their
      // shares of the rate limit.
      give_away(self, st.view().held());
      st.view().set_leaving();
      st.leaves.push_back(self->make_response_promise());
      start_round_soon(self);
    },
    [=](release_atom, const std::vector<uint32_t>& shards) {
      release(self, shards);
    },
  };
}

} // namespace

caf::actor spawn_membership(caf::actor_system& sys, context_ptr ctx,
                            membership_options opts) {
  auto m = sys.spawn(membership, std::move(ctx), std::move(opts));
  caf::anon_send(m, flush_atom::value);
  return m;
}

// -- transport over CAF's middleman ---------------------------------------------------

std::optional<std::pair<std::string, uint16_t>>
split_address(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return std::nullopt;
  uint16_t port = 0;
  auto first = address.data() + colon + 1;
  auto last = address.data() + address.size();
  auto [end, ec] = std::from_chars(first, last, port);
  if (ec != std::errc{} || end != last || port == 0)
    return std::nullopt;
  return std::pair{address.substr(0, colon), port};
}

namespace {

caf::behavior middleman_transport(caf::event_based_actor* self) {
  return {
    [=](caf::publish_atom, const std::string& address,
        caf::actor& whom) -> caf::result<caf::ok_atom> {
      auto parsed = split_address(address);
      if (!parsed)
        return caf::make_error(caf::sec::invalid_argument, address);
      auto& [host, port] = *parsed;
      auto bound = self->system().middleman().publish(whom, port, host.c_str(),
                                                      true);
      if (!bound)
        return bound.error();
      return caf::ok_atom::value;
    },
    [=](connect_atom, const std::string& address) -> caf::result<caf::actor> {
      // A peer states its own address when it joins.
      if (!split_address(address))
        return caf::make_error(caf::sec::invalid_argument, address);
      auto rp = self->make_response_promise<caf::actor>();
      // Connecting blocks, and may never end for a frozen peer: a thread of
      // its own each time.
      self->spawn<caf::detached>([rp, address](caf::blocking_actor* worker) mutable {
        auto [host, port] = *split_address(address);
        auto peer = worker->system().middleman().remote_actor(host, port);
        if (peer)
          rp.deliver(*peer);
        else
          rp.deliver(peer.error());
      });
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_middleman_transport(caf::actor_system& sys) {
  // Detached: publishing binds a socket and waits for the middleman.
  return sys.spawn<caf::detached>(middleman_transport);
}

} // namespace chime
