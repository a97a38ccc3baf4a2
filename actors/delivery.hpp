#pragma once

#include "actors/node_context.hpp"

namespace chime {

/// Spawns the node's delivery actor, which is also the local `handoff`: it
/// takes (submit_atom, delivery_record) and sends each delivery through a
/// pool of mailers (spawned by ctx->make_mailer, at most
/// delivery_concurrency_max requests in flight). Before each attempt the
/// journal checks the delivery is still owed (not sent, not cancelled, user
/// alive, inside the catch-up window) and counts the attempt; after it, the
/// outcome is journaled. Failures are retried with exponential backoff and
/// full jitter, honouring Retry-After, until delivery_attempts_max, then the
/// delivery is dead. On start it resumes every open delivery in the journal,
/// so a restart continues where the last run stopped.
caf::actor spawn_delivery(caf::actor_system& sys, context_ptr ctx);

} // namespace chime
