#pragma once

#include <caf/fwd.hpp>

#include <chrono>
#include <string>

namespace chime {

/// Spawns one mailer on its own thread (httplib blocks): it answers
/// (send_atom, email, message, idempotency key) with a send_result after
/// POSTing {base_url}/send-email with the Idempotency-Key header. It keeps
/// its connection alive between requests; `timeout` bounds connecting and
/// reading each response.
caf::actor spawn_email_client(caf::actor_system& sys, std::string base_url,
                              std::chrono::milliseconds timeout);

} // namespace chime
