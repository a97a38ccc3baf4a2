#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace chime {

/// An AMQP 0-9-1 URI taken apart as RabbitMQ's URI specification says:
/// amqp://[user[:pass]@]host[:port][/vhost], every part percent-decoded. A
/// missing path is the default virtual host "/" (written `%2F` in a path);
/// an empty path (`amqp://host/`) names the virtual host "", which no broker
/// has by default.
struct amqp_uri {
  std::string user = "guest";
  std::string password = "guest";
  std::string host = "localhost";
  uint16_t port = 5672;
  std::string vhost = "/";
};

/// The parsed URI, or nothing with `error` saying which part is wrong.
std::optional<amqp_uri> parse_amqp_uri(const std::string& text,
                                       std::string& error);

} // namespace chime
