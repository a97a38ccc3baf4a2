#pragma once

#include "actors/node_context.hpp"

namespace chime {

struct user_view;

/// Spawns the actor of one resident user, linked to its shard. It owns the
/// user's state and one timer per occasion due within the horizon. When an
/// occasion falls due it asks the journal to record the delivery (or its
/// expiry) and to advance the due index, then hands the delivery off. With
/// nothing due within the horizon it exits normally (passivates): the due
/// index wakes it again through its shard.
caf::actor spawn_user(caf::local_actor* shard, context_ptr ctx, user_view v);

} // namespace chime
