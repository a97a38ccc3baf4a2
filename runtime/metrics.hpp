#pragma once

#include <atomic>
#include <cstdint>
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

/// The metric named `name` (with optional `{label="..."}` suffix), created on
/// first use. Its family must be in the list in runtime/metrics.cpp, which
/// gives its type and help (else std::logic_error).
metric& get_metric(const std::string& name);

/// Every metric in the Prometheus text exposition format.
std::string render_metrics();

} // namespace chime
