#pragma once

#include "actors/mailer.hpp"

#include <caf/fwd.hpp>

#include <cstddef>
#include <functional>

namespace chime {

/// A mailer in front of `make_inner`'s (the email client, or the
/// simulator's): it remembers its sends by idempotency key, so that the
/// delivery actor's successor, which takes the same mailer over after a
/// crash, never sends twice what its predecessor had in flight or had sent.
/// A second request for a key in flight joins the first and gets its
/// answer; one for a key the service accepted gets that answer again
/// (the `accepted_max` newest are kept). A failed send is not remembered:
/// its retry goes out. The inner mailer is linked: it goes with the front.
mailer_actor spawn_mailer_front(
  caf::actor_system& sys, mailer_factory make_inner,
  size_t accepted_max = 100000);

} // namespace chime
