#include "actors/concurrency_limit.hpp"

#include <algorithm>
#include <cmath>

namespace chime {

namespace {

/// Answers kept for the time-out's percentile (its 99.9th: a slow tail of
/// answers that did come is not cut off).
constexpr size_t recent_max = 1000;
constexpr size_t recent_min = 1000;
/// Weight of a window in the long-run latency (about a minute of windows).
constexpr double long_weight = 1.0 / 600;
/// The typical answer may be this much slower than the long-run one before
/// the limit shrinks (a service's latency wanders a little by itself).
constexpr double tolerance = 1.5;
/// ...or this much in absolute terms: a few milliseconds more on a fast
/// service is scheduling noise, not a queue worth shrinking for.
constexpr double slack_us = 10000;
/// The time-out as a multiple of the answers' 99.9th percentile.
constexpr int64_t timeout_factor = 4;

int64_t percentile(std::vector<int64_t> v, double p) {
  auto i = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

} // namespace

concurrency_limit::concurrency_limit(options opts)
  : opts_(opts),
    limit_(std::clamp<double>(opts.initial, opts.min, opts.max)),
    timeout_(opts.timeout_ceiling) {
  opts_.timeout_floor = std::min(opts_.timeout_floor, opts_.timeout_ceiling);
  recent_us_.reserve(recent_max);
}

void concurrency_limit::answered(std::chrono::microseconds latency,
                                 uint32_t in_flight, time_point now) {
  auto us = std::max<int64_t>(latency.count(), 1);
  window_us_.push_back(us);
  if (recent_us_.size() < recent_max)
    recent_us_.push_back(us);
  else
    recent_us_[recent_next_] = us;
  recent_next_ = (recent_next_ + 1) % recent_max;
  // A window's growth (its square root) took a fresh node 700 ms to pass
  // 80 in flight from 32, which held 2,000 messages due at once to about
  // 2,800 a second (p99 lateness 760 ms). What one an answer overshoots,
  // the window that sees the service queue takes back.
  if (slow_start_ && in_flight * 2 >= limit_)
    limit_ = std::min<double>(limit_ + 1, opts_.max);
  if (window_us_.size() == 1 && window_start_ == time_point{})
    window_start_ = now;
  if (now - window_start_ >= opts_.window
      && window_us_.size() >= opts_.window_samples)
    update(in_flight, now);
}

void concurrency_limit::update(uint32_t in_flight, time_point now) {
  auto short_rtt = static_cast<double>(percentile(window_us_, 0.5));
  if (long_rtt_us_ == 0)
    long_rtt_us_ = short_rtt;
  else
    long_rtt_us_ += (short_rtt - long_rtt_us_) * long_weight;
  // Faster than the long run by far (a slow spell ended): catch up quickly
  // rather than read the next slow spell as normal.
  if (long_rtt_us_ > 2 * short_rtt)
    long_rtt_us_ *= 0.95;
  auto gradient =
    std::clamp((tolerance * long_rtt_us_ + slack_us) / short_rtt, 0.5, 1.0);
  // A limit that was not used tells nothing about whether more would do:
  // it stays (the rate limiter, not the service, held the pace back).
  if (gradient < 1.0)
    slow_start_ = false;
  if (!slow_start_ && max_in_flight_ * 2 >= limit_) {
    auto next = limit_ * gradient + std::sqrt(limit_);
    // Growth at once, so a limit-bound pipe opens within a second; a
    // decrease halfway, so one slow window does not halve the pipe.
    limit_ = next >= limit_ ? next : (limit_ + next) / 2;
    limit_ = std::clamp<double>(limit_, opts_.min, opts_.max);
  }
  if (recent_us_.size() >= recent_min) {
    auto p999 = millis{percentile(recent_us_, 0.999) * timeout_factor / 1000};
    timeout_ = std::clamp(p999, opts_.timeout_floor, opts_.timeout_ceiling);
  }
  window_us_.clear();
  window_start_ = now;
  max_in_flight_ = in_flight;
}

} // namespace chime
