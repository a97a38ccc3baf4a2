#pragma once

#include "actors/mailer.hpp"

#include <caf/actor_addr.hpp>
#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace chime {

/// The node's way to the email service. No actor: the delivery actor drives
/// it itself, so that a send follows the re-check's answer with no hop of
/// its own and its answer comes back in one. It sends through a transport:
/// a relay to `make_mailer`'s mailer actor when there is one (the
/// simulator's, a test's), else `make_transport`'s (the email client).
///
/// It remembers its sends by idempotency key and outlives a crash of the
/// delivery actor (the node context holds it), so that the successor never
/// sends twice what its predecessor had in flight or had sent: a send of a
/// key in flight joins it (its answer comes under the first one's id), one
/// of a key the service accepted is answered again (the `accepted_max`
/// newest are kept). A failed send is not remembered: its retry goes out.
/// One actor uses it at a time.
class mailer_front {
public:
  mailer_front() = default;
  mailer_front(const mailer_front&) = delete;
  mailer_front& operator=(const mailer_front&) = delete;
  ~mailer_front();

  /// From now on `driver` drives the front and hears the answers, as
  /// (mail_done_atom, id, send_result).
  void drive(caf::actor_system& sys, const caf::actor_addr& driver,
             mailer_factory make_mailer, mail_transport_factory make_transport,
             size_t accepted_max);

  /// Sends, or joins the send of `key` in flight; returns the id its answer
  /// comes under. An answer known already (the service accepted this key
  /// before, or the transport had no room: nothing went out) comes the
  /// same way as the others.
  uint64_t send(const std::string& email, const std::string& message,
                const std::string& key, int64_t timeout_ms);

  /// Moves the answers that came since the last call to `out`; the driver
  /// is told (mail_done_atom) when there are some.
  void take_answers(std::vector<mail_answer>& out);

  /// The transport left a request unanswered past its time-out, so it is
  /// stuck: it is stopped (which aborts its transfers) and the next send
  /// makes a new one. The keys it had in flight may run a little longer.
  std::vector<std::string> replace();

  /// Stops the transport: nothing more runs, nothing is answered.
  void stop();

private:
  void answered(const mail_answer& a);
  void remember_accepted(const std::string& key);

  caf::actor_system* sys_ = nullptr;
  caf::actor_addr driver_;
  mailer_factory make_mailer_;
  mail_transport_factory make_transport_;
  std::shared_ptr<mail_transport> transport_;
  size_t accepted_max_ = 0;
  uint64_t next_id_ = 0;
  /// The transport's requests in flight: their keys by id, and back.
  std::unordered_map<uint64_t, std::string> key_of_;
  std::unordered_map<std::string, uint64_t> id_of_;
  std::unordered_set<std::string> accepted_;
  std::deque<std::string> accepted_order_; ///< oldest first, for eviction
  /// Answers of no request in flight, and those a replaced transport held.
  std::vector<mail_answer> known_;
};

} // namespace chime
