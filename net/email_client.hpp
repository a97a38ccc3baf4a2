#pragma once

#include "actors/mailer.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace chime {

/// The email client, as the transport the node's mailer front drives:
/// each request POSTs {base_url}/send-email with the Idempotency-Key header
/// and is answered to `driver` as (mail_done_atom, id, send_result). Any
/// number of requests may be out at once: they run on one event-driven
/// transfer thread (libcurl's multi interface) over a pool of keep-alive
/// connections, so hundreds in flight cost sockets, not threads. Every
/// request is answered within its time-out; a request that timed out has
/// had its connection closed by then, so it is not running any more. At
/// most `in_flight_max` requests are taken at once; beyond that `start`
/// refuses (nothing sent, not ambiguous). For an http:// service at most
/// `connections_max` connections carry requests out for less than 250 ms;
/// the requests beyond them wait for one, and their time-out counts from
/// `start` (see make_plain_http_transport).
std::shared_ptr<mail_transport> make_email_transport(std::string base_url,
                                                     uint32_t in_flight_max,
                                                     uint32_t connections_max,
                                                     const caf::actor_addr& driver);

} // namespace chime
