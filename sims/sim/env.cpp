#include "sims/sim/env.hpp"

#include <caf/detail/test_actor_clock.hpp>

#include <iostream>

namespace chime::sim {

void trace::mix(std::string_view bytes) {
  for (unsigned char c : bytes) {
    hash_ ^= c;
    hash_ *= 1099511628211ull;
  }
  hash_ ^= 0xff; // field separator
  hash_ *= 1099511628211ull;
}

void trace::add(int64_t at_ms, std::string_view what, std::string_view detail) {
  ++events_;
  auto at = std::to_string(at_ms);
  mix(at);
  mix(what);
  mix(detail);
  if (echo)
    std::cout << format_instant(from_ms(at_ms)) << ' ' << what << ' ' << detail
              << '\n';
}

std::optional<fault_profile> find_profile(std::string_view name) {
  fault_profile p;
  p.name = std::string{name};
  if (name == "none")
    return p;
  if (name != "default" && name != "harsh" && name != "actors")
    return std::nullopt;
  p.node_crashes_per_day = 1;
  p.journal_outages_per_day = 1;
  p.journal_slow_spells_per_day = 1;
  p.broker_outages_per_day = 1;
  p.redeliveries_per_day = 2;
  p.confirm_lost = 0.01;
  p.email_5xx = 0.05;
  p.email_timeout = 0.02;
  p.email_accept_timeout = 0.01;
  p.email_429 = 0.02;
  p.email_slow = 0.05;
  p.email_day_outages_per_day = 1.0 / 30;
  p.link_loss = 0.01;
  p.link_delay = 0.05;
  // The default faults, and single actors failing four times a day (their
  // supervisors restart them).
  if (name == "actors")
    p.actor_crashes_per_day = 4;
  if (name == "harsh") {
    p.actor_crashes_per_day = 4; // on top of everything below
    p.link_loss = 0.05;
    p.link_delay = 0.2;
    p.link_delay_max = std::chrono::seconds{5};
    p.node_crashes_per_day = 6;
    p.journal_outages_per_day = 4;
    p.journal_slow_spells_per_day = 4;
    p.broker_outages_per_day = 4;
    p.redeliveries_per_day = 8;
    p.confirm_lost = 0.05;
    p.email_5xx = 0.15;
    p.email_timeout = 0.05;
    p.email_accept_timeout = 0.03;
    p.email_429 = 0.05;
    p.email_slow = 0.1;
    p.email_day_outages_per_day = 1.0 / 10;
    p.email_outage_days_max = 4;
  }
  return p;
}

instant env::now() const {
  if (clock == nullptr)
    return start; // no coordinator: time stands still (journal tests)
  auto elapsed = clock->current_time - origin;
  return start + std::chrono::duration_cast<millis>(elapsed);
}

std::chrono::steady_clock::time_point env::monotonic() const {
  return clock == nullptr ? origin : clock->current_time;
}

bool env::chance(double p) {
  if (p <= 0)
    return false;
  return std::uniform_real_distribution<double>{0, 1}(rng) < p;
}

int64_t env::between(int64_t lo, int64_t hi) {
  if (hi <= lo)
    return lo;
  return std::uniform_int_distribution<int64_t>{lo, hi}(rng);
}

} // namespace chime::sim
