#pragma once

#include <algorithm>
#include <chrono>

namespace chime {

/// A token bucket: `rate_per_s` tokens a second up to `burst`. Time is passed
/// in (monotonic, real time), so the owner decides where "now" comes from and
/// tests drive it by hand. A rate of 0 means unlimited.
class rate_limiter {
public:
  using time_point = std::chrono::steady_clock::time_point;

  rate_limiter(double rate_per_s, double burst, time_point now)
    : rate_per_s_(rate_per_s), burst_(std::max(1.0, burst)), tokens_(1.0),
      last_(now) {
  }

  /// Takes a token if one is available at `now`.
  bool try_take(time_point now) {
    if (rate_per_s_ <= 0)
      return true;
    refill(now);
    if (tokens_ < 1.0)
      return false;
    tokens_ -= 1.0;
    return true;
  }

  /// How long from `now` until a token is available (zero if one is).
  std::chrono::microseconds wait(time_point now) {
    if (rate_per_s_ <= 0)
      return std::chrono::microseconds{0};
    refill(now);
    if (tokens_ >= 1.0)
      return std::chrono::microseconds{0};
    return std::chrono::microseconds{
      static_cast<int64_t>((1.0 - tokens_) / rate_per_s_ * 1e6) + 1};
  }

  /// Changes the rate from `now` on (a cluster re-splits its rate).
  void set_rate(double rate_per_s, time_point now) {
    refill(now);
    rate_per_s_ = rate_per_s;
  }

  /// Changes how many tokens the bucket holds at most.
  void set_burst(double burst) {
    burst_ = std::max(1.0, burst);
    tokens_ = std::min(tokens_, burst_);
  }

  double tokens() const {
    return tokens_;
  }

private:
  void refill(time_point now) {
    if (now <= last_)
      return;
    std::chrono::duration<double> dt = now - last_;
    tokens_ = std::min(burst_, tokens_ + dt.count() * rate_per_s_);
    last_ = now;
  }

  double rate_per_s_;
  double burst_;
  double tokens_; ///< starts with one: a cold start never bursts
  time_point last_;
};

} // namespace chime
