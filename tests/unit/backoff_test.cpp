// Proves backoff_delay (actors/backoff.hpp): full jitter, i.e. every delay lies
// in [0, min(cap, base * 2^(attempt-1))] and the draws spread over that whole
// range; the ceiling doubles per attempt until it reaches the cap; a
// Retry-After is a floor; the same seed gives the same sequence. Many draws
// per attempt from a seeded generator, so the run is deterministic.

#include "actors/backoff.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using ms = std::chrono::milliseconds;

constexpr ms base{100};
constexpr ms cap{10000};
constexpr ms no_retry_after{-1};
constexpr int draws = 2000;

int64_t ceiling(uint32_t attempt) {
  int64_t c = base.count();
  for (uint32_t i = 1; i < attempt && c < cap.count(); ++i)
    c *= 2;
  return std::min(c, cap.count());
}

struct spread {
  int64_t min = INT64_MAX;
  int64_t max = INT64_MIN;
  double mean = 0;
};

spread draw(uint32_t attempt, ms retry_after, std::mt19937_64& rng) {
  spread s;
  double sum = 0;
  for (int i = 0; i < draws; ++i) {
    auto d = chime::backoff_delay(attempt, base, cap, retry_after, rng).count();
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
    sum += static_cast<double>(d);
  }
  s.mean = sum / draws;
  return s;
}

} // namespace

TEST_CASE("every delay lies within zero and the attempt's ceiling",
          "[actors][backoff]") {
  std::mt19937_64 rng{42};
  for (uint32_t attempt = 1; attempt <= 20; ++attempt) {
    INFO("attempt " << attempt << ", ceiling " << ceiling(attempt));
    auto s = draw(attempt, no_retry_after, rng);
    CHECK(s.min >= 0);
    CHECK(s.max <= ceiling(attempt));
  }
}

TEST_CASE("the jitter is full: draws cover the range from zero to the ceiling",
          "[actors][backoff]") {
  std::mt19937_64 rng{7};
  for (uint32_t attempt : {3u, 6u, 12u}) {
    INFO("attempt " << attempt);
    auto c = static_cast<double>(ceiling(attempt));
    auto s = draw(attempt, no_retry_after, rng);
    CHECK(static_cast<double>(s.min) < 0.05 * c);
    CHECK(static_cast<double>(s.max) > 0.95 * c);
    CHECK(s.mean > 0.4 * c);
    CHECK(s.mean < 0.6 * c);
  }
}

TEST_CASE("the ceiling doubles with each attempt and then stays at the cap",
          "[actors][backoff]") {
  std::mt19937_64 rng{1};
  // base 100 ms: ceilings 100, 200, 400, ... 6400, then the 10 s cap from
  // attempt 8 on.
  std::vector<int64_t> maxima;
  for (uint32_t attempt = 1; attempt <= 12; ++attempt)
    maxima.push_back(draw(attempt, no_retry_after, rng).max);
  CHECK(maxima[0] <= 100);
  CHECK(maxima[1] > 100);
  CHECK(maxima[1] <= 200);
  CHECK(maxima[4] > 800);
  CHECK(maxima[4] <= 1600);
  CHECK(maxima[6] > 3200);
  CHECK(maxima[6] <= 6400);
  for (size_t i = 7; i < maxima.size(); ++i) {
    INFO("attempt " << i + 1);
    CHECK(maxima[i] > 6400);
    CHECK(maxima[i] <= cap.count());
  }
}

TEST_CASE("very high attempt numbers stay within the cap", "[actors][backoff]") {
  std::mt19937_64 rng{3};
  for (uint32_t attempt : {31u, 32u, 63u, 64u, 1000u, UINT32_MAX}) {
    INFO("attempt " << attempt);
    auto s = draw(attempt, no_retry_after, rng);
    CHECK(s.min >= 0);
    CHECK(s.max <= cap.count());
    CHECK(s.max > cap.count() / 2);
  }
}

TEST_CASE("a Retry-After is a floor under the delay", "[actors][backoff]") {
  std::mt19937_64 rng{5};
  SECTION("above the ceiling it is the delay") {
    auto s = draw(1, ms{5000}, rng);
    CHECK(s.min == 5000);
    CHECK(s.max == 5000);
  }
  SECTION("above the cap it still wins") {
    auto s = draw(20, ms{60000}, rng);
    CHECK(s.min == 60000);
  }
  SECTION("below the ceiling it only lifts the short delays") {
    auto s = draw(5, ms{500}, rng); // ceiling 1600
    CHECK(s.min == 500);
    CHECK(s.max > 500);
    CHECK(s.max <= 1600);
  }
  SECTION("zero is a floor of zero") {
    auto s = draw(5, ms{0}, rng);
    CHECK(s.min >= 0);
    CHECK(s.max <= 1600);
  }
}

TEST_CASE("the same seed gives the same sequence of delays", "[actors][backoff]") {
  auto sequence = [](uint64_t seed) {
    std::mt19937_64 rng{seed};
    std::vector<int64_t> out;
    for (uint32_t attempt = 1; attempt <= 25; ++attempt)
      out.push_back(
        chime::backoff_delay(attempt, base, cap, no_retry_after, rng).count());
    return out;
  };
  CHECK(sequence(1234) == sequence(1234));
  CHECK(sequence(1234) != sequence(4321));
}
