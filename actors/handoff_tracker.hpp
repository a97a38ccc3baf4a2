#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <vector>

namespace chime {

/// The deliveries a publisher has taken from the shards and the broker has
/// not yet confirmed, by the Chime time it took each. The outbox sweeper
/// leaves alone what was fired since the oldest of them: a sweep that took
/// those deliveries for lost republished 35,000 of 60,000 in a burst (each
/// a second copy in the broker).
class handoff_tracker {
public:
  void taken(int64_t at_ms) { ++pending_[at_ms]; }

  /// Those taken at `times` are confirmed by the broker, or given up on.
  void done(const std::vector<int64_t>& times) {
    for (auto at : times) {
      auto i = pending_.find(at);
      if (i != pending_.end() && --i->second == 0)
        pending_.erase(i);
    }
  }

  /// When the oldest still pending was taken; the largest time when none.
  int64_t oldest() const {
    return pending_.empty() ? std::numeric_limits<int64_t>::max()
                            : pending_.begin()->first;
  }

private:
  std::map<int64_t, uint32_t> pending_;
};

} // namespace chime
