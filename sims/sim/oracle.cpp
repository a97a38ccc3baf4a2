#include "sims/sim/oracle.hpp"

#include "actors/occasion.hpp"

#include <date/tz.h>

namespace chime::sim {

lateness_bound::lateness_bound(std::vector<fault_window> faults,
                               int64_t recovery_ms)
  : faults_(std::move(faults)), recovery_ms_(recovery_ms) {
  std::sort(faults_.begin(), faults_.end(),
            [](auto& a, auto& b) { return a.from_ms < b.from_ms; });
}

int64_t lateness_bound::disrupted_until_ms(int64_t due_ms) const {
  auto end = due_ms;
  for (auto& f : faults_) {
    // A fault that strikes before Chime recovered from the last one
    // delays the send further; a later one finds it delivered.
    if (f.from_ms > end + recovery_ms_)
      break;
    end = std::max(end, f.until_ms + f.recovery_ms);
  }
  return end;
}

int64_t lateness_bound::deadline_ms(int64_t due_ms) const {
  return disrupted_until_ms(due_ms) + recovery_ms_;
}

namespace {

/// An occasion's date and zone between two changes of either.
struct epoch {
  date::year_month_day date;
  const date::time_zone* zone = nullptr;
  int64_t start_ms = 0;     ///< the product took the change then
  int64_t committed_ms = 0; ///< and the journal made it durable then
};

/// SPEC.md section 1, read afresh: the date in `year`, Feb 29 moved to Feb
/// 28 or Mar 1 in a year without one.
date::year_month_day in_year(date::year_month_day d, date::year year,
                             bool feb29_to_mar1) {
  if (d.month() == date::February && d.day() == date::day{29}
      && !year.is_leap())
    return feb29_to_mar1 ? year / date::March / 1 : year / date::February / 28;
  return year / d.month() / d.day();
}

/// The send time on `day` in `zone` from the zone's own transitions: in a
/// gap, the transition (the first instant after it); twice, the first.
int64_t send_at_ms(const date::time_zone* zone, date::year_month_day day,
                   std::chrono::minutes send_time) {
  auto local = date::local_days{day} + send_time;
  auto info = zone->get_info(local);
  auto at = info.result == date::local_info::nonexistent
              ? info.second.begin
              : date::sys_seconds{(local - info.first.offset).time_since_epoch()};
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           at.time_since_epoch())
    .count();
}

/// SPEC.md section 1: a user's location is an IANA time zone. The zoneinfo
/// folder the tz database is read from also holds the machine's own
/// setting and copies under other rules, which name no place: nothing is
/// owed in them.
const date::time_zone* zone_named(const std::string& name) {
  if (name == "localtime" || name == "posixrules" || name == "Factory"
      || name.rfind("posix/", 0) == 0 || name.rfind("right/", 0) == 0)
    return nullptr;
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    return nullptr;
  }
}

/// One occasion kind of one user, replayed change by change.
class replay {
public:
  replay(const occasion& kind, const std::string& user_id,
         const oracle_rules& rules, const lateness_bound& bound,
         const key_facts& facts)
    : kind_(kind), user_id_(user_id), rules_(rules), bound_(bound),
      facts_(facts) {
  }

  void change(const user_change& c, int64_t at_ms);
  void finish() {
    if (epoch_)
      realize(rules_.end_ms + 1);
  }
  std::vector<owed_occurrence> owed;

private:
  void realize(int64_t until_ms);
  void add(date::year_month_day local, int64_t due_ms);
  std::string local_date(const owed_occurrence& o) const {
    return o.key.substr(o.key.rfind(':') + 1);
  }

  const occasion& kind_;
  const std::string& user_id_;
  const oracle_rules& rules_;
  const lateness_bound& bound_;
  const key_facts& facts_;
  std::optional<epoch> epoch_;
  std::vector<bool> came_back_; ///< withdrawn, then owed again: a race
};

void replay::change(const user_change& c, int64_t at_ms) {
  auto date = c.user ? kind_.date_of(*c.user) : std::nullopt;
  auto zone = c.user ? zone_named(c.user->timezone) : nullptr;
  bool live = date && zone;
  if (epoch_ && live && epoch_->date == *date && epoch_->zone == zone)
    return; // this occasion did not change
  if (epoch_)
    realize(at_ms);
  for (auto& o : owed) {
    if (o.withdrawn_ms != never_ms)
      continue;
    bool still
      = live
        && date::format("%F", in_year(*date, date::year{o.year},
                                      rules_.feb29_to_mar1))
             == local_date(o);
    if (!still) {
      o.withdrawn_ms = c.committed_ms;
      o.withdrawn_by_delete = !c.user;
    } else if (at_ms <= send_limit_ms(o.due_ms, rules_, bound_)) {
      // Re-timed (a new zone) before it had to be sent: whether it was
      // already on its way or is planned afresh (SPEC: a change after the
      // send instant gets next year's) depends on the race. The new zone
      // owes it again below when its instant is still ahead.
      o.required = false;
    }
  }
  epoch_.reset();
  if (live)
    epoch_ = epoch{*date, zone, at_ms, c.committed_ms};
}

void replay::realize(int64_t until_ms) {
  auto& ep = *epoch_;
  auto from_year
    = date::year_month_day{date::floor<date::days>(
                             date::sys_time<std::chrono::milliseconds>{
                               std::chrono::milliseconds{ep.start_ms}})}
        .year();
  // A year early: on the date line, last year's date may still be ahead.
  for (auto y = std::max(ep.date.year(), from_year - date::years{1});; ++y) {
    auto local = in_year(ep.date, y, rules_.feb29_to_mar1);
    auto due = send_at_ms(ep.zone, local, kind_.send_time());
    if (due >= until_ms)
      return;
    if (due >= ep.start_ms)
      add(local, due);
  }
}

void replay::add(date::year_month_day local, int64_t due_ms) {
  auto key = user_id_ + ":" + std::string{kind_.name()} + ":"
             + date::format("%F", local);
  auto year = static_cast<int>(local.year());
  came_back_.resize(owed.size());
  for (size_t i = 0; i < owed.size(); ++i) {
    auto& o = owed[i];
    if (o.key != key)
      continue;
    // The same message, owed again: one send covers both.
    if (o.withdrawn_ms != never_ms)
      came_back_[i] = true;
    o.withdrawn_ms = never_ms;
    o.due_ms = std::max(o.due_ms, due_ms);
    o.earliest_ms = std::min(o.earliest_ms, due_ms);
    o.required = !came_back_[i];
    return;
  }
  // A message of this year (or later) already sent or expired when the
  // change came is never owed again; one still on its way when it came
  // leaves the change's message to the race.
  bool required = true;
  for (auto& o : owed) {
    if (o.year < year)
      continue;
    if (facts_.closed_ms(o.key) <= epoch_->committed_ms)
      return;
    if (facts_.first_delivered_ms(o.key) <= epoch_->committed_ms)
      required = false;
  }
  owed_occurrence o;
  o.key = std::move(key);
  o.user_id = user_id_;
  o.occasion = std::string{kind_.name()};
  o.year = year;
  o.zone = epoch_->zone->name();
  o.due_ms = due_ms;
  o.earliest_ms = due_ms;
  o.required = required;
  owed.push_back(std::move(o));
}

} // namespace

std::vector<owed_occurrence>
owed_for_user(const std::string& user_id,
              const std::vector<user_change>& history, const oracle_rules& rules,
              const lateness_bound& bound, const key_facts& facts) {
  std::vector<owed_occurrence> out;
  for (auto& kind : occasion_registry()) {
    replay r{*kind, user_id, rules, bound, facts};
    // Two updates computed concurrently may commit out of order: the later
    // commit's instant is never before the earlier one's.
    int64_t at_ms = std::numeric_limits<int64_t>::min();
    for (auto& c : history) {
      at_ms = std::max(at_ms, c.at_ms);
      r.change(c, at_ms);
    }
    r.finish();
    for (auto& o : r.owed)
      out.push_back(std::move(o));
  }
  return out;
}

} // namespace chime::sim
