#pragma once

#include "actors/node_context.hpp"

#include <optional>

namespace chime {

struct user_view;
struct due_entry;
struct fire_request;

/// What the journal is asked to record when one occasion of a resident user
/// falls due now: the delivery (or its expiry, past the catch-up window) and
/// the instant the user's due index moves on to. Nullopt (and a warning)
/// when the entry names no known occasion, or the user no valid zone.
std::optional<fire_request> plan_fire(const node_context& ctx,
                                      const user_view& v,
                                      const due_entry& entry);

} // namespace chime
