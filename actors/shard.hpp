#pragma once

#include "actors/node_context.hpp"

namespace chime {

/// Spawns shard `id`: the parent of the resident user actors of the users
/// that hash to it (see sharding.hpp). It spawns a user actor when a user due
/// within the horizon is upserted (by the API after a write, or by the due
/// poller from the due index) and forgets it when the actor passivates.
/// A user actor that crashes is forgotten too; the due index brings it back
/// at the next poll.
caf::actor spawn_shard(caf::actor_system& sys, context_ptr ctx, uint32_t id);

/// Spawns the shard host of a node in a cluster: it runs the shards whose
/// leases the node holds (ctx->cluster), starts one on (take_atom, shard),
/// stops one on (give_atom, shard), restarts a shard that failed while its
/// lease is held, and keeps "shard/N" in the directory while N runs here. A
/// shard it starts loads its due users at once.
caf::actor spawn_shard_host(caf::actor_system& sys, context_ptr ctx);

/// Spawns the due poller: every poll interval it loads, from the journal, the
/// users of the owned shards due within the horizon (including overdue ones,
/// which is how catch-up after a restart happens) and upserts them into
/// their shards.
caf::actor spawn_due_poller(caf::actor_system& sys, context_ptr ctx);

} // namespace chime
