#pragma once

#include <string>

namespace httplib {
class Server;
}

namespace chime {

/// Room for connections not yet accepted: a burst of clients (three nodes
/// opening their email connections at 09:00, the API's clients) fits.
constexpr int http_listen_backlog = 1024;

/// Binds `server` to host:port (SO_REUSEADDR only: with httplib's
/// SO_REUSEPORT a second process on the port would share it silently) and
/// listens with http_listen_backlog. Empty on success, else why not.
std::string bind_with_backlog(httplib::Server& server, const std::string& host,
                              int port);

} // namespace chime
