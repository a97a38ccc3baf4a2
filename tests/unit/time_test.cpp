// Proves Chime's time rules (actors/schedule.hpp, actors/occasion.hpp): the UTC
// instant of 09:00 local for odd offsets, both sides of the date line, DST gaps
// and overlaps, Feb 29 in non-leap years, "at or after `from`", min_year, the
// per-user plan, idempotency keys and message templates. Every expected
// instant is written out by hand from the zone's UTC offset on that day, not
// recomputed through the code under test.

#include "actors/occasion.hpp"
#include "actors/schedule.hpp"
#include "actors/user_record.hpp"
#include "runtime/clock.hpp"

#include <catch2/catch.hpp>
#include <date/date.h>
#include <date/tz.h>

#include <chrono>
#include <type_traits>
#include <vector>
#include <string>

namespace {

using namespace std::chrono_literals;
using chime::instant;

constexpr std::chrono::minutes nine_am{540};

/// The UTC instant y-m-d hh:mm:00Z, built independently of the code under test.
instant utc(int y, unsigned m, unsigned d, int hh, int mm) {
  return chime::from_sys(date::sys_days{date::year{y} / m / d}) + std::chrono::hours{hh}
         + std::chrono::minutes{mm};
}

date::year_month_day ymd(int y, unsigned m, unsigned d) {
  return date::year{y} / m / d;
}

const date::time_zone* zone(const std::string& name) {
  auto z = chime::find_zone(name);
  REQUIRE(z != nullptr);
  return z;
}

chime::user_record ada() {
  chime::user_record u;
  u.id = "u-42";
  u.first_name = "Ada";
  u.last_name = "Lovelace";
  u.email = "ada@example.com";
  u.timezone = "Asia/Kathmandu";
  u.dates["birthday"] = "1990-03-15";
  u.dates["anniversary"] = "2015-06-01";
  return u;
}

} // namespace

// -- Chime's timeline and the real one ---------------------------------------

// A virtual clock's instants and the system's real ones are different types:
// handing one where the other is meant does not compile.
static_assert(!std::is_convertible_v<std::chrono::sys_time<std::chrono::milliseconds>,
                                     instant>);
static_assert(!std::is_convertible_v<instant,
                                     std::chrono::sys_time<std::chrono::milliseconds>>);
static_assert(!std::is_convertible_v<std::chrono::system_clock::time_point, instant>);

TEST_CASE("a Chime instant and the system's time convert only explicitly, "
          "and back unchanged",
          "[runtime][time]") {
  auto real = date::sys_days{date::year{2027} / 3 / 15} + 3h + 15min + 7s + 7ms;
  auto at = chime::from_sys(real);
  CHECK(chime::to_ms(at) == 1805080507007);
  CHECK(chime::to_sys(at) == real);
  CHECK(chime::format_instant(at) == "2027-03-15T03:15:07.007Z");
}

TEST_CASE("instants and dates are written as date::format writes them, "
          "outside years 0-9999 too",
          "[runtime][time]") {
  // Written by hand for speed (a stream a call cost a fire two of its
  // costliest steps): every field's padding and the milliseconds' rule
  // checked against the library's own format over a spread of instants.
  std::vector<int64_t> ms_values = {0, 1, 999, 1000, 59'999, 86'399'999,
                                    -1, -86'400'000, 253'402'300'799'999};
  for (int64_t ms = -2'208'988'800'000; ms < 7'258'118'400'000;
       ms += 3'600'000LL * 24 * 7 + 3'723'017)
    ms_values.push_back(ms);
  for (auto ms : ms_values) {
    auto t = chime::to_sys(chime::from_ms(ms));
    auto secs = std::chrono::floor<std::chrono::seconds>(t);
    auto expected = secs == t ? date::format("%FT%TZ", secs)
                              : date::format("%FT%TZ", t);
    INFO(ms);
    CHECK(chime::format_instant(chime::from_ms(ms)) == expected);
  }
  for (auto d : {ymd(2027, 1, 5), ymd(1, 12, 31), ymd(999, 7, 4),
                 ymd(9999, 12, 31), ymd(10000, 1, 1), ymd(-1, 3, 1)})
    CHECK(chime::format_date(d) == date::format("%F", d));
  // A date that does not exist is refused as the library refuses it.
  CHECK_THROWS(chime::format_date(ymd(2027, 2, 30)));
  auto beyond = date::sys_days{date::year{10000} / 1 / 1} + 1h;
  CHECK(chime::format_instant(chime::from_sys(beyond)) == "10000-01-01T01:00:00Z");
}

// -- local_instant: offsets ---------------------------------------------------

TEST_CASE("09:00 in Kathmandu (+05:45) is 03:15 UTC", "[actors][time]") {
  auto at = chime::local_instant(zone("Asia/Kathmandu"), ymd(2027, 3, 15),
                                 nine_am);
  CHECK(chime::format_instant(at) == "2027-03-15T03:15:00Z");
  CHECK(chime::to_ms(at) == chime::to_ms(utc(2027, 3, 15, 3, 15)));
}

TEST_CASE("09:00 in St John's is 12:30 UTC in winter and 11:30 UTC in summer",
          "[actors][time]") {
  auto z = zone("America/St_Johns");
  // NST is -03:30, NDT is -02:30.
  CHECK(chime::local_instant(z, ymd(2027, 1, 15), nine_am)
        == utc(2027, 1, 15, 12, 30));
  CHECK(chime::local_instant(z, ymd(2027, 7, 15), nine_am)
        == utc(2027, 7, 15, 11, 30));
}

TEST_CASE("09:00 in Kiritimati (+14:00) falls on the previous UTC day",
          "[actors][time]") {
  auto at = chime::local_instant(zone("Pacific/Kiritimati"), ymd(2027, 3, 15),
                                 nine_am);
  CHECK(chime::format_instant(at) == "2027-03-14T19:00:00Z");
  CHECK(at == utc(2027, 3, 14, 19, 0));
}

TEST_CASE("the same local date either side of the date line is a day apart in "
          "UTC",
          "[actors][time]") {
  auto d = ymd(2027, 3, 15);
  auto kiritimati = chime::local_instant(zone("Pacific/Kiritimati"), d, nine_am);
  auto apia = chime::local_instant(zone("Pacific/Apia"), d, nine_am);
  auto pago_pago = chime::local_instant(zone("Pacific/Pago_Pago"), d, nine_am);
  auto honolulu = chime::local_instant(zone("Pacific/Honolulu"), d, nine_am);
  CHECK(kiritimati == utc(2027, 3, 14, 19, 0)); // +14:00
  CHECK(apia == utc(2027, 3, 14, 20, 0));       // +13:00, no DST since 2021
  CHECK(pago_pago == utc(2027, 3, 15, 20, 0));  // -11:00
  CHECK(honolulu == utc(2027, 3, 15, 19, 0));   // -10:00
  // Apia and Pago Pago are neighbours, a day apart; Kiritimati and Honolulu
  // share their wall clocks exactly.
  CHECK(pago_pago - apia == std::chrono::hours{24});
  CHECK(honolulu - kiritimati == std::chrono::hours{24});
  CHECK(pago_pago - kiritimati == std::chrono::hours{25});
}

TEST_CASE("a send time on the day Samoa skipped resolves to the first instant "
          "after the gap",
          "[actors][time]") {
  // Samoa jumped from 2011-12-29 24:00 (-10:00) to 2011-12-31 00:00 (+14:00):
  // 2011-12-30 never happened in Apia. The gap ends at 2011-12-30T10:00Z.
  auto at = chime::local_instant(zone("Pacific/Apia"), ymd(2011, 12, 30),
                                 nine_am);
  CHECK(at == utc(2011, 12, 30, 10, 0));
}

// -- local_instant: DST ---------------------------------------------------------

TEST_CASE("09:00 on a DST-change day is unaffected by the 02:00 transition",
          "[actors][time]") {
  auto ny = zone("America/New_York");
  // Spring forward 2027-03-14 02:00 EST -> 03:00 EDT.
  CHECK(chime::local_instant(ny, ymd(2027, 3, 13), nine_am)
        == utc(2027, 3, 13, 14, 0)); // EST, -05:00
  CHECK(chime::local_instant(ny, ymd(2027, 3, 14), nine_am)
        == utc(2027, 3, 14, 13, 0)); // EDT, -04:00
  // Fall back 2027-11-07 02:00 EDT -> 01:00 EST.
  CHECK(chime::local_instant(ny, ymd(2027, 11, 6), nine_am)
        == utc(2027, 11, 6, 13, 0)); // EDT
  CHECK(chime::local_instant(ny, ymd(2027, 11, 7), nine_am)
        == utc(2027, 11, 7, 14, 0)); // EST
}

TEST_CASE("a send time inside the spring-forward gap fires at the first instant "
          "after the gap",
          "[actors][time]") {
  auto ny = zone("America/New_York");
  // 02:00-02:59 does not exist on 2027-03-14; 03:00 EDT is 07:00Z.
  auto at = chime::local_instant(ny, ymd(2027, 3, 14), std::chrono::minutes{150});
  CHECK(chime::format_instant(at) == "2027-03-14T07:00:00Z");
  CHECK(chime::local_instant(ny, ymd(2027, 3, 14), std::chrono::minutes{120})
        == utc(2027, 3, 14, 7, 0));
  CHECK(chime::local_instant(ny, ymd(2027, 3, 14), std::chrono::minutes{179})
        == utc(2027, 3, 14, 7, 0));
  // The minute before the gap and the minute it ends are ordinary.
  CHECK(chime::local_instant(ny, ymd(2027, 3, 14), std::chrono::minutes{119})
        == utc(2027, 3, 14, 6, 59));
  CHECK(chime::local_instant(ny, ymd(2027, 3, 14), std::chrono::minutes{180})
        == utc(2027, 3, 14, 7, 0));
}

TEST_CASE("a send time in the fall-back overlap fires at its first occurrence",
          "[actors][time]") {
  auto ny = zone("America/New_York");
  // 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
  auto at = chime::local_instant(ny, ymd(2027, 11, 7), std::chrono::minutes{90});
  CHECK(chime::format_instant(at) == "2027-11-07T05:30:00Z");
  CHECK(at != utc(2027, 11, 7, 6, 30));
}

TEST_CASE("next_due keeps the occasion's local date when the send time is in a "
          "gap",
          "[actors][time]") {
  auto due = chime::next_due(ymd(1990, 3, 14), zone("America/New_York"),
                             std::chrono::minutes{150}, chime::feb29_rule::feb28,
                             utc(2027, 1, 1, 0, 0));
  CHECK(due.at == utc(2027, 3, 14, 7, 0));
  CHECK(due.local_date == ymd(2027, 3, 14));
}

// -- occurrence_in and Feb 29 ---------------------------------------------------

TEST_CASE("a leap-day date stays on Feb 29 in a leap year", "[actors][time]") {
  for (auto rule : {chime::feb29_rule::feb28, chime::feb29_rule::mar1})
    CHECK(chime::occurrence_in(ymd(2000, 2, 29), date::year{2028}, rule)
          == ymd(2028, 2, 29));
}

TEST_CASE("a leap-day birthday fires on Feb 28 in a non-leap year",
          "[actors][time]") {
  CHECK(chime::occurrence_in(ymd(2000, 2, 29), date::year{2027},
                             chime::feb29_rule::feb28)
        == ymd(2027, 2, 28));
  auto due = chime::next_due(ymd(2000, 2, 29), zone("Etc/UTC"), nine_am,
                             chime::feb29_rule::feb28, utc(2027, 1, 1, 0, 0));
  CHECK(due.at == utc(2027, 2, 28, 9, 0));
  CHECK(due.local_date == ymd(2027, 2, 28));
}

TEST_CASE("a leap-day birthday fires on Mar 1 in a non-leap year under the mar1 "
          "rule",
          "[actors][time]") {
  CHECK(chime::occurrence_in(ymd(2000, 2, 29), date::year{2027},
                             chime::feb29_rule::mar1)
        == ymd(2027, 3, 1));
  auto due = chime::next_due(ymd(2000, 2, 29), zone("Etc/UTC"), nine_am,
                             chime::feb29_rule::mar1, utc(2027, 1, 1, 0, 0));
  CHECK(due.at == utc(2027, 3, 1, 9, 0));
  CHECK(due.local_date == ymd(2027, 3, 1));
}

TEST_CASE("a leap-day birthday fires on Feb 29 when the next year is a leap "
          "year",
          "[actors][time]") {
  // After 2027's Feb 28 send, the next one is 2028-02-29 under either rule.
  for (auto rule : {chime::feb29_rule::feb28, chime::feb29_rule::mar1}) {
    auto due = chime::next_due(ymd(2000, 2, 29), zone("Asia/Kathmandu"), nine_am,
                               rule, utc(2027, 3, 2, 0, 0));
    CHECK(due.at == utc(2028, 2, 29, 3, 15));
    CHECK(due.local_date == ymd(2028, 2, 29));
  }
}

TEST_CASE("dates other than Feb 29 are never moved", "[actors][time]") {
  CHECK(chime::occurrence_in(ymd(1990, 2, 28), date::year{2027},
                             chime::feb29_rule::mar1)
        == ymd(2027, 2, 28));
  CHECK(chime::occurrence_in(ymd(1990, 3, 1), date::year{2028},
                             chime::feb29_rule::feb28)
        == ymd(2028, 3, 1));
  CHECK(chime::occurrence_in(ymd(1990, 12, 31), date::year{2027},
                             chime::feb29_rule::feb28)
        == ymd(2027, 12, 31));
}

// -- next_due ---------------------------------------------------------------------

TEST_CASE("a user created before this year's instant is due this year",
          "[actors][time]") {
  auto due = chime::next_due(ymd(1990, 3, 15), zone("Asia/Kathmandu"), nine_am,
                             chime::feb29_rule::feb28, utc(2027, 1, 10, 0, 0));
  CHECK(chime::format_instant(due.at) == "2027-03-15T03:15:00Z");
  CHECK(due.local_date == ymd(2027, 3, 15));
}

TEST_CASE("a user created after this year's instant gets next year's",
          "[actors][time]") {
  auto z = zone("Asia/Kathmandu");
  auto this_year = utc(2027, 3, 15, 3, 15);
  SECTION("one millisecond late") {
    auto due = chime::next_due(ymd(1990, 3, 15), z, nine_am,
                               chime::feb29_rule::feb28, this_year + 1ms);
    CHECK(due.at == utc(2028, 3, 15, 3, 15));
    CHECK(due.local_date == ymd(2028, 3, 15));
  }
  SECTION("later the same local day") {
    auto due = chime::next_due(ymd(1990, 3, 15), z, nine_am,
                               chime::feb29_rule::feb28,
                               utc(2027, 3, 15, 12, 0));
    CHECK(due.at == utc(2028, 3, 15, 3, 15));
  }
  SECTION("exactly at the instant is still on time") {
    auto due = chime::next_due(ymd(1990, 3, 15), z, nine_am,
                               chime::feb29_rule::feb28, this_year);
    CHECK(due.at == this_year);
  }
}

TEST_CASE("next_due across the date line follows the zone's own calendar",
          "[actors][time]") {
  // At 2027-03-14T19:30Z it is already past 09:00 on Mar 15 in Kiritimati,
  // but not yet Mar 15 in Pago Pago.
  auto from = utc(2027, 3, 14, 19, 30);
  auto kir = chime::next_due(ymd(1990, 3, 15), zone("Pacific/Kiritimati"),
                             nine_am, chime::feb29_rule::feb28, from);
  auto ppg = chime::next_due(ymd(1990, 3, 15), zone("Pacific/Pago_Pago"),
                             nine_am, chime::feb29_rule::feb28, from);
  CHECK(kir.at == utc(2028, 3, 14, 19, 0));
  CHECK(kir.local_date == ymd(2028, 3, 15));
  CHECK(ppg.at == utc(2027, 3, 15, 20, 0));
  CHECK(ppg.local_date == ymd(2027, 3, 15));
}

TEST_CASE("a Dec 31 occasion is found across the new year in UTC",
          "[actors][time]") {
  // 2027-12-31T18:00Z is 2028-01-01 08:00 in Kiritimati (this year's Dec 31
  // send is long gone) and 2027-12-31 07:00 in Pago Pago (still ahead).
  auto from = utc(2027, 12, 31, 18, 0);
  auto kir = chime::next_due(ymd(1990, 12, 31), zone("Pacific/Kiritimati"),
                             nine_am, chime::feb29_rule::feb28, from);
  auto ppg = chime::next_due(ymd(1990, 12, 31), zone("Pacific/Pago_Pago"),
                             nine_am, chime::feb29_rule::feb28, from);
  CHECK(kir.at == utc(2028, 12, 30, 19, 0));
  CHECK(kir.local_date == ymd(2028, 12, 31));
  CHECK(ppg.at == utc(2027, 12, 31, 20, 0));
  CHECK(ppg.local_date == ymd(2027, 12, 31));
}

TEST_CASE("min_year skips a year already delivered", "[actors][time]") {
  auto z = zone("Asia/Kathmandu");
  auto from = utc(2027, 1, 1, 0, 0);
  auto due = chime::next_due(ymd(1990, 3, 15), z, nine_am,
                             chime::feb29_rule::feb28, from, 2028);
  CHECK(due.at == utc(2028, 3, 15, 3, 15));
  CHECK(due.local_date == ymd(2028, 3, 15));
  // A min_year in the past changes nothing.
  auto same = chime::next_due(ymd(1990, 3, 15), z, nine_am,
                              chime::feb29_rule::feb28, from, 2020);
  CHECK(same.at == utc(2027, 3, 15, 3, 15));
}

TEST_CASE("an occasion is never due before the year of its own date",
          "[actors][time]") {
  // An anniversary set for later this year (as a date) is first due that day,
  // not in earlier years that `from` would otherwise allow.
  auto due = chime::next_due(ymd(2027, 6, 1), zone("Asia/Kathmandu"), nine_am,
                             chime::feb29_rule::feb28, utc(2020, 1, 1, 0, 0));
  CHECK(due.at == utc(2027, 6, 1, 3, 15));
}

// -- is_expired ---------------------------------------------------------------------

TEST_CASE("a send is owed up to the end of the catch-up window and expired after",
          "[actors][time]") {
  chime::schedule_rules rules; // 72 h catch-up
  auto due = utc(2027, 3, 15, 3, 15);
  CHECK_FALSE(chime::is_expired(due, due - 1h, rules));
  CHECK_FALSE(chime::is_expired(due, due, rules));
  CHECK_FALSE(chime::is_expired(due, due + 72h, rules));
  CHECK(chime::is_expired(due, due + 72h + 1ms, rules));
  rules.catch_up = std::chrono::hours{1};
  CHECK_FALSE(chime::is_expired(due, due + 1h, rules));
  CHECK(chime::is_expired(due, due + 1h + 1ms, rules));
}

// -- find_zone ---------------------------------------------------------------------

TEST_CASE("find_zone knows tz database names and nothing else", "[actors][time]") {
  auto k = chime::find_zone("Asia/Kathmandu");
  REQUIRE(k != nullptr);
  CHECK(k->name() == "Asia/Kathmandu");
  CHECK(chime::find_zone("Pacific/Chatham") != nullptr);
  CHECK(chime::find_zone("Mars/Olympus") == nullptr);
  CHECK(chime::find_zone("") == nullptr);
}

// -- plan_user --------------------------------------------------------------------

TEST_CASE("plan_user plans a birthday and an anniversary at 09:00 local",
          "[actors][time]") {
  auto plan = chime::plan_user(ada(), utc(2027, 1, 1, 0, 0), {});
  REQUIRE(plan.size() == 2);
  REQUIRE(plan.count("birthday") == 1);
  REQUIRE(plan.count("anniversary") == 1);
  CHECK(chime::format_instant(plan.at("birthday").at) == "2027-03-15T03:15:00Z");
  CHECK(plan.at("birthday").local_date == ymd(2027, 3, 15));
  CHECK(chime::format_instant(plan.at("anniversary").at)
        == "2027-06-01T03:15:00Z");
  CHECK(plan.at("anniversary").local_date == ymd(2027, 6, 1));
}

TEST_CASE("plan_user skips a year already delivered for that occasion only",
          "[actors][time]") {
  auto plan = chime::plan_user(ada(), utc(2027, 1, 1, 0, 0), {},
                               {{"birthday", 2027}});
  REQUIRE(plan.size() == 2);
  CHECK(plan.at("birthday").at == utc(2028, 3, 15, 3, 15));
  CHECK(plan.at("anniversary").at == utc(2027, 6, 1, 3, 15));
}

TEST_CASE("plan_user plans only the occasions the user has", "[actors][time]") {
  auto u = ada();
  u.dates.erase("anniversary");
  auto plan = chime::plan_user(u, utc(2027, 1, 1, 0, 0), {});
  CHECK(plan.size() == 1);
  CHECK(plan.count("birthday") == 1);
  u.dates["anniversary"] = "2015-02-30"; // not a real date
  CHECK(chime::plan_user(u, utc(2027, 1, 1, 0, 0), {}).count("anniversary")
        == 0);
}

TEST_CASE("plan_user applies the configured Feb 29 rule", "[actors][time]") {
  auto u = ada();
  u.timezone = "Etc/UTC";
  u.dates = {{"birthday", "2000-02-29"}};
  chime::schedule_rules rules;
  rules.feb29 = chime::feb29_rule::mar1;
  auto plan = chime::plan_user(u, utc(2027, 1, 1, 0, 0), rules);
  REQUIRE(plan.count("birthday") == 1);
  CHECK(plan.at("birthday").at == utc(2027, 3, 1, 9, 0));
  rules.feb29 = chime::feb29_rule::feb28;
  CHECK(chime::plan_user(u, utc(2027, 1, 1, 0, 0), rules).at("birthday").at
        == utc(2027, 2, 28, 9, 0));
}

TEST_CASE("plan_user plans nothing for an unknown time zone", "[actors][time]") {
  auto u = ada();
  u.timezone = "Mars/Olympus";
  CHECK(chime::plan_user(u, utc(2027, 1, 1, 0, 0), {}).empty());
}

// -- idempotency keys ---------------------------------------------------------------

TEST_CASE("the idempotency key is user id, occasion and local date",
          "[actors][time]") {
  CHECK(chime::idempotency_key("u-42", "birthday", ymd(2027, 3, 15))
        == "u-42:birthday:2027-03-15");
  CHECK(chime::idempotency_key("0f8c", "anniversary", ymd(2027, 1, 5))
        == "0f8c:anniversary:2027-01-05");
  CHECK(chime::format_date(ymd(2028, 2, 29)) == "2028-02-29");
}

TEST_CASE("the idempotency key names the local date, not the UTC date",
          "[actors][time]") {
  // Kiritimati's 2027-03-15 send happens on 2027-03-14 in UTC.
  auto due = chime::next_due(ymd(1990, 3, 15), zone("Pacific/Kiritimati"),
                             nine_am, chime::feb29_rule::feb28,
                             utc(2027, 1, 1, 0, 0));
  REQUIRE(due.at == utc(2027, 3, 14, 19, 0));
  CHECK(chime::idempotency_key("u-1", "birthday", due.local_date)
        == "u-1:birthday:2027-03-15");
}

// -- occasions --------------------------------------------------------------------

TEST_CASE("the birthday message names the user", "[actors][occasion]") {
  auto kind = chime::find_occasion("birthday");
  REQUIRE(kind != nullptr);
  CHECK(kind->message(ada()) == "Hey, Ada Lovelace it's your birthday");
  CHECK(kind->required());
}

TEST_CASE("the anniversary message names the user", "[actors][occasion]") {
  auto kind = chime::find_occasion("anniversary");
  REQUIRE(kind != nullptr);
  CHECK(kind->message(ada()) == "Hey, Ada Lovelace happy anniversary");
  CHECK_FALSE(kind->required());
}

TEST_CASE("the occasion registry holds birthday then anniversary, both at 09:00",
          "[actors][occasion]") {
  auto& kinds = chime::occasion_registry();
  REQUIRE(kinds.size() == 2);
  CHECK(kinds[0]->name() == "birthday");
  CHECK(kinds[1]->name() == "anniversary");
  for (auto& kind : kinds)
    CHECK(kind->send_time() == nine_am);
  CHECK(chime::find_occasion("nickname") == nullptr);
}

TEST_CASE("an occasion reads its date from the user's dates by its name",
          "[actors][occasion]") {
  auto u = ada();
  auto birthday = chime::find_occasion("birthday");
  auto anniversary = chime::find_occasion("anniversary");
  REQUIRE(birthday != nullptr);
  REQUIRE(anniversary != nullptr);
  CHECK(birthday->date_of(u) == ymd(1990, 3, 15));
  CHECK(anniversary->date_of(u) == ymd(2015, 6, 1));
  u.dates.erase("anniversary");
  CHECK_FALSE(anniversary->date_of(u).has_value());
  u.dates["birthday"] = "1990-02-30";
  CHECK_FALSE(birthday->date_of(u).has_value());
}

TEST_CASE("parse_date accepts only real calendar dates YYYY-MM-DD",
          "[actors][occasion]") {
  CHECK(chime::parse_date("2024-02-29") == ymd(2024, 2, 29));
  CHECK(chime::parse_date("1990-03-15") == ymd(1990, 3, 15));
  CHECK_FALSE(chime::parse_date("2023-02-29").has_value());
  CHECK_FALSE(chime::parse_date("2023-02-30").has_value());
  CHECK_FALSE(chime::parse_date("1990-13-01").has_value());
  CHECK_FALSE(chime::parse_date("1990-00-10").has_value());
  CHECK_FALSE(chime::parse_date("1990-04-31").has_value());
  CHECK_FALSE(chime::parse_date("1990-3-15").has_value());
  CHECK_FALSE(chime::parse_date("19900315").has_value());
  CHECK_FALSE(chime::parse_date("1990/03/15").has_value());
  CHECK_FALSE(chime::parse_date("1990-03-15T00").has_value());
  CHECK_FALSE(chime::parse_date("").has_value());
}

TEST_CASE("a date whose year is not four digits is rejected",
          "[actors][occasion]") {
  CHECK_FALSE(chime::parse_date("-990-01-01").has_value());
  CHECK_FALSE(chime::parse_date("2027-+3-15").has_value());
}
