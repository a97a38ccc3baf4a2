#pragma once

#include "actors/node_context.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chime {

struct membership_options {
  std::string name;
  std::string http_url;
  std::string cluster_address;    ///< host:port peers reach this node at
  std::vector<std::string> seeds; ///< host:port; empty: found the cluster
  std::string secret;
  std::chrono::milliseconds lease{6000};
  double email_rate_total = 0; ///< the cluster's; split across up members
};

/// Directory names of a node's coordination seams: the store of members and
/// leases (PostgreSQL, or in memory in the simulator) and the transport that
/// connects to a peer's membership actor (CAF's middleman, or in memory).
inline constexpr const char* coordination_name = "coordination";
inline constexpr const char* transport_name = "transport";

/// Spawns the node's membership and lease keeper, an event-based actor that
/// talks to the coordination store and the transport only by messages with
/// time-outs. Every sixth of a lease it
///  - heartbeats the node's membership row (the store marks members whose
///    heartbeat is older than a lease `down`);
///  - maps shards to up members by rendezvous hashing, renews the leases it
///    holds (its local deadline is a quarter lease short of the store's
///    expiry), takes the shards that fall to it once they are free or
///    expired (epoch + 1), and gives away the ones that fall to another
///    member: no new sends, the sends in flight end, then the lease is
///    released so that the new owner takes it at once;
///  - splits the cluster's email rate across up members;
///  - keeps handles to its peers' `users` and `delivery` actors in
///    ctx->cluster (for routing), forgetting them when a peer goes down.
/// Admission: a node without seeds founds the cluster; one with seeds asks a
/// seed for a challenge and proves the secret with an HMAC (and checks the
/// seed's own proof); only then does the seed add it as `up`. A node that
/// cannot prove it is refused, logged, and owns nothing. For peers it
/// answers (hello_atom, name) with a nonce, (join_atom, ...) and
/// (get_atom, name, nonce, HMAC) with its `users` and `delivery` actors,
/// given only to a node that proves the secret against the nonce. (leave_atom) -> ok: gives away every shard, marks the node
/// down and sets ctx->cluster->left(). (join_atom, "HOST:PORT") joins
/// through that seed.
caf::actor spawn_membership(caf::actor_system& sys, context_ptr ctx,
                            membership_options opts);

/// Spawns the transport over CAF's middleman: (publish_atom, host:port,
/// actor) publishes the actor on that port; (connect_atom, host:port)
/// answers with the peer's published actor. Each connect runs on a thread of
/// its own (connecting blocks, and a frozen peer never answers).
caf::actor spawn_middleman_transport(caf::actor_system& sys);

/// A cluster address "HOST:PORT" taken apart, or nothing when it is not one.
/// Peers dial each other at the addresses they stated when they joined.
std::optional<std::pair<std::string, uint16_t>>
split_address(const std::string& address);

/// HMAC-SHA256 of `text` under `secret`, hex.
std::string hmac_hex(const std::string& secret, const std::string& text);

} // namespace chime
