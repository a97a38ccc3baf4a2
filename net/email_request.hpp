#pragma once

// What both email transports (net/email_client.cpp, libcurl's, and
// net/plain_http_transport.cpp) share: a request as the mailer front hands
// it over, the inbox it crosses to the transfer thread by, and the reading
// of an answer's Retry-After.

#include "actors/mailer.hpp"
#include "actors/protocol.hpp"

#include <caf/actor_addr.hpp>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>

namespace chime {

struct email_request {
  uint64_t id = 0;
  std::string body;
  std::string key;
  int64_t timeout_ms = 0;
};

/// Retry-After in milliseconds; -1 for an HTTP-date (or nonsense): the
/// caller then falls back to its own backoff.
inline int64_t retry_after_ms(const char* text) {
  char* end = nullptr;
  auto secs = std::strtod(text, &end);
  if (end == text || secs < 0)
    return -1;
  return static_cast<int64_t>(secs * 1000);
}

/// The JSON body of a send: {"email": ..., "message": ...}.
std::string email_body(const std::string& email, const std::string& message);

/// The hand-over from the driving actor's thread to a transport's transfer
/// thread: a bounded inbox (at most `in_flight_max` requests taken and not
/// yet answered), and the stop flag. The transport wakes its thread.
class email_inbox : public mail_transport {
public:
  email_inbox(uint32_t in_flight_max, caf::actor_addr driver)
    : mail_transport(std::move(driver)), in_flight_max_(in_flight_max) {
  }

  /// The body is built here, on the driver's thread, so that the transfer
  /// thread only moves bytes.
  bool start(uint64_t id, const std::string& email, const std::string& message,
             const std::string& key, int64_t timeout_ms) final;

  /// The thread drops every request in flight, closing its connection, and
  /// ends.
  void stop() final;

protected:
  virtual void wake() = 0;

  /// Moves what was handed in since the last call into `batch`; false once
  /// stopped.
  bool take(std::deque<email_request>& batch);

  /// Answers a request taken (one less in flight).
  void answer(uint64_t id, send_result r);

private:
  const uint32_t in_flight_max_;
  std::mutex mtx_;
  std::deque<email_request> inbox_;
  uint32_t taken_ = 0;
  bool stopping_ = false;
};

} // namespace chime
