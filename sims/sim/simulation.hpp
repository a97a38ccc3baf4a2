#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace chime::sim {

struct sim_options {
  uint64_t seed = 1;
  uint32_t users = 1000;
  uint32_t days = 30;
  std::string faults = "default"; ///< none | default | harsh
  uint32_t nodes = 1;
  /// Test-only: "no-outbox-sweeper", "no-recheck", "no-fencing" or
  /// "next-year-on-update" breaks one guarantee.
  std::string broken;
  /// User creates, updates and deletes per user per simulated day.
  double traffic_per_user_day = 0.004;
  double email_rate_per_s = 50; ///< the cluster's limit
  bool echo_trace = false;
};

struct sim_report {
  uint64_t trace_hash = 0;
  uint64_t trace_events = 0;
  uint64_t violations = 0;
  uint64_t duplicates_in_crash_window = 0;
  /// Sent again under a newer lease after the first sender lost its lease
  /// with the send in flight (a partition or pause): physics, counted.
  uint64_t duplicates_in_fence_window = 0;
  /// Sent again after the service accepted a copy and its answer was lost
  /// (an ambiguous time-out).
  uint64_t duplicates_ambiguous = 0;
  uint64_t takeover_checks = 0;
  std::vector<std::string> violation_samples; ///< the first few, explained
  uint64_t occurrences_checked = 0;
  uint64_t delivered = 0;
  uint64_t expired = 0;
  uint64_t requests = 0;
  uint64_t commands = 0;
  uint64_t faults = 0;
  uint64_t crashes = 0;
  uint64_t actor_crashes = 0; ///< single actors failed (their supervisors restart them)
  /// Node roots that exited on their own (past --restart-max); each node is
  /// then restarted as after a crash, as its service manager would.
  uint64_t give_ups = 0;
  double elapsed_s = 0;
};

/// Runs one simulation: the real user, shard, delivery and supervision code
/// of `opts.nodes` nodes on CAF's deterministic test coordinator, against the
/// in-memory journal, broker and email service, with faults drawn from the
/// seed. Then checks the invariants (sims/README.md). The same options give
/// the same trace hash.
sim_report run_simulation(const sim_options& opts);

} // namespace chime::sim
