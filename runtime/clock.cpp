#include "runtime/clock.hpp"

#include <date/date.h>

#include <string>

namespace chime {

namespace {

std::chrono::microseconds scaled(millis span, double rate) {
  auto us = static_cast<double>(span.count()) * 1000.0 / rate;
  return std::chrono::microseconds{us <= 0 ? 0 : static_cast<int64_t>(us)};
}

class wall_clock final : public clock {
public:
  instant now() const override {
    return from_sys(std::chrono::time_point_cast<millis>(
      std::chrono::system_clock::now()));
  }
  std::chrono::microseconds real_delay(millis span) const override {
    return scaled(span, 1.0);
  }
};

class virtual_clock final : public clock {
public:
  virtual_clock(instant start, double rate)
    : start_(start), origin_(std::chrono::steady_clock::now()), rate_(rate) {
  }
  instant now() const override {
    auto real = std::chrono::steady_clock::now() - origin_;
    auto real_us = std::chrono::duration_cast<std::chrono::microseconds>(real);
    auto virt_ms = static_cast<int64_t>(static_cast<double>(real_us.count())
                                        * rate_ / 1000.0);
    return start_ + millis{virt_ms};
  }
  std::chrono::microseconds real_delay(millis span) const override {
    return scaled(span, rate_);
  }

private:
  instant start_;
  std::chrono::steady_clock::time_point origin_;
  double rate_;
};

} // namespace

clock_ptr make_wall_clock() {
  return std::make_shared<wall_clock>();
}

clock_ptr make_virtual_clock(instant start, double rate) {
  return std::make_shared<virtual_clock>(start, rate);
}

std::string format_instant(instant at) {
  auto t = to_sys(at);
  auto secs = std::chrono::floor<std::chrono::seconds>(t);
  if (secs == t)
    return date::format("%FT%TZ", secs);
  return date::format("%FT%TZ", t);
}

} // namespace chime
