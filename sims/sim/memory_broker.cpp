#include "sims/sim/memory_broker.hpp"

#include "actors/handoff.hpp"
#include "actors/handoff_tracker.hpp"
#include "actors/protocol.hpp"
#include "runtime/metrics.hpp"
#include "sims/sim/env.hpp"

#include <caf/all.hpp>

#include <deque>
#include <map>

namespace chime::sim {

namespace {

struct message {
  delivery_record d;
  uint32_t returns = 0;
};

struct subscription {
  caf::actor consumer;
  std::string queue;
  uint64_t connection = 0;
  std::map<uint64_t, message> unacked;
};

struct broker_state {
  broker_options opts;
  env* e = nullptr;
  std::map<std::string, std::deque<message>> queues;
  std::map<caf::actor_id, subscription> subs; ///< ids: in subscription order
  uint64_t next_tag = 0;
  uint64_t next_connection = 0;
  bool wake_pending = false;
  static inline const char* name = "chime.sim.broker";
};

using broker_actor = caf::stateful_actor<broker_state>;

bool down(broker_actor* self) {
  auto& e = *self->state.e;
  return e.now_ms() < e.broker_down_until_ms;
}

void dispatch(broker_actor* self) {
  auto& st = self->state;
  if (down(self))
    return;
  for (auto& [id, sub] : st.subs) {
    auto& q = st.queues[sub.queue];
    while (!q.empty() && sub.unacked.size() < st.opts.prefetch) {
      auto m = std::move(q.front());
      q.pop_front();
      auto tag = ++st.next_tag;
      self->send(sub.consumer, deliver_atom::value, m.d,
                 receipt{tag, sub.connection, sub.consumer});
      sub.unacked.emplace(tag, std::move(m));
    }
  }
}

/// The dead-letter exchange: a copy for operators, a copy for the journal.
void dead_letter(broker_actor* self, message m) {
  auto& st = self->state;
  st.queues[dead_audit_queue].push_back(m);
  st.queues[dead_queue].push_back(std::move(m));
}

/// Puts a message back (a nack with requeue, a lost consumer), or into the
/// dead queue once it has come back more often than the delivery limit.
void give_back(broker_actor* self, const std::string& queue, message m) {
  auto& st = self->state;
  if (queue == main_queue && ++m.returns > st.opts.delivery_limit) {
    st.e->trace.add(st.e->now_ms(), "broker.dead_lettered", m.d.key);
    dead_letter(self, std::move(m));
    return;
  }
  st.queues[queue].push_front(std::move(m));
}

void reset(broker_actor* self, subscription& sub) {
  // Returned in reverse so that the oldest ends up first.
  for (auto i = sub.unacked.rbegin(); i != sub.unacked.rend(); ++i)
    give_back(self, sub.queue, std::move(i->second));
  sub.unacked.clear();
  sub.connection = ++self->state.next_connection;
}

subscription* find(broker_actor* self, const receipt& r) {
  auto i = self->state.subs.find(r.consumer.id());
  if (i == self->state.subs.end() || i->second.connection != r.connection
      || down(self))
    return nullptr; // that connection is gone; the message came back
  return &i->second;
}

caf::behavior memory_broker(broker_actor* self, broker_options opts, env* e) {
  self->state.opts = opts;
  self->state.e = e;
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    auto i = st.subs.find(msg.source.id());
    if (i == st.subs.end())
      return;
    reset(self, i->second);
    st.subs.erase(i);
    dispatch(self);
  });
  return {
    [=](sim_publish_atom, std::vector<delivery_record>& batch)
      -> caf::result<caf::ok_atom> {
      auto& e = *self->state.e;
      if (down(self))
        return caf::make_error(caf::sec::request_receiver_down);
      for (auto& d : batch) {
        e.trace.add(e.now_ms(), "broker.publish", d.key);
        self->state.queues[main_queue].push_back(message{std::move(d), 0});
      }
      dispatch(self);
      if (e.chance(e.faults.confirm_lost)) {
        e.trace.add(e.now_ms(), "broker.confirm_lost");
        return caf::make_error(caf::sec::request_timeout);
      }
      return caf::ok_atom::value;
    },
    [=](sim_publish_atom, delivery_record& d, int64_t delay_ms)
      -> caf::result<caf::ok_atom> {
      auto& e = *self->state.e;
      if (down(self))
        return caf::make_error(caf::sec::request_receiver_down);
      e.trace.add(e.now_ms(), "broker.retry", d.key);
      self->delayed_send(self, millis{delay_ms}, sim_publish_atom::value,
                         std::vector<delivery_record>{std::move(d)}, true);
      if (e.chance(e.faults.confirm_lost)) {
        e.trace.add(e.now_ms(), "broker.confirm_lost");
        return caf::make_error(caf::sec::request_timeout);
      }
      return caf::ok_atom::value;
    },
    [=](sim_publish_atom, std::string& queue, delivery_record& d)
      -> caf::result<caf::ok_atom> {
      if (down(self))
        return caf::make_error(caf::sec::request_receiver_down);
      self->state.queues[queue].push_back(message{std::move(d), 0});
      dispatch(self);
      return caf::ok_atom::value;
    },
    [=](sim_publish_atom, std::vector<delivery_record>& batch, bool) {
      // A retry's time is up: back into the main queue (the broker keeps it
      // through its own outages).
      for (auto& d : batch)
        self->state.queues[main_queue].push_back(message{std::move(d), 0});
      dispatch(self);
    },
    [=](sim_subscribe_atom, std::string& queue, caf::actor& consumer) {
      self->monitor(consumer);
      auto& sub = self->state.subs[consumer.id()];
      sub.consumer = consumer;
      sub.queue = queue;
      sub.connection = ++self->state.next_connection;
      dispatch(self);
    },
    [=](ack_atom, receipt& r) {
      if (auto sub = find(self, r)) {
        sub->unacked.erase(r.tag);
        dispatch(self);
      }
    },
    [=](nack_atom, receipt& r, bool requeue) {
      auto sub = find(self, r);
      if (!sub)
        return;
      auto i = sub->unacked.find(r.tag);
      if (i == sub->unacked.end())
        return;
      auto m = std::move(i->second);
      sub->unacked.erase(i);
      if (requeue)
        give_back(self, sub->queue, std::move(m));
      else if (sub->queue == main_queue)
        dead_letter(self, std::move(m));
      dispatch(self);
    },
    [=](sim_reset_atom, bool all) {
      auto& st = self->state;
      if (st.subs.empty())
        return;
      if (all) {
        for (auto& [id, sub] : st.subs)
          reset(self, sub);
        auto wait = st.e->broker_down_until_ms - st.e->now_ms();
        self->delayed_send(self, millis{std::max<int64_t>(wait, 0)},
                           tick_atom::value);
        return;
      }
      auto pick = st.e->between(0, static_cast<int64_t>(st.subs.size()) - 1);
      auto i = std::next(st.subs.begin(), pick);
      st.e->trace.add(st.e->now_ms(), "broker.connection_reset");
      reset(self, i->second);
      dispatch(self);
    },
    [=](tick_atom) { dispatch(self); },
  };
}

// -- publisher -----------------------------------------------------------------

struct publisher_state {
  context_ptr ctx;
  caf::actor broker;
  std::vector<delivery_record> buffer;
  std::vector<int64_t> taken; ///< when each of the buffer was taken
  handoff_tracker pending;
  bool busy = false;          ///< a publish is waiting for its confirm
  bool flush_pending = false;
  /// The node's publisher's counter (net/amqp_handoff.cpp), counted alike.
  metric* buffer_full = &get_metric("chime_publish_buffer_full_total");
  static inline const char* name = "chime.sim.publisher";
};

using publisher_actor = caf::stateful_actor<publisher_state, handoff_impl_actor::base>;

void schedule_flush(publisher_actor* self, millis delay) {
  auto& st = self->state;
  if (st.flush_pending)
    return;
  st.flush_pending = true;
  self->delayed_send(self, delay, flush_atom::value);
}

void publish(publisher_actor* self) {
  auto& st = self->state;
  st.flush_pending = false;
  if (st.busy || st.buffer.empty())
    return;
  st.busy = true;
  auto batch = st.buffer;
  self->request(st.broker, std::chrono::seconds{5}, sim_publish_atom::value,
                batch)
    .then(
      [=](caf::ok_atom) {
        auto& st = self->state;
        st.busy = false;
        auto end = static_cast<long>(batch.size());
        std::vector<int64_t> taken(st.taken.begin(), st.taken.begin() + end);
        st.buffer.erase(st.buffer.begin(), st.buffer.begin() + end);
        st.taken.erase(st.taken.begin(), st.taken.begin() + end);
        st.pending.done(taken);
        if (!st.buffer.empty())
          schedule_flush(self, millis{0});
      },
      [=](caf::error&) {
        // Not confirmed: the same batch again; delivery re-checks copies.
        self->state.busy = false;
        schedule_flush(self, std::chrono::seconds{1});
      });
}

/// The publisher's buffer bound, at the simulator's scale (a few hundred
/// users): a broker outage fills it as a node's bound fills at a million.
/// What does not fit stays recorded, not handed off, as in the node's
/// publisher (net/amqp_handoff.cpp): the outbox sweeper's to offer again.
constexpr size_t publish_buffer_max = 4;

void take(publisher_actor* self, delivery_record d) {
  auto& st = self->state;
  if (st.buffer.size() >= publish_buffer_max) {
    st.buffer_full->add();
    return;
  }
  auto now = to_ms(st.ctx->clock->now());
  st.pending.taken(now);
  st.buffer.push_back(std::move(d));
  st.taken.push_back(now);
}

handoff_impl_actor::behavior_type memory_publisher(publisher_actor* self, context_ptr ctx,
                               caf::actor broker) {
  self->state.ctx = std::move(ctx);
  self->state.broker = std::move(broker);
  return {
    [=](submit_atom, delivery_record& d) {
      take(self, std::move(d));
      schedule_flush(self, millis{0});
    },
    [=](submit_atom, std::vector<delivery_record>& ds) {
      for (auto& d : ds)
        take(self, std::move(d));
      schedule_flush(self, millis{0});
    },
    [=](pending_atom) { return self->state.pending.oldest(); },
    [=](flush_atom) { publish(self); },
    [=](retry_atom, delivery_record& d, int64_t delay_ms) {
      return self->make_response_promise<caf::ok_atom>().delegate(
        self->state.broker, sim_publish_atom::value, std::move(d), delay_ms);
    },
    [=](dead_letter_atom, delivery_record& d) {
      return self->make_response_promise<caf::ok_atom>().delegate(
        self->state.broker, sim_publish_atom::value, std::string{dead_queue},
        std::move(d));
    },
  };
}

// -- consumer --------------------------------------------------------------------

struct consumer_state {
  static inline const char* name = "chime.sim.consumer";
};

caf::behavior memory_consumer(caf::stateful_actor<consumer_state>* self,
                              context_ptr ctx, caf::actor broker,
                              std::string queue, std::string target) {
  self->send(broker, sim_subscribe_atom::value, queue,
             caf::actor_cast<caf::actor>(self));
  return {
    [=](deliver_atom, delivery_record& d, receipt& r) {
      self->send(ctx->dir->get(target), deliver_atom::value, std::move(d),
                 std::move(r));
    },
    [=](ack_atom a, std::vector<receipt>& rs) {
      for (auto& r : rs)
        self->send(broker, a, std::move(r));
    },
    [=](nack_atom a, receipt& r, bool requeue) {
      self->send(broker, a, std::move(r), requeue);
    },
  };
}

} // namespace

caf::actor spawn_memory_broker(caf::actor_system& sys, broker_options opts,
                               env* e) {
  return sys.spawn(memory_broker, opts, e);
}

caf::actor spawn_memory_publisher(caf::actor_system& sys, context_ptr ctx,
                                  caf::actor broker) {
  return caf::actor_cast<caf::actor>(
    sys.spawn(memory_publisher, std::move(ctx), std::move(broker)));
}

caf::actor spawn_memory_consumer(caf::actor_system& sys, context_ptr ctx,
                                 caf::actor broker, std::string queue,
                                 std::string target) {
  return sys.spawn(memory_consumer, std::move(ctx), std::move(broker),
                   std::move(queue), std::move(target));
}

} // namespace chime::sim
