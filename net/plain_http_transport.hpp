#pragma once

#include "actors/mailer.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace chime {

/// The email transport for a plain http:// service: one thread on epoll,
/// keep-alive connections (one per request in flight, reused, at most
/// `connections_max` besides those whose request has been out over 250 ms:
/// further requests wait for one to come free), requests
/// written whole and answers parsed by http_parser. It does per request what
/// HTTP/1.1 needs and no more: libcurl's multi loop (kept for https://) cost
/// this node 29 us of CPU a request against 13 us here (a few hundred in
/// flight, measured 2026-12-04), on the thread that was a third of the
/// node's CPU in a burst.
///
/// As libcurl does, a request whose reused connection turns out closed by
/// the service before a byte of the answer came is sent once more on a new
/// connection (the service closed an idle connection as the request went
/// out); the Idempotency-Key makes that safe. Answers, limits and time-outs
/// are as make_email_transport says.
std::shared_ptr<mail_transport> make_plain_http_transport(
  std::string host, std::string port, std::string path, uint32_t in_flight_max,
  uint32_t connections_max, const caf::actor_addr& driver);

} // namespace chime
