#pragma once

#include "actors/mailer.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace chime::sim {

struct env;

/// One request that reached the simulated email service.
struct email_request {
  std::string key;
  std::string owner; ///< the node incarnation that sent it, "n0.3"
  int64_t at_ms = 0;
  int status = 0; ///< 0: never answered (time-out)
  bool answer_lost = false; ///< accepted, yet answered with a time-out
  bool delivered() const {
    return answer_lost || (status >= 200 && status < 300);
  }
};

struct email_ledger {
  std::vector<email_request> requests;
};

/// Spawns the simulated email service. It answers (send_atom, email,
/// message, key, owner) with a send_result, drawing failures from the
/// environment's fault profile: refused while it is down (no request
/// arrives), time-outs (the request arrives, is not delivered, and the
/// answer never comes), 5xx, 429 with Retry-After, slow answers. Every
/// request that arrives goes into `ledger`.
caf::actor spawn_email_service(caf::actor_system& sys,
                               std::shared_ptr<email_ledger> ledger, env* e);

/// Spawns one mailer (the seam) of the node incarnation `owner`: it passes
/// each request on to `service`, which answers the sender directly, after
/// showing its key to `on_send` (the checker's look at who sends).
mailer_actor spawn_memory_mailer(caf::actor_system& sys, caf::actor service,
                                 std::string owner,
                                 std::function<void(const std::string&)> on_send
                                 = nullptr);

} // namespace chime::sim
