#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

namespace chime {

/// How many email requests may be in flight, adapted to the service's
/// latency (the gradient method of Netflix's concurrency-limits, Gradient2):
/// while answers come as fast as they usually do, the limit grows by about
/// its square root per window, as long as it is used (until the service
/// first queues, by one an answer instead, doubling each round trip as TCP's
/// slow start does); when the typical
/// answer slows down against its long-run average (the service queues), the
/// limit shrinks in proportion. Requests that never got an answer carry no
/// latency (a hang says nothing about the queue), so a few hanging requests
/// do not shrink the limit; the breaker and the time-out deal with them.
///
/// It also derives the per-request time-out from the answers seen: a
/// multiple of their 99.9th percentile, within [timeout_floor, ceiling], so a
/// fast service's hung request is let go early while a slow one is not cut
/// off mid-answer. Pure: time comes in, so tests drive it by hand.
class concurrency_limit {
public:
  using time_point = std::chrono::steady_clock::time_point;
  using millis = std::chrono::milliseconds;

  struct options {
    uint32_t initial = 32;
    uint32_t min = 8;
    uint32_t max = 1024;
    millis window{100};            ///< a new estimate per window...
    uint32_t window_samples = 10;  ///< ...with at least this many answers
    millis timeout_floor{2000};
    millis timeout_ceiling{5000};
  };

  explicit concurrency_limit(options opts);

  /// The number of requests that may be in flight now.
  uint32_t limit() const {
    return static_cast<uint32_t>(limit_);
  }

  /// The time-out for a request started now.
  millis timeout() const {
    return timeout_;
  }

  /// A request is sent with `in_flight` requests out (itself included).
  void started(uint32_t in_flight) {
    if (in_flight > max_in_flight_)
      max_in_flight_ = in_flight;
  }

  /// A request got an answer after `latency` (any status: the service
  /// answered for itself), leaving `in_flight` requests out.
  void answered(std::chrono::microseconds latency, uint32_t in_flight,
                time_point now);

private:
  void update(uint32_t in_flight, time_point now);

  options opts_;
  double limit_;
  millis timeout_;
  double long_rtt_us_ = 0; ///< 0: no estimate yet
  bool slow_start_ = true;  ///< no window has seen the service queue yet
  std::vector<int64_t> window_us_;
  time_point window_start_{};
  uint32_t max_in_flight_ = 0;
  /// The latest answers' latencies (a ring), for the time-out's percentile.
  std::vector<int64_t> recent_us_;
  size_t recent_next_ = 0;
};

} // namespace chime
