#include "config/amqp_uri.hpp"

#include <cctype>
#include <charconv>
#include <string_view>

namespace chime {

namespace {

/// Percent-decodes `in`; false on a malformed escape or a character the
/// URI spec does not allow unencoded in this part (`extra` lists the
/// characters allowed beyond unreserved and sub-delims).
bool decode(std::string_view in, std::string& out, std::string_view extra) {
  out.clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  constexpr std::string_view allowed = "-._~!$&'()*+,;=";
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size())
        return false;
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (std::isalnum(static_cast<unsigned char>(c))
               || allowed.find(c) != std::string_view::npos
               || extra.find(c) != std::string_view::npos) {
      out += c;
    } else {
      return false;
    }
  }
  return true;
}

} // namespace

std::optional<amqp_uri> parse_amqp_uri(const std::string& text,
                                       std::string& error) {
  constexpr std::string_view scheme = "amqp://";
  std::string_view rest = text;
  if (rest.substr(0, scheme.size()) != scheme) {
    error = "expected a URI starting with amqp://";
    return std::nullopt;
  }
  rest.remove_prefix(scheme.size());
  if (auto q = rest.find_first_of("?#"); q != std::string_view::npos)
    rest = rest.substr(0, q); // query parameters (heartbeat, ...) are not used
  amqp_uri uri;
  std::string_view authority = rest;
  std::optional<std::string_view> path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    authority = rest.substr(0, slash);
    path = rest.substr(slash + 1);
  }
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    auto userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    auto colon = userinfo.find(':');
    if (!decode(userinfo.substr(0, colon), uri.user, "")
        || (colon != std::string_view::npos
            && !decode(userinfo.substr(colon + 1), uri.password, ""))) {
      error = "the user or password is not properly percent-encoded";
      return std::nullopt;
    }
  }
  std::string_view host = authority, port;
  bool ipv6 = !authority.empty() && authority.front() == '[';
  if (ipv6) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "an IPv6 host needs its closing ']'";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        error = "expected ':port' after the IPv6 host";
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':');
             colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (ipv6)
    uri.host = host;
  else if (!host.empty() && !decode(host, uri.host, "")) {
    error = "the host is not a valid name or address";
    return std::nullopt;
  }
  if (!port.empty()) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (ec != std::errc{} || end != port.data() + port.size() || n == 0
        || n > 65535) {
      error = "the port must be a number from 1 to 65535";
      return std::nullopt;
    }
    uri.port = static_cast<uint16_t>(n);
  }
  if (path) {
    // The vhost is one percent-encoded segment: a '/' inside it is %2F.
    if (!decode(*path, uri.vhost, "")) {
      error = "the virtual host (the URI's path) must be one percent-encoded"
              " segment; the default virtual host '/' is written %2F";
      return std::nullopt;
    }
    if (uri.vhost.empty()) {
      error = "the path names the empty virtual host \"\", which does not"
              " exist; the default virtual host '/' is written %2F (e.g."
              " amqp://guest:guest@127.0.0.1:5672/%2F), or leave the path out";
      return std::nullopt;
    }
  }
  return uri;
}

} // namespace chime
