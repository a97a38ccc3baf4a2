#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

namespace chime {

/// A Prometheus counter or gauge. Lives as long as the process (registered
/// metrics are never removed), so references to it may be kept anywhere.
class metric {
public:
  void add(int64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  void set(int64_t n) {
    value_.store(n, std::memory_order_relaxed);
  }
  int64_t value() const {
    return value_.load(std::memory_order_relaxed);
  }

private:
  std::atomic<int64_t> value_{0};
};

/// A Prometheus histogram of durations, in seconds on the wire, with fixed
/// buckets from 10 ms to 10 min. Unlabelled (its name has no `{...}`).
class histogram {
public:
  static constexpr std::array<int64_t, 12> bounds_us = {
    10'000,    50'000,     100'000,    250'000,     500'000,     1'000'000,
    2'500'000, 5'000'000, 10'000'000, 30'000'000, 120'000'000, 600'000'000};

  void observe_us(int64_t us);
  uint64_t bucket(size_t i) const {
    return counts_[i].load(std::memory_order_relaxed);
  }
  uint64_t count() const {
    return count_.load(std::memory_order_relaxed);
  }
  int64_t sum_us() const {
    return sum_us_.load(std::memory_order_relaxed);
  }

private:
  std::array<std::atomic<uint64_t>, bounds_us.size()> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<int64_t> sum_us_{0};
};

/// The histogram named `name`, created on first use; its family must be a
/// histogram in runtime/metrics.cpp's list.
histogram& get_histogram(const std::string& name);

/// The metric named `name` (with optional `{label="..."}` suffix), created on
/// first use. Its family must be in the list in runtime/metrics.cpp, which
/// gives its type and help (else std::logic_error).
metric& get_metric(const std::string& name);

/// Every counter and gauge by its full name (with labels), for the
/// dashboard.
std::map<std::string, int64_t> metric_values();

/// Every metric in the Prometheus text exposition format.
std::string render_metrics();

} // namespace chime
