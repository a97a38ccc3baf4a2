// The delivery actor re-checks each delivery in the journal before it is
// sent, journals its outcome before the broker message is settled, retries
// failures through the broker's retry queue, stops sending while its circuit
// breaker is open, and answers a drain only once the user's sends in flight
// have their outcomes. Driven on CAF's test_coordinator with a journal, a
// hand-off, a mailer and a consumer that record what they are asked.

#include "actors/delivery.hpp"
#include "actors/mailer_front.hpp"
#include "actors/protocol.hpp"
#include "runtime/directory.hpp"
#include "runtime/metrics.hpp"
#include "runtime/request_deadlines.hpp"
#include "tests/unit/coordinator_time.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace chime {
namespace {

using namespace std::chrono_literals;

/// The mailer seam, plus a tick that answers the held sends.
using test_mailer = mailer_actor::extend<caf::reacts_to<tick_atom>>;

/// What the fakes were asked, in order, and how they answer.
struct seen {
  std::vector<std::string> events; ///< "attempt K", "send K", "outcome K S", "ack T", "nack T", "retry K"
  /// The journal's verdict on a re-check: owed unless set otherwise.
  bool owed = true;
  delivery_status status_when_not_owed = delivery_status::sent;
  /// Whether the user changed since the fire: the verdict then carries
  /// them (ada), else the record's rendering (as_fired).
  bool user_changed = true;
  std::vector<std::string> sent; ///< "email | message" of each send
  /// The email service's answers, first to last; 200 once they run out.
  std::deque<int> answers;
  /// Held sends: the mailer answers them only when the test releases them.
  bool hold = false;
  std::vector<caf::typed_response_promise<send_result>> held;
  test_mailer mailer; ///< the latest; a tick answers its held sends
  int sends = 0;
  int ack_messages = 0; ///< messages the acks came in
  /// Requests the re-checks and outcomes came in.
  int attempt_requests = 0;
  int outcome_requests = 0;
};

user_record ada() {
  return {"u1", "Ada", "Lovelace", "ada@example.com", "UTC",
          {{"birthday", "1990-01-15"}}, 0};
}

struct delivery_fixture : coordinator_fixture {
  std::shared_ptr<seen> log = std::make_shared<seen>();
  caf::actor consumer;
  delivery_actor delivery;

  explicit delivery_fixture(uint32_t breaker_failures_max = 10,
                            std::function<void(node_context&)> tune = {})
    : coordinator_fixture(from_ms(1'800'003'600'000)) { // 2027-01-15T09:00Z
    ctx->dir = std::make_shared<directory>();
    ctx->breaker_failures_max = breaker_failures_max;
    ctx->breaker_cooldown = 5s;
    if (tune)
      tune(*ctx);
    auto log = this->log;
    auto journal =
      sys.spawn([log](caf::event_based_actor*) -> caf::behavior {
        auto attempt = [log](const std::string& key) {
          log->events.push_back("attempt " + key);
          attempt_verdict v;
          v.proceed = log->owed;
          v.attempts = 1;
          v.status = log->owed ? delivery_status::handed_off
                               : log->status_when_not_owed;
          v.user_changed = v.proceed && log->user_changed;
          if (v.user_changed)
            v.user = ada();
          else if (v.proceed) {
            v.email = "as-fired@example.com";
            v.message = "As fired";
          }
          return v;
        };
        auto outcome = [log](const delivery_outcome& o) {
          log->events.push_back("outcome " + o.key + " "
                                + status_name(o.status));
        };
        return {
          [log, attempt](attempt_atom, const std::string& key, int64_t,
                         int64_t) {
            ++log->attempt_requests;
            return attempt(key);
          },
          [log, attempt](attempt_atom, const std::vector<std::string>& keys,
                         int64_t, int64_t) {
            ++log->attempt_requests;
            std::vector<attempt_verdict> out;
            for (auto& key : keys)
              out.push_back(attempt(key));
            return out;
          },
          [log, outcome](outcome_atom, const delivery_outcome& o) {
            ++log->outcome_requests;
            outcome(o);
            return caf::ok_atom::value;
          },
          [log, outcome](outcome_atom, const std::vector<delivery_outcome>& os) {
            ++log->outcome_requests;
            for (auto& o : os)
              outcome(o);
            return std::vector<caf::error>(os.size());
          },
        };
      });
    for (auto name : send_journal_names)
      ctx->dir->put(name, journal);
    ctx->dir->put(handoff_name,
                  sys.spawn([log](caf::event_based_actor*) -> caf::behavior {
                    return {[log](retry_atom, const delivery_record& d, int64_t) {
                              log->events.push_back("retry " + d.key);
                              return caf::ok_atom::value;
                            },
                            [log](dead_letter_atom, const delivery_record& d) {
                              log->events.push_back("dead letter " + d.key);
                              return caf::ok_atom::value;
                            }};
                  }));
    ctx->make_mailer = [log](caf::actor_system& sys) {
      log->mailer = sys.spawn([log](test_mailer::pointer self) -> test_mailer::behavior_type {
        return {[log](tick_atom) {
                  for (auto& rp : log->held)
                    rp.deliver(send_result{200, -1, "", false});
                  log->held.clear();
                },
                [log, self](send_atom, const std::string& email,
                            const std::string& message, const std::string& key,
                            int64_t) -> caf::result<send_result> {
          log->events.push_back("send " + key);
          log->sent.push_back(email + " | " + message);
          ++log->sends;
          auto status = 200;
          if (!log->answers.empty()) {
            status = log->answers.front();
            log->answers.pop_front();
          }
          if (log->hold) {
            auto rp = self->make_response_promise<send_result>();
            log->held.push_back(rp);
            return caf::delegated<send_result>{};
          }
          return send_result{status, -1, "", false};
        }};
      });
      return mailer_actor{log->mailer};
    };
    consumer = sys.spawn([log](caf::event_based_actor*) -> caf::behavior {
      return {
        [log](ack_atom, const std::vector<receipt>& rs) {
          ++log->ack_messages;
          for (auto& r : rs)
            log->events.push_back("ack " + std::to_string(r.tag));
        },
        [log](nack_atom, const receipt& r, bool) {
          log->events.push_back("nack " + std::to_string(r.tag));
        },
      };
    });
    delivery = spawn_delivery(sys, ctx);
    sched.run();
  }

  ~delivery_fixture() {
    caf::anon_send_exit(delivery, caf::exit_reason::user_shutdown);
    // The mailer front is the node's, not the delivery actor's.
    ctx->mail_front->stop();
    sched.run();
  }

  /// The delivery actor crashes; the mailer front, the node's, lives on.
  void crash() {
    caf::anon_send_exit(delivery, caf::exit_reason::unhandled_exception);
    sched.run();
  }

  /// One send of user 1 is held by the mailer when the actor crashes.
  void crash_with_send_held() {
    log->hold = true;
    deliver(1);
    REQUIRE(log->sends == 1);
    crash();
  }

  /// Its supervisor starts the successor.
  void restart() {
    delivery = spawn_delivery(sys, ctx);
    sched.run();
  }

  /// The mailer answers the sends it holds.
  void release() {
    caf::anon_send(log->mailer, tick_atom::value);
    sched.run();
  }

  /// The broker brings the birthday message of user `n` (tag n), or, with
  /// `parts` > 1, one delivery of a bundle of that many; it is due
  /// `due_in` after the fixture's start.
  void deliver(int n, uint32_t parts = 1, millis due_in = 0ms) {
    auto id = "u" + std::to_string(n);
    delivery_record d{id + ":birthday:2027-01-15", id, "birthday", "2027-01-15",
                      to_ms(start + due_in), delivery_status::handed_off, 0, "", 0,
                      "ada@example.com", "Happy birthday"};
    caf::anon_send(delivery, deliver_atom::value, std::move(d),
                   receipt{static_cast<uint64_t>(n), 1, consumer, parts});
    sched.run();
  }

};

const std::string key1 = "u1:birthday:2027-01-15";

/// What user 1's delivery asks of the fakes when it is sent: re-check,
/// send, outcome, then what becomes of its broker message.
std::vector<std::string> sent_path(const std::string& outcome,
                                   std::vector<std::string> then) {
  std::vector<std::string> out{"attempt " + key1, "send " + key1,
                               "outcome " + key1 + " " + outcome};
  out.insert(out.end(), then.begin(), then.end());
  return out;
}

TEST_CASE("a delivery is re-checked, sent once, and its outcome journaled "
          "before its broker message is acked",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.deliver(1);
  CHECK(fx.log->events == sent_path("sent", {"ack 1"}));
}

TEST_CASE("a delivery fired ahead of its instant is held until then, not "
          "re-checked nor sent before it",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.deliver(1, 1, 2s);
  fx.advance(2s - 1ms);
  CHECK(fx.log->events.empty());
  fx.advance(1ms);
  CHECK(fx.log->events == sent_path("sent", {"ack 1"}));
}

/// A clock whose timers come early: 9/10 of the delay asked (a wall clock
/// stepped back while they ran, or a delay truncated at a virtual rate).
class early_timer_clock final : public clock {
public:
  explicit early_timer_clock(clock_ptr inner) : inner_(std::move(inner)) {
  }
  instant now() const override {
    return inner_->now();
  }
  std::chrono::microseconds real_delay(millis span) const override {
    return inner_->real_delay(span) * 9 / 10;
  }

private:
  clock_ptr inner_;
};

TEST_CASE("a held delivery whose wake-up comes early is woken again, and "
          "sent at its instant",
          "[unit][delivery]") {
  delivery_fixture fx(10, [](node_context& ctx) {
    ctx.clock = std::make_shared<early_timer_clock>(ctx.clock);
  });
  fx.deliver(1, 1, 2s);
  fx.advance(1900ms); // the first wake-up came at 1.8 s
  CHECK(fx.log->events.empty());
  fx.advance(100ms);
  CHECK(fx.log->events == sent_path("sent", {"ack 1"}));
}

TEST_CASE("a delivery due now is sent at once behind one held until its "
          "instant, and the held one at its instant",
          "[unit][delivery]") {
  delivery_fixture fx;
  const std::string key2 = "u2:birthday:2027-01-15";
  fx.deliver(1, 1, 2s);
  fx.deliver(2); // a retry or a catch-up, say, handed over after it
  CHECK(fx.log->events == std::vector<std::string>{"attempt " + key2,
                                                   "send " + key2,
                                                   "outcome " + key2 + " sent",
                                                   "ack 2"});
  fx.log->events.clear();
  fx.advance(2s - 1ms);
  CHECK(fx.log->events.empty());
  fx.advance(1ms);
  CHECK(fx.log->events == sent_path("sent", {"ack 1"}));
}

TEST_CASE("what is sent is rendered from the user when they changed since "
          "the fire, else it is the record's as the fire rendered it",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.deliver(1);
  REQUIRE(fx.log->sent.size() == 1);
  CHECK(fx.log->sent[0] == "ada@example.com | Hey, Ada Lovelace it's your birthday");
  fx.log->user_changed = false;
  fx.deliver(2);
  REQUIRE(fx.log->sent.size() == 2);
  CHECK(fx.log->sent[1] == "as-fired@example.com | As fired");
}

TEST_CASE("the broker messages settled together are acked in one message to "
          "their consumer, after their outcomes",
          "[unit][delivery]") {
  delivery_fixture fx;
  // Arrived together (a bundle's parts come so), sent and answered together.
  for (uint64_t tag : {1, 2, 3}) {
    auto id = "u" + std::to_string(tag);
    caf::anon_send(fx.delivery, deliver_atom::value,
                   delivery_record{id + ":birthday:2027-01-15", id, "birthday",
                                   "2027-01-15", to_ms(fx.start),
                                   delivery_status::handed_off, 0, "", 0,
                                   "ada@example.com", "Happy birthday"},
                   receipt{tag, 1, fx.consumer, 1});
  }
  fx.sched.run();
  auto& ev = fx.log->events;
  REQUIRE(std::count(ev.begin(), ev.end(), "ack 1") == 1);
  REQUIRE(std::count(ev.begin(), ev.end(), "ack 2") == 1);
  REQUIRE(std::count(ev.begin(), ev.end(), "ack 3") == 1);
  // Each one no sooner than its outcome.
  for (auto tag : {"1", "2", "3"})
    CHECK(std::find(ev.begin(), ev.end(),
                    std::string{"outcome u"} + tag
                      + ":birthday:2027-01-15 sent")
          < std::find(ev.begin(), ev.end(), std::string{"ack "} + tag));
  CHECK(fx.log->ack_messages == 1);
}

TEST_CASE("a bundle's deliveries come in one message, are re-checked in one "
          "request to each send journal they use and recorded in one, and its "
          "message is acked once all are settled",
          "[unit][delivery]") {
  delivery_fixture fx;
  std::vector<delivery_record> bundle;
  for (auto id : {"u1", "u2", "u3"})
    bundle.push_back(delivery_record{std::string{id} + ":birthday:2027-01-15",
                                     id, "birthday", "2027-01-15",
                                     to_ms(fx.start),
                                     delivery_status::handed_off, 0, "", 0,
                                     "", ""});
  caf::anon_send(fx.delivery, deliver_atom::value, std::move(bundle),
                 receipt{4, 1, fx.consumer, 3});
  fx.sched.run();
  CHECK(fx.log->sends == 3);
  std::set<std::string> journals;
  for (auto id : {"u1", "u2", "u3"})
    journals.insert(send_journal_of(id, fx.ctx->shard_count));
  REQUIRE(journals.size() < 3); // two of the three share a request
  CHECK(fx.log->attempt_requests == static_cast<int>(journals.size()));
  CHECK(fx.log->outcome_requests == static_cast<int>(journals.size()));
  auto& ev = fx.log->events;
  for (auto id : {"u1", "u2", "u3"})
    CHECK(std::count(ev.begin(), ev.end(),
                     std::string{"outcome "} + id + ":birthday:2027-01-15 sent")
          == 1);
  // Each part's receipt, in one message to the consumer.
  CHECK(std::count(ev.begin(), ev.end(), "ack 4") == 3);
  CHECK(fx.log->ack_messages == 1);
}

TEST_CASE("an outbox probe back from the broker is acked and noted when it "
          "is this node's, and touches neither journal nor mailer",
          "[unit][delivery]") {
  delivery_fixture fx;
  auto probe_back = [&] {
    int64_t back = 0;
    caf::scoped_actor self{fx.sys};
    auto answer = self->request(fx.delivery, caf::infinite, probe_atom::value);
    fx.sched.run();
    answer.receive([&](int64_t t) { back = t; }, [](caf::error&) {});
    return back;
  };
  CHECK(probe_back() == std::numeric_limits<int64_t>::min());
  auto bring = [&](std::string key, int64_t sent_at, uint64_t tag) {
    delivery_record p;
    p.key = std::move(key);
    p.due_at_ms = sent_at;
    caf::anon_send(fx.delivery, deliver_atom::value, std::move(p),
                   receipt{tag, 1, fx.consumer, 1});
    fx.sched.run();
  };
  bring("probe:", 5'000, 7);
  bring("probe:other-node", 9'000, 8); // another node's: not news to us
  bring("probe:", 4'000, 9);           // an older one, redelivered
  CHECK(probe_back() == 5'000);
  CHECK(fx.log->events == std::vector<std::string>{"ack 7", "ack 8", "ack 9"});
}

TEST_CASE("a delivery the journal says is owed no more is not sent, and its "
          "message is acked",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.log->owed = false;
  fx.deliver(1);
  CHECK(fx.log->sends == 0);
  CHECK(fx.log->events
        == std::vector<std::string>{"attempt " + key1, "ack 1"});
}

TEST_CASE("a failed send waits in the broker's retry queue, a refused one is "
          "dead and its message nacked",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.log->answers = {503};
  fx.deliver(1);
  CHECK(fx.log->events == sent_path("failed", {"retry " + key1, "ack 1"}));
  fx.log->events.clear();
  fx.log->answers = {400};
  fx.deliver(1);
  CHECK(fx.log->events == sent_path("dead", {"nack 1"}));
}

TEST_CASE("a refused delivery carried in a bundle is dead-lettered on its "
          "own and its part acked, not the bundle nacked",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.log->answers = {400};
  fx.deliver(1, 50);
  CHECK(fx.log->events
        == sent_path("dead", {"dead letter " + key1, "ack 1"}));
}

TEST_CASE("the dead-letter keeper records a dead letter as dead, but sends "
          "each delivery of a bundle dead-lettered whole back alone",
          "[unit][delivery]") {
  delivery_fixture fx;
  auto keeper = spawn_dead_letter_keeper(fx.sys, fx.ctx);
  delivery_record d{key1, "u1", "birthday", "2027-01-15", 0, delivery_status::handed_off, 0,
                    "", 0, "ada@example.com", "Happy birthday"};
  caf::anon_send(keeper, deliver_atom::value, d, receipt{7, 1, fx.consumer});
  fx.sched.run();
  CHECK(fx.log->events
        == std::vector<std::string>{"outcome " + key1 + " dead", "ack 7"});
  fx.log->events.clear();
  caf::anon_send(keeper, deliver_atom::value, d, receipt{8, 1, fx.consumer, 50});
  fx.sched.run();
  CHECK(fx.log->events == std::vector<std::string>{"retry " + key1, "ack 8"});
  // The parts of one message, as its consumer hands them on: each alone.
  fx.log->events.clear();
  auto d2 = d;
  d2.key = "u2:birthday:2027-01-15";
  d2.user_id = "u2";
  caf::anon_send(keeper, deliver_atom::value, std::vector<delivery_record>{d, d2},
                 receipt{9, 1, fx.consumer, 2});
  fx.sched.run();
  CHECK(fx.log->events
        == std::vector<std::string>{"retry " + key1, "retry " + d2.key,
                                    "ack 9", "ack 9"});
  caf::anon_send_exit(keeper, caf::exit_reason::user_shutdown);
  fx.sched.run();
}

TEST_CASE("an open circuit breaker sends nothing until its cooldown ends, "
          "then one probe",
          "[unit][delivery]") {
  delivery_fixture fx{3};
  fx.log->answers = {503, 503, 503};
  for (int n = 1; n <= 3; ++n)
    fx.deliver(n);
  CHECK(fx.log->sends == 3);
  // Open: the next ones wait, re-checked and sent only after the cooldown.
  fx.deliver(4);
  fx.deliver(5);
  CHECK(fx.log->sends == 3);
  fx.advance(4s);
  CHECK(fx.log->sends == 3);
  fx.advance(2s);
  // The probe succeeds and closes the breaker: the other goes too.
  CHECK(fx.log->sends == 5);
}

TEST_CASE("a delivery that finds the queue full waits in the broker's retry "
          "queue instead, and is counted",
          "[unit][delivery]") {
  delivery_fixture fx{10, [](node_context& c) {
                        c.delivery_concurrency_max = 1;
                        c.delivery_queue_max = 2;
                      }};
  auto& full = get_metric("chime_delivery_queue_full_total");
  auto before = full.value();
  fx.log->hold = true;
  for (int n = 1; n <= 8; ++n)
    fx.deliver(n);
  std::vector<std::string> retried, acked;
  for (auto& e : fx.log->events) {
    if (e.rfind("retry ", 0) == 0)
      retried.push_back(e.substr(6, e.find(':') - 6)); // "uN"
    if (e.rfind("ack ", 0) == 0)
      acked.push_back("u" + e.substr(4));
  }
  // Two queued, at most two more re-checked or sending: the rest went back.
  CHECK(retried.size() >= 4);
  CHECK(full.value() - before == static_cast<int64_t>(retried.size()));
  CHECK(acked == retried); // each acked once the broker has its retry
  // The ones kept are sent once the service answers.
  fx.log->hold = false;
  for (int i = 0; i < 8 && fx.log->sends < 8 - static_cast<int>(retried.size()); ++i) {
    fx.release();
  }
  CHECK(fx.log->sends == 8 - static_cast<int>(retried.size()));
}

TEST_CASE("a drain of a user is answered once its send in flight has its "
          "outcome journaled",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.log->hold = true;
  fx.deliver(1);
  REQUIRE(fx.log->held.size() == 1);
  caf::scoped_actor self{fx.sys};
  self->send(fx.delivery, drain_atom::value, std::string{"u1"});
  fx.sched.run();
  bool drained = false;
  auto answered = [&] {
    self->receive([&](caf::ok_atom) { drained = true; }, caf::after(0ms) >> [] {});
    return drained;
  };
  CHECK_FALSE(answered());
  fx.release();
  CHECK(answered());
  CHECK(fx.log->events.back() == "ack 1");
}

/// A delivery re-checked and recorded as sent on the front's word, not sent.
const std::vector<std::string> answered_again{"attempt " + key1,
                                              "outcome " + key1 + " sent", "ack 1"};

TEST_CASE("a delivery actor's successor does not send again what its "
          "crashed predecessor had in flight, nor what the service accepted",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.crash_with_send_held();
  fx.restart();
  fx.log->events.clear();
  fx.deliver(1); // the broker redelivers
  CHECK(fx.log->sends == 1); // joined the send in flight
  fx.release();
  CHECK(fx.log->events == answered_again);
  // Redelivered once more (an ack lost with a consumer): answered as sent.
  fx.log->events.clear();
  fx.deliver(1);
  CHECK(fx.log->sends == 1);
  CHECK(fx.log->events.back() == "ack 1");
}

TEST_CASE("an answer that comes while a crashed delivery actor is being "
          "replaced waits for its successor",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.crash_with_send_held();
  fx.release(); // before the supervisor has started the successor
  fx.restart();
  fx.log->events.clear();
  fx.deliver(1); // the broker redelivers
  CHECK(fx.log->sends == 1);
  CHECK(fx.log->events == answered_again);
}

TEST_CASE("a transport that leaves a send unanswered past its time-out is "
          "replaced, the send counts as ambiguous, and its key waits until "
          "the old transport runs no more",
          "[unit][delivery]") {
  delivery_fixture fx;
  fx.log->hold = true;
  fx.deliver(1);
  REQUIRE(fx.log->sends == 1);
  auto stuck = fx.log->mailer;
  fx.advance(fx.ctx->email_timeout + 5s + deadline_check_every);
  CHECK(fx.log->events == sent_path("failed", {"retry " + key1, "ack 1"}));
  // The broker brings the retry back while the old transport may still run.
  fx.log->events.clear();
  fx.log->hold = false;
  fx.deliver(1);
  CHECK(fx.log->sends == 1);
  CHECK(fx.log->events.empty());
  fx.advance(fx.ctx->email_timeout);
  CHECK(fx.log->sends == 2);
  CHECK(fx.log->mailer != stuck); // a new transport sent it
  CHECK(fx.log->events == sent_path("sent", {"ack 1"}));
}

/// The outbox sweeper's claim, each time it asks the journal: the time
/// before which deliveries still scheduled count as lost; and the probes it
/// published.
struct sweeper_fixture : coordinator_fixture {
  std::shared_ptr<std::vector<int64_t>> claims
    = std::make_shared<std::vector<int64_t>>();
  std::shared_ptr<std::vector<delivery_record>> probes
    = std::make_shared<std::vector<delivery_record>>();
  caf::actor sweeper;

  /// `held_since`: what the handoff answers, when the oldest delivery it
  /// holds unconfirmed was taken (INT64_MAX: none); `probe_back`: what the
  /// delivery actor answers, when the newest probe back was sent.
  sweeper_fixture(int64_t held_since, int64_t probe_back)
    : coordinator_fixture(from_ms(1'800'003'600'000)) {
    ctx->dir = std::make_shared<directory>();
    ctx->outbox_grace = 10s;
    auto claims = this->claims;
    auto probes = this->probes;
    ctx->dir->put(journal_name,
                  sys.spawn([claims](caf::event_based_actor*) -> caf::behavior {
                    return {[claims](outbox_atom, int64_t scheduled_before,
                                     int64_t, uint32_t, int64_t) {
                      claims->push_back(scheduled_before);
                      return std::vector<delivery_record>{};
                    }};
                  }));
    ctx->dir->put(handoff_name,
                  sys.spawn([held_since, probes](caf::event_based_actor*) -> caf::behavior {
                    return {[held_since](pending_atom) { return held_since; },
                            [probes](submit_atom, delivery_record& d) {
                              probes->push_back(d);
                            }};
                  }));
    ctx->dir->put(delivery_name,
                  sys.spawn([probe_back](caf::event_based_actor*) -> caf::behavior {
                    return {[probe_back](probe_atom) { return probe_back; }};
                  }));
    sweeper = spawn_outbox_sweeper(sys, ctx);
    sched.run();
  }

  ~sweeper_fixture() {
    caf::anon_send_exit(sweeper, caf::exit_reason::user_shutdown);
    sched.run();
  }
};

TEST_CASE("the outbox sweeper takes for lost only what was fired before the "
          "oldest delivery the handoff still holds and before its newest "
          "probe back from the broker",
          "[unit][delivery]") {
  auto now = to_ms(from_ms(1'800'003'600'000));
  SECTION("the handoff holds one taken 30 s ago: nothing since then is lost") {
    sweeper_fixture fx{now - 30'000, now - 1'000};
    REQUIRE(fx.claims->size() == 1);
    CHECK(fx.claims->front() == now - 30'000 - 10'000);
  }
  SECTION("the handoff holds none: everything older than the grace is") {
    sweeper_fixture fx{std::numeric_limits<int64_t>::max(), now};
    REQUIRE(fx.claims->size() == 1);
    CHECK(fx.claims->front() == now - 10'000);
  }
  SECTION("the newest probe back was sent 60 s ago: what was fired since may "
          "wait in the queue behind it") {
    sweeper_fixture fx{std::numeric_limits<int64_t>::max(), now - 60'000};
    REQUIRE(fx.claims->size() == 1);
    CHECK(fx.claims->front() == now - 60'000 - 10'000);
  }
  SECTION("no probe came back yet: only what is older than the stale limit "
          "(60 graces here) is taken for lost") {
    sweeper_fixture fx{std::numeric_limits<int64_t>::max(),
                       std::numeric_limits<int64_t>::min()};
    REQUIRE(fx.claims->size() == 1);
    CHECK(fx.claims->front() == now - 600'000);
  }
}

TEST_CASE("the outbox sweeper publishes a probe of its node at each sweep",
          "[unit][delivery]") {
  sweeper_fixture fx{std::numeric_limits<int64_t>::max(), 0};
  REQUIRE(fx.probes->size() == 1);
  CHECK(fx.probes->front().key == "probe:");
  CHECK(fx.probes->front().user_id.empty());
  CHECK(fx.probes->front().due_at_ms == to_ms(fx.start));
  fx.advance(fx.ctx->outbox_sweep_interval);
  CHECK(fx.probes->size() == 2);
  CHECK(fx.claims->size() == 2);
}

} // namespace
} // namespace chime
