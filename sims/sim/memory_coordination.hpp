#pragma once

#include "actors/protocol.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace chime::sim {

struct env;

/// The membership and lease tables in memory (what survives node crashes,
/// like the database), with heartbeats and expiries on the simulation's
/// clock. The journal checks its fences against it; so does the checker.
struct lease_store {
  struct member {
    member_info info;
    int64_t heartbeat_ms = 0;
  };
  struct lease {
    std::string owner;
    uint64_t epoch = 0;
    int64_t expires_ms = 0;
  };
  std::map<std::string, member> members;
  std::vector<lease> leases;

  explicit lease_store(uint32_t shard_count) : leases(shard_count) {
  }

  /// True when `owner` holds `shard` under `epoch` (expired or not: as the
  /// SQL fence, the epoch decides).
  bool holds(uint32_t shard, uint64_t epoch, const std::string& owner) const {
    auto& l = leases.at(shard);
    return l.owner == owner && l.epoch == epoch;
  }
};

/// Spawns the in-memory coordination store (the protocol in
/// actors/protocol.hpp, with persistence/pg_coordination.cpp's semantics).
/// A request from a node cut off from the database, or while the database
/// is down, fails with journal_errc::unavailable and changes nothing.
caf::actor spawn_memory_coordination(caf::actor_system& sys,
                                     std::shared_ptr<lease_store> store, env* e);

/// Addresses of the nodes' membership actors, as the in-memory transport
/// finds them.
struct address_book {
  std::map<std::string, caf::actor> actors; ///< address -> published actor
  std::map<std::string, std::string> names; ///< address -> node name
};

/// Spawns the network between node `from` and `target`, an actor of node
/// `to`: it loses and delays messages as the fault profile says, and loses
/// every message while the two are cut off from each other.
caf::actor spawn_link(caf::actor_system& sys, env* e, std::string from,
                      std::string to, caf::actor target);

/// Spawns node `name`'s transport: (publish_atom, address, actor) enters the
/// actor in `book`; (connect_atom, address) answers with a link to the actor
/// published there, unless the two nodes are cut off from each other.
caf::actor spawn_memory_transport(caf::actor_system& sys,
                                  std::shared_ptr<address_book> book, env* e,
                                  std::string name);

} // namespace chime::sim
