#pragma once

#include "actors/node_context.hpp"

namespace chime {

struct user_view;

/// Spawns shard `id`: it holds the users that hash to it (see sharding.hpp)
/// while they are due within the horizon (resident), as plain values, not
/// actors: a million of them due at once must fit in a node. One timer per
/// shard wakes it the fire lead before the earliest due instant (the
/// delivery actor holds what it fired until the instant); each due occasion
/// is then recorded by the journal (delivery and next due instant in one
/// transaction) and its delivery handed off. A user is upserted by the API
/// after a write, or by the due poller from the due index, and let go when
/// nothing is due within the horizon. A shard that crashes loses only its
/// residents, which the due index brings back at the next poll.
caf::actor spawn_shard(caf::actor_system& sys, context_ptr ctx, uint32_t id);

/// Whether an occasion of `v` is due within the horizon: what makes a user
/// resident in its shard.
bool due_within_horizon(const node_context& ctx, const user_view& v);

/// Spawns the shard host of a node in a cluster: it runs the shards whose
/// leases the node holds (ctx->cluster), starts one on (take_atom, shard),
/// stops one on (give_atom, shard), restarts a shard that failed while its
/// lease is held, and keeps "shard/N" in the directory while N runs here. A
/// shard it starts loads its due users at once.
caf::actor spawn_shard_host(caf::actor_system& sys, context_ptr ctx);

/// Spawns the due poller: every poll interval (and when a shard is taken
/// over) it loads, from the journal, the users of the shards here due within
/// the horizon (overdue ones too: that is catch-up after a restart), earliest
/// first, a page at a time and no more than the bound of resident users
/// leaves room for, and upserts them into their shards. Pages follow one
/// another as residents fire and leave, until the pass has read them all.
caf::actor spawn_due_poller(caf::actor_system& sys, context_ptr ctx);

} // namespace chime
