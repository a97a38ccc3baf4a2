#pragma once

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace chime {

/// How to (re)start one child of a supervisor. `start` spawns the child and
/// registers it wherever callers look it up; the supervisor links to it.
struct child_spec {
  std::string name;
  std::function<caf::actor(caf::actor_system&)> start;
};

enum class restart_strategy : uint8_t {
  one_for_one = 1, ///< restart only the child that failed
  one_for_all,     ///< restart every child when one fails
  rest_for_one,    ///< restart the failed child and those started after it
};

struct supervisor_options {
  restart_strategy strategy = restart_strategy::one_for_one;
  /// More than `restart_max` restarts within `restart_window` escalate: the
  /// supervisor gives up, stops its children and exits with the child's
  /// reason, so that its own supervisor decides.
  uint32_t restart_max = 5;
  std::chrono::milliseconds restart_window{10000};
  /// Monotonic time source for the intensity window (injectable for tests).
  std::function<std::chrono::steady_clock::time_point()> now
    = [] { return std::chrono::steady_clock::now(); };
};

/// Spawns a supervisor that starts `children` in order and restarts them per
/// `opts` when they exit abnormally. A child exiting normally is not
/// restarted. Stopping the supervisor (any exit) stops all children.
caf::actor spawn_supervisor(caf::actor_system& sys, std::string name,
                            supervisor_options opts,
                            std::vector<child_spec> children);

} // namespace chime
