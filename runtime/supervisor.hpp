#pragma once

#include "runtime/supervision_board.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace chime {

/// How to (re)start one child of a supervisor. `start` spawns the child and
/// registers it wherever callers look it up; the supervisor links to it.
struct child_spec {
  std::string name;
  std::function<caf::actor(caf::actor_system&)> start;
  /// The child is a supervisor itself (see supervisor_child).
  bool supervisor = false;
};

using steady_source = std::function<std::chrono::steady_clock::time_point()>;

struct supervisor_options {
  restart_strategy strategy = restart_strategy::one_for_one;
  /// More than `restart_max` restarts within `restart_window` escalate: the
  /// supervisor gives up, stops its children and exits with the child's
  /// reason, so that its own supervisor decides.
  uint32_t restart_max = 5;
  std::chrono::milliseconds restart_window{10000};
  /// How long a restart waits for the children it stops to be gone before
  /// it starts their successors anyway (logged).
  std::chrono::milliseconds stop_timeout{30000};
  /// Monotonic time source for the intensity window (injectable for tests).
  steady_source now = [] { return std::chrono::steady_clock::now(); };
  /// Where the supervisor reports its children (may be null).
  std::shared_ptr<supervision_board> board;
};

/// The restarts of the last window: more than the limit means give up.
class restart_intensity {
public:
  restart_intensity(uint32_t max, std::chrono::milliseconds window,
                    steady_source now)
    : max_(max), window_(window), now_(std::move(now)) {
  }
  /// Records one more restart; false when that exceeds the limit.
  bool admit();

private:
  uint32_t max_;
  std::chrono::milliseconds window_;
  steady_source now_;
  std::deque<std::chrono::steady_clock::time_point> restarts_;
};

/// Spawns a supervisor that starts `children` in order and restarts them per
/// `opts` when they exit abnormally, each successor only once the children
/// it replaces are gone. A child exiting normally is not restarted. Stopping
/// the supervisor (any exit) stops its children first.
caf::actor spawn_supervisor(caf::actor_system& sys, std::string name,
                            supervisor_options opts,
                            std::vector<child_spec> children);

/// A child that is a supervisor of `children`, named `name` on the board.
child_spec supervisor_child(std::string name, supervisor_options opts,
                            std::vector<child_spec> children);

} // namespace chime
