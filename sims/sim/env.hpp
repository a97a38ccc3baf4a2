#pragma once

#include "runtime/clock.hpp"

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

namespace caf::detail {
class test_actor_clock;
}

namespace chime::sim {

/// A simulated component's deferred reply is due: (sim_reply_atom, id).
using sim_reply_atom = caf::atom_constant<caf::atom("simreply")>;

/// The run's event trace, kept as a running FNV-1a hash (and optionally
/// echoed): two runs with the same trace hash took the same steps.
class trace {
public:
  void add(int64_t at_ms, std::string_view what, std::string_view detail = {});
  uint64_t hash() const {
    return hash_;
  }
  uint64_t events() const {
    return events_;
  }
  bool echo = false;

private:
  void mix(std::string_view bytes);
  uint64_t hash_ = 14695981039346656037ull;
  uint64_t events_ = 0;
};

/// How often each fault strikes. Rates are per simulated day; probabilities
/// are per request.
struct fault_profile {
  std::string name = "none";
  double node_crashes_per_day = 0;
  /// One actor of a running node fails (its supervisor restarts it).
  double actor_crashes_per_day = 0;
  millis node_down_max{std::chrono::minutes{10}};
  double journal_outages_per_day = 0;
  millis journal_outage_max{std::chrono::minutes{5}};
  double journal_slow_spells_per_day = 0;
  millis journal_slow_max{std::chrono::seconds{20}}; ///< per reply
  double broker_outages_per_day = 0;
  millis broker_outage_max{std::chrono::minutes{10}};
  double redeliveries_per_day = 0; ///< a consumer's connection resets
  double confirm_lost = 0;
  double email_5xx = 0;
  double email_timeout = 0;
  double email_accept_timeout = 0; ///< accepted, but the answer never comes
  double email_429 = 0;
  double email_slow = 0;
  double email_day_outages_per_day = 0;
  /// Node-to-node messages (a cluster's): lost, or delayed up to the max.
  double link_loss = 0;
  double link_delay = 0;
  millis link_delay_max{std::chrono::seconds{2}};
  uint32_t email_outage_days_max = 1; ///< past the catch-up window: expiries
};

/// The profile named `name` (none, default, harsh), or nullopt.
std::optional<fault_profile> find_profile(std::string_view name);

/// What every simulated part of a run shares: the seed's random stream (the
/// only source of randomness), the trace, virtual time and the fault state.
/// Single-threaded by construction: everything runs on the test coordinator.
struct env {
  explicit env(uint64_t seed) : rng(seed) {
  }

  std::mt19937_64 rng;
  sim::trace trace;
  fault_profile faults;
  const caf::detail::test_actor_clock* clock = nullptr;
  std::chrono::steady_clock::time_point origin;
  instant start;
  millis email_timeout{5000};

  int64_t journal_down_until_ms = 0;
  int64_t journal_slow_until_ms = 0;
  int64_t broker_down_until_ms = 0;
  int64_t email_down_until_ms = 0;
  /// Partitions: a node cut off from the database (journal and
  /// coordination store), and two nodes cut off from each other, until then.
  std::map<std::string, int64_t> db_cut_until_ms;
  std::map<std::pair<std::string, std::string>, int64_t> link_cut_until_ms;

  bool db_reachable(const std::string& node) const {
    auto now = now_ms();
    if (now < journal_down_until_ms)
      return false;
    auto i = db_cut_until_ms.find(node);
    return i == db_cut_until_ms.end() || now >= i->second;
  }
  bool linked(const std::string& a, const std::string& b) const {
    auto i = link_cut_until_ms.find(std::minmax(a, b));
    return i == link_cut_until_ms.end() || now_ms() >= i->second;
  }

  /// Chime's time: `start` plus the virtual time elapsed.
  instant now() const;
  int64_t now_ms() const {
    return to_ms(now());
  }
  std::chrono::steady_clock::time_point monotonic() const;

  bool chance(double p);
  /// Uniform in [lo, hi].
  int64_t between(int64_t lo, int64_t hi);
  millis up_to(millis max) {
    return millis{between(1, max.count())};
  }
};

/// Replies a simulated component sends later (a slow database or email
/// service): the reply runs when (sim_reply_atom, id) comes back.
class deferred_replies {
public:
  /// Runs `reply` now when `delay` is zero, else later via `self`.
  template <class Self>
  void run(Self* self, millis delay, std::function<void()> reply) {
    if (delay.count() <= 0) {
      reply();
      return;
    }
    auto id = ++next_;
    pending_.emplace(id, std::move(reply));
    self->delayed_send(self, delay, sim_reply_atom::value, id);
  }

  void fire(uint64_t id) {
    auto i = pending_.find(id);
    if (i == pending_.end())
      return;
    auto reply = std::move(i->second);
    pending_.erase(i);
    reply();
  }

private:
  uint64_t next_ = 0;
  std::unordered_map<uint64_t, std::function<void()>> pending_;
};

} // namespace chime::sim
