#pragma once

// The journal seam as a typed interface: what every journal (PostgreSQL in
// persistence/, in memory in sims/sim/) answers, checked by the compiler on
// both sides. A journal that leaves out a request, or a caller that sends
// arguments in the wrong order or expects the wrong reply, does not compile.
// Failures travel as errors (journal_errc), never as replies.

#include "actors/handoff.hpp"
#include "actors/protocol.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>

namespace chime {

class directory;

using journal_actor = caf::typed_actor<
  // A user with its due index, and its user_created event. conflict: email taken.
  caf::replies_to<create_atom, user_view>::with<caf::ok_atom>,
  // Each as by create; one error per user, empty where it was created.
  caf::replies_to<import_atom, std::vector<user_view>>::with<std::vector<caf::error>>,
  // Replaces the user and its whole due index, only if its deliveries are
  // still as read (user_view::deliveries_version). conflict otherwise.
  caf::replies_to<replace_atom, user_view>::with<caf::ok_atom>,
  // (id, at_ms): deletes the user, cancels its open deliveries.
  caf::replies_to<remove_atom, std::string, int64_t>::with<caf::ok_atom>,
  caf::replies_to<read_atom, std::string>::with<user_view>,
  // (cursor, limit)
  caf::replies_to<list_atom, std::string, uint32_t>::with<users_page>,
  // (until_ms, shards, after_due_ms, after_user, limit)
  caf::replies_to<load_due_atom, int64_t, std::vector<uint32_t>, int64_t,
                  std::string, uint32_t>::with<due_page>,
  // Records the delivery and moves the due index in one transaction; false:
  // the report was stale (the index had moved on). One reply per request.
  caf::replies_to<fire_atom, fire_request>::with<bool>,
  // As many, and once they are committed the journal itself submits the
  // recorded ones still owed to the handoff (fired_deliveries): the reply
  // only tells the shard which due instants moved on.
  caf::replies_to<fire_atom, std::vector<fire_request>, handoff_actor>::with<
    std::vector<bool>>,
  // (key, now_ms, catch_up_ms): may it be sent now? Counts the attempt as
  // begun; a scheduled delivery becomes handed_off (it reached delivery).
  caf::replies_to<attempt_atom, std::string, int64_t, int64_t>::with<attempt_verdict>,
  caf::replies_to<outcome_atom, delivery_outcome>::with<caf::ok_atom>,
  // The same for many keys, one verdict or error (none: recorded) each, in
  // order: delivery asks once a turn of its mailbox for all the turn's keys.
  caf::replies_to<attempt_atom, std::vector<std::string>, int64_t,
                  int64_t>::with<std::vector<attempt_verdict>>,
  caf::replies_to<outcome_atom, std::vector<delivery_outcome>>::with<
    std::vector<caf::error>>,
  // (scheduled_before_ms, open_before_ms, limit, now_ms): the deliveries
  // owed and untouched that long, each touched at now_ms.
  caf::replies_to<outbox_atom, int64_t, int64_t, uint32_t, int64_t>::with<
    std::vector<delivery_record>>,
  // (key, at_ms): dead -> scheduled.
  caf::replies_to<redrive_atom, std::string, int64_t>::with<delivery_record>,
  // (user, status, limit); an empty user or status matches any.
  caf::replies_to<deliveries_atom, std::string, std::string, uint32_t>::with<
    std::vector<delivery_record>>,
  caf::replies_to<stats_atom, int64_t>::with<journal_stats>,
  caf::replies_to<ping_atom>::with<caf::ok_atom>>;

/// The journal registered under `name` in `dir` (invalid when none is).
/// Only journals are registered under journal names, so the cast holds.
journal_actor journal_at(const directory& dir, const char* name);

} // namespace chime
