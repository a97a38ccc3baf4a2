#pragma once

// Time-outs for the many requests an actor has out at once, checked by one
// periodic message to it instead of one entry each in CAF's clock.
//
// Why: CAF 0.17 gives every request with a time-out its own entry in the
// clock thread, which wakes that thread (a futex) on the way in and sends a
// time-out message back later even when the answer came first. At several
// requests per delivery that was about a tenth of the node's CPU in a burst
// (perf, 2026-12-03), with the futex wake-ups it caused on the workers.

#include <caf/atom.hpp>
#include <caf/actor_clock.hpp>
#include <caf/detail/type_traits.hpp>
#include <caf/duration.hpp>
#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <unordered_map>
#include <utility>

namespace chime {

/// Local: check the open requests of an actor for time-outs.
using deadline_tick_atom = caf::atom_constant<caf::atom("dl_tick")>;

class request_deadlines {
public:
  using time_point = caf::actor_clock::time_point;
  using on_error = std::function<void(caf::error&)>;

  /// Opens a wait that fails with `caf::sec::request_timeout` at the first
  /// check after `deadline`, unless closed before.
  uint64_t open(time_point deadline, on_error fail);

  /// Closes a wait that was answered: false when it had failed already
  /// (the answer came too late and must be dropped).
  bool close(uint64_t id);

  /// Fails a wait with `err`, unless it had failed already.
  void fail(uint64_t id, caf::error& err);

  /// Fails the waits whose deadline is before `now`.
  void expire(time_point now);

  size_t open_count() const {
    return open_.size();
  }

  /// Whether a check is scheduled already (the owner's bookkeeping).
  bool tick_pending = false;

private:
  struct wait {
    std::multimap<time_point, uint64_t>::iterator at;
    on_error fail;
  };
  std::multimap<time_point, uint64_t> by_deadline_;
  std::unordered_map<uint64_t, wait> open_;
  uint64_t next_id_ = 0;
};

/// How often an actor checks its open requests: a time-out fires up to this
/// late, which nothing on the send path notices (its time-outs are seconds).
inline constexpr std::chrono::milliseconds deadline_check_every{250};

namespace detail {

/// Runs `f` with the answer unless its wait has failed already. The answer's
/// types are spelled out (not a template) so that CAF can match it against
/// the request's reply type.
template <class F, class Args>
struct if_still_open;

template <class F, class... Ts>
struct if_still_open<F, caf::detail::type_list<Ts...>> {
  request_deadlines* book;
  uint64_t id;
  F f;
  void operator()(Ts... xs) {
    if (book->close(id))
      f(std::forward<Ts>(xs)...);
  }
};

} // namespace detail

/// Opens a wait in the actor's own book (at `self->state.deadlines`) that
/// fails with `on_error` unless closed within `timeout`. The actor answers
/// `deadline_tick_atom` with `check_deadlines(self)`.
template <class Self, class OnError>
uint64_t open_deadline(Self* self, caf::timespan timeout, OnError on_error) {
  auto& book = self->state.deadlines;
  auto id = book.open(self->clock().now() + timeout, std::move(on_error));
  if (!book.tick_pending) {
    book.tick_pending = true;
    self->delayed_send(self, deadline_check_every, deadline_tick_atom::value);
  }
  return id;
}

/// `self->request(dest, timeout, xs...).then(on_answer, on_error)`, with the
/// time-out kept in the actor's own book (see open_deadline).
template <class Self, class Handle, class OnAnswer, class OnError, class... Ts>
void request_within(Self* self, const Handle& dest, caf::timespan timeout,
                    OnAnswer on_answer, OnError on_error, Ts&&... xs) {
  auto& book = self->state.deadlines;
  auto id = open_deadline(self, timeout, std::move(on_error));
  using args
    = typename caf::detail::get_callable_trait<OnAnswer>::arg_types;
  self->request(dest, caf::infinite, std::forward<Ts>(xs)...)
    .then(detail::if_still_open<OnAnswer, args>{&book, id,
                                                std::move(on_answer)},
          [book = &book, id](caf::error& err) { book->fail(id, err); });
}

/// The handler of `deadline_tick_atom`: fails the overdue waits, and checks
/// again while any stay open.
template <class Self>
void check_deadlines(Self* self) {
  auto& book = self->state.deadlines;
  book.tick_pending = false;
  book.expire(self->clock().now());
  if (book.open_count() > 0) {
    book.tick_pending = true;
    self->delayed_send(self, deadline_check_every, deadline_tick_atom::value);
  }
}

} // namespace chime
