#pragma once

#include "runtime/clock.hpp"

#include <date/date.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace date {
class time_zone;
}

namespace chime {

class occasion;
struct user_record;

/// Where a Feb 29 date falls in a year that has none.
enum class feb29_rule : uint8_t { feb28 = 1, mar1 };

/// One future (or overdue) send of an occasion: the instant and the local
/// calendar date it belongs to (which names the idempotency key).
struct due_instant {
  instant at;
  date::year_month_day local_date;
};

/// The time rules every other part of Chime relies on. Immutable after
/// start-up; shared by value.
struct schedule_rules {
  feb29_rule feb29 = feb29_rule::feb28;
  std::chrono::milliseconds catch_up{std::chrono::hours{72}};
};

/// The local date `date` falls on in `year` (Feb 29 moved per `rule`).
date::year_month_day occurrence_in(date::year_month_day date, date::year year,
                                   feb29_rule rule);

/// Whether the occurrence on `local_date` (YYYY-MM-DD) is still one of
/// `kind`'s for `user` as they are now: false once the user removed the
/// occasion or moved its date.
bool still_owed(const occasion& kind, const user_record& user,
                const std::string& local_date, feb29_rule rule);

/// The instant of `send_time` local time on `local_date` in `zone`. A time in
/// a DST gap resolves to the first instant after the gap; a time that occurs
/// twice resolves to its first occurrence.
instant local_instant(const date::time_zone* zone,
                      date::year_month_day local_date,
                      std::chrono::minutes send_time);

/// The first occurrence of `date`'s day whose send instant is at or after
/// `from`, in a year no earlier than the date's own and than `min_year`.
due_instant next_due(date::year_month_day date, const date::time_zone* zone,
                     std::chrono::minutes send_time, feb29_rule rule,
                     instant from, int min_year = 0);

/// The time zone named `name`, or null when the tz database does not know it.
const date::time_zone* find_zone(const std::string& name);

/// Next due instants of each of `user`'s occasions, computed from `from`.
/// `years_done` holds, per occasion, the last local year already delivered
/// (or expired), which is never owed again.
std::map<std::string, due_instant>
plan_user(const user_record& user, instant from, const schedule_rules& rules,
          const std::map<std::string, int>& years_done = {});

/// `{user_id}:{occasion}:{local_date}`.
std::string idempotency_key(const std::string& user_id,
                            std::string_view occasion,
                            date::year_month_day local_date);

std::string format_date(date::year_month_day d);

/// Whether a send due at `due` is still owed at `now` or has expired.
inline bool is_expired(instant due, instant now, const schedule_rules& rules) {
  return now - due > rules.catch_up;
}

} // namespace chime
