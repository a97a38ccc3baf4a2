#include "actors/cluster_view.hpp"

#include "runtime/assert.hpp"

#include "actors/node_context.hpp"
#include "actors/sharding.hpp"
#include "runtime/log.hpp"

#include <cstdlib>

namespace chime {

cluster_view::cluster_view(std::string self, uint32_t shard_count)
  : self_(std::move(self)), shard_count_(shard_count),
    max_epoch_(shard_count, 0), shards_(shard_count) {
}

void cluster_view::hold(uint32_t shard, uint64_t epoch, time_point deadline) {
  std::lock_guard<std::mutex> guard{mtx_};
  CHIME_ASSERT(epoch >= max_epoch_.at(shard),
               "a shard's epoch went backwards: two owners could send");
  max_epoch_[shard] = epoch;
  auto& l = held_[shard];
  l.retiring = l.retiring && l.epoch == epoch;
  l.epoch = epoch;
  l.deadline = deadline;
}

void cluster_view::retire(uint32_t shard) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto i = held_.find(shard); i != held_.end())
    i->second.retiring = true;
}

std::vector<std::pair<uint32_t, uint64_t>> cluster_view::leases() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::pair<uint32_t, uint64_t>> out;
  for (auto& [shard, l] : held_)
    out.emplace_back(shard, l.epoch);
  return out;
}

void cluster_view::drop(uint32_t shard) {
  std::lock_guard<std::mutex> guard{mtx_};
  held_.erase(shard);
}

uint64_t cluster_view::valid_epoch(uint32_t shard, time_point now) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = held_.find(shard);
  return i == held_.end() || i->second.retiring || now >= i->second.deadline
           ? 0
           : i->second.epoch;
}

uint64_t cluster_view::held_epoch(uint32_t shard) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = held_.find(shard);
  return i == held_.end() ? 0 : i->second.epoch;
}

std::vector<uint32_t> cluster_view::held() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<uint32_t> out;
  for (auto& [shard, l] : held_)
    if (!l.retiring)
      out.push_back(shard);
  return out;
}

void cluster_view::set_snapshot(std::vector<member_info> members,
                                std::vector<shard_owner> shards) {
  std::lock_guard<std::mutex> guard{mtx_};
  members_ = std::move(members);
  shards_ = std::move(shards);
}

std::vector<member_info> cluster_view::members() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return members_;
}

std::vector<shard_owner> cluster_view::shards() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return shards_;
}

std::string cluster_view::owner_of(uint32_t shard) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return shard < shards_.size() ? shards_[shard].owner : std::string{};
}

std::optional<member_info> cluster_view::member(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& m : members_)
    if (m.name == name)
      return m;
  return std::nullopt;
}

void cluster_view::set_peer(const std::string& name, const std::string& what,
                            caf::actor handle) {
  std::lock_guard<std::mutex> guard{mtx_};
  peers_[name][what] = link_ ? link_(name, std::move(handle)) : std::move(handle);
}

void cluster_view::set_link(link_fn link) {
  std::lock_guard<std::mutex> guard{mtx_};
  link_ = std::move(link);
}

caf::actor cluster_view::peer(const std::string& name,
                              const std::string& what) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = peers_.find(name);
  if (i == peers_.end())
    return {};
  auto j = i->second.find(what);
  return j == i->second.end() ? caf::actor{} : j->second;
}

void cluster_view::forget_peer(const std::string& name) {
  std::lock_guard<std::mutex> guard{mtx_};
  peers_.erase(name);
}

void cluster_view::set_rate_share(double rate) {
  std::lock_guard<std::mutex> guard{mtx_};
  rate_share_ = rate;
}

double cluster_view::rate_share() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return rate_share_;
}

void cluster_view::set_leaving() {
  std::lock_guard<std::mutex> guard{mtx_};
  leaving_ = true;
}

bool cluster_view::leaving() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return leaving_;
}

void cluster_view::set_left() {
  std::lock_guard<std::mutex> guard{mtx_};
  left_ = true;
}

bool cluster_view::left() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return left_;
}

std::vector<uint32_t> node_context::shards_here() const {
  return cluster ? cluster->held() : owned_shards;
}

std::string rendezvous_owner(uint32_t shard,
                             const std::vector<std::string>& members) {
  std::string best;
  uint64_t best_score = 0;
  for (auto& m : members) {
    // The member's FNV-1a and the shard through a final mix (splitmix64),
    // so that similar names ("n1", "n2") do not score alike.
    uint64_t h = fnv1a(m) ^ ((uint64_t{shard} + 1) * 0x9e3779b97f4a7c15ull);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    if (best.empty() || h > best_score || (h == best_score && m < best)) {
      best = m;
      best_score = h;
    }
  }
  return best;
}

} // namespace chime
