#include "net/email_client.hpp"

#include "actors/protocol.hpp"

#include <caf/all.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <memory>

namespace chime {

namespace {

struct email_client_state {
  std::unique_ptr<httplib::Client> client;
  static inline const char* name = "chime.email_client";
};

using email_client_actor = caf::stateful_actor<email_client_state>;

int64_t retry_after_ms(const httplib::Response& res) {
  if (!res.has_header("Retry-After"))
    return -1;
  auto text = res.get_header_value("Retry-After");
  char* end = nullptr;
  auto secs = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || secs < 0)
    return -1; // an HTTP-date: fall back to our own backoff
  return static_cast<int64_t>(secs * 1000);
}

caf::behavior email_client(email_client_actor* self, std::string base_url,
                           std::chrono::milliseconds timeout) {
  auto& client = self->state.client;
  client = std::make_unique<httplib::Client>(base_url);
  client->set_keep_alive(true);
  // Without it, a request's pieces wait for the server's delayed ACK.
  client->set_tcp_nodelay(true);
  client->set_connection_timeout(timeout);
  client->set_read_timeout(timeout);
  client->set_write_timeout(timeout);
  return {
    [=](send_atom, const std::string& email, const std::string& message,
        const std::string& key) -> send_result {
      nlohmann::json body{{"email", email}, {"message", message}};
      httplib::Headers headers{{"Idempotency-Key", key}};
      auto res = self->state.client->Post("/send-email", headers, body.dump(),
                                          "application/json");
      // httplib closes a connection whose request failed, so a retry never
      // follows a request still running on the same connection.
      if (!res)
        return send_result{0, -1,
                           "email service: " + httplib::to_string(res.error()),
                           res.error() == httplib::Error::Read};
      return send_result{res->status, retry_after_ms(*res), {}};
    },
  };
}

} // namespace

caf::actor spawn_email_client(caf::actor_system& sys, std::string base_url,
                              std::chrono::milliseconds timeout) {
  return sys.spawn<caf::detached>(email_client, std::move(base_url), timeout);
}

} // namespace chime
