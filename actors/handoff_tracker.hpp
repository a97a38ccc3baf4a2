#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <vector>

namespace chime {

/// The deliveries a publisher has taken from the shards and not yet seen
/// recorded as handed off, by the Chime time it took each. The outbox
/// sweeper leaves alone what was fired since the oldest of them: in a burst
/// the hand-off marks queue behind the sends, and a sweep that took those
/// deliveries for lost republished 35,000 of 60,000 (each a second copy in
/// the broker, and its row locked against the mark).
class handoff_tracker {
public:
  void taken(int64_t at_ms) { ++pending_[at_ms]; }

  /// Those taken at `times` are recorded as handed off, or given up on.
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
