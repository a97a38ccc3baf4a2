#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace date {
class year_month_day;
} // namespace date

namespace chime {

using millis = std::chrono::milliseconds;

/// Chime's timeline, which a virtual clock may run ahead of the real one:
/// UTC milliseconds since the epoch like sys_time, yet a clock of its own, so
/// that a real time (system_clock::now()) never passes for a Chime instant,
/// nor one for the other, without to_sys/from_sys saying so. It has no
/// now(): the present comes from a chime::clock.
struct chime_time {
  using duration = millis;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<chime_time, duration>;
  static constexpr bool is_steady = false;
};

/// An instant on Chime's timeline.
using instant = chime_time::time_point;

/// The same instant as date/tz and the system see it.
inline std::chrono::sys_time<millis> to_sys(instant t) {
  return std::chrono::sys_time<millis>{t.time_since_epoch()};
}
inline instant from_sys(std::chrono::sys_time<millis> t) {
  return instant{t.time_since_epoch()};
}

/// The only source of "now" for Chime's actors. Shared (read-only) by every
/// actor of a node; the node owns it. The wall clock is the real time; the
/// virtual clock starts at a chosen instant and runs at a chosen rate, so the
/// same binary can be demonstrated and tested at 08:59 on any day.
class clock {
public:
  virtual ~clock() = default;

  /// The current instant on Chime's timeline.
  virtual instant now() const = 0;

  /// How long to wait in real time until `span` of Chime time has passed.
  virtual std::chrono::microseconds real_delay(millis span) const = 0;
};

using clock_ptr = std::shared_ptr<const clock>;

/// The system's real time.
clock_ptr make_wall_clock();

/// Starts at `start` when created and advances `rate` virtual seconds per real
/// second.
clock_ptr make_virtual_clock(instant start, double rate);

/// Milliseconds since the epoch, the form instants travel in inside messages.
inline int64_t to_ms(instant t) {
  return t.time_since_epoch().count();
}
inline instant from_ms(int64_t ms) {
  return instant{millis{ms}};
}

/// "2027-03-15T03:15:00Z" (milliseconds only when there are some).
std::string format_instant(instant t);

/// Appends "YYYY-MM-DD" of a valid civil date whose year is 0-9999 and
/// returns true; appends nothing and returns false for any other, which
/// date::format writes (its stream cost a fire two of its costliest steps).
bool append_civil_date(std::string& out, const date::year_month_day& d);

} // namespace chime
