// The shard fires its resident users' occasions at their due instants, once
// each, and lets a user go when nothing is due within the horizon. Driven on
// CAF's test_coordinator (one thread, virtual time) with a journal and a
// hand-off that record what they are asked (the journal submits what it
// recorded to the hand-off the shard names, as journals do); Chime's clock
// follows the coordinator's.

#include "actors/handoff.hpp"
#include "actors/protocol.hpp"
#include "actors/shard.hpp"
#include "runtime/directory.hpp"
#include "tests/unit/coordinator_time.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <vector>

namespace chime {
namespace {

using namespace std::chrono_literals;

/// What the journal and the hand-off were asked.
struct seen {
  std::vector<fire_request> fires;
  std::vector<delivery_record> submits;
  int failures_left = 0; ///< fire requests answered with an error first
  int requests = 0;      ///< fire messages answered
};

struct shard_fixture : coordinator_fixture {
  std::shared_ptr<seen> log = std::make_shared<seen>();
  caf::actor shard;

  // 2027-01-15T08:00:00Z
  shard_fixture() : coordinator_fixture(from_ms(1'800'000'000'000)) {
    ctx->dir = std::make_shared<directory>();
    ctx->horizon = 1h;
    auto log = this->log;
    ctx->dir->put(journal_name,
                  sys.spawn([log](caf::event_based_actor*) -> caf::behavior {
                    return {[log](fire_atom, std::vector<fire_request>& fs,
                                  handoff_actor& to)
                              -> caf::result<std::vector<bool>> {
                      if (log->failures_left > 0) {
                        --log->failures_left;
                        return caf::make_error(caf::sec::runtime_error);
                      }
                      ++log->requests;
                      log->fires.insert(log->fires.end(), fs.begin(), fs.end());
                      // As a journal does: the recorded go to the handoff
                      // the shard named.
                      std::vector<bool> recorded(fs.size(), true);
                      fired_deliveries fired;
                      fired.add(to, std::move(fs), recorded);
                      fired.submit();
                      return recorded;
                    }};
                  }));
    ctx->dir->put(handoff_name,
                  sys.spawn([log](caf::event_based_actor*) -> caf::behavior {
                    return {[log](submit_atom, std::vector<delivery_record>& ds) {
                      log->submits.insert(log->submits.end(), ds.begin(), ds.end());
                    }};
                  }));
    shard = spawn_shard(sys, ctx, 3);
    sched.run();
  }

  ~shard_fixture() {
    caf::anon_send_exit(shard, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// A user whose birthday (Jan 15, 09:00 UTC: an hour after the start) is
  /// due `in` from the start; fired before 09:00, it is due again at 09:00.
  user_view due_user(const std::string& id, millis in) const {
    user_view v;
    v.user = {id, "Ada", "Lovelace", id + "@example.com", "UTC",
              {{"birthday", "1990-01-15"}}, 0};
    v.due.push_back({"birthday", to_ms(start + in), "2027-01-15"});
    return v;
  }

  void upsert(user_view v) {
    caf::anon_send(shard, upsert_atom::value, std::move(v), false);
    sched.run();
  }

  uint64_t residents() {
    uint64_t n = 0;
    auto self = caf::scoped_actor{sys};
    self->send(shard, caf::get_atom::value);
    sched.run();
    self->receive([&](uint64_t x) { n = x; });
    return n;
  }

};

TEST_CASE("a shard fires a resident user's occasion at its due instant, once, "
          "then lets the user go",
          "[unit][shard]") {
  shard_fixture fx;
  fx.upsert(fx.due_user("u1", 1h));
  CHECK(fx.residents() == 1);
  fx.advance(59min);
  CHECK(fx.log->fires.empty());
  fx.advance(1min);
  REQUIRE(fx.log->fires.size() == 1);
  auto& f = fx.log->fires.front();
  CHECK(f.user_id == "u1");
  CHECK(f.due.due_at_ms == to_ms(fx.start + 1h));
  CHECK(f.next.due_at_ms > f.due.due_at_ms); // a year on
  REQUIRE(fx.log->submits.size() == 1);
  CHECK(fx.log->submits.front().key == f.delivery.key);
  // Next due a year on, beyond the horizon: nothing keeps the user here.
  CHECK(fx.residents() == 0);
  fx.advance(2h);
  CHECK(fx.log->fires.size() == 1);
}

TEST_CASE("a shard fires an occasion the fire lead before its instant, for "
          "that instant",
          "[unit][shard]") {
  shard_fixture fx;
  fx.ctx->fire_lead = 2s;
  fx.upsert(fx.due_user("u1", 1h));
  fx.advance(1h - 2s - 1ms);
  CHECK(fx.log->fires.empty());
  fx.advance(1ms);
  REQUIRE(fx.log->fires.size() == 1);
  auto& f = fx.log->fires.front();
  CHECK(f.at_ms == to_ms(fx.start + 1h - 2s));
  CHECK(f.delivery.due_at_ms == to_ms(fx.start + 1h));
  CHECK(f.delivery.status == delivery_status::scheduled);
  REQUIRE(fx.log->submits.size() == 1);
}

TEST_CASE("a shard holds no user due beyond the horizon", "[unit][shard]") {
  shard_fixture fx;
  fx.upsert(fx.due_user("far", 2h));
  CHECK(fx.residents() == 0);
}

TEST_CASE("a shard forgets an evicted user before its due instant",
          "[unit][shard]") {
  shard_fixture fx;
  fx.upsert(fx.due_user("gone", 30min));
  caf::anon_send(fx.shard, evict_atom::value, std::string{"gone"});
  fx.sched.run();
  CHECK(fx.residents() == 0);
  fx.advance(1h);
  CHECK(fx.log->fires.empty());
}

TEST_CASE("a shard asks again a second later when the journal fails a fire",
          "[unit][shard]") {
  shard_fixture fx;
  fx.log->failures_left = 1;
  fx.upsert(fx.due_user("u2", 10min));
  fx.advance(10min);
  CHECK(fx.log->fires.empty());
  CHECK(fx.residents() == 1);
  fx.advance(1s);
  REQUIRE(fx.log->fires.size() == 1);
  CHECK(fx.log->submits.size() == 1);
}

TEST_CASE("a shard fires a user's new due instant after an update, not the old "
          "one",
          "[unit][shard]") {
  shard_fixture fx;
  fx.upsert(fx.due_user("u3", 20min));
  fx.upsert(fx.due_user("u3", 40min));
  fx.advance(30min);
  CHECK(fx.log->fires.empty());
  fx.advance(10min);
  REQUIRE(fx.log->fires.size() == 1);
  CHECK(fx.log->fires.front().due.due_at_ms == to_ms(fx.start + 40min));
}

TEST_CASE("a shard fires many users due at one instant, each once",
          "[unit][shard]") {
  shard_fixture fx;
  for (int i = 0; i < 500; ++i)
    fx.upsert(fx.due_user("m" + std::to_string(i), 1h));
  CHECK(fx.residents() == 500);
  fx.advance(1h);
  CHECK(fx.log->fires.size() == 500);
  CHECK(fx.log->submits.size() == 500);
  // In a few messages to the journal, not one per user.
  CHECK(fx.log->requests <= 500 / 32 + 1);
  CHECK(fx.residents() == 0);
}

TEST_CASE("the due poller reads its first page once the journal starts, not a "
          "poll later",
          "[unit][shard]") {
  // A node's journals start beside the poller, so its first tick may find
  // none: the users due in the first minute must not wait for the next poll.
  coordinator_fixture fx{from_ms(1'800'000'000'000)};
  fx.ctx->dir = std::make_shared<directory>();
  fx.ctx->owned_shards = {0, 1, 2};
  auto poller = spawn_due_poller(fx.sys, fx.ctx);
  fx.sched.run();
  auto loads = std::make_shared<int>(0);
  fx.ctx->dir->put(journal_name,
                   fx.sys.spawn([loads](caf::event_based_actor*) -> caf::behavior {
                     return {[loads](load_due_atom, int64_t, std::vector<uint32_t>&,
                                     int64_t, std::string&, uint32_t) {
                       ++*loads;
                       return due_page{};
                     }};
                   }));
  fx.advance(200ms);
  CHECK(*loads == 1);
  caf::anon_send_exit(poller, caf::exit_reason::user_shutdown);
  fx.sched.run();
}

TEST_CASE("the due poller reads a page only once its shards have taken the last "
          "one, so none of a burst waits for the next poll",
          "[unit][shard]") {
  // 30 users due at one instant, room for 10 residents. A page read with
  // the room the shards had yet to count turned its users away as over the
  // bound, past the pass's cursor: they waited a poll interval (a minute).
  coordinator_fixture fx{from_ms(1'800'000'000'000)}; // 2027-01-15T08:00Z
  fx.ctx->dir = std::make_shared<directory>();
  fx.ctx->horizon = 30min; // fired, a user is next due beyond it and leaves
  fx.ctx->resident_users_max = 10;
  fx.ctx->shard_count = 4;
  fx.ctx->owned_shards = {0, 1, 2, 3};
  struct due_list {
    std::vector<user_view> users; ///< by id; all due at the same instant
    std::vector<std::string> fired;
  };
  auto due = std::make_shared<due_list>();
  auto at = to_ms(fx.start + 10s);
  for (int i = 0; i < 30; ++i) {
    auto id = "user-" + std::to_string(100 + i);
    user_view v;
    v.user = {id, "Ada", "Lovelace", id + "@example.com", "UTC",
              {{"birthday", "1990-01-15"}}, 0};
    v.due.push_back({"birthday", at, "2027-01-15"});
    due->users.push_back(std::move(v));
  }
  fx.ctx->dir->put(handoff_name,
                   fx.sys.spawn([](caf::event_based_actor*) -> caf::behavior {
                     return {[](submit_atom, std::vector<delivery_record>&) {}};
                   }));
  fx.ctx->dir->put(
    journal_name,
    fx.sys.spawn([due](caf::event_based_actor*) -> caf::behavior {
      return {
        [due](load_due_atom, int64_t, std::vector<uint32_t>&, int64_t after_due,
              std::string& after_user, uint32_t limit) {
          due_page page;
          for (auto& v : due->users)
            if (page.users.size() < limit
                && (v.due[0].due_at_ms > after_due
                    || (v.due[0].due_at_ms == after_due && v.user.id > after_user)))
              page.users.push_back(v);
          page.more = page.users.size() == limit;
          if (!page.users.empty()) {
            page.last_due_ms = page.users.back().due[0].due_at_ms;
            page.last_user = page.users.back().user.id;
          }
          return page;
        },
        [due](fire_atom, std::vector<fire_request>& fs, handoff_actor& to) {
          // Recorded: the due index moves on (the user leaves the list).
          for (auto& f : fs) {
            due->fired.push_back(f.user_id);
            std::erase_if(due->users, [&](const user_view& v) {
              return v.user.id == f.user_id;
            });
          }
          std::vector<bool> recorded(fs.size(), true);
          fired_deliveries fired;
          fired.add(to, std::move(fs), recorded);
          fired.submit();
          return recorded;
        }};
    }));
  std::vector<caf::actor> shards;
  for (uint32_t id = 0; id < 4; ++id) {
    shards.push_back(spawn_shard(fx.sys, fx.ctx, id));
    fx.ctx->dir->put(shard_name(id), shards.back());
  }
  auto poller = spawn_due_poller(fx.sys, fx.ctx);
  fx.sched.run();
  CHECK(fx.ctx->resident_users->load() == 10);
  // Well before the next poll (a minute after the start).
  for (int step = 0; step < 200 && due->fired.size() < 30; ++step)
    fx.advance(100ms);
  CHECK(due->fired.size() == 30);
  CHECK(fx.ctx->clock->now() < fx.start + 40s);
  std::sort(due->fired.begin(), due->fired.end());
  CHECK(std::adjacent_find(due->fired.begin(), due->fired.end())
        == due->fired.end());
  for (auto& a : shards)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(poller, caf::exit_reason::user_shutdown);
  fx.sched.run();
}

} // namespace
} // namespace chime
