#pragma once

// What the actor fixtures share: an actor system on CAF's test_coordinator
// (one thread, virtual time) and Chime's clocks following the coordinator's.

#include "actors/node_context.hpp"
#include "actors/protocol.hpp"
#include "runtime/clock.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <algorithm>
#include <chrono>
#include <memory>

namespace chime {

struct testing_config : caf::actor_system_config {
  testing_config() {
    set("scheduler.policy", caf::atom("testing"));
    add_chime_types(*this);
  }
};

/// Chime's time: a fixed start plus the coordinator's elapsed virtual time.
class coordinator_clock final : public clock {
public:
  coordinator_clock(caf::scheduler::test_coordinator& sched, instant start)
    : time_(sched.clock()), origin_(time_.now()), start_(start) {
  }
  instant now() const override {
    return start_ + std::chrono::duration_cast<millis>(time_.now() - origin_);
  }
  std::chrono::microseconds real_delay(millis span) const override {
    return std::max(std::chrono::microseconds{0},
                    std::chrono::duration_cast<std::chrono::microseconds>(span));
  }

private:
  const caf::detail::test_actor_clock& time_;
  std::chrono::steady_clock::time_point origin_;
  instant start_;
};

/// Real monotonic time as the coordinator keeps it (for rate limits and the
/// circuit breaker).
inline auto coordinator_monotonic(caf::scheduler::test_coordinator& sched) {
  return [&time = sched.clock()] { return time.now(); };
}

/// An actor system on the test coordinator and a node context whose clocks
/// follow it; a fixture adds its actors and fakes.
struct coordinator_fixture {
  testing_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched
    = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::shared_ptr<node_context> ctx = std::make_shared<node_context>();
  instant start; ///< Chime's time when the fixture was made

  explicit coordinator_fixture(instant at) : start(at) {
    ctx->clock = std::make_shared<coordinator_clock>(sched, start);
    ctx->monotonic = coordinator_monotonic(sched);
  }

  void advance(millis d) {
    sched.advance_time(d);
    sched.run();
  }
};

} // namespace chime
