#pragma once

// What a node's supervisors have seen, for GET /v1/supervision, the
// dashboard and /metrics: each supervisor's strategy and children, each
// child's restarts and last exit, and the most recent failures of any kind.
// Supervisors write it on the rare event (a start, an exit); readers take a
// copy. One board per node, so that simulated nodes in one process keep
// theirs apart.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace chime {

enum class restart_strategy : uint8_t {
  one_for_one = 1, ///< restart only the child that failed
  one_for_all,     ///< restart every child when one fails
  rest_for_one,    ///< restart the failed child and those started after it
};

const char* to_string(restart_strategy s);

struct supervised_child {
  std::string name;
  /// The child is itself a supervisor, on the board under `name`.
  bool supervisor = false;
  bool running = false;
  uint64_t restarts = 0;
  /// Empty until the child first exits abnormally.
  std::string last_exit_reason;
  int64_t last_exit_at_ms = 0;
};

struct supervisor_entry {
  std::string name;
  restart_strategy strategy = restart_strategy::one_for_one;
  uint32_t restart_max = 0;
  int64_t restart_window_ms = 0;
  std::vector<supervised_child> children;
};

struct failure_entry {
  int64_t at_ms = 0;
  std::string kind;    ///< "actor", "email", ...
  std::string subject; ///< the actor's or the delivery's name
  std::string detail;
};

class supervision_board {
public:
  static constexpr size_t failures_max = 50;

  /// Adds or replaces the entry of `e.name`, keeping the history (restarts,
  /// last exit) of the children it had before.
  void put(supervisor_entry e);

  /// The child `child` of supervisor `sup` started (running) or stopped.
  void set_running(const std::string& sup, const std::string& child,
                   bool running);

  /// The child exited with `reason` and is restarted: counted, and kept
  /// among the recent failures.
  void restarted(const std::string& sup, const std::string& child,
                 const std::string& reason);

  /// The child exited with `reason` and is not restarted (its supervisor
  /// gave up).
  void exited(const std::string& sup, const std::string& child,
              const std::string& reason);

  void failed(std::string kind, std::string subject, std::string detail);

  std::vector<supervisor_entry> supervisors() const;
  std::vector<failure_entry> failures() const;
  /// Restarts per child name, over all supervisors.
  std::map<std::string, uint64_t> restarts() const;

private:
  supervised_child* find(const std::string& sup, const std::string& child);
  void note_failure(std::string kind, std::string subject, std::string detail);

  mutable std::mutex mtx_;
  std::map<std::string, supervisor_entry> entries_;
  std::deque<failure_entry> failures_;
};

} // namespace chime
