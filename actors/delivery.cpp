#include "actors/delivery.hpp"

#include "actors/backoff.hpp"
#include "actors/circuit_breaker.hpp"
#include "actors/concurrency_limit.hpp"
#include "actors/cluster_view.hpp"
#include "actors/errc.hpp"
#include "actors/occasion.hpp"
#include "actors/handoff.hpp"
#include "actors/journal.hpp"
#include "actors/protocol.hpp"
#include "actors/mailer_front.hpp"
#include "actors/rate_limiter.hpp"
#include "actors/schedule.hpp"
#include "actors/sharding.hpp"
#include "runtime/assert.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"
#include "runtime/request_deadlines.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>

namespace chime {

namespace {

/// One delivery on its way, with the broker message it came in (if any),
/// or the promise to the peer that forwarded it (its consumer holds the
/// broker message and settles it by our verdict).
struct job {
  delivery_record d;
  std::optional<receipt> from;
  std::optional<caf::response_promise> forwarded;
  uint32_t reroutes = 0; ///< times it found no owner to go to
  /// When it last joined the queue (monotonic).
  std::chrono::steady_clock::time_point since{};
  /// Its request went to the email service and its outcome is not yet
  /// recorded: it holds one of the concurrency limit's places.
  bool sending = false;

  /// Its broker message is held unacked (here or by the peer that
  /// forwarded it) until the job is settled.
  bool holds_message() const {
    return from || forwarded;
  }
};

/// Local: look for jobs held too long in the queue.
using hold_atom = caf::atom_constant<caf::atom("hold")>;
/// Local: the earliest held job's instant may have come.
using held_tick_atom = caf::atom_constant<caf::atom("held_tick")>;
/// Local: a send token may be ready.
using send_tick_atom = caf::atom_constant<caf::atom("send_tick")>;
/// Local: the transport replaced at that replacement runs no more.
using transport_gone_atom = caf::atom_constant<caf::atom("tp_gone")>;
/// Local: ack what this turn of the mailbox settled.
using ack_flush_atom = caf::atom_constant<caf::atom("ack_flush")>;
/// Local: ask the journal what this turn of the mailbox has to ask it.
using ask_flush_atom = caf::atom_constant<caf::atom("ask_flush")>;

/// A forwarding peer's verdicts on a delivery it holds the message of.
constexpr const char* verdict_ack = "ack";
constexpr const char* verdict_dead = "dead";
constexpr const char* verdict_reroute = "reroute";

/// The outbox sweeper's probes travel the main queue as deliveries of no
/// user, keyed by the node that sent them (see spawn_outbox_sweeper).
constexpr std::string_view probe_prefix = "probe:";

std::string probe_key(const node_context& ctx) {
  return std::string{probe_prefix} + (ctx.cluster ? ctx.cluster->self() : "");
}

/// The node whose sweeper sent a probe.
std::string probe_sender(const delivery_record& d) {
  return d.key.substr(probe_prefix.size());
}

bool is_probe(const delivery_record& d) {
  return d.user_id.empty() && d.key.compare(0, probe_prefix.size(), probe_prefix) == 0;
}

/// A send out through the mailer front, until its answer.
struct send_wait {
  job j;
  std::chrono::steady_clock::time_point started;
  uint64_t deadline = 0;
};

/// An outcome to record, and what follows once it is.
struct outcome_ask {
  job j;
  delivery_outcome o;
  millis retry_delay;
};

/// What a turn of the mailbox has to ask one journal: its re-checks and its
/// outcomes, each asked in one request at the turn's end (a request each
/// had been four actor messages a delivery, and a response promise and a
/// time-out each way).
struct journal_asks {
  std::vector<job> attempts;
  std::vector<outcome_ask> outcomes;
};

struct delivery_state {
  context_ptr ctx;
  std::deque<job> queue;
  /// Fired ahead of their instant (the fire lead), by instant: set aside
  /// until then, so that a job due now behind them (a retry, a catch-up, a
  /// forward) is not held up for the lead as well. Counted with the queue.
  std::multimap<int64_t, job> held;
  /// The instant the wake-up for the earliest held job is armed for, until
  /// it comes (held_tick_atom).
  int64_t held_wake_ms = std::numeric_limits<int64_t>::max();
  /// By journal, asked at the turn's end (ask_flush_atom): at most the
  /// deliveries in flight.
  std::map<std::string, journal_asks> asks;
  /// Broker messages settled in this turn of the mailbox, acked together at
  /// its end (ack_flush_atom): at most the deliveries in flight.
  std::vector<receipt> acks;
  /// The sends out, by the id their answer comes under.
  std::unordered_map<uint64_t, send_wait> sends;
  /// Transports replaced because one of their requests went unanswered:
  /// the keys of their requests that may still be running, by replacement,
  /// until it runs no more; and jobs of those keys, waiting for them.
  uint64_t replacements = 0;
  std::multimap<uint64_t, std::string> quarantined;
  std::map<std::string, job> parked;
  std::unordered_set<std::string> active; ///< queued, in flight or backing off
  std::unordered_map<std::string, job> waiting; ///< backing off, by key
  /// Jobs forwarded to their shard's owner, until it gives its verdict or
  /// goes down (then they are routed again).
  std::unordered_map<uint64_t, std::pair<caf::actor_addr, job>> forwards;
  uint64_t forward_seq = 0;
  std::unordered_set<caf::actor_addr> monitored;
  std::unordered_map<std::string, uint32_t> in_flight_by_user;
  std::unordered_multimap<std::string, caf::response_promise> drains;
  std::unordered_map<uint32_t, uint32_t> in_flight_by_shard;
  /// Waiting for the in-flight sends of some shards (or of all: empty set).
  std::vector<std::pair<std::vector<uint32_t>, caf::response_promise>>
    shard_drains;
  /// Begun and not finished: re-checking, ready, sending or recording.
  uint32_t in_flight = 0;
  /// Sent or sending and not yet recorded: what a crash can duplicate, and
  /// what the concurrency limit bounds. The re-checks run ahead of it (as
  /// many again), so that a journal round trip never leaves the service's
  /// places idle.
  uint32_t sending = 0;
  bool draining = false; ///< the node is stopping: start nothing new
  double rate = 0;       ///< the limiter's rate (a cluster re-splits it)
  std::mt19937_64 rng;
  std::optional<rate_limiter> limiter;
  /// Paces the sends themselves: the re-check before a send takes the
  /// journal a varying time, and after a slow spell its answers come
  /// together; without it their sends would too, past the limit.
  std::optional<rate_limiter> send_limiter;
  std::deque<job> ready; ///< re-checked, waiting for a send token
  bool send_wake_pending = false;
  std::optional<circuit_breaker> breaker;
  std::optional<concurrency_limit> limit;
  bool wake_pending = false;
  request_deadlines deadlines;
  /// When this node's newest probe back from the broker was sent.
  int64_t probe_back_ms = std::numeric_limits<int64_t>::min();
  // Resolved once: pump runs for every message.
  metric* queue_gauge = &get_metric("chime_delivery_queue");
  metric* breaker_gauge = &get_metric("chime_breaker_state");
  metric* tokens_gauge = &get_metric("chime_rate_limit_tokens");
  metric* limit_gauge = &get_metric("chime_email_concurrency_limit");
  metric* timeout_gauge = &get_metric("chime_email_timeout_ms");
  metric* ambiguous = &get_metric("chime_email_ambiguous_total");
  metric* unsettled_resends = &get_metric("chime_email_unsettled_resends_total");
  metric* retries_handed_back = &get_metric("chime_retries_via_broker_total");
  metric* queue_full = &get_metric("chime_delivery_queue_full_total");
  std::unordered_map<int, metric*> email_requests;
  static inline const char* name = "chime.delivery";
};

/// The seam, and what the delivery actor sends itself.
using delivery_impl_actor = delivery_actor::extend<
  caf::reacts_to<route_atom, delivery_record, receipt, bool, uint32_t>,
  caf::reacts_to<retry_atom, std::string>, caf::reacts_to<tick_atom>,
  caf::reacts_to<held_tick_atom>, caf::reacts_to<send_tick_atom>,
  caf::reacts_to<hold_atom>,
  caf::reacts_to<deadline_tick_atom>,
  caf::reacts_to<outcome_atom, delivery_outcome, int64_t>,
  caf::reacts_to<mail_done_atom>, caf::reacts_to<ack_flush_atom>,
  caf::reacts_to<ask_flush_atom>,
  caf::reacts_to<transport_gone_atom, uint64_t>>;

using delivery_self = delivery_impl_actor::stateful_pointer<delivery_state>;

void pump(delivery_self self);
void pump_sends(delivery_self self);
void settle_shard_drains(delivery_self self);
void route(delivery_self self, job j, bool later);
void hand_over(delivery_self self, job j);

void enqueue(delivery_state& st, job j) {
  j.since = st.ctx->monotonic();
  st.queue.push_back(std::move(j));
}

/// Jobs waiting here for their turn: queued, or held until their instant.
int64_t queued(const delivery_state& st) {
  return static_cast<int64_t>(st.queue.size() + st.held.size());
}

/// The held jobs whose instant has come go back to the queue's front, in
/// the order of their instants (they were queued before what is there).
void release_held(delivery_state& st, int64_t now_ms) {
  auto due = st.held.upper_bound(now_ms);
  for (auto i = due; i != st.held.begin();) {
    --i;
    st.queue.push_front(std::move(i->second));
  }
  st.held.erase(st.held.begin(), due);
}

/// Where the re-check or outcome of `d` waits for the turn's end.
journal_asks& asks_of(delivery_self self, const delivery_record& d) {
  auto& st = self->state;
  // Sent to itself behind what the mailbox holds now: those messages' asks
  // go along.
  if (st.asks.empty())
    self->send(self, ask_flush_atom::value);
  return st.asks[send_journal_of(d.user_id, st.ctx->shard_count)];
}

void ack(delivery_self self, const receipt& r) {
  auto& acks = self->state.acks;
  // Sent to itself behind what the mailbox holds now: the acks of those
  // messages go along.
  if (acks.empty())
    self->send(self, ack_flush_atom::value);
  acks.push_back(r);
}

void flush_acks(delivery_self self) {
  // By consumer (a node has one a queue), in the order they were settled.
  auto acks = std::move(self->state.acks);
  self->state.acks.clear();
  while (!acks.empty()) {
    auto to = acks.front().consumer;
    auto rest = std::stable_partition(
      acks.begin(), acks.end(),
      [&](const receipt& r) { return r.consumer != to; });
    std::vector<receipt> theirs(std::make_move_iterator(rest),
                                std::make_move_iterator(acks.end()));
    acks.erase(rest, acks.end());
    caf::anon_send(to, ack_atom::value, std::move(theirs));
  }
}

void settle(delivery_self self, job& j, bool dead) {
  if (j.forwarded) {
    j.forwarded->deliver(std::string{dead ? verdict_dead : verdict_ack});
  } else if (j.from && dead && j.from->is_part()) {
    // The broker dead-letters whole messages: this part goes on its own.
    // Should the broker be away, the journal still says dead; only the
    // operators' copy is missing.
    auto from = *j.from;
    auto key = j.d.key;
    self
      ->request(handoff_at(*self->state.ctx->dir), journal_timeout,
                dead_letter_atom::value, j.d)
      .then([self, from](caf::ok_atom) { ack(self, from); },
            [self, from, key](caf::error&) {
              log(log_level::warn, "delivery",
                  "dead letter not copied to the dead-letter queue",
                  {{"key", key}});
              ack(self, from);
            });
  } else if (j.from) {
    if (dead)
      caf::anon_send(j.from->consumer, nack_atom::value, *j.from, false);
    else
      ack(self, *j.from);
  }
}

/// Frees the job's place in flight; unless it will be retried, forgets it
/// and settles its broker message.
void finish(delivery_self self, job& j, bool retrying) {
  auto& st = self->state;
  if (!retrying) {
    st.active.erase(j.d.key);
    settle(self, j, j.d.status == delivery_status::dead);
  }
  CHIME_ASSERT(st.in_flight > 0 && st.in_flight_by_user[j.d.user_id] > 0,
               "a delivery finished that was not in flight");
  if (--st.in_flight_by_user[j.d.user_id] == 0) {
    st.in_flight_by_user.erase(j.d.user_id);
    auto [first, last] = st.drains.equal_range(j.d.user_id);
    for (auto i = first; i != last; ++i)
      i->second.deliver(caf::ok_atom::value);
    st.drains.erase(first, last);
  }
  --st.in_flight;
  if (j.sending) {
    CHIME_ASSERT(st.sending > 0, "a send ended that was not counted");
    j.sending = false;
    --st.sending;
    pump_sends(self);
  }
  if (--st.in_flight_by_shard[shard_of(j.d.user_id, st.ctx->shard_count)] == 0)
    st.in_flight_by_shard.erase(shard_of(j.d.user_id, st.ctx->shard_count));
  settle_shard_drains(self);
  pump(self);
}

/// Outside a cluster every delivery is this node's; in one, only those of
/// shards whose lease it holds now (checked on its own monotonic clock).
bool ours(const delivery_state& st, const delivery_record& d) {
  auto& cluster = st.ctx->cluster;
  if (!cluster)
    return true;
  auto shard = shard_of(d.user_id, st.ctx->shard_count);
  if (st.ctx->broken.no_fencing)
    return cluster->held_epoch(shard) != 0;
  return cluster->valid_epoch(shard, st.ctx->monotonic()) != 0;
}

/// Sends a delivery that is not this node's to its shard's owner, which
/// answers with its verdict once the delivery is done (or gives it back);
/// our consumer keeps the broker message meanwhile and settles it by that
/// verdict. With no owner reachable yet (a takeover in progress), or when
/// the owner gives it back, it is looked at again shortly, its broker
/// message still unacked. If the owner goes down first, its forwards are
/// routed again.
void route(delivery_self self, job j, bool later) {
  auto& st = self->state;
  if (j.forwarded) {
    // A peer forwarded it to a node that does not own it (any more): the
    // peer routes it again.
    j.forwarded->deliver(std::string{verdict_reroute});
    return;
  }
  if (st.draining)
    return; // unacked: the broker redelivers it when our consumer closes
  auto& cluster = *st.ctx->cluster;
  auto owner = cluster.owner_of(shard_of(j.d.user_id, st.ctx->shard_count));
  auto peer = owner.empty() || owner == cluster.self()
                ? delivery_actor{}
                : caf::actor_cast<delivery_actor>(cluster.peer(owner, delivery_name));
  if (later || !peer || !j.from) {
    // Backing off to about a membership round: an owner may be away for a
    // lease or longer, and a new one shows up at a round.
    auto delay = std::min<millis>(millis{int64_t{100} << std::min(j.reroutes, 10u)},
                                  st.ctx->reroute_max);
    self->delayed_send(self, delay, route_atom::value, std::move(j.d),
                       j.from.value_or(receipt{}), j.from.has_value(),
                       j.reroutes + 1);
    return;
  }
  if (st.monitored.insert(peer.address()).second)
    self->monitor(peer);
  auto id = ++st.forward_seq;
  auto d = j.d;
  st.forwards.emplace(id, std::make_pair(peer.address(), std::move(j)));
  // Long enough for the owner's back-off between attempts.
  auto wait = st.ctx->backoff_cap + st.ctx->email_timeout + journal_timeout;
  self->request(peer, wait, deliver_atom::value, std::move(d))
    .then(
      [=](std::string& verdict) {
        auto& st = self->state;
        auto i = st.forwards.find(id);
        if (i == st.forwards.end())
          return; // routed again already (the owner went down)
        auto fwd = std::move(i->second.second);
        st.forwards.erase(i);
        if (verdict == verdict_reroute)
          route(self, std::move(fwd), true);
        else
          settle(self, fwd, verdict == verdict_dead);
      },
      [=](caf::error&) {
        auto& st = self->state;
        auto i = st.forwards.find(id);
        if (i == st.forwards.end())
          return;
        auto fwd = std::move(i->second.second);
        st.forwards.erase(i);
        route(self, std::move(fwd), true);
      });
}

void classify(delivery_self self, job j, const send_result& r);
void answers(delivery_self self);

/// The transport left a request unanswered past its time-out (it answers
/// every request within it, so it is stuck): it is replaced, and stopped,
/// which aborts its transfers, so none of its requests is answered now:
/// each may have gone out. Their keys are not sent again until it runs no
/// more (its thread sees the stop at once; a time-out later, surely), so
/// that no request is in flight twice.
void transport_stuck(delivery_self self) {
  auto& st = self->state;
  answers(self); // the ones that came in time
  auto gen = ++st.replacements;
  for (auto& key : st.ctx->mail_front->replace())
    st.quarantined.emplace(gen, key);
  self->delayed_send(self, st.ctx->email_timeout, transport_gone_atom::value, gen);
  auto sends = std::move(st.sends);
  st.sends.clear();
  for (auto& [id, w] : sends) {
    st.deadlines.close(w.deadline);
    classify(self, std::move(w.j),
             send_result{0, -1, "email transport stuck: replaced", true});
  }
}

bool still_running(const delivery_state& st, const std::string& key) {
  for (auto& [gen, k] : st.quarantined)
    if (k == key)
      return true;
  return false;
}

/// The transport replaced at replacement `gen` runs no more: its keys may
/// be sent again.
void transport_gone(delivery_self self, uint64_t gen) {
  auto& st = self->state;
  auto [first, last] = st.quarantined.equal_range(gen);
  std::vector<std::string> keys;
  for (auto q = first; q != last; ++q)
    keys.push_back(q->second);
  st.quarantined.erase(first, last);
  for (auto& key : keys) {
    if (auto p = st.parked.find(key); p != st.parked.end() && !still_running(st, key)) {
      enqueue(st, std::move(p->second));
      st.parked.erase(p);
    }
  }
  pump(self);
}

/// The owner a job was forwarded to went down: route its jobs again.
void owner_down(delivery_self self, const caf::actor_addr& owner) {
  auto& st = self->state;
  st.monitored.erase(owner);
  std::vector<job> again;
  for (auto i = st.forwards.begin(); i != st.forwards.end();) {
    if (i->second.first == owner) {
      again.push_back(std::move(i->second.second));
      i = st.forwards.erase(i);
    } else {
      ++i;
    }
  }
  for (auto& j : again)
    route(self, std::move(j), true);
}

/// Gives up a job this node may no longer send (its lease is gone): the
/// delivery goes to its shard's owner.
void hand_over(delivery_self self, job j) {
  finish(self, j, true);
  self->state.active.erase(j.d.key);
  route(self, std::move(j), true);
}

/// The outcome counter of `status`, looked up once per status: an outcome
/// is journaled for every message.
metric& deliveries_total(delivery_status status) {
  constexpr auto count = static_cast<size_t>(delivery_status::cancelled) + 1;
  static std::array<metric*, count> by_status{};
  auto& m = by_status[static_cast<size_t>(status)];
  if (!m)
    m = &get_metric("chime_deliveries_total{status=\""
                    + std::string{to_string(status)} + "\"}");
  return *m;
}

/// The email request counter of an HTTP status (0: no answer), looked up
/// once per status.
metric& email_requests_total(delivery_state& st, int http_status) {
  auto i = st.email_requests.find(http_status);
  if (i != st.email_requests.end())
    return *i->second;
  auto& m = get_metric("chime_email_requests_total{result=\""
                       + (http_status == 0 ? std::string{"no_answer"}
                                           : std::to_string(http_status))
                       + "\"}");
  st.email_requests.emplace(http_status, &m);
  return m;
}

/// Waits out `delay` before the job is tried again. A job whose broker
/// message is held waits in the broker instead (a retry queue that brings
/// it back after the delay), and its message is acked once the broker has
/// the retry: nothing waits in memory, and no message stays unacked long
/// enough for the broker's consumer_timeout. Without a broker, or while it
/// is away, the job waits here.
void retry_later(delivery_self self, job j, millis delay,
                 bool via_broker = true) {
  auto& st = self->state;
  auto key = j.d.key;
  if (via_broker && j.holds_message()) {
    self
      ->request(handoff_at(*st.ctx->dir), journal_timeout,
                retry_atom::value, j.d, int64_t{delay.count()})
      .then(
        [=](caf::ok_atom) mutable {
          self->state.active.erase(j.d.key);
          settle(self, j, false);
          self->state.retries_handed_back->add();
        },
        [=](caf::error&) mutable {
          // The broker is away (and with it, likely, the connection our
          // message came on): wait here.
          retry_later(self, std::move(j), delay, false);
        });
    return;
  }
  st.waiting.insert_or_assign(key, std::move(j));
  self->delayed_send(self, delay, retry_atom::value, std::move(key));
}

/// Its outcome is recorded: the job ends, or waits for its retry.
void recorded(delivery_self self, job j, const delivery_outcome& o,
              millis retry_delay) {
  deliveries_total(o.status).add();
  if (o.status == delivery_status::sent) {
    static auto& lateness = get_histogram("chime_delivery_lateness_seconds");
    lateness.observe_us(std::max<int64_t>(0, o.at_ms - j.d.due_at_ms) * 1000);
  } else if (auto& board = self->state.ctx->supervision) {
    board->failed("delivery", j.d.key, status_name(o.status) + ": " + o.error);
  }
  auto level = o.status == delivery_status::dead ? log_level::warn
                                                 : log_level::debug;
  if (log_enabled(level))
    log(level, "delivery", "delivery " + status_name(o.status),
        {{"user_id", j.d.user_id}, {"key", j.d.key},
         {"attempts", int64_t{j.d.attempts}}});
  bool again = o.status == delivery_status::failed;
  finish(self, j, again);
  if (again)
    retry_later(self, std::move(j), retry_delay);
}

void not_recorded(delivery_self self, job j, const delivery_outcome& o,
                  millis retry_delay, const caf::error& err) {
  if (is(err, journal_errc::fenced)) {
    // Our lease went while the request was out: the new owner
    // decides (if the service had accepted it, it is the in-flight
    // duplicate a lost lease can cost).
    log(log_level::warn, "delivery", "outcome fenced: lease lost",
        {{"key", j.d.key}, {"status", status_name(o.status)}});
    get_metric("chime_deliveries_fenced_total").add();
    hand_over(self, std::move(j));
    return;
  }
  auto key = j.d.key;
  self->state.waiting.insert_or_assign(std::move(key), std::move(j));
  self->delayed_send(self, std::chrono::seconds{1}, outcome_atom::value,
                     o, retry_delay.count());
}

/// Journals the outcome (at the turn's end, with the turn's others); keeps
/// trying while the journal is away, because the email service already
/// answered and must not be asked again.
void record(delivery_self self, job j, delivery_outcome o,
            millis retry_delay) {
  auto& asks = asks_of(self, j.d);
  asks.outcomes.push_back({std::move(j), std::move(o), retry_delay});
}

void ask_outcomes(delivery_self self, const journal_actor& journal,
                  std::vector<outcome_ask> asks) {
  std::vector<delivery_outcome> outcomes;
  for (auto& a : asks)
    outcomes.push_back(a.o);
  // One copy for both handlers (only one of them runs).
  auto held = std::make_shared<std::vector<outcome_ask>>(std::move(asks));
  request_within(
    self, journal, journal_timeout,
    [self, held](std::vector<caf::error>& errors) {
      CHIME_ASSERT(errors.size() == held->size(),
                   "the journal answered a different number of outcomes");
      for (size_t i = 0; i < errors.size(); ++i) {
        auto& a = (*held)[i];
        if (errors[i])
          not_recorded(self, std::move(a.j), a.o, a.retry_delay, errors[i]);
        else
          recorded(self, std::move(a.j), a.o, a.retry_delay);
      }
    },
    [self, held](caf::error& err) {
      for (auto& a : *held)
        not_recorded(self, std::move(a.j), a.o, a.retry_delay, err);
    },
    outcome_atom::value, std::move(outcomes));
}

void classify(delivery_self self, job j, const send_result& r) {
  auto& st = self->state;
  auto& ctx = *st.ctx;
  delivery_outcome o;
  o.key = j.d.key;
  o.at_ms = to_ms(ctx.clock->now());
  o.attempts = j.d.attempts;
  millis retry_delay{0};
  bool ok = r.http_status >= 200 && r.http_status < 300;
  bool permanent = r.http_status >= 400 && r.http_status < 500
                   && r.http_status != 408 && r.http_status != 429;
  if (ok || permanent)
    st.breaker->success(); // the service answered for itself
  else
    st.breaker->failure(ctx.monotonic());
  email_requests_total(st, r.http_status).add();
  if (r.ambiguous)
    st.ambiguous->add();
  if (ok) {
    o.status = delivery_status::sent;
  } else {
    o.error = r.http_status == 0 ? r.error
                                 : "HTTP " + std::to_string(r.http_status);
    bool exhausted = ctx.delivery_attempts_max > 0
                     && j.d.attempts >= ctx.delivery_attempts_max;
    if (permanent || exhausted) {
      o.status = delivery_status::dead;
    } else {
      o.status = delivery_status::failed;
      retry_delay = backoff_delay(j.d.attempts, ctx.backoff_base,
                                  ctx.backoff_cap, millis{r.retry_after_ms},
                                  st.rng);
    }
  }
  j.d.status = o.status;
  j.d.last_error = o.error;
  record(self, std::move(j), std::move(o), retry_delay);
}

void send_email(delivery_self self, job j);

/// The re-check's verdict: the job is sent, ends, or goes to the owner.
void judged(delivery_self self, job j, attempt_verdict& v) {
  if (v.fenced || !ours(self->state, j.d)) {
    self->state.breaker->abandon();
    hand_over(self, std::move(j));
    return;
  }
  if (!v.proceed && !self->state.ctx->broken.no_recheck) {
    self->state.breaker->abandon();
    if (log_enabled(log_level::debug))
      log(log_level::debug, "delivery", "delivery skipped",
          {{"user_id", j.d.user_id}, {"key", j.d.key},
           {"status", std::string{verdict_text(v)}}});
    if (!v.missing)
      j.d.status = v.status;
    finish(self, j, false);
    return;
  }
  // What is sent is what the user is now: a removed or moved
  // occasion is owed no more, and a new name or address is used.
  auto kind = find_occasion(j.d.occasion);
  if (v.proceed && v.user_changed
      && (!kind
          || !still_owed(*kind, v.user, j.d.local_date,
                         self->state.ctx->rules.feb29))) {
    self->state.breaker->abandon();
    delivery_outcome o{j.d.key, delivery_status::cancelled,
                       "the user removed or moved this occasion",
                       to_ms(self->state.ctx->clock->now()),
                       v.attempts - 1};
    j.d.status = o.status;
    record(self, std::move(j), std::move(o), millis{0});
    return;
  }
  if (v.proceed && v.user_changed) {
    j.d.email = v.user.email;
    j.d.message = kind->message(v.user);
  } else if (v.proceed) {
    j.d.email = std::move(v.email);
    j.d.message = std::move(v.message);
  }
  j.d.attempts = v.attempts;
  if (v.unsettled)
    self->state.unsettled_resends->add();
  self->state.ready.push_back(std::move(j));
  pump_sends(self);
}

void not_judged(delivery_self self, job j, const caf::error& err) {
  // The journal is away: nothing was attempted; try again later.
  self->state.breaker->abandon();
  log(log_level::warn, "delivery", "journal unavailable before attempt",
      {{"key", j.d.key}, {"error", self->system().render(err)}});
  finish(self, j, true);
  retry_later(self, std::move(j), std::chrono::seconds{1});
}

/// Re-checks the job before its send, at the turn's end with the turn's
/// others.
void attempt(delivery_self self, job j) {
  auto& asks = asks_of(self, j.d);
  asks.attempts.push_back(std::move(j));
}

void ask_attempts(delivery_self self, const journal_actor& journal,
                  std::vector<job> jobs) {
  auto& ctx = *self->state.ctx;
  std::vector<std::string> keys;
  for (auto& j : jobs)
    keys.push_back(j.d.key);
  auto held = std::make_shared<std::vector<job>>(std::move(jobs)); // as above
  request_within(
    self, journal, journal_timeout,
    [self, held](std::vector<attempt_verdict>& verdicts) {
      CHIME_ASSERT(verdicts.size() == held->size(),
                   "the journal answered a different number of re-checks");
      for (size_t i = 0; i < verdicts.size(); ++i)
        judged(self, std::move((*held)[i]), verdicts[i]);
    },
    [self, held](caf::error& err) {
      for (auto& j : *held)
        not_judged(self, std::move(j), err);
    },
    attempt_atom::value, std::move(keys), to_ms(ctx.clock->now()),
    static_cast<int64_t>(ctx.rules.catch_up.count()));
}

/// Asks each journal what this turn of the mailbox has for it.
void ask_journals(delivery_self self) {
  auto asks = std::move(self->state.asks);
  self->state.asks.clear();
  for (auto& [name, a] : asks) {
    auto journal = journal_at(*self->state.ctx->dir, name.c_str());
    // Outcomes first: they free places in flight.
    if (!a.outcomes.empty())
      ask_outcomes(self, journal, std::move(a.outcomes));
    if (!a.attempts.empty())
      ask_attempts(self, journal, std::move(a.attempts));
  }
}

void pump_sends(delivery_self self) {
  auto& st = self->state;
  while (!st.ready.empty() && st.sending < st.limit->limit()) {
    auto now = st.ctx->monotonic();
    if (auto wait = st.send_limiter->wait(now); wait.count() > 0) {
      if (!st.send_wake_pending) {
        st.send_wake_pending = true;
        self->delayed_send(self, wait, send_tick_atom::value);
      }
      return;
    }
    st.send_limiter->try_take(now);
    auto j = std::move(st.ready.front());
    st.ready.pop_front();
    send_email(self, std::move(j));
  }
}

void send_email(delivery_self self, job j) {
  auto& st = self->state;
  auto timeout = st.limit->timeout();
  j.sending = true;
  ++st.sending;
  st.limit->started(st.sending);
  auto id = st.ctx->mail_front->send(j.d.email, j.d.message, j.d.key,
                                     int64_t{timeout.count()});
  auto deadline = open_deadline(self, timeout + std::chrono::seconds{5},
                                [=](caf::error&) { transport_stuck(self); });
  auto waiting = st.sends.emplace(id, send_wait{std::move(j), st.ctx->monotonic(),
                                                      deadline}).second;
  CHIME_ASSERT(waiting, "two sends wait for one answer");
}

/// The answer to the send out under `id` (none waits for it when it was a
/// predecessor's, or came after its transport was replaced).
void sent(delivery_self self, uint64_t id, const send_result& r) {
  auto& st = self->state;
  auto i = st.sends.find(id);
  if (i == st.sends.end())
    return;
  auto w = std::move(i->second);
  st.sends.erase(i);
  st.deadlines.close(w.deadline);
  if (r.http_status != 0)
    st.limit->answered(std::chrono::duration_cast<std::chrono::microseconds>(
                         st.ctx->monotonic() - w.started),
                       st.sending, st.ctx->monotonic());
  classify(self, std::move(w.j), r);
}

/// The answers that came: all are taken before any is acted on, so that a
/// crash while acting loses none the front must remember.
void answers(delivery_self self) {
  std::vector<mail_answer> came;
  self->state.ctx->mail_front->take_answers(came);
  for (auto& a : came)
    sent(self, a.id, a.result);
}

/// How long a job sent back to the broker should wait there: about as
/// long as the queue still needs (the rate limit's pace, an open breaker's
/// cooldown), a second at least.
millis wait_in_broker(const delivery_state& st) {
  auto ahead = st.rate > 0 ? millis{static_cast<int64_t>(
                               static_cast<double>(st.queue.size()) / st.rate * 1000)}
                           : millis{0};
  if (st.breaker->current() == circuit_breaker::state::open)
    ahead = std::max(ahead, std::chrono::duration_cast<millis>(
                              st.breaker->open_until() - st.ctx->monotonic()));
  return std::clamp<millis>(ahead, std::chrono::seconds{1}, hold_max);
}

/// Jobs that waited in the queue for hold_max (an open breaker, a rate
/// limit below the pace of intake) go back to the broker to wait there.
void hand_back_held(delivery_self self) {
  auto& st = self->state;
  auto now = st.ctx->monotonic();
  auto delay = wait_in_broker(st);
  std::vector<job> back;
  auto take_held_long = [&](auto& jobs, auto job_of) {
    for (auto i = jobs.begin(); i != jobs.end();) {
      if (auto& j = job_of(*i); j.holds_message() && now - j.since >= hold_max) {
        back.push_back(std::move(j));
        i = jobs.erase(i);
      } else {
        ++i;
      }
    }
  };
  take_held_long(st.queue, [](job& j) -> job& { return j; });
  take_held_long(st.held, [](auto& entry) -> job& { return entry.second; });
  for (auto& j : back)
    retry_later(self, std::move(j), delay);
  st.queue_gauge->set(queued(st));
}

void wake_in(delivery_self self, std::chrono::microseconds delay) {
  auto& st = self->state;
  if (st.wake_pending)
    return;
  st.wake_pending = true;
  self->delayed_send(self, delay, tick_atom::value);
}

/// Sets both limiters from the node's rate. The sends are paced a little
/// under it, and their burst fits in what is left (1 % of the rate, unless
/// a larger burst is configured), so that no second the service counts sees
/// more than the rate, whatever the jitter of the requests' arrival. A burst
/// of one would waste the tokens a late wake-up misses (a token every 2 ms
/// at 500/s). The re-checks ahead of the sends may run further ahead.
void pace(delivery_state& st) {
  // No share (just up, or leaving): the pump starts nothing new, and what
  // was re-checked goes out at the last share, never unlimited.
  if (st.rate < 0)
    return;
  auto rate = st.rate;
  auto now = st.ctx->monotonic();
  double burst = st.ctx->email_burst;
  st.send_limiter->set_rate(rate * 0.985, now);
  st.send_limiter->set_burst(std::max(burst, std::floor(rate * 0.01)));
  st.limiter->set_rate(rate * 0.985, now);
  st.limiter->set_burst(std::max(burst, std::floor(rate * 0.05)));
}

void pump(delivery_self self) {
  auto& st = self->state;
  if (st.ctx->cluster && st.ctx->cluster->rate_share() != st.rate) {
    st.rate = st.ctx->cluster->rate_share();
    pace(st);
  }
  if (st.rate < 0 && !st.queue.empty()) {
    // Just up in a cluster under a rate limit: the others have not yet
    // given this node its share of the limit.
    wake_in(self, std::chrono::milliseconds{200});
    st.queue_gauge->set(queued(st));
    return;
  }
  // Read once a turn: an instant is a millisecond, and the turn takes
  // less.
  auto now_ms = to_ms(st.ctx->clock->now());
  release_held(st, now_ms);
  while (!st.draining && !st.queue.empty()
         && st.in_flight - st.sending < st.limit->limit()) {
    if (still_running(st, st.queue.front().d.key)) {
      auto key = st.queue.front().d.key;
      st.parked.insert_or_assign(key, std::move(st.queue.front()));
      st.queue.pop_front();
      continue;
    }
    // Fired ahead of its instant (the fire lead): held until then, and
    // those behind it go on.
    if (auto due_ms = st.queue.front().d.due_at_ms; due_ms > now_ms) {
      st.held.emplace(due_ms, std::move(st.queue.front()));
      st.queue.pop_front();
      continue;
    }
    auto now = st.ctx->monotonic();
    // The limiter is asked first, so that a half-open breaker's single
    // probe is never granted and then held back by the limiter.
    if (auto wait = st.limiter->wait(now); wait.count() > 0) {
      get_metric("chime_rate_limiter_waits_total").add();
      wake_in(self, wait);
      break;
    }
    if (!st.breaker->allow(now)) {
      // Open: wait out the cooldown. Half-open with its probe out: the
      // probe's outcome pumps again; this wake is only a safety net.
      auto until = std::max(st.breaker->open_until(), now)
                   + std::chrono::milliseconds{1};
      wake_in(self, std::chrono::duration_cast<std::chrono::microseconds>(
                      until - now));
      break;
    }
    st.limiter->try_take(now);
    auto j = std::move(st.queue.front());
    st.queue.pop_front();
    ++st.in_flight_by_user[j.d.user_id];
    ++st.in_flight_by_shard[shard_of(j.d.user_id, st.ctx->shard_count)];
    ++st.in_flight;
    attempt(self, std::move(j));
  }
  // A wake-up of its own for the earliest held job: the pump's may be armed
  // for later (a breaker's cooldown), or an earlier one came since.
  if (!st.held.empty() && st.held.begin()->first < st.held_wake_ms) {
    st.held_wake_ms = st.held.begin()->first;
    self->delayed_send(self,
                       st.ctx->clock->real_delay(millis{st.held_wake_ms - now_ms}),
                       held_tick_atom::value);
  }
  st.queue_gauge->set(queued(st));
  st.breaker_gauge->set(static_cast<int64_t>(st.breaker->current()));
  st.tokens_gauge->set(static_cast<int64_t>(st.limiter->tokens()));
  st.limit_gauge->set(static_cast<int64_t>(st.limit->limit()));
  st.timeout_gauge->set(static_cast<int64_t>(st.limit->timeout().count()));
}

void accept(delivery_self self, job j) {
  auto& st = self->state;
  if (is_probe(j.d)) {
    // The nodes share the main queue: whichever consumes a probe tells its
    // sender (a lost word costs only a sweep's delay: the next probe).
    if (j.d.key == probe_key(*st.ctx)) {
      st.probe_back_ms = std::max(st.probe_back_ms, j.d.due_at_ms);
    } else if (auto& cluster = st.ctx->cluster) {
      auto peer = caf::actor_cast<delivery_actor>(
        cluster->peer(probe_sender(j.d), delivery_name));
      if (peer)
        self->send(peer, probe_atom::value, j.d.due_at_ms);
    }
    settle(self, j, false);
    return;
  }
  if (st.draining) {
    if (j.forwarded)
      j.forwarded->deliver(std::string{verdict_reroute});
    return; // unacked: the broker redelivers it when our consumer closes
  }
  if (!ours(st, j.d))
    return route(self, std::move(j), false);
  if (!st.active.insert(j.d.key).second) {
    // Already queued, in flight or backing off here: this copy (a republish
    // or a redelivery) adds nothing.
    settle(self, j, false);
    return;
  }
  if (queued(st) >= int64_t{st.ctx->delivery_queue_max} && j.holds_message()) {
    // Full: it waits in the broker instead.
    st.queue_full->add();
    retry_later(self, std::move(j), wait_in_broker(st));
    return;
  }
  enqueue(st, std::move(j));
  pump(self);
}

void settle_shard_drains(delivery_self self) {
  auto& st = self->state;
  auto& drains = st.shard_drains;
  for (auto i = drains.begin(); i != drains.end();) {
    auto busy = i->first.empty()
                  ? st.in_flight > 0
                  : std::any_of(i->first.begin(), i->first.end(),
                                [&](uint32_t s) {
                                  return st.in_flight_by_shard.count(s) > 0;
                                });
    if (busy) {
      ++i;
      continue;
    }
    // Whoever waits for the drain may stop the consumers next: what the
    // drained sends settled is acked first.
    flush_acks(self);
    i->second.deliver(caf::ok_atom::value);
    i = drains.erase(i);
  }
}

std::optional<receipt> maybe(receipt r, bool has) {
  return has ? std::optional<receipt>{std::move(r)} : std::nullopt;
}

delivery_impl_actor::behavior_type delivery(delivery_self self, context_ptr ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.rng.seed(st.ctx->seed);
  st.rate = st.ctx->cluster ? st.ctx->cluster->rate_share()
                           : st.ctx->email_rate_per_s;
  st.limiter.emplace(0, 1, st.ctx->monotonic());
  st.send_limiter.emplace(0, 1, st.ctx->monotonic());
  pace(st);
  st.breaker.emplace(st.ctx->breaker_failures_max, st.ctx->breaker_cooldown);
  self->set_down_handler(
    [self](caf::down_msg& msg) { owner_down(self, msg.source); });
  concurrency_limit::options lo;
  lo.max = std::max(st.ctx->delivery_concurrency_max, 1u);
  lo.initial = std::min(lo.initial, lo.max);
  lo.min = std::min(lo.min, lo.max);
  lo.timeout_ceiling = st.ctx->email_timeout;
  st.limit.emplace(lo);
  // Remembering accepted keys is a re-check of its own: off when the
  // simulator breaks the re-check on purpose, so that its checker sees it.
  st.ctx->mail_front->drive(self->system(), self->address(), st.ctx->make_mailer,
                            st.ctx->make_mail_transport,
                            st.ctx->broken.no_recheck ? 0 : 100000);
  self->delayed_send(self, hold_max / 4, hold_atom::value);
  return {
    [=](deliver_atom, delivery_record& d, receipt& r) {
      accept(self, job{std::move(d), std::move(r), std::nullopt});
    },
    [=](deliver_atom, std::vector<delivery_record>& ds, receipt& r) {
      for (auto& d : ds)
        accept(self, job{std::move(d), r, std::nullopt});
    },
    [=](deliver_atom, delivery_record& d) {
      // Forwarded by a peer whose consumer holds the broker message.
      auto rp = self->make_response_promise<std::string>();
      accept(self, job{std::move(d), std::nullopt, rp});
      return rp;
    },
    [=](route_atom, delivery_record& d, receipt& r, bool has_receipt,
        uint32_t reroutes) {
      accept(self, job{std::move(d), maybe(r, has_receipt), std::nullopt,
                       reroutes});
    },
    [=](submit_atom, delivery_record& d) {
      accept(self, job{std::move(d), std::nullopt, std::nullopt});
    },
    [=](retry_atom, const std::string& key) {
      auto& st = self->state;
      auto i = st.waiting.find(key);
      if (i == st.waiting.end())
        return;
      enqueue(st, std::move(i->second));
      st.waiting.erase(i);
      pump(self);
    },
    [=](tick_atom) {
      self->state.wake_pending = false;
      pump(self);
    },
    [=](held_tick_atom) {
      // Forgotten whether or not the instant has come: a wake-up that came
      // early (a wall clock stepped back, a delay truncated at a virtual
      // rate) finds the job still held, and this pump arms the next.
      self->state.held_wake_ms = std::numeric_limits<int64_t>::max();
      pump(self);
    },
    [=](send_tick_atom) {
      self->state.send_wake_pending = false;
      pump_sends(self);
    },
    [=](hold_atom) {
      self->delayed_send(self, hold_max / 4, hold_atom::value);
      hand_back_held(self);
    },
    [=](deadline_tick_atom) {
      check_deadlines(self);
    },
    [=](ack_flush_atom) { flush_acks(self); },
    [=](ask_flush_atom) { ask_journals(self); },
    [=](mail_done_atom) {
      answers(self);
    },
    [=](transport_gone_atom, uint64_t gen) {
      transport_gone(self, gen);
    },
    [=](probe_atom) {
      return self->state.probe_back_ms;
    },
    [=](probe_atom, int64_t sent_at_ms) {
      auto& back = self->state.probe_back_ms;
      back = std::max(back, sent_at_ms);
    },
    [=](outcome_atom, delivery_outcome& o, int64_t retry_delay_ms) {
      auto& st = self->state;
      auto i = st.waiting.find(o.key);
      if (i == st.waiting.end())
        return;
      auto j = std::move(i->second);
      st.waiting.erase(i);
      record(self, std::move(j), std::move(o), millis{retry_delay_ms});
    },
    [=](drain_atom, std::vector<uint32_t>& shards) {
      // Shards given away: their sends in flight end first. No shards: the
      // node stops, so nothing new starts and every send in flight ends.
      auto& st = self->state;
      if (shards.empty())
        st.draining = true;
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.shard_drains.emplace_back(std::move(shards), rp);
      settle_shard_drains(self);
      return rp;
    },
    [=](drain_atom, const std::string& user_id) {
      auto& st = self->state;
      auto rp = self->make_response_promise<caf::ok_atom>();
      if (st.in_flight_by_user.count(user_id) == 0)
        rp.deliver(caf::ok_atom::value);
      else
        st.drains.emplace(user_id, rp);
      return rp;
    },
  };
}

// -- outbox sweeper -------------------------------------------------------------

struct sweeper_state {
  context_ptr ctx;
  static inline const char* name = "chime.outbox_sweeper";
};

/// Claims and republishes the deliveries fired before `upto` (and the
/// grace) that delivery has not re-checked yet, and those open and
/// untouched for much longer than any backoff.
void sweep(caf::stateful_actor<sweeper_state>* self, int64_t upto) {
  auto& ctx = *self->state.ctx;
  auto now = ctx.clock->now();
  // Open deliveries untouched for much longer than any backoff (their
  // broker message lost, say, to an ack of a duplicate before a crash; or
  // no probe of ours came back for as long) are republished too; a live
  // copy makes the new one a no-op.
  auto stale = std::max<millis>(60 * ctx.outbox_grace,
                                std::chrono::duration_cast<millis>(
                                  4 * ctx.backoff_cap * ctx.clock_rate));
  // The later of the two (and no overflow when no probe came back yet).
  auto grace = ctx.outbox_grace.count();
  auto scheduled_before
    = std::max(std::min(to_ms(now), upto), to_ms(now - stale) + grace) - grace;
  self
    ->request(journal_at(*ctx.dir, journal_name), journal_timeout,
              outbox_atom::value, scheduled_before,
              to_ms(now - stale), uint32_t{10000}, to_ms(now))
    .then(
      [=](std::vector<delivery_record>& stuck) {
        if (stuck.empty())
          return;
        get_metric("chime_outbox_republished_total")
          .add(static_cast<int64_t>(stuck.size()));
        log(log_level::info, "outbox", "republishing unconfirmed deliveries",
            {{"count", static_cast<int64_t>(stuck.size())}});
        auto handoff = handoff_at(*self->state.ctx->dir);
        for (auto& d : stuck)
          self->send(handoff, submit_atom::value, std::move(d));
      },
      [=](caf::error&) {
        // The journal is away; the next tick tries again.
      });
}

caf::behavior outbox_sweeper(caf::stateful_actor<sweeper_state>* self,
                             context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      auto& ctx = *self->state.ctx;
      self->delayed_send(self, ctx.outbox_sweep_interval, tick_atom::value);
      // Deliveries fired since the oldest one the handoff still holds, or
      // since the newest probe back from the broker, are on their way, not
      // lost. A handoff that does not answer holds none; a delivery actor
      // that does not answer has seen no probe.
      auto handoff = handoff_at(*ctx.dir);
      self->request(handoff, journal_timeout, pending_atom::value)
        .then(
          [=](int64_t oldest) {
            self->request(delivery_at(*self->state.ctx->dir), journal_timeout,
                          probe_atom::value)
              .then([=](int64_t back) { sweep(self, std::min(oldest, back)); },
                    [](caf::error&) {});
          },
          [](caf::error&) {});
      delivery_record probe;
      probe.key = probe_key(ctx);
      probe.due_at_ms = to_ms(ctx.clock->now());
      self->send(handoff, submit_atom::value, std::move(probe));
    },
  };
}

// -- dead-letter keeper -----------------------------------------------------------

struct keeper_state {
  context_ptr ctx;
  static inline const char* name = "chime.dead_letter_keeper";
};

/// Records a dead-lettered delivery as dead (a bundle's part goes back
/// alone instead), then acks its message.
void keep(caf::stateful_actor<keeper_state>* self, const delivery_record& d,
          const receipt& r) {
  auto& ctx = *self->state.ctx;
  // The message is acked once `to` has taken the request; while `to` is
  // away it is held and tried again shortly (requeueing it would spin
  // while the database or the broker is down).
  auto hand_to = [=](const auto& to, const char* counted, auto... xs) {
    self->request(to, journal_timeout, xs...)
      .then(
        [=](caf::ok_atom) {
          get_metric(counted).add();
          caf::anon_send(r.consumer, ack_atom::value,
                         std::vector<receipt>{r});
        },
        [=](caf::error&) {
          self->delayed_send(self, std::chrono::seconds{1},
                             deliver_atom::value, d, r);
        });
  };
  if (r.is_part()) {
    // A whole bundle was dead-lettered (it reached the broker's delivery
    // limit): which of its deliveries was at fault is unknown, so each
    // goes back alone, through a retry queue, to reach the limit on its
    // own or be sent. One already settled is a no-op at its re-check.
    hand_to(handoff_at(*ctx.dir),
            "chime_dead_bundle_parts_retried_total", retry_atom::value, d,
            int64_t{0});
    return;
  }
  hand_to(journal_at(*ctx.dir, send_journal_of(d.user_id, ctx.shard_count)),
          "chime_dead_letters_total", outcome_atom::value,
          delivery_outcome{d.key, delivery_status::dead, "dead-lettered by the broker",
                           to_ms(ctx.clock->now())});
}

caf::behavior dead_letter_keeper(caf::stateful_actor<keeper_state>* self,
                                 context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  return {
    [=](deliver_atom, delivery_record& d, receipt& r) { keep(self, d, r); },
    [=](deliver_atom, std::vector<delivery_record>& ds, receipt& r) {
      for (auto& d : ds)
        keep(self, d, r);
    },
  };
}

} // namespace

delivery_actor delivery_at(const directory& dir) {
  return caf::actor_cast<delivery_actor>(dir.get(delivery_name));
}

delivery_actor spawn_delivery(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(delivery, std::move(ctx));
}

caf::actor spawn_outbox_sweeper(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(outbox_sweeper, std::move(ctx));
}

caf::actor spawn_dead_letter_keeper(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(dead_letter_keeper, std::move(ctx));
}

} // namespace chime
