#include "persistence/pg_coordination.hpp"

#include "actors/errc.hpp"
#include "actors/protocol.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_deadline.hpp"
#include "runtime/log.hpp"

#include <caf/all.hpp>
#include <pqxx/pqxx>

#include <memory>

namespace chime {

namespace {

struct coordination_state {
  std::string url;
  uint32_t shard_count = 256;
  std::unique_ptr<pqxx::connection> conn;
  std::string problem; ///< the last one logged, so that it is logged once
  static inline const char* name = "chime.pg_coordination";
};

using coordination_actor = caf::stateful_actor<coordination_state>;

/// "{1,2,3}": a PostgreSQL array literal of numbers.
template <class Int>
std::string int_array(const std::vector<Int>& xs) {
  std::string out = "{";
  for (size_t i = 0; i < xs.size(); ++i)
    out += (i ? "," : "") + std::to_string(xs[i]);
  return out + "}";
}

/// The shards and epochs of `leases` as two PostgreSQL array literals.
std::pair<std::string, std::string>
lease_arrays(const std::vector<shard_lease>& leases) {
  std::vector<uint32_t> shards;
  std::vector<uint64_t> epochs;
  for (auto& l : leases) {
    shards.push_back(l.shard);
    epochs.push_back(l.epoch);
  }
  return {int_array(shards), int_array(epochs)};
}

double seconds(int64_t ms) {
  return static_cast<double>(ms) / 1000.0;
}

/// Runs `fn` in a transaction on the (re)connected database; the database
/// being away is an error the caller retries at its next round.
template <class F>
auto in_tx(coordination_actor* self, F fn)
  -> caf::result<decltype(fn(std::declval<pqxx::work&>()))> {
  auto& st = self->state;
  try {
    if (!st.conn) {
      st.conn = std::make_unique<pqxx::connection>(st.url);
      pg_deadline deadline{*st.conn, pg_call_limit};
      migrate(*st.conn);
      pqxx::work tx{*st.conn};
      tx.exec_params("INSERT INTO shard_leases (shard) SELECT"
                     " generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
                     static_cast<int64_t>(st.shard_count));
      tx.commit();
    }
    pg_deadline deadline{*st.conn, pg_call_limit};
    pqxx::work tx{*st.conn};
    auto out = fn(tx);
    tx.commit();
    st.problem.clear();
    return out;
  } catch (const std::exception& e) {
    if (st.problem != e.what()) {
      st.problem = e.what();
      log(log_level::warn, "cluster", "coordination store unavailable",
          {{"error", st.problem}});
    }
    st.conn.reset();
    return make_error(journal_errc::unavailable);
  }
}

std::vector<shard_lease> leases_from(const pqxx::result& rows) {
  std::vector<shard_lease> out;
  for (const auto& r : rows)
    out.push_back({r[0].as<uint32_t>(), r[1].as<uint64_t>()});
  return out;
}

caf::behavior coordination(coordination_actor* self, std::string url,
                           uint32_t shard_count) {
  self->state.url = std::move(url);
  self->state.shard_count = shard_count;
  return {
    [=](member_atom, const member_info& m) {
      return in_tx(self, [&](pqxx::work& tx) {
        tx.exec_params("INSERT INTO cluster_members (name, state, http_url,"
                       " cluster_address) VALUES ($1, $2, $3, $4)"
                       " ON CONFLICT (name) DO UPDATE SET state = $2,"
                       " http_url = $3, cluster_address = $4,"
                       " heartbeat_at = now()",
                       m.name, m.state, m.http_url, m.cluster_address);
        return caf::ok_atom::value;
      });
    },
    [=](beat_atom, const std::string& name, const std::string& state) {
      return in_tx(self, [&](pqxx::work& tx) {
        return !tx
                  .exec_params("UPDATE cluster_members SET heartbeat_at = now(),"
                               " state = $2 WHERE name = $1 RETURNING 1",
                               name, state)
                  .empty();
      });
    },
    [=](members_atom, const std::string&, int64_t lease_ms) {
      return in_tx(self, [&](pqxx::work& tx) {
        tx.exec_params("UPDATE cluster_members SET state = 'down'"
                       " WHERE state <> 'down'"
                       " AND heartbeat_at < now() - make_interval(secs => $1)",
                       seconds(lease_ms));
        std::vector<member_info> out;
        for (const auto& r : tx.exec("SELECT name, state, http_url,"
                                     " cluster_address FROM cluster_members"
                                     " ORDER BY name"))
          out.push_back({r[0].as<std::string>(), r[1].as<std::string>(),
                         r[2].as<std::string>(), r[3].as<std::string>(), 0});
        return out;
      });
    },
    [=](renew_atom, const std::string& name,
        const std::vector<shard_lease>& held, int64_t lease_ms) {
      return in_tx(self, [&](pqxx::work& tx) {
        auto [shards, epochs] = lease_arrays(held);
        return leases_from(tx.exec_params(
          "UPDATE shard_leases l SET expires_at = now()"
          " + make_interval(secs => $4) FROM unnest($2::int[], $3::bigint[])"
          " AS r(shard, epoch) WHERE l.shard = r.shard AND l.epoch = r.epoch"
          " AND l.owner = $1 RETURNING l.shard, l.epoch",
          name, shards, epochs, seconds(lease_ms)));
      });
    },
    [=](acquire_atom, const std::string& name,
        const std::vector<uint32_t>& shards, int64_t lease_ms) {
      return in_tx(self, [&](pqxx::work& tx) {
        return leases_from(tx.exec_params(
          "UPDATE shard_leases SET owner = $1, epoch = epoch + 1,"
          " expires_at = now() + make_interval(secs => $3)"
          " WHERE shard = ANY($2::int[]) AND (owner IS NULL OR owner = $1"
          " OR expires_at < now()) RETURNING shard, epoch",
          name, int_array(shards), seconds(lease_ms)));
      });
    },
    [=](release_atom, const std::string& name,
        const std::vector<shard_lease>& leases) {
      return in_tx(self, [&](pqxx::work& tx) {
        auto [shards, epochs] = lease_arrays(leases);
        tx.exec_params("UPDATE shard_leases l SET owner = NULL,"
                       " expires_at = '-infinity' FROM unnest($2::int[],"
                       " $3::bigint[]) AS r(shard, epoch) WHERE"
                       " l.shard = r.shard AND l.epoch = r.epoch"
                       " AND l.owner = $1",
                       name, shards, epochs);
        return caf::ok_atom::value;
      });
    },
    [=](leases_atom, const std::string&, uint32_t count) {
      return in_tx(self, [&](pqxx::work& tx) {
        std::vector<shard_owner> out(count);
        for (const auto& r : tx.exec_params(
               "SELECT shard, coalesce(owner, ''), epoch, expires_at > now()"
               " FROM shard_leases WHERE shard < $1",
               static_cast<int64_t>(count))) {
          auto s = r[0].as<uint32_t>();
          out[s].epoch = r[2].as<uint64_t>();
          if (r[3].as<bool>())
            out[s].owner = r[1].as<std::string>();
        }
        return out;
      });
    },
  };
}

} // namespace

caf::actor spawn_pg_coordination(caf::actor_system& sys, std::string url,
                                 uint32_t shard_count) {
  return sys.spawn<caf::detached>(coordination, std::move(url), shard_count);
}

} // namespace chime
