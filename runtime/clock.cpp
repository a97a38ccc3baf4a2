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

namespace {

void append_digits(std::string& out, unsigned value, int width) {
  char text[4];
  for (int i = width - 1; i >= 0; --i, value /= 10)
    text[i] = static_cast<char>('0' + value % 10);
  out.append(text, static_cast<size_t>(width));
}

} // namespace

bool append_civil_date(std::string& out, const date::year_month_day& d) {
  auto year = static_cast<int>(d.year());
  if (!d.ok() || year < 0 || year > 9999)
    return false;
  append_digits(out, static_cast<unsigned>(year), 4);
  out += '-';
  append_digits(out, static_cast<unsigned>(d.month()), 2);
  out += '-';
  append_digits(out, static_cast<unsigned>(d.day()), 2);
  return true;
}

std::string format_instant(instant at) {
  auto t = to_sys(at);
  auto secs = std::chrono::floor<std::chrono::seconds>(t);
  auto day = std::chrono::floor<date::days>(secs);
  std::string out;
  out.reserve(24);
  if (!append_civil_date(out, date::year_month_day{day})) {
    if (secs == t)
      return date::format("%FT%TZ", secs);
    return date::format("%FT%TZ", t);
  }
  auto of_day = static_cast<unsigned>((secs - day).count());
  out += 'T';
  append_digits(out, of_day / 3600, 2);
  out += ':';
  append_digits(out, of_day / 60 % 60, 2);
  out += ':';
  append_digits(out, of_day % 60, 2);
  if (auto ms = static_cast<unsigned>((t - secs).count()); ms != 0) {
    out += '.';
    append_digits(out, ms, 3);
  }
  out += 'Z';
  return out;
}

} // namespace chime
