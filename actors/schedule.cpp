#include "actors/schedule.hpp"

#include "actors/occasion.hpp"
#include "actors/user_record.hpp"

#include <date/tz.h>

namespace chime {

date::year_month_day occurrence_in(date::year_month_day d, date::year year,
                                   feb29_rule rule) {
  if (d.month() == date::February && d.day() == date::day{29}
      && !year.is_leap()) {
    return rule == feb29_rule::feb28
             ? date::year_month_day{year, date::February, date::day{28}}
             : date::year_month_day{year, date::March, date::day{1}};
  }
  return date::year_month_day{year, d.month(), d.day()};
}

bool still_owed(const occasion& kind, const user_record& user,
                const std::string& local_date, feb29_rule rule) {
  auto date = kind.date_of(user);
  auto on = parse_date(local_date);
  return date && on && occurrence_in(*date, on->year(), rule) == *on;
}

instant local_instant(const date::time_zone* zone,
                      date::year_month_day local_date,
                      std::chrono::minutes send_time) {
  auto local = date::local_days{local_date} + send_time;
  // choose::earliest: in a gap, the transition itself (the first instant
  // after the gap); in an overlap, the first of the two instants.
  auto sys = zone->to_sys(local, date::choose::earliest);
  return from_sys(std::chrono::time_point_cast<millis>(sys));
}

due_instant next_due(date::year_month_day d, const date::time_zone* zone,
                     std::chrono::minutes send_time, feb29_rule rule,
                     instant from, int min_year) {
  auto local_from = zone->to_local(to_sys(from));
  date::year_month_day local_today{date::floor<date::days>(local_from)};
  // The local year at `from` minus one covers the date line: on Jan 1 local,
  // a Dec 31 occasion of the previous year may still be ahead in UTC terms.
  int year = std::max({static_cast<int>(d.year()), min_year,
                       static_cast<int>(local_today.year()) - 1});
  for (;; ++year) {
    auto local_date = occurrence_in(d, date::year{year}, rule);
    auto at = local_instant(zone, local_date, send_time);
    if (at >= from)
      return {at, local_date};
  }
}

const date::time_zone* find_zone(const std::string& name) {
  // The zoneinfo folder also holds the machine's own setting and copies
  // under other rules; only IANA's names of places are time zones here.
  if (name == "localtime" || name == "posixrules" || name == "Factory"
      || name.rfind("posix/", 0) == 0 || name.rfind("right/", 0) == 0
      || name.find("..") != std::string::npos || name.rfind('/', 0) == 0)
    return nullptr;
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::map<std::string, due_instant>
plan_user(const user_record& user, instant from, const schedule_rules& rules,
          const std::map<std::string, int>& years_done) {
  std::map<std::string, due_instant> out;
  auto zone = find_zone(user.timezone);
  if (zone == nullptr)
    return out;
  for (auto& kind : occasion_registry()) {
    auto d = kind->date_of(user);
    if (!d)
      continue;
    std::string name{kind->name()};
    auto done = years_done.find(name);
    int min_year = done == years_done.end() ? 0 : done->second + 1;
    out.emplace(name, next_due(*d, zone, kind->send_time(), rules.feb29, from,
                               min_year));
  }
  return out;
}

std::string format_date(date::year_month_day d) {
  std::string out;
  if (append_civil_date(out, d))
    return out;
  return date::format("%F", d);
}

std::string idempotency_key(const std::string& user_id,
                            std::string_view occasion,
                            date::year_month_day local_date) {
  std::string key = user_id;
  key += ':';
  key += occasion;
  key += ':';
  key += format_date(local_date);
  return key;
}

} // namespace chime
