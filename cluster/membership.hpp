#pragma once

#include "actors/node_context.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace chime {

struct membership_options {
  std::string database_url;
  std::string name;
  std::string http_url;
  std::string cluster_address;    ///< host:port of the middleman; empty: none
  std::vector<std::string> seeds; ///< host:port; empty: found the cluster
  std::string secret;
  std::chrono::milliseconds lease{6000};
  double email_rate_total = 0; ///< the cluster's; split across up members
};

/// Spawns the node's membership and lease keeper: a detached actor (its own
/// PostgreSQL connection) that, every sixth of a lease,
///  - heartbeats the node's row of `cluster_members` and marks members whose
///    heartbeat is older than a lease `down`;
///  - maps shards to up members by rendezvous hashing, renews the leases it
///    holds (its local deadline is a quarter lease short of the database's
///    expiry), takes the shards that fall to it once they are free or
///    expired (epoch + 1), and gives away the ones that fall to another
///    member: no new sends, the sends in flight end, then the lease is
///    released so the new owner takes it at once;
///  - splits the cluster's email rate across up members;
///  - keeps handles to its peers' `users` and `delivery` actors (over CAF's
///    middleman) in ctx->cluster, for routing.
/// Admission: a node without seeds founds the cluster; one with seeds asks a
/// seed for a challenge and proves the secret with an HMAC (and checks the
/// seed's own proof); only then does the seed add it as `up`. A node that
/// cannot prove it is refused, logged, and owns nothing. The actor is also
/// the one published on the cluster port: it answers (hello_atom, name),
/// (join_atom, ...) and (get_atom, "users"|"delivery") for peers.
/// (leave_atom) -> ok: gives away every shard, marks the node down, and sets
/// ctx->cluster->left(). (join_atom, "HOST:PORT") joins through that seed.
caf::actor spawn_membership(caf::actor_system& sys, context_ptr ctx,
                            membership_options opts);

/// HMAC-SHA256 of `text` under `secret`, hex.
std::string hmac_hex(const std::string& secret, const std::string& text);

} // namespace chime
