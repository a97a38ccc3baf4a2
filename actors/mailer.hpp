#pragma once

// The mailer seam as a typed interface: what the simulator's and the tests'
// mailers (sims/sim/, tests/) answer; and the transport by which the mailer
// front (actors/mailer_front.hpp) reaches the email service: the email
// client of net/, or a relay to such a mailer actor.

#include "actors/protocol.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace chime {

using mailer_actor = caf::typed_actor<
  // (email, message, idempotency key, timeout_ms): one request to the email
  // service. Never an error: what went wrong is in the send_result.
  caf::replies_to<send_atom, std::string, std::string, std::string,
                  int64_t>::with<send_result>>;

/// Spawns a mailer.
using mailer_factory = std::function<mailer_actor(caf::actor_system&)>;

/// A way to the email service that is no actor (the email client's
/// transfer thread), driven by the delivery actor through the mailer front:
/// a send is no actor hop of its own, and its answer one hop back.
class mail_transport {
public:
  virtual ~mail_transport() = default;

  /// Takes one request; its answer comes to the driver as (mail_done_atom,
  /// id, send_result), within `timeout_ms`. False when it cannot take one
  /// now (as many in flight as it may have): nothing was sent.
  virtual bool start(uint64_t id, const std::string& email,
                     const std::string& message, const std::string& key,
                     int64_t timeout_ms) = 0;

  /// Aborts every request in flight (closing its connection): none of them
  /// runs any more, and none is answered.
  virtual void stop() = 0;

  /// Answers go to `driver` from now on (a restarted delivery actor takes
  /// the transport over with its requests in flight). Called by the
  /// thread that calls start.
  virtual void answer_to(const caf::actor_addr& driver) = 0;
};

/// Makes a transport answering to `driver`.
using mail_transport_factory = std::function<std::shared_ptr<mail_transport>(
  const caf::actor_addr& driver)>;

} // namespace chime
