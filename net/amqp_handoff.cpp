#include "net/amqp_handoff.hpp"

#include "actors/handoff.hpp"
#include "actors/handoff_tracker.hpp"
#include "actors/protocol.hpp"
#include "net/delivery_message.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace chime {

namespace {

/// Paces one connection's attempts to reach the broker: 1 s after the
/// first failure, doubling to 30 s. A broker that stays away is reported
/// once per back-off period for the whole node, not once per connection.
struct reconnect_backoff {
  std::chrono::milliseconds delay{0};

  std::chrono::milliseconds failed() {
    delay = std::clamp(delay * 2, std::chrono::milliseconds{1000},
                       std::chrono::milliseconds{30000});
    return delay;
  }
  void succeeded() { delay = std::chrono::milliseconds{0}; }
};

/// True when this failure is news: another error, or the same one last
/// said longer ago than the back-off that follows it.
std::mutex last_error_mtx;
std::string last_error;

bool worth_reporting(const std::string& error, std::chrono::milliseconds retry) {
  static auto last_at = std::chrono::steady_clock::time_point{};
  std::lock_guard<std::mutex> guard{last_error_mtx};
  auto now = std::chrono::steady_clock::now();
  if (error == last_error && now - last_at < retry)
    return false;
  last_error = error;
  last_at = now;
  return true;
}

/// Connects, or reports why not; null when the broker cannot be reached.
std::unique_ptr<amqp_connection> connect(const amqp_options& opts,
                                         const char* who,
                                         reconnect_backoff& backoff) {
  try {
    auto conn = std::make_unique<amqp_connection>(opts.url, opts.topology,
                                                  opts.timeout);
    log(log_level::info, who, "connected to RabbitMQ");
    backoff.succeeded();
    return conn;
  } catch (const amqp_error& e) {
    auto retry = backoff.failed();
    if (worth_reporting(e.what(), retry))
      log(log_level::warn, who, "RabbitMQ unreachable",
          {{"error", std::string{e.what()}},
           {"retry_in_s", std::to_string(retry.count() / 1000)}});
    return nullptr;
  }
}

// -- publisher --------------------------------------------------------------------

/// A delivery to publish: a hand-off into the main queue, or a retry into
/// the retry queue of its delay or a dead letter into the dead-letter queue,
/// whose sender waits for the confirm.
struct outgoing {
  delivery_record d;
  std::string queue;
  std::optional<caf::typed_response_promise<caf::ok_atom>> waiter;
  int64_t taken_ms = 0; ///< a hand-off: when it was taken (Chime time)
};

/// The first `n` buffered deliveries as broker messages: consecutive
/// hand-offs share bundles of at most `bundle_max`; a retry or dead letter
/// travels alone, since its sender waits for it.
std::vector<amqp_outgoing> to_messages(const std::vector<outgoing>& buffer,
                                       size_t n, uint32_t bundle_max) {
  std::vector<amqp_outgoing> messages;
  std::vector<delivery_record> bundle;
  const std::string* bundle_queue = nullptr;
  auto close_bundle = [&] {
    if (!bundle.empty())
      messages.push_back({*bundle_queue, to_message_body(bundle)});
    bundle.clear();
  };
  for (size_t i = 0; i < n; ++i) {
    auto& o = buffer[i];
    if (o.waiter) {
      messages.push_back({o.queue, to_message_body(o.d)});
      continue;
    }
    if (!bundle.empty() && (bundle.size() >= bundle_max || *bundle_queue != o.queue))
      close_bundle();
    bundle_queue = &o.queue;
    bundle.push_back(o.d);
  }
  close_bundle();
  return messages;
}

struct publisher_state {
  context_ptr ctx;
  amqp_options opts;
  std::unique_ptr<amqp_connection> conn;
  reconnect_backoff backoff;
  std::vector<outgoing> buffer;
  size_t handoffs = 0; ///< of them in the buffer
  handoff_tracker pending;
  bool flush_pending = false;
  metric* buffer_full = &get_metric("chime_publish_buffer_full_total");
  static inline const char* name = "chime.publisher";
};

using publisher_actor = caf::stateful_actor<publisher_state, handoff_impl_actor::base>;

void schedule_flush(publisher_actor* self, std::chrono::milliseconds delay) {
  auto& st = self->state;
  if (st.flush_pending)
    return;
  st.flush_pending = true;
  if (delay.count() == 0)
    self->send(self, flush_atom::value);
  else
    self->delayed_send(self, delay, flush_atom::value);
}

/// Answers the retries and dead letters among the first `n` buffered messages and drops
/// them from the buffer. Unconfirmed retries are not tried again here: their
/// senders still hold the broker messages and wait in memory instead.
void answer_waiters(publisher_state& st, size_t n, bool confirmed) {
  auto first = st.buffer.begin();
  auto last = first + static_cast<long>(n);
  for (auto i = first; i != last; ++i) {
    if (!i->waiter)
      continue;
    if (confirmed)
      i->waiter->deliver(caf::ok_atom::value);
    else
      i->waiter->deliver(caf::make_error(caf::sec::request_timeout));
  }
  auto kept = std::remove_if(first, last, [](auto& o) { return o.waiter.has_value(); });
  st.buffer.erase(kept, last);
}

void publish(publisher_actor* self) {
  auto& st = self->state;
  st.flush_pending = false;
  if (st.buffer.empty())
    return;
  if (!st.conn && !(st.conn = connect(st.opts, "publisher", st.backoff))) {
    answer_waiters(st, st.buffer.size(), false);
    if (!st.buffer.empty())
      schedule_flush(self, st.backoff.delay);
    return;
  }
  auto n = std::min<size_t>(st.buffer.size(), st.opts.publish_batch_max);
  auto messages = to_messages(st.buffer, n, st.opts.bundle_max);
  bool confirmed = false;
  try {
    confirmed = st.conn->publish_confirmed(messages, st.opts.timeout);
  } catch (const amqp_error& e) {
    log(log_level::warn, "publisher", "publish failed",
        {{"error", std::string{e.what()}}});
    st.conn.reset();
  }
  // After the retries leave, the batch's hand-offs lead the buffer.
  auto published = n;
  n = static_cast<size_t>(std::count_if(
    st.buffer.begin(), st.buffer.begin() + static_cast<long>(n),
    [](auto& o) { return !o.waiter; }));
  answer_waiters(st, published, confirmed);
  if (!confirmed) {
    // Not confirmed: try the same hand-offs again. A copy that did arrive
    // is delivered once anyway, since delivery re-checks the journal.
    if (!st.buffer.empty())
      schedule_flush(self, std::chrono::seconds{1});
    return;
  }
  std::vector<int64_t> taken;
  for (size_t i = 0; i < n; ++i)
    taken.push_back(st.buffer[i].taken_ms);
  st.buffer.erase(st.buffer.begin(), st.buffer.begin() + static_cast<long>(n));
  st.handoffs -= n;
  st.pending.done(taken);
  if (n > 0)
    get_metric("chime_handoffs_total").add(static_cast<int64_t>(n));
  if (!st.buffer.empty())
    schedule_flush(self, std::chrono::milliseconds{0});
}

/// Buffers a recorded delivery for the main queue.
void take(publisher_actor* self, delivery_record d) {
  auto& st = self->state;
  if (st.handoffs >= st.opts.publish_buffer_max) {
    // The broker is away and the buffer full: the delivery stays recorded
    // but not handed off, and the outbox sweeper offers it again once the
    // broker is back; memory stays bounded.
    st.buffer_full->add();
    return;
  }
  ++st.handoffs;
  auto now = to_ms(st.ctx->clock->now());
  st.pending.taken(now);
  st.buffer.push_back({std::move(d), st.opts.topology.queue, std::nullopt, now});
}

handoff_impl_actor::behavior_type publisher(publisher_actor* self, context_ptr ctx,
                        amqp_options opts) {
  self->state.ctx = std::move(ctx);
  self->state.opts = std::move(opts);
  return {
    [=](submit_atom, delivery_record& d) {
      take(self, std::move(d));
      // Everything already in the mailbox joins this batch.
      schedule_flush(self, std::chrono::milliseconds{0});
    },
    [=](submit_atom, std::vector<delivery_record>& ds) {
      for (auto& d : ds)
        take(self, std::move(d));
      schedule_flush(self, std::chrono::milliseconds{0});
    },
    [=](retry_atom, delivery_record& d, int64_t delay_ms) {
      auto& st = self->state;
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.buffer.push_back({std::move(d),
                           st.opts.topology.retry_queue(std::chrono::milliseconds{delay_ms}),
                           rp});
      schedule_flush(self, std::chrono::milliseconds{0});
      return rp;
    },
    [=](dead_letter_atom, delivery_record& d) {
      auto& st = self->state;
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.buffer.push_back({std::move(d), st.opts.topology.dead_queue, rp});
      schedule_flush(self, std::chrono::milliseconds{0});
      return rp;
    },
    [=](flush_atom) { publish(self); },
    [=](pending_atom) { return self->state.pending.oldest(); },
  };
}

// -- consumer ---------------------------------------------------------------------

void consume_loop(caf::blocking_actor* self, context_ptr ctx,
                  amqp_options opts, std::string queue, std::string target) {
  std::unique_ptr<amqp_connection> conn;
  reconnect_backoff backoff;
  uint64_t connection = 0;
  bool running = true;
  auto& connected = get_metric("chime_amqp_connected");
  bool counted = false;
  // Keeps this consumer's share of the gauge in step with `conn`.
  auto mark_connected = [&] {
    if (counted != static_cast<bool>(conn)) {
      counted = !counted;
      connected.add(counted ? 1 : -1);
    }
  };
  // One reader of queue depths a node, not one per consumer: the main
  // queue's consumer reads them all (operators read and re-drive the
  // dead-letter queue, which nobody here consumes).
  std::vector<std::pair<std::string, metric*>> depths;
  if (queue == opts.topology.queue)
    for (auto& q : {queue, opts.topology.dead_queue, opts.topology.dead_audit_queue})
      depths.emplace_back(q, &get_metric("chime_queue_depth{queue=\"" + q + "\"}"));
  auto next_depth = std::chrono::steady_clock::now();
  // The depths are read on a connection of their own: an RPC on the
  // consuming connection makes librabbitmq copy every delivery that arrives
  // while it waits into a frame queue (7 % of the node's CPU in a burst).
  std::unique_ptr<amqp_connection> gauge_conn;
  reconnect_backoff gauge_backoff;
  auto read_depths = [&](std::chrono::steady_clock::time_point now) {
    next_depth = now + std::chrono::seconds{2};
    if (depths.empty())
      return;
    if (!gauge_conn && !(gauge_conn = connect(opts, "queue depth", gauge_backoff))) {
      next_depth = now + gauge_backoff.delay;
      return;
    }
    try {
      for (auto& [q, gauge] : depths)
        gauge->set(static_cast<int64_t>(gauge_conn->depth(q)));
    } catch (const amqp_error& e) {
      log(log_level::warn, "consumer", "reading the queue depth failed",
          {{"error", std::string{e.what()}}});
      gauge_conn.reset();
    }
  };
  // Bundles with parts not yet settled, by tag (of this connection), and
  // the deliveries not yet settled: the prefetch bounds these, since the
  // broker's own prefetch counts messages, whatever they carry.
  std::unordered_map<uint64_t, uint32_t> open_parts;
  uint32_t outstanding = 0;
  auto settle = [&](const receipt& r, bool ack, bool requeue) {
    if (!conn || r.connection != connection)
      return; // its connection is gone; the broker redelivers the message
    if (outstanding > 0)
      --outstanding;
    if (r.is_part()) {
      // A dead part was dead-lettered on its own by its sender (see
      // receipt): for the bundle it counts as settled.
      auto i = open_parts.find(r.tag);
      if (i == open_parts.end() || --i->second > 0)
        return;
      open_parts.erase(i);
      ack = true;
    }
    try {
      if (ack)
        conn->ack(r.tag);
      else
        conn->nack(r.tag, requeue);
    } catch (const amqp_error& e) {
      log(log_level::warn, "consumer", "settling failed",
          {{"error", std::string{e.what()}}});
      conn.reset();
    }
  };
  auto on_ack = [&](ack_atom, const std::vector<receipt>& rs) {
    for (auto& r : rs)
      settle(r, true, false);
  };
  auto on_nack = [&](nack_atom, const receipt& r, bool requeue) {
    settle(r, false, requeue);
  };
  auto on_exit = [&](caf::exit_msg& msg) {
    if (msg.reason) {
      // Ends with the reason it was given, so that a crash reads as one.
      self->fail_state(msg.reason);
      running = false;
    }
  };
  // Waits up to `wait` for one message (used while disconnected).
  auto handlers = [&](std::chrono::milliseconds wait) {
    self->receive(on_ack, on_nack, on_exit, caf::after(wait) >> [] {});
  };
  while (running) {
    mark_connected();
    if (!conn) {
      conn = connect(opts, "consumer", backoff);
      if (conn) {
        try {
          conn->consume(queue, opts.prefetch);
          ++connection;
          open_parts.clear();
          outstanding = 0;
        } catch (const amqp_error& e) {
          log(log_level::warn, "consumer", "cannot consume",
              {{"queue", queue}, {"error", std::string{e.what()}}});
          conn.reset();
        }
      }
      if (!conn) {
        handlers(std::max(backoff.delay, std::chrono::milliseconds{1000}));
        continue;
      }
    }
    // Settle everything the target finished before reading more. The
    // mailbox is known to be non-empty, so no time-out is needed (a zero
    // time-out would still go through CAF's timer).
    while (running && self->mailbox().size() > 0)
      self->receive(on_ack, on_nack, on_exit);
    if (!running || !conn)
      continue;
    if (outstanding >= opts.prefetch) {
      handlers(std::chrono::milliseconds{20});
      continue;
    }
    try {
      if (auto now = std::chrono::steady_clock::now(); now >= next_depth)
        read_depths(now);
      auto m = conn->next(std::chrono::milliseconds{20});
      if (!m)
        continue;
      auto ds = from_message_body(m->body);
      if (!ds) {
        log(log_level::warn, "consumer", "malformed message dead-lettered",
            {{"queue", queue}});
        conn->nack(m->tag, false);
        continue;
      }
      auto parts = static_cast<uint32_t>(ds->size());
      outstanding += parts;
      if (parts > 1)
        open_parts[m->tag] = parts;
      // One actor message for the bundle (one a part had been as many
      // mailbox pushes and wake-ups).
      caf::anon_send(ctx->dir->get(target), deliver_atom::value,
                     std::move(*ds),
                     receipt{m->tag, connection,
                             caf::actor_cast<caf::actor>(self), parts});
    } catch (const amqp_error& e) {
      log(log_level::warn, "consumer", "connection lost",
          {{"queue", queue}, {"error", std::string{e.what()}}});
      conn.reset();
    }
  }
  conn.reset();
  mark_connected();
}

} // namespace

std::string broker_last_error() {
  std::lock_guard<std::mutex> guard{last_error_mtx};
  return last_error;
}

caf::actor spawn_amqp_publisher(caf::actor_system& sys, context_ptr ctx,
                                amqp_options opts) {
  return caf::actor_cast<caf::actor>(
    sys.spawn<caf::detached>(publisher, std::move(ctx), std::move(opts)));
}

caf::actor spawn_amqp_consumer(caf::actor_system& sys, context_ptr ctx,
                               amqp_options opts, std::string queue,
                               std::string target) {
  return sys.spawn<caf::detached>(consume_loop, std::move(ctx),
                                  std::move(opts), std::move(queue),
                                  std::move(target));
}

} // namespace chime
