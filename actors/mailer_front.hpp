#pragma once

#include "actors/mailer.hpp"

#include <caf/fwd.hpp>

#include <cstddef>
#include <functional>

namespace chime {

/// The node's mailer, in front of `make_inner`'s mailer actor when one is
/// given (the simulator's, a test's), else of `make_transport`'s transport
/// (the email client's transfer thread). It remembers its sends by
/// idempotency key, so that the delivery actor's successor, which takes the
/// same mailer over after a crash, never sends twice what its predecessor
/// had in flight or had sent. A second request for a key in flight joins
/// the first and gets its answer; one for a key the service accepted gets
/// that answer again (the `accepted_max` newest are kept). A failed send is
/// not remembered: its retry goes out. What it sends through goes with it:
/// the inner mailer is linked, the transport stopped.
mailer_actor spawn_mailer_front(
  caf::actor_system& sys, mailer_factory make_inner,
  mail_transport_factory make_transport, size_t accepted_max = 100000);

} // namespace chime
