// Requests whose time-outs an actor keeps itself (request_within): a request
// left unanswered fails with request_timeout soon after its time-out, an
// answer that comes after that is dropped, and an answered request never
// fails later. Driven on CAF's test_coordinator (virtual time).

#include "runtime/request_deadlines.hpp"
#include "tests/unit/coordinator_time.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

namespace chime {
namespace {

using namespace std::chrono_literals;

using ask_atom = caf::atom_constant<caf::atom("ask")>;
using answer_atom = caf::atom_constant<caf::atom("answer")>;

struct asker_state {
  request_deadlines deadlines;
};

/// Asks `server` once per ask_atom and writes down how each request ended.
caf::behavior asker(caf::stateful_actor<asker_state>* self, caf::actor server,
                    std::shared_ptr<std::vector<std::string>> ends) {
  return {
    [=](ask_atom, int id) {
      request_within(
        self, server, caf::timespan{2s},
        [=](int answer) {
          ends->push_back("answer " + std::to_string(id) + "="
                          + std::to_string(answer));
        },
        [=](caf::error& err) {
          ends->push_back("error " + std::to_string(id) + " "
                          + (err == caf::sec::request_timeout ? "timeout"
                                                              : "other"));
        },
        ask_atom::value, id);
    },
    [=](deadline_tick_atom) { check_deadlines(self); },
  };
}

/// Holds every question until answer_atom, then answers them all.
caf::behavior slow_server(caf::event_based_actor* self) {
  auto held = std::make_shared<std::vector<std::pair<caf::response_promise, int>>>();
  return {
    [=](ask_atom, int id) {
      auto rp = self->make_response_promise();
      held->emplace_back(rp, id);
      return rp;
    },
    [=](answer_atom) {
      for (auto& [rp, id] : *held)
        rp.deliver(id * 10);
      held->clear();
    },
  };
}

TEST_CASE("a request kept by request_within fails with request_timeout soon "
          "after its time-out, and its late answer is dropped",
          "[deadlines]") {
  coordinator_fixture fx{from_ms(0)};
  auto ends = std::make_shared<std::vector<std::string>>();
  auto server = fx.sys.spawn(slow_server);
  auto a = fx.sys.spawn(asker, server, ends);
  caf::anon_send(a, ask_atom::value, 1);
  fx.sched.run();
  fx.advance(1900ms);
  CHECK(ends->empty());
  fx.advance(400ms); // past 2 s, and a check has run since
  CHECK(*ends == std::vector<std::string>{"error 1 timeout"});
  caf::anon_send(server, answer_atom::value);
  fx.sched.run();
  CHECK(*ends == std::vector<std::string>{"error 1 timeout"});
}

TEST_CASE("an answered request never fails afterwards, and the checks stop "
          "once no request is open",
          "[deadlines]") {
  coordinator_fixture fx{from_ms(0)};
  auto ends = std::make_shared<std::vector<std::string>>();
  auto server = fx.sys.spawn(slow_server);
  auto a = fx.sys.spawn(asker, server, ends);
  caf::anon_send(a, ask_atom::value, 1);
  caf::anon_send(a, ask_atom::value, 2);
  fx.sched.run();
  fx.advance(500ms);
  caf::anon_send(server, answer_atom::value);
  fx.sched.run();
  CHECK(*ends == std::vector<std::string>{"answer 1=10", "answer 2=20"});
  fx.advance(5s);
  CHECK(ends->size() == 2);
  // No check stays scheduled: nothing is left to time out.
  fx.advance(1s);
  CHECK_FALSE(fx.sched.has_pending_timeout());
}

TEST_CASE("request_deadlines fails the overdue waits only, each once",
          "[deadlines]") {
  request_deadlines book;
  std::vector<int> failed;
  caf::actor_clock::time_point t0{};
  auto a = book.open(t0 + 1s, [&](caf::error&) { failed.push_back(1); });
  auto b = book.open(t0 + 3s, [&](caf::error&) { failed.push_back(2); });
  book.expire(t0 + 2s);
  CHECK(failed == std::vector<int>{1});
  CHECK_FALSE(book.close(a)); // failed already: its answer is dropped
  CHECK(book.close(b));
  book.expire(t0 + 10s);
  CHECK(failed == std::vector<int>{1});
  CHECK(book.open_count() == 0);
}

} // namespace
} // namespace chime
