#pragma once

#include "actors/protocol.hpp"

#include <caf/actor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace chime {

/// What this node knows of its cluster: the leases it holds (epoch and the
/// deadline on its own monotonic clock before which it may act for the
/// shard), the last read of the membership and lease tables, handles to its
/// peers' actors, and its share of the cluster's email rate. Written by the
/// membership actor, read by delivery, journal, shards and the HTTP API;
/// thread-safe. A node context without one (the simulator) owns every shard
/// unfenced.
class cluster_view {
public:
  using time_point = std::chrono::steady_clock::time_point;

  cluster_view(std::string self, uint32_t shard_count);

  const std::string& self() const { return self_; }
  uint32_t shard_count() const { return shard_count_; }

  // -- leases held by this node --------------------------------------------------

  /// Takes or renews a lease (a renewal keeps a retiring lease retiring).
  /// Epochs of one shard never go backwards: a smaller epoch than one seen
  /// before is a broken invariant and aborts.
  void hold(uint32_t shard, uint64_t epoch, time_point deadline);
  /// Being given away: no new sends, but the sends in flight may still
  /// journal their outcomes under the epoch until the lease is released.
  void retire(uint32_t shard);
  void drop(uint32_t shard);
  /// The epoch under which this node may send for `shard` at `now`, or 0:
  /// not held, retiring, or its lease may have expired in the database.
  uint64_t valid_epoch(uint32_t shard, time_point now) const;
  /// The epoch held, retiring or past its deadline too (journal writes
  /// carry it; the database decides), or 0.
  uint64_t held_epoch(uint32_t shard) const;
  /// The shards this node acts for (not retiring).
  std::vector<uint32_t> held() const;
  /// Every lease this node holds, retiring ones too: the ones to renew.
  std::vector<std::pair<uint32_t, uint64_t>> leases() const;

  // -- the cluster as last read ---------------------------------------------------

  void set_snapshot(std::vector<member_info> members,
                    std::vector<shard_owner> shards);
  std::vector<member_info> members() const;
  std::vector<shard_owner> shards() const;
  /// Who owns `shard` as last read (empty when free or unknown).
  std::string owner_of(uint32_t shard) const;
  std::optional<member_info> member(const std::string& name) const;

  // -- peers -----------------------------------------------------------------------

  /// A peer's actor registered under `what` ("users", "delivery"), reached
  /// through the link when one is set.
  void set_peer(const std::string& name, const std::string& what,
                caf::actor handle);
  /// What stands between this node and a peer's actor (the simulator's
  /// delaying and losing network); none: the actor itself.
  using link_fn = std::function<caf::actor(const std::string& peer, caf::actor)>;
  void set_link(link_fn link);
  caf::actor peer(const std::string& name, const std::string& what) const;
  void forget_peer(const std::string& name);

  // -- rate and lifecycle -------------------------------------------------------

  /// This node's share of the cluster's email rate (per second; 0: none
  /// configured, unlimited; negative: none yet, send nothing).
  void set_rate_share(double rate);
  double rate_share() const;

  /// Leaving: the node gives up its shards and takes no new deliveries.
  void set_leaving();
  bool leaving() const;
  /// Left: every lease released, the membership row down; the node exits.
  void set_left();
  bool left() const;

private:
  struct lease {
    uint64_t epoch = 0;
    time_point deadline{};
    bool retiring = false;
  };
  std::string self_;
  uint32_t shard_count_;
  mutable std::mutex mtx_;
  std::map<uint32_t, lease> held_;
  std::vector<uint64_t> max_epoch_;
  std::vector<member_info> members_;
  std::vector<shard_owner> shards_;
  std::map<std::string, std::map<std::string, caf::actor>> peers_;
  link_fn link_;
  double rate_share_ = 0;
  bool leaving_ = false;
  bool left_ = false;
};

/// Where `shard` belongs among `members` (names of up members): the highest
/// rendezvous score, so that a join or leave moves only the shards it must.
std::string rendezvous_owner(uint32_t shard,
                             const std::vector<std::string>& members);

} // namespace chime
