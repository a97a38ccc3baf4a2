#pragma once

#include "actors/node_context.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>

#include <functional>
#include <string>
#include <vector>

namespace chime {

class directory;

/// The delivery seam: what a broker's consumer, a peer node and the node's
/// own drains ask of the delivery actor.
using delivery_actor = caf::typed_actor<
  // From the consumer, which settles the broker message when told to.
  caf::reacts_to<deliver_atom, delivery_record, receipt>,
  // A bundle's deliveries, one message for all, under its one receipt.
  caf::reacts_to<deliver_atom, std::vector<delivery_record>, receipt>,
  // Forwarded by a peer whose consumer holds the broker message; the
  // verdict ("ack", "dead" or "reroute") tells the peer how to settle it.
  caf::replies_to<deliver_atom, delivery_record>::with<std::string>,
  // Without a broker: nothing to settle.
  caf::reacts_to<submit_atom, delivery_record>,
  // Ok once none of these shards' sends is in flight; no shards: the node
  // stops, nothing new starts, ok once nothing is in flight.
  caf::replies_to<drain_atom, std::vector<uint32_t>>::with<caf::ok_atom>,
  // Ok once none of this user's sends is in flight.
  caf::replies_to<drain_atom, std::string>::with<caf::ok_atom>,
  // When this node's outbox sweeper sent the newest of its probes that came
  // back through the broker (Chime ms; INT64_MIN: none yet).
  caf::replies_to<probe_atom>::with<int64_t>,
  // A peer consumed one of this node's probes, sent at that Chime ms.
  caf::reacts_to<probe_atom, int64_t>>;

/// The node's delivery actor (invalid when none is registered).
delivery_actor delivery_at(const directory& dir);

/// Spawns the node's delivery actor. It takes deliveries from the broker's
/// consumer as (deliver_atom, delivery_record, receipt), or without a broker
/// as (submit_atom, delivery_record), and sends each through the mailer
/// front (driving ctx->make_mail_transport's transport, or
/// ctx->make_mailer's mailer), with as many requests in flight as an
/// adaptive limit allows (up to delivery_concurrency_max) and a time-out
/// derived from the answers seen (up to email_timeout), paced by a token
/// bucket (email_rate_per_s, burst) and guarded by a circuit breaker. A
/// delivery fired ahead of its instant (ctx->fire_lead) is set aside until
/// it, and those queued behind it go on. Before each attempt the journal checks
/// the delivery is still owed (not sent, not cancelled, user alive, inside
/// the catch-up window); the outcome, with the attempt's count, is journaled
/// before the broker message is acked. Failures are retried with
/// exponential backoff and full jitter, honouring Retry-After: the retry is
/// published to the broker's retry queue for its delay and the message
/// acked (only without a broker, or while it is away, does a retry wait in
/// memory); a job that waited in the node for hold_max goes back the same
/// way. A dead delivery is nacked into the dead-letter queue.
delivery_actor spawn_delivery(caf::actor_system& sys, context_ptr ctx);

/// Spawns the outbox sweeper: every sweep interval it asks the journal for
/// deliveries recorded but still not re-checked by delivery (a crash, a
/// broker outage or a lost confirm in between) and submits them to the
/// handoff again. Nothing marks a delivery's arrival in the broker, so what
/// waits in a long queue looks the same as what was lost; the sweeper tells
/// them apart by a probe it publishes to the main queue each sweep: the
/// queue is first in, first out, so once the probe sent at P comes back,
/// everything confirmed before P has reached a consumer. It takes for lost
/// only what was fired before the newest probe back, before the handoff's
/// oldest unconfirmed delivery, and longer ago than the grace. Duplicates
/// in the queue are harmless: delivery re-checks, and drops a copy of a
/// delivery it holds.
caf::actor spawn_outbox_sweeper(caf::actor_system& sys, context_ptr ctx);

/// Spawns the dead-letter keeper: it takes the journal's copy of every dead
/// letter (the broker's delivery limit, or nacks of dead deliveries; the
/// dead-letter queue itself keeps its own copy for operators), records them
/// as dead in the journal when they are still open, then acks them, so that
/// `GET /v1/deliveries?status=dead` lists every one. A bundle dead-lettered
/// whole is not its deliveries' verdict: each goes back alone instead.
caf::actor spawn_dead_letter_keeper(caf::actor_system& sys, context_ptr ctx);

} // namespace chime
