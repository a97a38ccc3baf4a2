#pragma once

// The handoff seam as a typed interface: what the AMQP publisher (net/) and
// the simulator's publisher (sims/sim/) answer. It takes recorded deliveries
// to the broker; the journal learns they arrived from their re-check.

#include "actors/protocol.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp> // extend needs the whole type

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace chime {

class directory;
struct node_context;

using handoff_actor = caf::typed_actor<
  // A recorded delivery (or the outbox sweeper's probe), to publish. No
  // answer: one that is lost is the outbox sweeper's.
  caf::reacts_to<submit_atom, delivery_record>,
  // Several, in one message (a shard's recorded fires).
  caf::reacts_to<submit_atom, std::vector<delivery_record>>,
  // (delivery, delay_ms): into the broker's retry queue for that delay; ok
  // once the broker confirmed it.
  caf::replies_to<retry_atom, delivery_record, int64_t>::with<caf::ok_atom>,
  // Into the dead-letter queue; ok once the broker confirmed it.
  caf::replies_to<dead_letter_atom, delivery_record>::with<caf::ok_atom>,
  // When the oldest submitted delivery the broker has not yet confirmed was
  // taken (Chime ms; INT64_MAX: none).
  caf::replies_to<pending_atom>::with<int64_t>>;

/// What both handoffs are: the seam, plus the flush they send themselves.
using handoff_impl_actor = handoff_actor::extend<caf::reacts_to<flush_atom>>;

/// The node's handoff (invalid when none is registered).
handoff_actor handoff_at(const directory& dir);

/// What a journal's fires recorded, on its way to the broker from the
/// journal itself, right after the commit: the shard's reply is then off
/// the path from due to sent (one actor hop less). Gathered per handoff, so
/// that a commit of many shards' fires is one message to each.
class fired_deliveries {
public:
  /// Those of `fires` that were recorded and are still owed (an expired
  /// occasion is recorded, not sent), moved out of them; `recorded` answers
  /// `fires` in order.
  void add(const handoff_actor& to, std::vector<fire_request>&& fires,
           const std::vector<bool>& recorded);

  /// Submits what was added, and forgets it.
  void submit();

private:
  std::vector<std::pair<handoff_actor, std::vector<delivery_record>>> by_handoff_;
};

} // namespace chime
