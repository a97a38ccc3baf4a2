#pragma once

#include "actors/journal.hpp"
#include "sims/sim/oracle.hpp"

#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace chime {
class cluster_view;
}

namespace chime::sim {

struct env;
struct lease_store;

/// A node's fence on its journal writes (as pg_journal's): the leases it
/// holds, checked against the lease table. Empty: unfenced.
struct journal_fence {
  std::shared_ptr<const cluster_view> view;
  std::shared_ptr<const lease_store> leases;
};

struct stored_delivery {
  delivery_record rec;
  int64_t updated_at_ms = 0;
  uint32_t begun_attempts = 0; ///< as the deliveries table's column
  /// When it was closed as sent, expired or dead (the checker's record).
  int64_t closed_ms = never_ms;
};

/// The journal's contents, in memory: what survives a node crash in the
/// simulator (the database). The checker reads it after the run.
struct journal_store {
  uint32_t shard_count = 256;
  std::unordered_map<std::string, user_record> users;
  std::unordered_map<std::string, std::string> emails; ///< lower-case email -> user id
  std::unordered_map<std::string, std::vector<due_entry>> due;
  /// (due_at_ms, user id, occasion) for every due entry, in due order.
  std::set<std::tuple<int64_t, std::string, std::string>> due_index;
  std::unordered_map<std::string, stored_delivery> deliveries;
  std::unordered_map<std::string, std::vector<std::string>> keys_by_user;
  std::set<std::string> open; ///< keys of deliveries not yet finished
  /// The checker's records: every change to each user, in commit order, and
  /// the instant of the write being made.
  std::unordered_map<std::string, std::vector<user_change>> history;
  int64_t now_ms = 0;
};

/// Spawns the in-memory implementation of the journal seam (the interface in
/// actors/journal.hpp, with persistence/pg_journal.cpp's semantics) over
/// `store`. While the environment says the journal is down every request
/// fails with journal_errc::unavailable and changes nothing; while it is
/// slow, replies come late (after the change is made, like a commit whose
/// acknowledgement is delayed).
///
/// With a fence (a node of a cluster), a node cut off from the database is
/// refused like a database that is down, and every write made for a shard
/// (fire, hand-off, attempt, outcome) is refused unless the lease table
/// still shows the node holding the shard under the epoch it believes.
journal_actor spawn_memory_journal(caf::actor_system& sys,
                                std::shared_ptr<journal_store> store, env* e,
                                journal_fence fence = {});

} // namespace chime::sim
