#include "net/http_listen.hpp"

#include <httplib.h>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace chime {

std::string bind_with_backlog(httplib::Server& server, const std::string& host,
                              int port) {
  auto fd = std::make_shared<int>(-1);
  server.set_socket_options([fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *fd = sock;
  });
  if (!server.bind_to_port(host.c_str(), port))
    return "cannot listen on " + host + ":" + std::to_string(port);
  // Debian's cpp-httplib 0.11 is a compiled library that listens with a
  // backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG changes nothing in a build of
  // ours): connections beyond it had their handshakes dropped and their
  // requests read seconds later, past the sender's time-out (an email sent
  // twice; API clients' connections reset). Listening again on a listening
  // socket sets a new backlog.
  if (*fd < 0)
    return "the listening socket of " + host + ":" + std::to_string(port) + " was not seen";
  if (::listen(*fd, http_listen_backlog) != 0)
    return "listen backlog not raised: " + std::string{std::strerror(errno)};
  return {};
}

} // namespace chime
