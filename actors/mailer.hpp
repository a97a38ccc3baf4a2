#pragma once

// The mailer seam as a typed interface: what the simulator's and the tests'
// mailers (sims/sim/, tests/) answer; and the transport by which the mailer
// front (actors/mailer_front.hpp) reaches the email service: the email
// client of net/, or a relay to such a mailer actor.

#include "actors/protocol.hpp"

#include <caf/actor_addr.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace chime {

using mailer_actor = caf::typed_actor<
  // (email, message, idempotency key, timeout_ms): one request to the email
  // service. Never an error: what went wrong is in the send_result.
  caf::replies_to<send_atom, std::string, std::string, std::string,
                  int64_t>::with<send_result>>;

/// Spawns a mailer.
using mailer_factory = std::function<mailer_actor(caf::actor_system&)>;

/// A transport's answer to request `id`.
struct mail_answer {
  uint64_t id = 0;
  send_result result;
};

/// A way to the email service that is no actor (the email client's
/// transfer thread), driven by the delivery actor through the mailer front:
/// a send is no actor hop of its own, and its answers come back one hop.
///
/// The answers wait in the transport until the driver takes them, and the
/// driver is told (mail_done_atom) when the first of them comes: so an
/// answer that comes while a crashed driver is being replaced waits for the
/// successor instead of being lost with the message to a dead actor, and a
/// busy driver takes many answers with one message.
class mail_transport {
public:
  explicit mail_transport(caf::actor_addr driver);
  virtual ~mail_transport();

  /// Takes one request; its answer comes within `timeout_ms`. False when it
  /// cannot take one now (as many in flight as it may have): nothing was
  /// sent.
  virtual bool start(uint64_t id, const std::string& email,
                     const std::string& message, const std::string& key,
                     int64_t timeout_ms) = 0;

  /// Aborts every request in flight (closing its connection): none of them
  /// runs any more, and none is answered.
  virtual void stop() = 0;

  /// `driver` is told of answers from now on (a restarted delivery actor
  /// takes the transport over with its requests in flight), at once when
  /// some wait already.
  void answer_to(const caf::actor_addr& driver);

  /// Moves the answers that came since the last call to the end of `out`.
  void take_answers(std::vector<mail_answer>& out);

protected:
  /// Keeps the answer to request `id` for the driver.
  void hand_back(uint64_t id, send_result r);

private:
  std::mutex mtx_;
  caf::actor_addr driver_;
  std::vector<mail_answer> answers_;
};

/// Makes a transport answering to `driver`.
using mail_transport_factory = std::function<std::shared_ptr<mail_transport>(
  const caf::actor_addr& driver)>;

} // namespace chime
