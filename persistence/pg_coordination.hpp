#pragma once

#include <caf/fwd.hpp>

#include <cstdint>
#include <string>

namespace chime {

/// Spawns the PostgreSQL side of the coordination seam (actors/protocol.hpp):
/// a detached actor with its own connection that keeps `cluster_members` and
/// `shard_leases` (one row per shard of `shard_count`), with heartbeats and
/// lease expiries by the database's clock, as Orleans' SQL membership table
/// and Temporal's shard range ids do. Applies the schema migrations on
/// connect; while the database is away, requests fail with
/// journal_errc::unavailable.
caf::actor spawn_pg_coordination(caf::actor_system& sys, std::string url,
                                 uint32_t shard_count);

} // namespace chime
