#pragma once

#include "actors/node_context.hpp"

#include <caf/fwd.hpp>

#include <functional>
#include <string>
#include <vector>

namespace chime {

/// Spawns the node's delivery actor. It takes deliveries from the broker's
/// consumer as (deliver_atom, delivery_record, receipt), or without a broker
/// as (submit_atom, delivery_record), and sends each through the mailer
/// (spawned by ctx->make_mailer), with as many requests in flight as an
/// adaptive limit allows (up to delivery_concurrency_max) and a time-out
/// derived from the answers seen (up to email_timeout), paced by a token
/// bucket (email_rate_per_s, burst) and guarded by a circuit breaker. Before each attempt the journal checks
/// the delivery is still owed (not sent, not cancelled, user alive, inside
/// the catch-up window); the outcome, with the attempt's count, is journaled
/// before the broker message is acked. Failures are retried with
/// exponential backoff and full jitter, honouring Retry-After: the retry is
/// published to the broker's retry queue for its delay and the message
/// acked (only without a broker, or while it is away, does a retry wait in
/// memory); a job that waited in the node for hold_max goes back the same
/// way. A dead delivery is nacked into the dead-letter queue.
caf::actor spawn_delivery(caf::actor_system& sys, context_ptr ctx);

/// Tells the send journals that the deliveries of `keys` are in the broker
/// now (each its own shard's journal); calls `done` in `self` once all
/// have answered, whether they recorded it or failed.
void report_handed(caf::event_based_actor* self, const node_context& ctx,
                   const std::vector<std::string>& keys, int64_t at_ms,
                   std::function<void()> done);

/// Spawns the outbox sweeper: every sweep interval it asks the journal for
/// deliveries recorded but not handed off within the grace period (a crash,
/// a broker outage or a lost confirm in between) and submits them to the
/// handoff again. Duplicates in the queue are harmless: delivery re-checks.
caf::actor spawn_outbox_sweeper(caf::actor_system& sys, context_ptr ctx);

/// Spawns the dead-letter keeper: it takes the journal's copy of every dead
/// letter (the broker's delivery limit, or nacks of dead deliveries; the
/// dead-letter queue itself keeps its own copy for operators), records them
/// as dead in the journal when they are still open, then acks them, so that
/// `GET /v1/deliveries?status=dead` lists every one. A bundle dead-lettered
/// whole is not its deliveries' verdict: each goes back alone instead.
caf::actor spawn_dead_letter_keeper(caf::actor_system& sys, context_ptr ctx);

} // namespace chime
