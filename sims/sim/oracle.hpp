#pragma once

#include "actors/user_record.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace chime::sim {

/// One change to a user as the journal committed it: what the checker
/// replays to know what was owed. `user` is empty for a delete.
struct user_change {
  int64_t at_ms = 0;        ///< the instant the product took the change at
  int64_t committed_ms = 0; ///< when the journal made it durable
  std::optional<user_record> user;
};

/// A span of time a fault the run injected kept Chime from working
/// normally, and how long it takes to recover from it once it ends (a
/// lease to expire, say).
struct fault_window {
  int64_t from_ms = 0;
  int64_t until_ms = 0;
  int64_t recovery_ms = 0;
};

/// The latest instant a send due at some instant may legitimately reach the
/// email service, from the faults the run injected: the faults that overlap
/// the due instant, or start before Chime could have recovered from the
/// previous one, chain; the send is owed within `recovery_ms` of the end of
/// that chain.
class lateness_bound {
public:
  lateness_bound(std::vector<fault_window> faults, int64_t recovery_ms);
  int64_t deadline_ms(int64_t due_ms) const;
  /// The end of the chain of faults starting at `due_ms` (`due_ms` itself
  /// when none struck).
  int64_t disrupted_until_ms(int64_t due_ms) const;

private:
  std::vector<fault_window> faults_; ///< by start
  int64_t recovery_ms_;
};

inline constexpr int64_t never_ms = std::numeric_limits<int64_t>::max();

/// One occurrence that fell due while its user existed (sims/README.md,
/// "what is owed").
struct owed_occurrence {
  std::string key;
  std::string user_id;
  std::string occasion;
  int year = 0;
  std::string zone; ///< the zone it fell due in
  int64_t due_ms = 0;      ///< its latest due instant (a new zone can move it)
  int64_t earliest_ms = 0; ///< nothing may be sent before
  /// When a delete, or an update that moved or removed the occasion, took
  /// it back; never_ms while it stands.
  int64_t withdrawn_ms = never_ms;
  bool withdrawn_by_delete = false;
  /// False when a change raced its delivery window, so that whether it is
  /// owed depends on which came first: it may be sent (once), or not.
  bool required = true;
};

/// What the checker knows of a key when it replays a change.
struct key_facts {
  /// When a copy first reached the service, or never_ms.
  std::function<int64_t(const std::string&)> first_delivered_ms;
  /// When the journal closed the key as sent, expired or dead (what an
  /// update counts as this year's message), or never_ms.
  std::function<int64_t(const std::string&)> closed_ms;
};

struct oracle_rules {
  bool feb29_to_mar1 = false;
  int64_t catch_up_ms = 0;
  int64_t end_ms = 0;
  int64_t in_flight_ms = 0; ///< a send begun before a change may land after
};

/// The latest instant a send due at `due_ms` may reach the email service:
/// never past the catch-up window, and no later than the faults allow.
inline int64_t send_limit_ms(int64_t due_ms, const oracle_rules& rules,
                             const lateness_bound& bound) {
  return std::min(bound.deadline_ms(due_ms), due_ms + rules.catch_up_ms);
}

/// Every occurrence owed for one user, from the changes the journal
/// committed for it, computed from SPEC.md section 1 with the tz database and
/// none of the product's scheduling code.
std::vector<owed_occurrence>
owed_for_user(const std::string& user_id,
              const std::vector<user_change>& history, const oracle_rules& rules,
              const lateness_bound& bound, const key_facts& facts);

} // namespace chime::sim
