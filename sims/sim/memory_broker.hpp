#pragma once

#include "actors/node_context.hpp"

#include <caf/atom.hpp>

namespace chime::sim {

struct env;

using sim_publish_atom = caf::atom_constant<caf::atom("publish")>;
using sim_subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using sim_reset_atom = caf::atom_constant<caf::atom("reset")>;

inline constexpr const char* main_queue = "deliveries";
inline constexpr const char* dead_queue = "dead";
inline constexpr const char* dead_audit_queue = "dead.audit";

struct broker_options {
  uint32_t prefetch = 1000;
  uint32_t delivery_limit = 20; ///< returns before a message is dead-lettered
};

/// Spawns the in-memory broker: a durable queue of deliveries and its
/// dead-letter queue, shared by all nodes and surviving their crashes.
///  - (sim_publish_atom, vector<delivery_record>) -> ok: enqueued and
///    confirmed; an error while the broker is down (nothing enqueued) or when
///    the confirm is lost (enqueued all the same).
///  - (sim_publish_atom, delivery_record, delay_ms) -> ok: a retry, kept by
///    the broker and enqueued after the delay; errors as above.
///  - (sim_publish_atom, queue, delivery_record) -> ok: straight into
///    `queue` (the dead-letter queue, for one part of a bundle).
///  - (sim_subscribe_atom, queue, consumer): consumes with manual acks and
///    bounded prefetch; the consumer gets (deliver_atom, record, receipt) and
///    answers (ack_atom, receipt) or (nack_atom, receipt, requeue). When a
///    consumer dies or its connection resets, its unacked messages return
///    to the queue; past the delivery limit they go to the dead queue.
///  - (sim_reset_atom, bool all): one consumer's connection resets (all of
///    them when the broker goes down; it resumes when the environment says
///    it is up again).
caf::actor spawn_memory_broker(caf::actor_system& sys, broker_options opts,
                               env* e);

/// Spawns a node's handoff (the seam's in-memory implementation): it
/// buffers (submit_atom, delivery_record), publishes to `broker` with
/// confirms, and records the confirmed ones as handed off in the journal;
/// unconfirmed batches are published again a second later. A retry,
/// (retry_atom, delivery_record, delay_ms) -> ok, or a dead letter,
/// (dead_letter_atom, delivery_record) -> ok, is published at once.
caf::actor spawn_memory_publisher(caf::actor_system& sys, context_ptr ctx,
                                  caf::actor broker);

/// Spawns a node's consumer of `queue`: it passes the broker's messages to
/// the node's actor named `target` and their acks back to the broker.
caf::actor spawn_memory_consumer(caf::actor_system& sys, context_ptr ctx,
                                 caf::actor broker, std::string queue,
                                 std::string target);

} // namespace chime::sim
