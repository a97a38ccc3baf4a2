#pragma once

#include "actors/node_context.hpp"

namespace chime {

struct user_record;
struct user_view;

/// Spawns the node's user-command actor: the steps of each change to a user,
/// shared by the HTTP API and the simulator.
///  - (create_atom, user_record) -> user_view: the record (its id set by the
///    caller) is planned, journaled, then upserted into its shard.
///  - (replace_atom, user_record) -> user_view: the stored user is read; the
///    new record keeps the pending due instant of every occasion whose date
///    and zone did not change, and never owes again a year already delivered.
///  - (remove_atom, user id) -> ok: journaled (open deliveries cancelled), the
///    user evicted from its shard, and the reply waits until no request for the user
///    is in flight at the email service.
/// Errors are the journal's (journal_errc).
caf::actor spawn_user_commands(caf::actor_system& sys, context_ptr ctx);

/// What a create of `u` at `now` journals: the user created now, each of
/// its occasions planned from now. The create command and bulk imports
/// both write this, so that an imported user is scheduled as a created one.
user_view planned_create(const node_context& ctx, user_record u, instant now);

/// In a cluster, only the owner of a user's shard changes the user: a
/// command that reached another node (routed on a stale view) is refused,
/// and the caller routes it again. Always true outside a cluster.
bool owns_user(const node_context& ctx, const std::string& user_id);

/// What follows a create of `v` once it is durable, wherever it was
/// journaled from: counted, and handed to its shard if it is due soon.
void created(const node_context& ctx, user_view v);

/// A new user, durable, handed to its shard when it is due within the
/// horizon and its shard lives on this node (creates and imports both).
void to_shard_if_due_soon(const node_context& ctx, user_view v);

/// Directory name of the user-command actor.
inline constexpr const char* user_commands_name = "users";

} // namespace chime
