#pragma once

#include "actors/mailer.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <string>

namespace chime {

/// Spawns the email client: one actor that answers (send_atom, email,
/// message, idempotency key, timeout_ms) with a send_result after POSTing
/// {base_url}/send-email with the Idempotency-Key header. Any number of
/// requests may be out at once: they run on one event-driven transfer
/// thread (libcurl's multi interface) over a pool of keep-alive
/// connections, so hundreds in flight cost sockets, not threads. Every
/// request is answered within its time-out; a request that timed out has
/// had its connection closed by then, so it is not running any more.
/// At most `in_flight_max` requests are taken at once; beyond that a request
/// is refused at once (no answer, not ambiguous).
mailer_actor spawn_email_client(caf::actor_system& sys, std::string base_url,
                              uint32_t in_flight_max);

} // namespace chime
