#pragma once

#include <chrono>
#include <cstdint>

namespace chime {

/// Closed: requests flow and consecutive failures are counted; at
/// `failures_max` it opens. Open: nothing flows for `cooldown`. Half-open:
/// one probe flows; its success closes the breaker, its failure reopens it.
/// Time is passed in (monotonic, real time).
class circuit_breaker {
public:
  using time_point = std::chrono::steady_clock::time_point;
  enum class state : uint8_t { closed = 0, open = 1, half_open = 2 };

  circuit_breaker(uint32_t failures_max, std::chrono::milliseconds cooldown)
    : failures_max_(failures_max), cooldown_(cooldown) {
  }

  /// Whether a request may start now; in half-open, only one at a time.
  bool allow(time_point now) {
    if (state_ == state::open && now >= open_until_)
      state_ = state::half_open, probing_ = false;
    if (state_ == state::closed)
      return true;
    if (state_ == state::half_open && !probing_) {
      probing_ = true;
      return true;
    }
    return false;
  }

  /// The request `allow` let through was never made (nothing was owed, or
  /// it could not be prepared): a half-open breaker may probe again.
  void abandon() {
    if (state_ == state::half_open)
      probing_ = false;
  }

  void success() {
    state_ = state::closed;
    failures_ = 0;
    probing_ = false;
  }

  void failure(time_point now) {
    ++failures_;
    if (state_ == state::half_open
        || (state_ == state::closed && failures_ >= failures_max_)) {
      state_ = state::open;
      open_until_ = now + cooldown_;
      probing_ = false;
    }
  }

  state current() const {
    return state_;
  }

  /// When an open breaker lets a probe through.
  time_point open_until() const {
    return open_until_;
  }

private:
  uint32_t failures_max_;
  std::chrono::milliseconds cooldown_;
  state state_ = state::closed;
  uint32_t failures_ = 0;
  bool probing_ = false;
  time_point open_until_{};
};

} // namespace chime
