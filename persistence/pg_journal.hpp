#pragma once

#include "actors/journal.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace chime {

class cluster_view;

struct pg_journal_options {
  std::string url;
  uint32_t shard_count = 256;
  uint32_t batch_max = 512; ///< writes committed in one transaction at most
  /// The node's leases: every write made for a shard (fire, hand-off,
  /// attempt, outcome) carries the epoch this node holds for it and is
  /// refused (journal_errc::fenced) unless the lease table still has that
  /// epoch with this node as owner. Null: unfenced (tests of the journal).
  std::shared_ptr<const cluster_view> fence;
  /// Its registered name: labels its busy time in the metrics.
  std::string name = "journal";
};

/// Spawns the PostgreSQL journal: a detached actor (its own thread, since
/// libpqxx blocks) that owns one connection and speaks the journal protocol
/// of actors/journal.hpp. Writes are queued and committed together (group
/// commit): each is answered only after its transaction committed. Applies
/// schema migrations on first connect. Reconnects on demand after the
/// database went away; meanwhile requests fail with journal_errc::unavailable.
journal_actor spawn_pg_journal(caf::actor_system& sys, pg_journal_options opts);

} // namespace chime
