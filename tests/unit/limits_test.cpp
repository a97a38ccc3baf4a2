// Proves the delivery limits in actors/rate_limiter.hpp,
// actors/concurrency_limit.hpp and
// actors/circuit_breaker.hpp, driven by hand-made steady_clock time points:
// the token bucket starts with one token (no cold-start burst), never grants
// more than burst + rate * T over any span T, grants steadily at its rate once
// drained, says in wait() exactly when the next token comes, and treats rate 0
// as unlimited; the breaker opens after failures_max consecutive failures, a
// success resets the count, it stays shut for the whole cooldown, then lets
// exactly one probe through (half-open), whose success closes it and whose
// failure reopens it for another cooldown.

#include "actors/circuit_breaker.hpp"
#include "actors/concurrency_limit.hpp"
#include "actors/rate_limiter.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using us = std::chrono::microseconds;
using ms = std::chrono::milliseconds;

// An arbitrary, non-zero origin so nothing depends on the epoch.
const time_point t0 = time_point{} + std::chrono::hours{1000};

// Takes every token available at `now`; returns how many.
int drain(chime::rate_limiter& l, time_point now) {
  int n = 0;
  while (l.try_take(now) && n < 1000000)
    ++n;
  return n;
}

using breaker = chime::circuit_breaker;
using bstate = chime::circuit_breaker::state;

} // namespace

// ---------------------------------------------------------------- limiter

TEST_CASE("a new limiter holds one token, not a burst", "[actors][limiter]") {
  chime::rate_limiter l{10, 50, t0};
  CHECK(l.tokens() == Approx(1.0));
  CHECK(l.try_take(t0));
  CHECK_FALSE(l.try_take(t0));
  CHECK(l.wait(t0) > us{0});
}

TEST_CASE("an idle limiter fills up to its burst and no further",
          "[actors][limiter]") {
  chime::rate_limiter l{10, 5, t0};
  // An hour idle is worth 36,000 tokens at 10/s, but the bucket holds 5.
  CHECK(drain(l, t0 + std::chrono::hours{1}) == 5);
  CHECK(l.wait(t0 + std::chrono::hours{1}) > us{0});
}

TEST_CASE("a burst below one still lets a token through", "[actors][limiter]") {
  chime::rate_limiter l{4, 0, t0};
  CHECK(drain(l, t0) == 1);
  CHECK(drain(l, t0 + std::chrono::seconds{10}) == 1);
}

TEST_CASE("a drained limiter grants steadily at its rate",
          "[actors][limiter]") {
  const double rate = 20; // one token every 50 ms
  chime::rate_limiter l{rate, 10, t0};
  REQUIRE(drain(l, t0) == 1);

  SECTION("polled finely, one grant per 1/rate") {
    // Poll every millisecond for ten seconds, taking whatever is there.
    int granted = 0;
    time_point last_grant{};
    int64_t min_gap_us = INT64_MAX, max_gap_us = 0;
    for (int i = 1; i <= 10000; ++i) {
      auto now = t0 + ms{i};
      while (l.try_take(now)) {
        if (granted > 0) {
          auto gap = std::chrono::duration_cast<us>(now - last_grant).count();
          min_gap_us = std::min(min_gap_us, gap);
          max_gap_us = std::max(max_gap_us, gap);
        }
        last_grant = now;
        ++granted;
      }
    }
    CHECK(granted == 200); // 10 s at 20/s
    // Each grant comes 50 ms after the one before, within the 1 ms polling step.
    CHECK(min_gap_us >= 49000);
    CHECK(max_gap_us <= 51000);
  }

  SECTION("a long wait in steps of 1/rate yields one token per step") {
    for (int i = 1; i <= 1000; ++i) {
      auto now = t0 + ms{50 * i};
      INFO("step " << i);
      REQUIRE(drain(l, now) == 1);
    }
  }
}

TEST_CASE("a limiter never grants more than burst + rate * T over a span T",
          "[actors][limiter]") {
  struct params {
    double rate;
    double burst;
  };
  for (auto p : {params{1, 1}, params{10, 1}, params{10, 25}, params{333, 50},
                 params{2.5, 4}, params{1000, 1000}}) {
    INFO("rate " << p.rate << "/s, burst " << p.burst);
    chime::rate_limiter l{p.rate, p.burst, t0};
    std::mt19937_64 rng{static_cast<uint64_t>(p.rate * 1000 + p.burst)};
    // Callers arrive at random moments and sometimes in herds (many at one
    // instant), with quiet spells that let the bucket fill; each takes a
    // token if there is one. Record every grant.
    std::uniform_int_distribution<int> step_us{0, 4000};
    std::uniform_int_distribution<int> one_in_100{0, 99};
    std::uniform_int_distribution<int> quiet_ms{0, 3000};
    std::vector<time_point> all;
    auto now = t0;
    for (int i = 0; i < 20000; ++i) {
      now += us{step_us(rng)};
      if (one_in_100(rng) == 0)
        now += ms{quiet_ms(rng)};
      int callers = one_in_100(rng) < 5 ? 2000 : 1;
      for (int c = 0; c < callers; ++c)
        if (l.try_take(now))
          all.push_back(now);
    }
    REQUIRE(all.size() > 100);
    // Grants i..j (inclusive) within [t_i, t_j] must number at most
    // burst + rate * (t_j - t_i). With v_k = k - rate * t_k that is
    // v_j - v_i + 1 <= burst for every i <= j: one pass with a running
    // minimum of v checks every window that starts and ends at a grant
    // (the tightest ones).
    double min_v = 0, worst = -1e300;
    size_t worst_j = 0;
    for (size_t k = 0; k < all.size(); ++k) {
      double t = std::chrono::duration<double>(all[k] - t0).count();
      double v = static_cast<double>(k) - p.rate * t;
      if (k == 0 || v < min_v)
        min_v = v;
      if (v - min_v + 1 > worst)
        worst = v - min_v + 1, worst_j = k;
    }
    INFO("worst window: " << worst << " grants beyond rate*T, ending at grant "
                          << worst_j << " of " << all.size());
    CHECK(worst <= p.burst + 1e-6);
    // And the bound is reached: after the quiet spells a full burst goes out.
    CHECK(worst >= p.burst - 1);
  }
}

TEST_CASE("wait() tells exactly when the next token comes",
          "[actors][limiter]") {
  for (double rate : {1.0, 3.0, 7.0, 20.0, 1000.0, 12345.0}) {
    INFO("rate " << rate << "/s");
    chime::rate_limiter l{rate, 1, t0};
    REQUIRE(l.wait(t0) == us{0}); // the starting token is there now
    REQUIRE(l.try_take(t0));
    auto now = t0;
    for (int i = 0; i < 50; ++i) {
      auto w = l.wait(now);
      // The next whole token is 1/rate seconds after the last one was full;
      // wait() may round up by at most one microsecond.
      REQUIRE(w > us{0});
      CHECK_FALSE(l.try_take(now + w - us{2}));
      REQUIRE(l.try_take(now + w));
      now += w;
    }
    // Fifty waits add up to fifty periods (plus at most 1 us rounding each).
    double elapsed_s = std::chrono::duration<double>(now - t0).count();
    CHECK(elapsed_s >= 50 / rate - 1e-9);
    CHECK(elapsed_s <= 50 / rate + 50e-6 + 1e-9);
  }
}

TEST_CASE("wait() counts down as time passes and is zero when a token is in",
          "[actors][limiter]") {
  chime::rate_limiter l{4, 2, t0}; // a token every 250 ms
  REQUIRE(l.try_take(t0));
  auto w0 = l.wait(t0);
  CHECK(std::abs(w0.count() - 250000) <= 1);
  auto w1 = l.wait(t0 + ms{100});
  CHECK(std::abs(w1.count() - 150000) <= 1);
  CHECK(l.wait(t0 + ms{250}) == us{0});
  // wait() does not take the token.
  CHECK(l.wait(t0 + ms{250}) == us{0});
  CHECK(l.try_take(t0 + ms{250}));
  CHECK_FALSE(l.try_take(t0 + ms{250}));
}

TEST_CASE("a limiter does not run backwards when time does",
          "[actors][limiter]") {
  chime::rate_limiter l{10, 5, t0 + std::chrono::seconds{10}};
  REQUIRE(l.try_take(t0 + std::chrono::seconds{10}));
  // An earlier instant neither refills nor grants.
  CHECK_FALSE(l.try_take(t0));
  CHECK(l.tokens() == Approx(0.0).margin(1e-12));
  CHECK(drain(l, t0 + std::chrono::seconds{10} + ms{100}) == 1);
}

TEST_CASE("a limiter with rate 0 is unlimited", "[actors][limiter]") {
  chime::rate_limiter l{0, 1, t0};
  CHECK(drain(l, t0) == 1000000); // drain's own cap: it never says no
  CHECK(l.wait(t0) == us{0});
  CHECK(l.try_take(t0 - std::chrono::seconds{1}));
  chime::rate_limiter negative{-5, 1, t0};
  CHECK(negative.try_take(t0));
  CHECK(negative.try_take(t0));
  CHECK(negative.wait(t0) == us{0});
}

// ---------------------------------------------------------------- breaker

TEST_CASE("a new breaker is closed and lets everything through",
          "[actors][breaker]") {
  breaker b{3, ms{1000}};
  CHECK(b.current() == bstate::closed);
  for (int i = 0; i < 100; ++i)
    CHECK(b.allow(t0 + ms{i}));
}

TEST_CASE("a breaker opens after failures_max consecutive failures",
          "[actors][breaker]") {
  breaker b{3, ms{1000}};
  b.failure(t0);
  b.failure(t0);
  CHECK(b.current() == bstate::closed);
  CHECK(b.allow(t0));
  b.failure(t0 + ms{5});
  CHECK(b.current() == bstate::open);
  CHECK(b.open_until() == t0 + ms{5} + ms{1000});
  CHECK_FALSE(b.allow(t0 + ms{5}));
}

TEST_CASE("a breaker with failures_max 1 opens on the first failure",
          "[actors][breaker]") {
  breaker b{1, ms{200}};
  b.failure(t0);
  CHECK(b.current() == bstate::open);
  CHECK_FALSE(b.allow(t0));
}

TEST_CASE("a success resets the breaker's failure count",
          "[actors][breaker]") {
  breaker b{3, ms{1000}};
  // Two failures, a success, two failures, a success...: never three in a row.
  for (int round = 0; round < 10; ++round) {
    b.failure(t0);
    b.failure(t0);
    b.success();
    CHECK(b.current() == bstate::closed);
  }
  CHECK(b.allow(t0));
  // ...and three in a row after a success still open it.
  b.failure(t0);
  b.failure(t0);
  CHECK(b.current() == bstate::closed);
  b.failure(t0);
  CHECK(b.current() == bstate::open);
}

TEST_CASE("an open breaker stays shut for the whole cooldown",
          "[actors][breaker]") {
  breaker b{2, ms{1000}};
  b.failure(t0);
  b.failure(t0);
  REQUIRE(b.current() == bstate::open);
  for (int i = 0; i < 1000; ++i)
    REQUIRE_FALSE(b.allow(t0 + ms{i}));
  CHECK_FALSE(b.allow(t0 + ms{1000} - us{1}));
  CHECK(b.current() == bstate::open);
}

TEST_CASE("a half-open breaker lets exactly one probe through",
          "[actors][breaker]") {
  breaker b{2, ms{1000}};
  b.failure(t0);
  b.failure(t0);
  REQUIRE(b.current() == bstate::open);
  auto after = t0 + ms{1000};
  CHECK(b.allow(after)); // the probe
  CHECK(b.current() == bstate::half_open);
  // Nothing else while the probe is out, however long it takes.
  for (int i = 0; i < 100; ++i)
    CHECK_FALSE(b.allow(after + ms{i * 100}));
  CHECK(b.current() == bstate::half_open);
}

TEST_CASE("a successful probe closes the breaker", "[actors][breaker]") {
  breaker b{2, ms{1000}};
  b.failure(t0);
  b.failure(t0);
  auto after = t0 + ms{1500};
  REQUIRE(b.allow(after));
  b.success();
  CHECK(b.current() == bstate::closed);
  for (int i = 0; i < 10; ++i)
    CHECK(b.allow(after));
  // Closed afresh: one failure is not enough to reopen it.
  b.failure(after);
  CHECK(b.current() == bstate::closed);
  b.failure(after);
  CHECK(b.current() == bstate::open);
}

TEST_CASE("a failed probe reopens the breaker for another cooldown",
          "[actors][breaker]") {
  breaker b{2, ms{1000}};
  b.failure(t0);
  b.failure(t0);
  auto probe_at = t0 + ms{1200};
  REQUIRE(b.allow(probe_at));
  auto failed_at = probe_at + ms{300}; // the probe took 300 ms to fail
  b.failure(failed_at);
  CHECK(b.current() == bstate::open);
  CHECK(b.open_until() == failed_at + ms{1000});
  // A single failure reopens it: the count does not start again from zero.
  CHECK_FALSE(b.allow(failed_at));
  CHECK_FALSE(b.allow(failed_at + ms{999}));
  // After the new cooldown, exactly one probe again.
  CHECK(b.allow(failed_at + ms{1000}));
  CHECK(b.current() == bstate::half_open);
  CHECK_FALSE(b.allow(failed_at + ms{1000}));
  b.success();
  CHECK(b.current() == bstate::closed);
  CHECK(b.allow(failed_at + ms{1001}));
}

TEST_CASE("a breaker cycles open, half-open and closed repeatedly",
          "[actors][breaker]") {
  breaker b{3, ms{250}};
  auto now = t0;
  for (int cycle = 0; cycle < 20; ++cycle) {
    INFO("cycle " << cycle);
    for (int i = 0; i < 3; ++i) {
      REQUIRE(b.allow(now));
      b.failure(now);
    }
    REQUIRE(b.current() == bstate::open);
    REQUIRE_FALSE(b.allow(now + ms{249}));
    now += ms{250};
    REQUIRE(b.allow(now));
    REQUIRE_FALSE(b.allow(now));
    if (cycle % 2 == 0) {
      b.failure(now); // reopen, then probe again after the cooldown
      REQUIRE(b.current() == bstate::open);
      now += ms{250};
      REQUIRE(b.allow(now));
      REQUIRE_FALSE(b.allow(now));
    }
    b.success();
    REQUIRE(b.current() == bstate::closed);
    now += ms{1};
  }
}

TEST_CASE("an abandoned probe lets a half-open breaker probe again",
          "[actors][breaker]") {
  breaker b{1, ms{100}};
  b.failure(t0);
  auto later = t0 + ms{100};
  REQUIRE(b.allow(later));
  REQUIRE_FALSE(b.allow(later));
  // The probe was never sent (nothing was owed): without abandon() the
  // breaker would wait forever for its outcome.
  b.abandon();
  CHECK(b.current() == bstate::half_open);
  CHECK(b.allow(later));
  CHECK_FALSE(b.allow(later));
}

TEST_CASE("abandon does not reopen or close a breaker", "[actors][breaker]") {
  breaker b{1, ms{100}};
  b.abandon();
  CHECK(b.current() == bstate::closed);
  b.failure(t0);
  b.abandon();
  CHECK(b.current() == bstate::open);
  CHECK_FALSE(b.allow(t0 + ms{50}));
}

// ---------------------------------------------------------------- concurrency

namespace {

using climit = chime::concurrency_limit;

/// Feeds `windows` windows of answers of `latency` each, with the limit in
/// use (`busy`) or not; returns the time after them.
time_point feed(climit& l, time_point t, int windows, us latency, bool busy) {
  for (int w = 0; w < windows; ++w) {
    for (int i = 0; i < 20; ++i) {
      auto in_flight = busy ? l.limit() : 1u;
      l.started(in_flight);
      l.answered(latency, in_flight, t);
      t += ms{6};
    }
  }
  return t;
}

} // namespace

TEST_CASE("a used limit grows while answers stay as fast as usual",
          "[actors][concurrency]") {
  climit l{{}};
  CHECK(l.limit() == 32);
  auto t = feed(l, t0, 10, us{2000}, true);
  // From 32 past 100 within a second.
  CHECK(l.limit() > 100);
  feed(l, t, 200, us{2000}, true);
  CHECK(l.limit() == climit::options{}.max);
}

TEST_CASE("a fresh limit doubles each round trip until the service first"
          " queues, then grows by its square root a window",
          "[actors][concurrency]") {
  climit l{{}};
  // 32 answers within one window, each with the limit in use: 64.
  auto t = t0;
  for (int i = 0; i < 32; ++i) {
    l.started(l.limit());
    l.answered(us{2000}, l.limit(), t);
    t += us{100};
  }
  CHECK(l.limit() == 64);
  // Answers unused by half do not grow it.
  l.answered(us{2000}, 31, t);
  CHECK(l.limit() == 64);
  t = feed(l, t + ms{100}, 2, us{2000}, true);
  auto started = l.limit();
  CHECK(started > 64 + 20);
  t = feed(l, t, 3, us{40000}, true); // it queues: slow start is over
  auto shrunk = l.limit();
  CHECK(shrunk < started);
  t = feed(l, t, 2, us{2000}, true); // fast again
  auto again = l.limit();
  feed(l, t, 1, us{2000}, true);
  // One window's growth: its square root, no longer one an answer (20).
  CHECK(l.limit() > again);
  CHECK(l.limit() <= again + std::sqrt(again) + 1);
}

TEST_CASE("a few milliseconds of noise on a fast service do not shrink it",
          "[actors][concurrency]") {
  climit l{{}};
  auto t = feed(l, t0, 20, us{1000}, true);
  auto grown = l.limit();
  feed(l, t, 5, us{8000}, true); // eight times slower, yet only 7 ms
  CHECK(l.limit() >= grown);
}

TEST_CASE("an unused limit does not grow", "[actors][concurrency]") {
  climit l{{}};
  feed(l, t0, 50, us{2000}, false);
  CHECK(l.limit() == 32);
}

TEST_CASE("a limit shrinks when the service queues, down to its minimum",
          "[actors][concurrency]") {
  climit l{{}};
  auto t = feed(l, t0, 20, us{2000}, true);
  auto grown = l.limit();
  t = feed(l, t, 3, us{40000}, true); // twenty times slower: it queues
  CHECK(l.limit() < grown);
  feed(l, t, 60, us{40000}, true);
  CHECK(l.limit() == climit::options{}.min);
}

TEST_CASE("the time-out follows the answers' 99.9th percentile within bounds",
          "[actors][concurrency]") {
  climit::options o;
  o.timeout_floor = ms{2000};
  o.timeout_ceiling = ms{5000};
  climit fast{o};
  CHECK(fast.timeout() == ms{5000}); // nothing seen yet: the ceiling
  auto t = feed(fast, t0, 40, us{3000}, true);
  CHECK(fast.timeout() == ms{5000}); // 800 answers: too few for the tail
  feed(fast, t, 20, us{3000}, true);
  CHECK(fast.timeout() == ms{2000}); // 4 x 3 ms, held at the floor
  climit slow{o};
  feed(slow, t0, 60, us{900000}, true);
  CHECK(slow.timeout() == ms{3600}); // 4 x 900 ms
  climit slower{o};
  feed(slower, t0, 60, us{3000000}, true);
  CHECK(slower.timeout() == ms{5000}); // never past the configured one
}
