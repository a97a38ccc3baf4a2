#pragma once

#include "actors/node_context.hpp"
#include "net/amqp.hpp"

#include <caf/fwd.hpp>

#include <string>

namespace chime {

struct amqp_options {
  std::string url;
  amqp_topology topology;
  /// Unsettled deliveries per consumer at most (the consumer's own count:
  /// the broker's limit, set to the same number, counts messages).
  uint16_t prefetch = 1000;
  uint32_t publish_batch_max = 1000;
  /// Hand-offs carried by one broker message at most. Up to this many
  /// wait for the slowest of them before their message is acked. The
  /// quorum queue's cost is per message: RabbitMQ took 12.5 us of CPU a
  /// delivery in bundles of 50 and 8.3 in bundles of 200 (100,000 burst,
  /// three alternating pairs, 2026-12-06).
  uint32_t bundle_max = 200;
  /// Hand-offs waiting for the broker at most; beyond, the outbox sweeper
  /// offers them again later.
  uint32_t publish_buffer_max = 50000;
  std::chrono::milliseconds timeout{5000};
};

/// Spawns the broker handoff (registered as "handoff"): a detached actor with
/// its own connection that takes (submit_atom, delivery_record), publishes
/// persistent messages in batches with publisher confirms, and marks the
/// confirmed ones handed_off in the journal. Unconfirmed ones stay
/// `scheduled` and are retried here and by the outbox sweeper, so a broker
/// outage delays deliveries but loses none.
caf::actor spawn_amqp_publisher(caf::actor_system& sys, context_ptr ctx,
                                amqp_options opts);

/// Spawns a consumer of `queue` on its own thread and connection: every
/// message goes to the actor registered as `target` as (deliver_atom,
/// delivery_record, receipt); the target answers the consumer with
/// (ack_atom, std::vector<receipt>) or (nack_atom, receipt, requeue). Reconnects after
/// the broker went away (unacked messages are then redelivered by it).
caf::actor spawn_amqp_consumer(caf::actor_system& sys, context_ptr ctx,
                               amqp_options opts, std::string queue,
                               std::string target);

/// Why the broker could not be reached the last time it could not (for
/// /readyz); empty when it always could.
std::string broker_last_error();

} // namespace chime
