#pragma once

// The mailer seam as a typed interface: what the email client (net/), the
// mailer front (actors/) and the simulator's mailer (sims/sim/) answer.

#include "actors/protocol.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>

#include <functional>

namespace chime {

class directory;

using mailer_actor = caf::typed_actor<
  // (email, message, idempotency key, timeout_ms): one request to the email
  // service. Never an error: what went wrong is in the send_result.
  caf::replies_to<send_atom, std::string, std::string, std::string,
                  int64_t>::with<send_result>>;

/// Spawns a mailer.
using mailer_factory = std::function<mailer_actor(caf::actor_system&)>;

/// The mailer registered under `name` in `dir` (invalid when none is).
mailer_actor mailer_at(const directory& dir, const char* name);

} // namespace chime
