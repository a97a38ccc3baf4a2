#include "cluster/membership.hpp"

#include "actors/cluster_view.hpp"
#include "actors/protocol.hpp"
#include "actors/user_commands.hpp"
#include "persistence/migrations.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <map>
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

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  RAND_bytes(buf.data(), static_cast<int>(buf.size()));
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (auto b : buf) {
    hex += digits[b >> 4];
    hex += digits[b & 0xF];
  }
  return hex;
}

bool same_secret_proof(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::pair<std::string, uint16_t> split_address(const std::string& address) {
  auto colon = address.rfind(':');
  return {address.substr(0, colon),
          static_cast<uint16_t>(std::stoi(address.substr(colon + 1)))};
}

/// "{1,2,3}": a PostgreSQL array literal of numbers.
template <class Int>
std::string int_array(const std::vector<Int>& xs) {
  std::string out = "{";
  for (size_t i = 0; i < xs.size(); ++i)
    out += (i ? "," : "") + std::to_string(xs[i]);
  return out + "}";
}

/// Watches one peer: connects to its published membership actor, fetches
/// handles to its `users` and `delivery` actors into the cluster view, and
/// forgets them when the connection is lost (CAF's heartbeats notice a
/// frozen peer too). Ends with (gone_atom, name) to the membership actor.
void watch_peer(caf::blocking_actor* self, std::shared_ptr<cluster_view> view,
                caf::actor membership, std::string name, std::string address) {
  auto [host, port] = split_address(address);
  auto gateway = self->system().middleman().remote_actor(host, port);
  if (gateway) {
    for (auto what : {user_commands_name, delivery_name}) {
      self->request(*gateway, std::chrono::seconds{3}, caf::get_atom::value,
                    std::string{what})
        .receive([&](caf::actor& handle) { view->set_peer(name, what, handle); },
                 [&](caf::error&) {});
    }
    self->monitor(*gateway);
    bool done = false;
    self->receive_while([&] { return !done; })(
      [&](caf::down_msg&) { done = true; },
      [&](caf::exit_msg&) { done = true; });
    view->forget_peer(name);
  }
  self->send(membership, gone_atom::value, name);
}

class membership {
public:
  membership(caf::blocking_actor* self, context_ptr ctx,
             membership_options opts)
    : self_(self), ctx_(std::move(ctx)), view_(*ctx_->cluster),
      opts_(std::move(opts)), admitted_(opts_.seeds.empty()) {
    tick_ = std::clamp<std::chrono::milliseconds>(
      opts_.lease / 6, std::chrono::milliseconds{200},
      std::chrono::milliseconds{2000});
    margin_ = opts_.lease / 4;
  }

  void run() {
    if (!opts_.cluster_address.empty()) {
      auto [host, port] = split_address(opts_.cluster_address);
      auto bound = self_->system().middleman().publish(
        caf::actor_cast<caf::actor>(self_), port, host.c_str(), true);
      if (!bound) {
        log(log_level::error, "cluster", "cannot listen on the cluster port",
            {{"address", opts_.cluster_address},
             {"error", self_->system().render(bound.error())}});
        throw std::runtime_error("cluster port unavailable");
      }
    }
    bool running = true;
    auto next_tick = steady::now();
    while (running) {
      auto wait = std::max(std::chrono::duration_cast<std::chrono::milliseconds>(
                             next_tick - steady::now()),
                           std::chrono::milliseconds{0});
      self_->receive(
        [&](hello_atom, const std::string& name) -> std::string {
          return challenge(name);
        },
        [&](join_atom, const std::string& name, const std::string& http_url,
            const std::string& address, const std::string& nonce,
            const std::string& client_nonce,
            const std::string& mac) -> std::string {
          return admit(name, http_url, address, nonce, client_nonce, mac);
        },
        [&](join_atom, const std::string& seed) {
          opts_.seeds = {seed};
          admitted_ = false;
          next_admission_ = steady::now();
          next_tick = steady::now();
        },
        [&](caf::get_atom, const std::string& what) -> caf::actor {
          if (what != user_commands_name && what != delivery_name)
            return {};
          return ctx_->dir->get(what);
        },
        [&](leave_atom) {
          view_.set_leaving();
          leaves_.push_back(self_->make_response_promise());
          next_tick = steady::now();
        },
        [&](release_atom, const std::vector<uint32_t>& shards) {
          release(shards);
          next_tick = steady::now(); // a leave finishes at once
        },
        [&](gone_atom, const std::string& name) { watching_.erase(name); },
        [&](caf::exit_msg& msg) {
          if (msg.reason)
            running = false;
        },
        caf::after(wait) >> [] {});
      if (running && steady::now() >= next_tick) {
        tick();
        next_tick = steady::now() + tick_;
      }
    }
  }

private:
  // -- admission --------------------------------------------------------------------

  std::string challenge(const std::string& name) {
    if (challenges_.size() > 64)
      challenges_.clear(); // bounded: a joiner asks again
    return challenges_[name] = random_hex(16);
  }

  std::string admit(const std::string& name, const std::string& http_url,
                    const std::string& address, const std::string& nonce,
                    const std::string& client_nonce, const std::string& mac) {
    auto i = challenges_.find(name);
    bool proven = i != challenges_.end() && i->second == nonce
                  && same_secret_proof(mac, hmac_hex(opts_.secret,
                                                     "join|" + name + "|" + nonce
                                                       + "|" + client_nonce));
    if (i != challenges_.end())
      challenges_.erase(i);
    if (!proven || name == opts_.name) {
      log(log_level::warn, "cluster",
          proven ? "refused a node using this node's name"
                 : "refused a node that could not prove the cluster secret",
          {{"node", name}, {"cluster_address", address}});
      return {};
    }
    try {
      upsert_member(name, "up", http_url, address);
    } catch (const std::exception& e) {
      log(log_level::warn, "cluster", "cannot admit a node now",
          {{"node", name}, {"error", std::string{e.what()}}});
      conn_.reset();
      return {};
    }
    log(log_level::info, "cluster", "admitted a node",
        {{"node", name}, {"cluster_address", address}});
    return hmac_hex(opts_.secret, "admit|" + name + "|" + client_nonce);
  }

  /// Asks each seed in turn to admit this node.
  void seek_admission() {
    if (steady::now() < next_admission_)
      return;
    next_admission_ = steady::now() + std::chrono::seconds{2};
    for (auto& seed : opts_.seeds) {
      if (seed == opts_.cluster_address)
        continue;
      auto [host, port] = split_address(seed);
      auto gateway = self_->system().middleman().remote_actor(host, port);
      if (!gateway) {
        report("cannot reach the seed " + seed + ": "
               + self_->system().render(gateway.error()));
        continue;
      }
      std::string nonce;
      self_->request(*gateway, std::chrono::seconds{5}, hello_atom::value,
                     opts_.name)
        .receive([&](std::string& n) { nonce = std::move(n); },
                 [&](caf::error&) {});
      if (nonce.empty())
        continue;
      auto client_nonce = random_hex(16);
      auto mac = hmac_hex(opts_.secret, "join|" + opts_.name + "|" + nonce
                                          + "|" + client_nonce);
      std::string proof;
      self_
        ->request(*gateway, std::chrono::seconds{10}, join_atom::value,
                  opts_.name, opts_.http_url, opts_.cluster_address, nonce,
                  client_nonce, mac)
        .receive([&](std::string& p) { proof = std::move(p); },
                 [&](caf::error&) {});
      if (proof.empty()) {
        report("the seed " + seed
               + " refused this node: the cluster secret does not match");
        continue;
      }
      if (!same_secret_proof(proof, hmac_hex(opts_.secret,
                                             "admit|" + opts_.name + "|"
                                               + client_nonce))) {
        report("the seed " + seed + " could not prove the cluster secret");
        continue;
      }
      admitted_ = true;
      log(log_level::info, "cluster", "admitted to the cluster",
          {{"seed", seed}});
      return;
    }
  }

  // -- the database -------------------------------------------------------------------

  pqxx::connection& db() {
    if (!conn_) {
      conn_ = std::make_unique<pqxx::connection>(opts_.database_url);
      migrate(*conn_); // the journal may not have created the tables yet
      pqxx::work tx{*conn_};
      tx.exec_params("INSERT INTO shard_leases (shard)"
                     " SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
                     static_cast<int64_t>(view_.shard_count()));
      tx.commit();
    }
    return *conn_;
  }

  double lease_s() const {
    return static_cast<double>(opts_.lease.count()) / 1000.0;
  }

  void upsert_member(const std::string& name, const std::string& state,
                     const std::string& http_url, const std::string& address) {
    pqxx::work tx{db()};
    tx.exec_params("INSERT INTO cluster_members (name, state, http_url,"
                   " cluster_address) VALUES ($1, $2, $3, $4)"
                   " ON CONFLICT (name) DO UPDATE SET state = $2,"
                   " http_url = $3, cluster_address = $4, heartbeat_at = now()",
                   name, state, http_url, address);
    tx.commit();
  }

  void tick() {
    try {
      if (!admitted_)
        seek_admission();
      if (admitted_ && !joined_) {
        upsert_member(opts_.name, view_.leaving() ? "leaving" : "up",
                      opts_.http_url, opts_.cluster_address);
        joined_ = true;
      }
      balance();
      problem_.clear();
    } catch (const std::exception& e) {
      report(std::string{"membership: "} + e.what());
      conn_.reset();
      joined_ = false;
    }
  }

  /// One round: heartbeat, failure detection, renewals, give and take.
  void balance() {
    auto leaving = view_.leaving();
    std::vector<member_info> members;
    std::vector<std::string> up;
    {
      pqxx::work tx{db()};
      if (joined_)
        tx.exec_params("UPDATE cluster_members SET heartbeat_at = now(),"
                       " state = CASE WHEN $2 THEN 'leaving' ELSE 'up' END"
                       " WHERE name = $1",
                       opts_.name, leaving);
      tx.exec_params("UPDATE cluster_members SET state = 'down'"
                     " WHERE state <> 'down'"
                     " AND heartbeat_at < now() - make_interval(secs => $1)",
                     lease_s());
      for (const auto& r : tx.exec("SELECT name, state, http_url,"
                                   " cluster_address FROM cluster_members"
                                   " ORDER BY name")) {
        members.push_back(member_info{r[0].as<std::string>(),
                                      r[1].as<std::string>(),
                                      r[2].as<std::string>(),
                                      r[3].as<std::string>(), 0});
        if (members.back().state == "up")
          up.push_back(members.back().name);
      }
      tx.commit();
    }
    if (opts_.email_rate_total > 0)
      view_.set_rate_share(opts_.email_rate_total
                           / static_cast<double>(std::max<size_t>(1, up.size())));
    renew();
    // What falls to this node now; an up member that is not this one
    // takes the rest.
    bool self_up = std::count(up.begin(), up.end(), opts_.name) > 0;
    std::vector<uint32_t> give, take;
    auto held = view_.held();
    std::set<uint32_t> held_set(held.begin(), held.end());
    for (uint32_t s = 0; s < view_.shard_count(); ++s) {
      bool mine = self_up && !leaving && rendezvous_owner(s, up) == opts_.name;
      if (mine && held_set.count(s) == 0 && releasing_.count(s) == 0)
        take.push_back(s);
      if (!mine && held_set.count(s) > 0)
        give.push_back(s);
    }
    give_away(give);
    acquire(take);
    snapshot(std::move(members));
    watch_peers();
    if (leaving && view_.leases().empty() && !leaves_.empty()) {
      pqxx::work tx{db()};
      tx.exec_params("UPDATE cluster_members SET state = 'down'"
                     " WHERE name = $1",
                     opts_.name);
      tx.commit();
      view_.set_left();
      log(log_level::info, "cluster", "left the cluster");
      for (auto& rp : leaves_)
        rp.deliver(caf::ok_atom::value);
      leaves_.clear();
    }
  }

  void renew() {
    auto leases = view_.leases();
    if (leases.empty())
      return;
    std::vector<uint32_t> shards;
    std::vector<uint64_t> epochs;
    for (auto& [s, e] : leases) {
      shards.push_back(s);
      epochs.push_back(e);
    }
    // The database's expiry is at least a lease after this instant.
    auto sent = steady::now();
    std::map<uint32_t, uint64_t> renewed;
    pqxx::work tx{db()};
    for (const auto& r : tx.exec_params(
           "UPDATE shard_leases l SET expires_at = now()"
           " + make_interval(secs => $4) FROM unnest($2::int[], $3::bigint[])"
           " AS r(shard, epoch) WHERE l.shard = r.shard AND l.epoch = r.epoch"
           " AND l.owner = $1 RETURNING l.shard, l.epoch",
           opts_.name, int_array(shards), int_array(epochs), lease_s()))
      renewed[r[0].as<uint32_t>()] = r[1].as<uint64_t>();
    tx.commit();
    for (auto& [s, e] : leases) {
      if (renewed.count(s) > 0) {
        view_.hold(s, e, sent + opts_.lease - margin_);
        continue;
      }
      log(log_level::warn, "cluster", "lost a shard's lease",
          {{"shard", int64_t{s}}, {"epoch", static_cast<int64_t>(e)}});
      view_.drop(s);
      releasing_.erase(s);
      caf::anon_send(ctx_->dir->get(shard_host_name), give_atom::value, s);
    }
  }

  /// Stops sending for `shards` at once; their leases are released once the
  /// sends in flight for them have ended (release_atom).
  void give_away(const std::vector<uint32_t>& shards) {
    if (shards.empty())
      return;
    for (auto s : shards) {
      view_.retire(s);
      releasing_[s] = view_.held_epoch(s);
      caf::anon_send(ctx_->dir->get(shard_host_name), give_atom::value, s);
    }
    log(log_level::info, "cluster", "giving shards away",
        {{"shards", static_cast<int64_t>(shards.size())}});
    auto me = caf::actor_cast<caf::actor>(self_);
    auto delivery = ctx_->dir->get(delivery_name);
    if (!delivery) {
      caf::anon_send(me, release_atom::value, shards);
      return;
    }
    auto wait = ctx_->email_timeout + std::chrono::seconds{5};
    self_->system().spawn([=](caf::event_based_actor* helper) {
      helper->request(delivery, wait, drain_atom::value, shards)
        .then([=](caf::ok_atom) { helper->send(me, release_atom::value, shards); },
              [=](caf::error&) { helper->send(me, release_atom::value, shards); });
    });
  }

  void release(const std::vector<uint32_t>& shards) {
    std::vector<uint32_t> ids;
    std::vector<uint64_t> epochs;
    for (auto s : shards) {
      auto i = releasing_.find(s);
      if (i == releasing_.end() || view_.held_epoch(s) != i->second)
        continue; // taken again meanwhile, or lost
      ids.push_back(s);
      epochs.push_back(i->second);
      releasing_.erase(i);
    }
    if (ids.empty())
      return;
    try {
      pqxx::work tx{db()};
      tx.exec_params("UPDATE shard_leases l SET owner = NULL,"
                     " expires_at = '-infinity' FROM unnest($2::int[],"
                     " $3::bigint[]) AS r(shard, epoch) WHERE l.shard = r.shard"
                     " AND l.epoch = r.epoch AND l.owner = $1",
                     opts_.name, int_array(ids), int_array(epochs));
      tx.commit();
    } catch (const std::exception& e) {
      // Not released: the leases expire by themselves within a lease.
      report(std::string{"releasing leases: "} + e.what());
      conn_.reset();
    }
    for (auto s : ids)
      view_.drop(s);
  }

  void acquire(const std::vector<uint32_t>& shards) {
    if (shards.empty())
      return;
    auto sent = steady::now();
    std::vector<std::pair<uint32_t, uint64_t>> got;
    pqxx::work tx{db()};
    for (const auto& r : tx.exec_params(
           "UPDATE shard_leases SET owner = $1, epoch = epoch + 1,"
           " expires_at = now() + make_interval(secs => $3)"
           " WHERE shard = ANY($2::int[]) AND (owner IS NULL OR owner = $1"
           " OR expires_at < now()) RETURNING shard, epoch",
           opts_.name, int_array(shards), lease_s()))
      got.emplace_back(r[0].as<uint32_t>(), r[1].as<uint64_t>());
    tx.commit();
    for (auto& [s, e] : got) {
      view_.hold(s, e, sent + opts_.lease - margin_);
      caf::anon_send(ctx_->dir->get(shard_host_name), take_atom::value, s);
    }
    if (!got.empty())
      log(log_level::info, "cluster", "took shards",
          {{"shards", static_cast<int64_t>(got.size())}});
  }

  void snapshot(std::vector<member_info> members) {
    std::vector<shard_owner> shards(view_.shard_count());
    pqxx::work tx{db()};
    for (const auto& r : tx.exec_params(
           "SELECT shard, coalesce(owner, ''), epoch, expires_at > now()"
           " FROM shard_leases WHERE shard < $1",
           static_cast<int64_t>(view_.shard_count()))) {
      auto s = r[0].as<uint32_t>();
      shards[s].epoch = r[2].as<uint64_t>();
      if (r[3].as<bool>())
        shards[s].owner = r[1].as<std::string>();
    }
    tx.commit();
    for (auto& m : members)
      m.shards = static_cast<uint32_t>(
        std::count_if(shards.begin(), shards.end(),
                      [&](const shard_owner& o) { return o.owner == m.name; }));
    get_metric("chime_shards_owned", "gauge", "shards whose lease this node holds")
      .set(static_cast<int64_t>(view_.held().size()));
    view_.set_snapshot(std::move(members), std::move(shards));
  }

  void watch_peers() {
    if (opts_.cluster_address.empty())
      return;
    auto me = caf::actor_cast<caf::actor>(self_);
    for (auto& m : view_.members()) {
      if (m.state != "up" || m.name == opts_.name || m.cluster_address.empty()
          || watching_.count(m.name) > 0)
        continue;
      watching_.insert(m.name);
      self_->spawn<caf::detached + caf::linked>(watch_peer, ctx_->cluster, me,
                                                m.name, m.cluster_address);
    }
  }

  /// Logs a problem once, not at every tick while it lasts.
  void report(const std::string& what) {
    if (what == problem_)
      return;
    problem_ = what;
    log(log_level::warn, "cluster", what);
  }

  caf::blocking_actor* self_;
  context_ptr ctx_;
  cluster_view& view_;
  membership_options opts_;
  bool admitted_;
  bool joined_ = false;
  std::chrono::milliseconds tick_;
  std::chrono::milliseconds margin_;
  std::unique_ptr<pqxx::connection> conn_;
  steady::time_point next_admission_{};
  std::map<std::string, std::string> challenges_;
  std::map<uint32_t, uint64_t> releasing_; ///< shard -> epoch given away
  std::set<std::string> watching_;
  std::vector<caf::response_promise> leaves_;
  std::string problem_;
};

} // namespace

caf::actor spawn_membership(caf::actor_system& sys, context_ptr ctx,
                            membership_options opts) {
  return sys.spawn<caf::detached>(
    [ctx, opts](caf::blocking_actor* self) mutable {
      membership{self, std::move(ctx), std::move(opts)}.run();
    });
}

} // namespace chime
