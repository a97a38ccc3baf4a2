// The journal contract, proven against both implementations of the seam: the
// PostgreSQL journal on a real PostgreSQL (CHIME_TEST_DATABASE_URL, started by
// scripts/test.sh) and the simulator's in-memory journal, which must behave
// the same for the simulator to prove anything. Writes are durable when
// acknowledged, the email is unique, a due occasion is recorded once and only
// while the index still holds it, attempts and outcomes follow the delivery
// state rules, deletes cancel, sweeps claim what they return. PostgreSQL-only
// cases (the event rows, group commit, an unreachable database) follow.
// Each test case gets a fresh database.
#include "actors/cluster_view.hpp"
#include "actors/errc.hpp"
#include "actors/protocol.hpp"
#include "actors/sharding.hpp"
#include "runtime/metrics.hpp"
#include "persistence/pg_deadline.hpp"
#include "persistence/pg_journal.hpp"
#include "sims/sim/env.hpp"
#include "sims/sim/memory_journal.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <cstdlib>
#include <limits>
#include <set>
#include <numeric>
#include <random>
#include <thread>
#include <type_traits>

using namespace chime;

namespace {

std::string base_url() {
  auto url = std::getenv("CHIME_TEST_DATABASE_URL");
  if (url == nullptr)
    FAIL("CHIME_TEST_DATABASE_URL is not set: run through scripts/test.sh");
  return url;
}

std::string server_url(const std::string& db) {
  auto url = base_url();
  return url.substr(0, url.rfind('/') + 1) + db;
}

/// Where a fixture's journal keeps its data.
struct backend {
  virtual ~backend() = default;
  virtual journal_actor spawn(caf::actor_system& sys) = 0;
  /// The result of a counting SQL query (PostgreSQL only).
  virtual int64_t count(const std::string&) {
    FAIL("SQL needs the PostgreSQL journal");
    return 0;
  }
};

/// A fresh PostgreSQL database per test case.
struct pg_backend : backend {
  std::string db_name;
  /// The node's view of its leases, when its writes are fenced.
  std::shared_ptr<const cluster_view> fence;

  pg_backend() {
    db_name = "chime_pg_test_" + std::to_string(std::random_device{}());
    admin("CREATE DATABASE " + db_name);
  }

  ~pg_backend() override {
    admin("DROP DATABASE IF EXISTS " + db_name + " WITH (FORCE)");
  }

  journal_actor spawn(caf::actor_system& sys) override {
    return spawn_pg_journal(sys, {server_url(db_name), 256, 512, fence});
  }

  static void admin(const std::string& sql) {
    pqxx::connection c{server_url("postgres")};
    pqxx::nontransaction tx{c};
    tx.exec(sql);
  }

  int64_t count(const std::string& sql) override {
    pqxx::connection c{server_url(db_name)};
    pqxx::nontransaction tx{c};
    return tx.exec(sql)[0][0].as<int64_t>();
  }
};

/// The simulator's journal, with no faults.
struct memory_backend : backend {
  sim::env env{1};
  std::shared_ptr<sim::journal_store> store
    = std::make_shared<sim::journal_store>();

  journal_actor spawn(caf::actor_system& sys) override {
    return sim::spawn_memory_journal(sys, store, &env);
  }
};

/// A journal (on PostgreSQL unless told otherwise) for one test case.
struct journal_fixture {
  std::unique_ptr<backend> store;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  journal_actor journal;

  explicit journal_fixture(std::unique_ptr<backend> b
                           = std::make_unique<pg_backend>())
    : store(std::move(b)) {
    add_chime_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    journal = store->spawn(*sys);
  }

  int64_t count(const std::string& sql) {
    return store->count(sql);
  }

  ~journal_fixture() {
    caf::anon_send_exit(journal, caf::exit_reason::user_shutdown);
    // A detached actor's thread waits for its last handle to go.
    journal = journal_actor{};
    sys.reset();
  }

  /// Creates user u1 and records its birthday as due (`lead` before its
  /// instant): the start of every delivery test.
  fire_request fired_user(millis lead = millis{0});

  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    caf::scoped_actor self{*sys};
    caf::expected<T> result{caf::error{}};
    self->request(journal, std::chrono::seconds{30}, std::forward<Ts>(xs)...)
      .receive([&](T& x) { result = std::move(x); },
               [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  struct update_counts {
    int64_t all = 0;
    int64_t hot = 0; ///< of them, HOT updates (no index entry)
  };

  /// The updates of `table`'s rows so far, once at least `expected` are
  /// counted: a session reports its statistics a moment after its
  /// transaction (at most about ten seconds when idle), so they are waited
  /// for with a deadline.
  update_counts row_updates(const std::string& table, int64_t expected) {
    auto stat = [&](const char* column) {
      return count(std::string{"SELECT "} + column
                   + " FROM pg_stat_user_tables WHERE relname = '" + table + "'");
    };
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
    while (stat("n_tup_upd") < expected
           && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
    return {stat("n_tup_upd"), stat("n_tup_hot_upd")};
  }

  /// The pages of one pass of the due poll over every shard, from the
  /// earliest row to those due by `until`.
  std::vector<due_page> due_pass(int64_t until, uint32_t page_size) {
    std::vector<uint32_t> all(256);
    std::iota(all.begin(), all.end(), 0u);
    std::vector<due_page> pages;
    int64_t after_due = std::numeric_limits<int64_t>::min();
    std::string after_user;
    for (bool more = true; more;) {
      REQUIRE(pages.size() < 10);
      auto page = ask<due_page>(load_due_atom::value, until, all, after_due,
                                after_user, page_size);
      REQUIRE(page);
      after_due = page->last_due_ms;
      after_user = page->last_user;
      more = page->more;
      pages.push_back(std::move(*page));
    }
    return pages;
  }

  size_t users() {
    auto page = ask<users_page>(list_atom::value, std::string{}, uint32_t{1000});
    REQUIRE(page);
    return page->users.size();
  }

  std::vector<delivery_record> deliveries(const std::string& status = {}) {
    auto list = ask<std::vector<delivery_record>>(
      deliveries_atom::value, std::string{}, status, uint32_t{1000});
    REQUIRE(list);
    return *list;
  }
};

template <class Backend>
constexpr bool is_pg = std::is_same_v<Backend, pg_backend>;

/// Where a pass over the due rows starts.
constexpr int64_t no_row_yet = std::numeric_limits<int64_t>::min();

user_view make_user(const std::string& id, const std::string& email) {
  user_view v;
  v.user = user_record{id, "Ada", "Lovelace", email, "Asia/Kathmandu",
                       {{"birthday", "1990-03-15"}}, 1000};
  v.due = {due_entry{"birthday", 1'805'000'000'000, "2027-03-15"}};
  v.at_ms = 1000;
  return v;
}

fire_request make_fire(const user_view& v) {
  fire_request f;
  f.user_id = v.user.id;
  f.due = v.due[0];
  f.next = due_entry{"birthday", v.due[0].due_at_ms + 365 * 86'400'000ll,
                     "2028-03-15"};
  f.at_ms = v.due[0].due_at_ms;
  f.delivery = delivery_record{v.user.id + ":birthday:2027-03-15",
                               v.user.id,
                               "birthday",
                               "2027-03-15",
                               v.due[0].due_at_ms,
                               delivery_status::scheduled,
                               0,
                               "",
                               0,
                               v.user.email,
                               "Hey, Ada Lovelace it's your birthday"};
  return f;
}

constexpr int64_t catch_up_ms = 72 * 3'600'000ll;

fire_request journal_fixture::fired_user(millis lead) {
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(ask<caf::ok_atom>(create_atom::value, v));
  auto f = make_fire(v);
  f.at_ms -= lead.count();
  auto recorded = ask<bool>(fire_atom::value, f);
  REQUIRE(recorded);
  REQUIRE(*recorded);
  return f;
}

/// When make_fire's request says the occasion fell due.
int64_t f_at_ms(const user_view& v) {
  return v.due[0].due_at_ms;
}

} // namespace

TEMPLATE_TEST_CASE("a created user is durable when acknowledged and reads back with "
          "its due index",
          "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  CHECK(fx.users() == 1);
  if constexpr (is_pg<TestType>)
    CHECK(fx.count("SELECT count(*) FROM journal WHERE kind = 'user_created'")
          == 1);
  auto read = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(read);
  CHECK(read->user.email == "ada@example.com");
  CHECK(read->user.dates.at("birthday") == "1990-03-15");
  REQUIRE(read->due.size() == 1);
  CHECK(read->due[0].due_at_ms == 1'805'000'000'000);
  CHECK(read->due[0].local_date == "2027-03-15");
}

TEMPLATE_TEST_CASE("an email already used by a live user is a conflict, whatever its "
          "case",
          "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value,
                               make_user("u1", "ada@example.com")));
  auto dup = fx.ask<caf::ok_atom>(create_atom::value,
                                  make_user("u2", "ADA@example.com"));
  REQUIRE(!dup);
  CHECK(is(dup.error(), journal_errc::conflict));
  CHECK(fx.users() == 1);
  // Deleting the first frees the address.
  REQUIRE(fx.ask<caf::ok_atom>(remove_atom::value, std::string{"u1"},
                               int64_t{2000}));
  CHECK(fx.ask<caf::ok_atom>(create_atom::value,
                             make_user("u2", "ADA@example.com")));
}

TEMPLATE_TEST_CASE("a due occasion is recorded once, and only while the index still "
          "holds it",
          "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  auto first = fx.ask<bool>(fire_atom::value, make_fire(v));
  REQUIRE(first);
  CHECK(*first);
  auto again = fx.ask<bool>(fire_atom::value, make_fire(v));
  REQUIRE(again);
  CHECK_FALSE(*again);
  CHECK(fx.deliveries().size() == 1);
  auto read = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(read);
  CHECK(read->due[0].local_date == "2028-03-15");
  // Recorded and not handed off: the outbox sweeper's work.
  auto sweep = [&](int64_t now_ms) {
    return fx.ask<std::vector<delivery_record>>(
      outbox_atom::value, now_ms - 10, int64_t{0}, uint32_t{100}, now_ms);
  };
  auto open = sweep(f_at_ms(v) + 11);
  REQUIRE(open);
  REQUIRE(open->size() == 1);
  CHECK(open->front().status == delivery_status::scheduled);
  // Claimed: the next sweep within the grace period leaves it alone, a
  // later one takes it again.
  auto soon = sweep(f_at_ms(v) + 12);
  REQUIRE(soon);
  CHECK(soon->empty());
  auto later = sweep(f_at_ms(v) + 30);
  REQUIRE(later);
  CHECK(later->size() == 1);
}

TEMPLATE_TEST_CASE("a delivery fired ahead of its instant is left to the delivery "
                   "actor holding it until the instant and the grace have "
                   "passed",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user(millis{2000});
  auto due_ms = f.due.due_at_ms;
  auto sweep = [&](int64_t now_ms) {
    return fx.ask<std::vector<delivery_record>>(
      outbox_atom::value, now_ms - 10, int64_t{0}, uint32_t{100}, now_ms);
  };
  // Fired a second ago, past the grace, but its instant is yet to come.
  auto early = sweep(due_ms - 1000);
  REQUIRE(early);
  CHECK(early->empty());
  auto late = sweep(due_ms + 11);
  REQUIRE(late);
  REQUIRE(late->size() == 1);
  CHECK(late->front().key == f.delivery.key);
}

TEMPLATE_TEST_CASE("attempts are counted and a sent delivery never becomes open again",
          "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user();
  auto key = f.delivery.key;
  auto now = f.due.due_at_ms + 1000;
  auto a1 = fx.ask<attempt_verdict>(attempt_atom::value, key, now, catch_up_ms);
  REQUIRE(a1);
  CHECK(a1->proceed);
  CHECK(a1->attempts == 1);
  CHECK_FALSE(a1->unsettled);
  // The first attempt's outcome never came (its node died mid-send): the
  // next is the second, and may be a duplicate.
  auto again = fx.ask<attempt_verdict>(attempt_atom::value, key, now, catch_up_ms);
  REQUIRE(again);
  CHECK(again->proceed);
  CHECK(again->attempts == 2);
  CHECK(again->unsettled);
  REQUIRE(fx.ask<caf::ok_atom>(
    outcome_atom::value, delivery_outcome{key, delivery_status::failed, "HTTP 500", now, 2}));
  auto a2 = fx.ask<attempt_verdict>(attempt_atom::value, key, now, catch_up_ms);
  REQUIRE(a2);
  CHECK(a2->proceed);
  CHECK(a2->attempts == 3);
  CHECK_FALSE(a2->unsettled);
  REQUIRE(fx.ask<caf::ok_atom>(outcome_atom::value,
                               delivery_outcome{key, delivery_status::sent, "", now + 5, 3}));
  // A late failure report (say, a duplicate) does not reopen it.
  REQUIRE(fx.ask<caf::ok_atom>(
    outcome_atom::value, delivery_outcome{key, delivery_status::failed, "late", now, 4}));
  auto a3 = fx.ask<attempt_verdict>(attempt_atom::value, key, now, catch_up_ms);
  REQUIRE(a3);
  CHECK_FALSE(a3->proceed);
  CHECK(a3->status == delivery_status::sent);
  auto list = fx.ask<std::vector<delivery_record>>(
    deliveries_atom::value, std::string{"u1"}, std::string{}, uint32_t{10});
  REQUIRE(list);
  REQUIRE(list->size() == 1);
  CHECK(list->front().attempts == 3);
  CHECK(list->front().sent_at_ms == now + 5);
  CHECK(list->front().last_error.empty());
}

TEMPLATE_TEST_CASE("deleting a user cancels its open deliveries", "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user();
  REQUIRE(fx.ask<caf::ok_atom>(remove_atom::value, std::string{"u1"},
                               int64_t{5000}));
  auto a = fx.ask<attempt_verdict>(attempt_atom::value, f.delivery.key,
                                   f.due.due_at_ms, catch_up_ms);
  REQUIRE(a);
  CHECK_FALSE(a->proceed);
  CHECK(a->status == delivery_status::cancelled);
  std::vector<uint32_t> all(256);
  std::iota(all.begin(), all.end(), 0u);
  auto due = fx.ask<due_page>(load_due_atom::value, int64_t{1} << 60, all,
                              no_row_yet, std::string{}, uint32_t{100});
  REQUIRE(due);
  CHECK(due->users.empty());
  if constexpr (is_pg<TestType>) // no foreign key removes them (migration 8)
    CHECK(fx.count("SELECT count(*) FROM due_index WHERE user_id = 'u1'")
          == 0);
  auto gone = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(!gone);
  CHECK(is(gone.error(), journal_errc::not_found));
}

TEMPLATE_TEST_CASE("an attempt past the catch-up window expires the delivery instead",
          "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user();
  auto a = fx.ask<attempt_verdict>(attempt_atom::value, f.delivery.key,
                                   f.due.due_at_ms + catch_up_ms + 1,
                                   catch_up_ms);
  REQUIRE(a);
  CHECK_FALSE(a->proceed);
  CHECK(a->status == delivery_status::expired);
  CHECK(fx.deliveries("expired").size() == 1);
}

TEST_CASE("the re-check before a send is a HOT update: it adds no index "
          "entry to the deliveries table",
          "[pg][journal]") {
  journal_fixture fx;
  auto f = fx.fired_user();
  auto v = fx.ask<attempt_verdict>(attempt_atom::value, f.delivery.key,
                                   f.due.due_at_ms + 10, catch_up_ms);
  REQUIRE(v);
  REQUIRE(v->proceed);
  auto updates = fx.row_updates("deliveries", 1);
  REQUIRE(updates.all == 1);
  CHECK(updates.hot == 1);
  CHECK(fx.deliveries("handed_off").size() == 1);
  CHECK(fx.deliveries("scheduled").empty());
}

TEST_CASE("a fire moves the occasion on in place (a HOT update), and the "
          "due poll's next pass files the row anew without loading the user",
          "[pg][journal]") {
  journal_fixture fx;
  auto f = fx.fired_user();
  auto updates = fx.row_updates("due_index", 1);
  REQUIRE(updates.all == 1);
  CHECK(updates.hot == 1);
  // Filed under the instant just recorded, read as the next one.
  CHECK(fx.count("SELECT due_at_ms FROM due_index") == f.due.due_at_ms);
  auto read = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(read);
  REQUIRE(read->due.size() == 1);
  CHECK(read->due[0].due_at_ms == f.next.due_at_ms);
  CHECK(read->due[0].local_date == "2028-03-15");
  // A pass from the earliest meets the row: the user is not due by then,
  // and the row is filed under its next instant.
  auto pass = fx.due_pass(f.due.due_at_ms + 1000, 100);
  REQUIRE(pass.size() == 1);
  CHECK(pass[0].users.empty());
  CHECK(fx.count("SELECT due_at_ms FROM due_index") == f.next.due_at_ms);
  CHECK(fx.count("SELECT count(*) FROM due_index WHERE next_due_at_ms IS NOT NULL")
        == 0);
  // Filed anew, it is found when its next instant comes.
  auto next = fx.due_pass(f.next.due_at_ms, 100);
  REQUIRE(next.size() == 1);
  REQUIRE(next[0].users.size() == 1);
  CHECK(next[0].users[0].due[0].local_date == "2028-03-15");
}

TEST_CASE("two occasions of a user at one instant, both moved on, are filed "
          "anew even when a page's limit falls between them",
          "[pg][journal]") {
  journal_fixture fx;
  auto v = make_user("u1", "ada@example.com");
  v.due.push_back({"anniversary", v.due[0].due_at_ms, "2027-03-15"});
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  auto birthday = make_fire(v);
  auto anniversary = birthday;
  anniversary.due = v.due[1];
  anniversary.next.occasion = "anniversary";
  anniversary.delivery.key = "u1:anniversary:2027-03-15";
  anniversary.delivery.occasion = "anniversary";
  REQUIRE(*fx.ask<bool>(fire_atom::value, birthday));
  REQUIRE(*fx.ask<bool>(fire_atom::value, anniversary));
  auto moved = [&] {
    return fx.count("SELECT count(*) FROM due_index WHERE next_due_at_ms IS NOT NULL");
  };
  REQUIRE(moved() == 2);
  // Pages of one: the second row has the first's (instant, user), so a
  // pass's next page starts after both; the next pass files it.
  for (int pass = 0; pass < 2; ++pass)
    for (auto& page : fx.due_pass(birthday.due.due_at_ms + 1000, 1))
      CHECK(page.users.empty());
  CHECK(moved() == 0);
  CHECK(fx.count("SELECT count(*) FROM due_index WHERE due_at_ms = "
                 + std::to_string(birthday.next.due_at_ms)) == 2);
}

TEST_CASE("a page of rows that all moved on still carries the pass past them",
          "[pg][journal]") {
  journal_fixture fx;
  // Three users fired; two more due at the same instant, not fired. With
  // pages of two, the first pages hold only rows that moved on: the pass
  // must go on past them to the users still due.
  std::vector<user_view> users;
  for (int i = 0; i < 5; ++i) {
    auto id = "u" + std::to_string(i);
    users.push_back(make_user(id, id + "@example.com"));
    REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, users.back()));
  }
  for (int i = 0; i < 3; ++i)
    REQUIRE(*fx.ask<bool>(fire_atom::value, make_fire(users[i])));
  std::set<std::string> seen;
  for (auto& page : fx.due_pass(users[0].due[0].due_at_ms + 1000, 2))
    for (auto& v : page.users)
      seen.insert(v.user.id);
  CHECK(seen == std::set<std::string>{"u3", "u4"});
}

TEST_CASE("an outcome is recorded while the shard's lease is held, and "
          "refused as fenced, changing nothing, once it moved on",
          "[pg][journal]") {
  auto view = std::make_shared<cluster_view>("n1", 256);
  auto shard = shard_of("u1", 256);
  view->hold(shard, 1, std::chrono::steady_clock::now() + std::chrono::hours{1});
  auto store = std::make_unique<pg_backend>();
  store->fence = view;
  journal_fixture fx{std::move(store)};
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  auto lease = [&](const std::string& owner, int epoch) {
    fx.count("WITH l AS (INSERT INTO shard_leases (shard, owner, epoch)"
             " VALUES (" + std::to_string(shard) + ", '" + owner + "', "
             + std::to_string(epoch) + ") ON CONFLICT (shard) DO UPDATE"
             " SET owner = EXCLUDED.owner, epoch = EXCLUDED.epoch"
             " RETURNING 1) SELECT count(*) FROM l");
  };
  lease("n1", 1);
  auto f = make_fire(v);
  REQUIRE(*fx.ask<bool>(fire_atom::value, f));
  auto at = f.due.due_at_ms + 10;
  REQUIRE(fx.ask<attempt_verdict>(attempt_atom::value, f.delivery.key, at,
                                  catch_up_ms)->proceed);
  auto failed = delivery_outcome{f.delivery.key, delivery_status::failed,
                                 "HTTP 500", at + 1, 1};
  REQUIRE(fx.ask<caf::ok_atom>(outcome_atom::value, failed));
  REQUIRE(fx.deliveries("failed").size() == 1);
  // Another node took the shard over: this one's outcome is not written.
  lease("n2", 2);
  auto sent = delivery_outcome{f.delivery.key, delivery_status::sent, "",
                               at + 2, 2};
  auto refused = fx.ask<caf::ok_atom>(outcome_atom::value, sent);
  REQUIRE_FALSE(refused);
  CHECK(is(refused.error(), journal_errc::fenced));
  CHECK(fx.deliveries("failed").size() == 1);
  CHECK(fx.deliveries("sent").empty());
  // The lease held again: the outcome is written; one for a delivery sent
  // already is answered and changes nothing.
  lease("n1", 3);
  view->hold(shard, 3, std::chrono::steady_clock::now() + std::chrono::hours{1});
  REQUIRE(fx.ask<caf::ok_atom>(outcome_atom::value, sent));
  CHECK(fx.deliveries("sent").size() == 1);
  REQUIRE(fx.ask<caf::ok_atom>(outcome_atom::value, failed));
  CHECK(fx.deliveries("sent").size() == 1);
}

TEST_CASE("re-checks and outcomes asked many at once are answered each, in "
          "order, alongside ones asked alone",
          "[pg][journal]") {
  // u1's shard is this node's, u2's another's: u2's outcome is fenced.
  auto view = std::make_shared<cluster_view>("n1", 256);
  auto s1 = shard_of("u1", 256);
  auto s2 = shard_of("u2", 256);
  REQUIRE(s1 != s2);
  auto until = std::chrono::steady_clock::now() + std::chrono::hours{1};
  view->hold(s1, 1, until);
  view->hold(s2, 1, until);
  auto store = std::make_unique<pg_backend>();
  store->fence = view;
  journal_fixture fx{std::move(store)};
  std::vector<user_view> users;
  for (auto id : {"u1", "u2"}) {
    users.push_back(make_user(id, std::string{id} + "@example.com"));
    REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, users.back()));
  }
  fx.count("WITH l AS (INSERT INTO shard_leases (shard, owner, epoch) VALUES ("
           + std::to_string(s1) + ", 'n1', 1), (" + std::to_string(s2)
           + ", 'n1', 1) RETURNING 1) SELECT count(*) FROM l");
  std::vector<fire_request> fires;
  for (auto& v : users) {
    fires.push_back(make_fire(v));
    REQUIRE(*fx.ask<bool>(fire_atom::value, fires.back()));
  }
  auto k1 = fires[0].delivery.key;
  auto k2 = fires[1].delivery.key;
  auto at = fires[0].due.due_at_ms + 10;
  caf::scoped_actor self{*fx.sys};
  // One alone and one of three, asked together.
  auto alone = self->request(fx.journal, caf::infinite, attempt_atom::value,
                             k2, at, catch_up_ms);
  auto many = self->request(fx.journal, caf::infinite, attempt_atom::value,
                            std::vector<std::string>{k1, "nobody:birthday:2027-01-15", k1},
                            at, catch_up_ms);
  alone.receive([](attempt_verdict& v) { CHECK(v.proceed); },
                [](caf::error&) { FAIL("the lone re-check failed"); });
  many.receive(
    [&](std::vector<attempt_verdict>& vs) {
      REQUIRE(vs.size() == 3);
      CHECK(vs[0].proceed);
      CHECK(vs[0].attempts == 1);
      CHECK(vs[1].missing);
      // The same key again in one request: a second attempt begun.
      CHECK(vs[2].proceed);
      CHECK(vs[2].attempts == 2);
    },
    [](caf::error&) { FAIL("the re-checks failed"); });
  // u2's shard moved on: its outcome is refused, u1's recorded.
  fx.count("WITH l AS (UPDATE shard_leases SET owner = 'n2', epoch = 2"
           " WHERE shard = " + std::to_string(s2)
           + " RETURNING 1) SELECT count(*) FROM l");
  auto errors = fx.ask<std::vector<caf::error>>(
    outcome_atom::value,
    std::vector<delivery_outcome>{
      {k1, delivery_status::sent, "", at + 1, 2},
      {k2, delivery_status::sent, "", at + 1, 1}});
  REQUIRE(errors);
  REQUIRE(errors->size() == 2);
  CHECK_FALSE((*errors)[0]);
  CHECK(is((*errors)[1], journal_errc::fenced));
  auto sent = fx.deliveries("sent");
  REQUIRE(sent.size() == 1);
  CHECK(sent.front().key == k1);
}

TEST_CASE("writes sent together are all acknowledged (group commit)",
          "[pg][journal]") {
  journal_fixture fx;
  caf::scoped_actor self{*fx.sys};
  constexpr int n = 300;
  auto& commits = chime::get_metric("chime_journal_commits_total");
  auto commits_before = commits.value();
  for (int i = 0; i < n; ++i)
    self->send(fx.journal, create_atom::value,
               make_user("u" + std::to_string(i),
                         "u" + std::to_string(i) + "@example.com"));
  int acked = 0;
  for (int i = 0; i < n; ++i)
    self->receive([&](caf::ok_atom) { ++acked; },
                  caf::after(std::chrono::seconds{30}) >> [] {});
  CHECK(acked == n);
  CHECK(fx.count("SELECT count(*) FROM users") == n);
  // Fewer transactions than writes: they were committed in batches.
  CHECK(commits.value() - commits_before < n / 10);
}

TEST_CASE("a batch the database fails whole fails its own writers only, "
          "whether alone in its commit or beside other writes",
          "[pg][journal]") {
  journal_fixture fx;
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value,
                               make_user("u0", "u0@example.com")));
  // A failure that is no refusal of the data (those fall back user by
  // user): the creates' whole statement fails, as a lost lock would.
  auto& pg = dynamic_cast<pg_backend&>(*fx.store);
  {
    pqxx::connection c{server_url(pg.db_name)};
    pqxx::nontransaction tx{c};
    tx.exec("CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN"
            " IF NEW.first_name = 'Boom' THEN RAISE EXCEPTION 'boom'; END IF;"
            " RETURN NEW; END $$ LANGUAGE plpgsql");
    tx.exec("CREATE TRIGGER boom BEFORE INSERT ON users"
            " FOR EACH ROW EXECUTE FUNCTION boom()");
  }
  auto boom = make_user("b1", "b1@example.com");
  boom.user.first_name = "Boom";
  // Alone in its commit.
  auto alone = fx.ask<caf::ok_atom>(create_atom::value, boom);
  REQUIRE(!alone);
  CHECK(is(alone.error(), journal_errc::unavailable));
  CHECK(fx.count("SELECT count(*) FROM users WHERE id = 'b1'") == 0);
  CHECK(fx.count("SELECT count(*) FROM journal WHERE user_id = 'b1'") == 0);
  // Beside a write of another kind, sent together (one commit, unless the
  // journal flushed between them): that write commits either way.
  caf::scoped_actor self{*fx.sys};
  self->send(fx.journal, remove_atom::value, std::string{"u0"}, int64_t{2000});
  self->send(fx.journal, create_atom::value, boom);
  int removed = 0;
  int failed = 0;
  for (int i = 0; i < 2; ++i)
    self->receive([&](caf::ok_atom) { ++removed; },
                  [&](caf::error& err) {
                    failed += is(err, journal_errc::unavailable);
                  },
                  caf::after(std::chrono::seconds{30}) >> [] {});
  CHECK(removed == 1);
  CHECK(failed == 1);
  CHECK(fx.count("SELECT count(*) FROM users") == 0);
  // And the journal goes on.
  CHECK(fx.ask<caf::ok_atom>(create_atom::value,
                             make_user("u2", "u2@example.com")));
  CHECK(fx.count("SELECT count(*) FROM users WHERE id = 'u2'") == 1);
}

/// Adds `n` valid users to an import, due a day after make_user's, so that
/// the set goes the way of its size (see import_users).
void add_padding(std::vector<user_view>& views, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    auto v = make_user("pad" + std::to_string(i),
                       "pad" + std::to_string(i) + "@example.com");
    v.due[0].due_at_ms += 86'400'000;
    v.due[0].local_date = "2027-03-16";
    views.push_back(std::move(v));
  }
}

/// Each user_created event, whether a row of its own (a create) or an entry
/// of a batch's row (an import's COPY), as (user_id, data).
const std::string created_events =
  "(SELECT coalesce(j.user_id, e->'user'->>'id') AS user_id, e AS data"
  " FROM journal j CROSS JOIN LATERAL json_array_elements(CASE WHEN"
  " j.data->'batch' IS NULL THEN json_build_array(j.data)"
  " ELSE j.data->'batch' END) e WHERE j.kind = 'user_created')";

TEST_CASE("an import writes each user as a create does, and a taken email or a "
          "refused value fails only its own user",
          "[pg][journal][import]") {
  // Small sets (a group commit's creates) skip COPY; large ones try it first.
  auto pad = GENERATE(as<size_t>{}, 0, 300);
  journal_fixture fx;
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value,
                               make_user("u0", "taken@example.com")));
  auto bad_date = make_user("u5", "e@example.com");
  bad_date.due[0].local_date = "2027-02-30"; // PostgreSQL refuses the date
  std::vector<user_view> views{make_user("u1", "a@example.com"),
                               make_user("u2", "TAKEN@example.com"),
                               make_user("u3", "b@example.com"),
                               make_user("u4", "B@example.com"), bad_date};
  add_padding(views, pad);
  auto refusals = fx.ask<std::vector<caf::error>>(import_atom::value, views);
  REQUIRE(refusals);
  REQUIRE(refusals->size() == views.size());
  for (size_t i = 5; i < views.size(); ++i)
    CHECK(!(*refusals)[i]);
  CHECK(!(*refusals)[0]);
  CHECK(is((*refusals)[1], journal_errc::conflict)); // a live user's email
  CHECK(!(*refusals)[2]);
  CHECK(is((*refusals)[3], journal_errc::conflict)); // the batch's own
  CHECK(is((*refusals)[4], journal_errc::refused));
  CHECK(fx.users() == 3 + pad);
  // The rows of a create, and nothing of the refused users.
  CHECK(fx.count("SELECT count(*) FROM due_index WHERE user_id IN ('u1', 'u3')")
        == 2);
  CHECK(fx.count("SELECT count(*) FROM due_index")
        == static_cast<int64_t>(3 + pad));
  CHECK(fx.count("SELECT count(*) FROM " + created_events + " c")
        == static_cast<int64_t>(3 + pad));
  CHECK(fx.count("SELECT count(*) FROM " + created_events + " a JOIN "
                 + created_events + " b ON a.user_id = 'u0' AND b.user_id = 'u1'"
                 " WHERE a.data::jsonb - 'user' = b.data::jsonb - 'user'"
                 " AND (a.data::jsonb->'user') - '{id,email}'::text[]"
                 " = (b.data::jsonb->'user') - '{id,email}'::text[]")
        == 1);
  auto read = fx.ask<user_view>(read_atom::value, std::string{"u3"});
  REQUIRE(read);
  CHECK(read->user.email == "b@example.com");
  REQUIRE(read->due.size() == 1);
  CHECK(read->due[0].due_at_ms == 1'805'000'000'000);
  // The due poller's query finds them.
  std::vector<uint32_t> shards(256);
  std::iota(shards.begin(), shards.end(), 0u);
  auto due = fx.ask<due_page>(load_due_atom::value, int64_t{1'805'000'000'000},
                              shards, no_row_yet, std::string{}, uint32_t{100});
  REQUIRE(due);
  CHECK(due->users.size() == 3);
}

TEST_CASE("an import's users keep every byte of their values, whatever COPY "
          "would have to escape",
          "[pg][journal][import]") {
  journal_fixture fx;
  auto odd = make_user("u1", "odd@example.com");
  odd.user.first_name = "Tab\there, back\\slash \\N";
  odd.user.last_name = "new\nline \"quoted\" \xC3\xA9t\xC3\xA9 \r";
  std::vector<user_view> views{odd, make_user("u2", "plain@example.com")};
  auto pad = GENERATE(as<size_t>{}, 0, 300);
  add_padding(views, pad);
  auto refusals = fx.ask<std::vector<caf::error>>(import_atom::value, views);
  REQUIRE(refusals);
  CHECK(!(*refusals)[0]);
  CHECK(!(*refusals)[1]);
  auto read = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(read);
  CHECK(read->user.first_name == odd.user.first_name);
  CHECK(read->user.last_name == odd.user.last_name);
  CHECK(read->user.dates == odd.user.dates);
  REQUIRE(read->due.size() == 1);
  CHECK(read->due[0].local_date == "2027-03-15");
  CHECK(fx.count("SELECT count(*) FROM " + created_events + " c"
                 " WHERE data->'user'->>'first_name' = "
                 "E'Tab\\there, back\\\\slash \\\\N'")
        == 1);
  // A COPY's events share one row; a smaller set's have one each.
  CHECK(fx.count("SELECT count(*) FROM journal WHERE kind = 'user_created'")
        == (pad > 0 ? 1 : 2));
}

TEMPLATE_TEST_CASE("load_due returns only users due by the limit in the owned shards",
          "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto soon = make_user("soon", "a@example.com");
  auto later = make_user("later", "b@example.com");
  later.due[0].due_at_ms += 86'400'000;
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, soon));
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, later));
  std::vector<uint32_t> all;
  for (uint32_t s = 0; s < 256; ++s)
    all.push_back(s);
  auto due = fx.ask<due_page>(load_due_atom::value,
                              soon.due[0].due_at_ms + 1000, all, no_row_yet,
                              std::string{}, uint32_t{100});
  REQUIRE(due);
  REQUIRE(due->users.size() == 1);
  CHECK(due->users.front().user.id == "soon");
  CHECK_FALSE(due->more);
  auto none = fx.ask<due_page>(load_due_atom::value,
                               soon.due[0].due_at_ms + 1000,
                               std::vector<uint32_t>{}, no_row_yet,
                               std::string{}, uint32_t{100});
  REQUIRE(none);
  CHECK(none->users.empty());
}

TEMPLATE_TEST_CASE("load_due reads pages in due order, each user whole, none "
                   "skipped",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  // Seven users due at one instant, one of them with a second occasion
  // later (a page may end between its two rows), one due after them all.
  std::set<std::string> expected;
  for (int i = 0; i < 7; ++i) {
    auto id = "u" + std::to_string(i);
    auto v = make_user(id, id + "@example.com");
    if (i == 3)
      v.due.push_back({"anniversary", v.due[0].due_at_ms + 5000, "2027-03-15"});
    REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
    expected.insert(id);
  }
  auto late = make_user("late", "late@example.com");
  late.due[0].due_at_ms += 10000;
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, late));
  expected.insert("late");
  std::set<std::string> seen;
  auto pages = fx.due_pass(late.due[0].due_at_ms, 3);
  for (auto& page : pages) {
    CHECK(page.users.size() <= 3);
    for (auto& v : page.users) {
      seen.insert(v.user.id);
      // Each user comes with all its rows due by then.
      CHECK(v.due.size() == (v.user.id == "u3" ? 2u : 1u));
    }
  }
  CHECK(seen == expected);
  CHECK(pages.size() >= 3);
}

TEST_CASE("a node's sessions end their own statements before the client's "
          "deadline gives up on them",
          "[pg][journal]") {
  // A session whose client gave up would otherwise keep its statement
  // running, and its rows locked, for as long as the statement takes.
  for (auto url : {base_url(), std::string{"host=127.0.0.1 dbname=postgres"}}) {
    if (url.rfind("host=", 0) == 0) {
      // The key=value form, on the test server's port.
      auto port = base_url().substr(base_url().rfind(':') + 1);
      url += " user=postgres port=" + port.substr(0, port.find('/'));
    }
    pqxx::connection c{pg_url_with_timeouts(url)};
    auto limit = pqxx::nontransaction{c}
                   .exec("SELECT setting::int FROM pg_settings"
                         " WHERE name = 'statement_timeout'")[0][0]
                   .as<int64_t>();
    CHECK(limit > 0);
    CHECK(limit < pg_call_limit.count());
  }
}

TEST_CASE("an unreachable database is an error the caller can retry, not a "
          "crash",
          "[pg][journal]") {
  caf::actor_system_config cfg;
  add_chime_types(cfg);
  caf::actor_system sys{cfg};
  auto journal = spawn_pg_journal(
    sys, {"postgresql://postgres@127.0.0.1:1/nowhere", 256, 512, nullptr});
  caf::scoped_actor self{sys};
  bool unavailable = false;
  self->request(journal, std::chrono::seconds{30}, ping_atom::value)
    .receive([&](caf::ok_atom) {},
             [&](caf::error& err) {
               unavailable = is(err, journal_errc::unavailable);
             });
  CHECK(unavailable);
  caf::anon_send_exit(journal, caf::exit_reason::user_shutdown);
}

TEMPLATE_TEST_CASE("two reports of one due occasion in one batch record it once",
          "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  caf::scoped_actor self{*fx.sys};
  // Both are in the journal's mailbox before it flushes: one batch.
  for (int i = 0; i < 2; ++i)
    self->send(fx.journal, fire_atom::value, make_fire(v));
  int recorded = 0;
  for (int i = 0; i < 2; ++i)
    self->receive([&](bool r) { recorded += r ? 1 : 0; },
                  caf::after(std::chrono::seconds{30}) >> [] {});
  CHECK(recorded == 1);
  CHECK(fx.deliveries().size() == 1);
  if constexpr (is_pg<TestType>) {
    CHECK(fx.count("SELECT count(*) FROM journal WHERE kind = 'occasion_due'")
          == 1);
    // The batch's entry, written as text, is the event's fields.
    CHECK(fx.count("SELECT count(*) FROM journal WHERE kind = 'occasion_due'"
                   " AND json_array_length(data->'batch') = 1"
                   " AND data->'batch'->0->>'user_id' = 'u1'"
                   " AND data->'batch'->0->>'key' = '"
                   + fx.deliveries().front().key + "'"
                   " AND (data->'batch'->0->>'next_due_at_ms')::bigint > 0")
          == 1);
  }
}

TEMPLATE_TEST_CASE("fires sent together are handed off by the journal once "
                   "committed: the recorded ones still owed, to the handoff "
                   "they name",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto owed = make_user("u1", "ada@example.com");
  auto expired = make_user("u2", "bob@example.com");
  for (auto* v : {&owed, &expired})
    REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, *v));
  auto late = make_fire(expired);
  late.delivery.status = delivery_status::expired;
  // The second copy of u1's fire is stale: the index moved on with the first.
  std::vector<fire_request> fires{make_fire(owed), late, make_fire(owed)};
  caf::scoped_actor handoff{*fx.sys};
  caf::scoped_actor self{*fx.sys};
  self->send(fx.journal, fire_atom::value, fires,
             caf::actor_cast<handoff_actor>(handoff));
  std::vector<bool> recorded;
  self->receive([&](std::vector<bool>& r) { recorded = r; },
                caf::after(std::chrono::seconds{30}) >> [] {});
  CHECK(recorded == std::vector<bool>{true, true, false});
  std::vector<delivery_record> submitted;
  handoff->receive(
    [&](submit_atom, std::vector<delivery_record>& ds) { submitted = ds; },
    caf::after(std::chrono::seconds{30}) >> [] {});
  REQUIRE(submitted.size() == 1);
  CHECK(submitted.front().key == fires.front().delivery.key);
  CHECK(fx.deliveries().size() == 2);
}

TEMPLATE_TEST_CASE("attempt checks in one batch begin one attempt each; "
                   "outcomes record the count, which never goes down",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user();
  caf::scoped_actor self{*fx.sys};
  for (int i = 0; i < 3; ++i)
    self->send(fx.journal, attempt_atom::value, f.delivery.key,
               f.due.due_at_ms + 1, catch_up_ms);
  std::vector<uint32_t> counted;
  std::vector<bool> unsettled;
  for (int i = 0; i < 3; ++i)
    self->receive(
      [&](attempt_verdict& a) {
        counted.push_back(a.attempts);
        unsettled.push_back(a.unsettled);
      },
      caf::after(std::chrono::seconds{30}) >> [] {});
  CHECK(counted == std::vector<uint32_t>{1, 2, 3});
  // The first one decided alone, the later ones after it, as begun before.
  CHECK(unsettled == std::vector<bool>{false, true, true});
  // Begun, not yet settled: the count shown is of attempts with an outcome.
  CHECK(fx.deliveries().front().attempts == 0);
  auto now = f.due.due_at_ms + 2;
  REQUIRE(fx.ask<caf::ok_atom>(
    outcome_atom::value, delivery_outcome{f.delivery.key, delivery_status::failed, "x", now, 4}));
  REQUIRE(fx.ask<caf::ok_atom>(
    outcome_atom::value, delivery_outcome{f.delivery.key, delivery_status::failed, "y", now, 3}));
  CHECK(fx.deliveries().front().attempts == 4);
}

TEMPLATE_TEST_CASE("the re-check before a send hands a scheduled delivery "
                   "off, and only a dead delivery is re-driven",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user();
  auto key = f.delivery.key;
  auto now = f.due.due_at_ms + 10;
  CHECK(fx.deliveries("scheduled").size() == 1);
  auto first = fx.ask<attempt_verdict>(attempt_atom::value, key, now, catch_up_ms);
  REQUIRE(first);
  CHECK(first->proceed);
  CHECK(first->status == delivery_status::handed_off);
  CHECK(fx.deliveries("handed_off").size() == 1);
  auto not_dead = fx.ask<delivery_record>(redrive_atom::value, key, now);
  REQUIRE(!not_dead);
  CHECK(is(not_dead.error(), journal_errc::not_found));
  REQUIRE(fx.ask<caf::ok_atom>(outcome_atom::value,
                               delivery_outcome{key, delivery_status::dead, "HTTP 400", now}));
  // The re-check of a late copy (a republished one) does not reopen it.
  auto late = fx.ask<attempt_verdict>(attempt_atom::value, key, now + 1, catch_up_ms);
  REQUIRE(late);
  CHECK_FALSE(late->proceed);
  CHECK(fx.deliveries("dead").size() == 1);
  auto again = fx.ask<delivery_record>(redrive_atom::value, key, now + 2);
  REQUIRE(again);
  CHECK(again->status == delivery_status::scheduled);
  CHECK(again->last_error == "HTTP 400");
  CHECK(fx.deliveries("scheduled").size() == 1);
}

TEMPLATE_TEST_CASE("an update computed from a read is refused once a message "
                   "was recorded since, and written when read again",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  auto read = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(read);
  REQUIRE(fx.ask<bool>(fire_atom::value, make_fire(v)));
  auto update = *read;
  update.user.first_name = "Augusta";
  auto refused = fx.ask<caf::ok_atom>(replace_atom::value, update);
  REQUIRE_FALSE(refused);
  CHECK(is(refused.error(), journal_errc::stale));
  auto again = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(again);
  CHECK(again->user.first_name == "Ada");
  update = *again;
  update.user.first_name = "Augusta";
  CHECK(fx.ask<caf::ok_atom>(replace_atom::value, update));
  CHECK(fx.ask<user_view>(read_atom::value, std::string{"u1"})->user.first_name
        == "Augusta");
}

TEMPLATE_TEST_CASE("a message cancelled when its date moved away is owed again "
                   "when the date moves back",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  auto f = make_fire(v);
  REQUIRE(fx.ask<bool>(fire_atom::value, f));
  // At its send the occasion was found moved: cancelled.
  REQUIRE(fx.ask<caf::ok_atom>(
    outcome_atom::value,
    delivery_outcome{f.delivery.key, delivery_status::cancelled, "moved", f_at_ms(v) + 1, 0}));
  REQUIRE(fx.deliveries("cancelled").size() == 1);
  // Moved back: the same date, so the same key, falls due again.
  auto read = fx.ask<user_view>(read_atom::value, std::string{"u1"});
  REQUIRE(read);
  auto back = *read;
  back.due = v.due;
  REQUIRE(fx.ask<caf::ok_atom>(replace_atom::value, back));
  auto again = fx.ask<bool>(fire_atom::value, make_fire(v));
  REQUIRE(again);
  CHECK(*again);
  auto open = fx.deliveries("scheduled");
  REQUIRE(open.size() == 1);
  CHECK(open.front().key == f.delivery.key);
  CHECK(fx.deliveries("cancelled").empty());
}

namespace {

/// The address a proceeding attempt sends to: the user's as now when it
/// changed since the fire, else the record's as its fire rendered it.
std::string sent_to(const attempt_verdict& v) {
  return v.user_changed ? v.user.email : v.email;
}

/// The verdict on an attempt at `key` at `now`, which must proceed.
attempt_verdict proceeding(journal_fixture& fx, const std::string& key,
                           int64_t now) {
  auto v = fx.ask<attempt_verdict>(attempt_atom::value, key, now, catch_up_ms);
  REQUIRE(v);
  REQUIRE(v->proceed);
  return *v;
}

/// `v` replaced by the same user at a new address, its due rows kept.
user_view readdressed(journal_fixture& fx, const user_view& v,
                      const std::string& email) {
  auto read = fx.ask<user_view>(read_atom::value, v.user.id);
  REQUIRE(read);
  auto update = *read;
  update.user.email = email;
  update.due = v.due;
  update.at_ms = v.at_ms + 1;
  REQUIRE(fx.ask<caf::ok_atom>(replace_atom::value, update));
  return update;
}

} // namespace

TEMPLATE_TEST_CASE("an attempt sends what its fire rendered while the user is "
                   "unchanged, and renders anew once the user is replaced",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user();
  auto now = f.due.due_at_ms + 10;
  auto first = proceeding(fx, f.delivery.key, now);
  CHECK(sent_to(first) == "ada@example.com");
  if constexpr (is_pg<TestType>) { // no users lookup for it (migration 14)
    CHECK_FALSE(first.user_changed);
    CHECK(first.message == f.delivery.message);
  }
  readdressed(fx, make_user("u1", "ada@example.com"), "augusta@example.com");
  auto second = proceeding(fx, f.delivery.key, now + 1);
  CHECK(second.user_changed);
  CHECK(sent_to(second) == "augusta@example.com");
}

TEMPLATE_TEST_CASE("a fire rendered from the user as they were before a replace "
                   "is sent to the user as they are now",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto v = make_user("u1", "ada@example.com");
  REQUIRE(fx.ask<caf::ok_atom>(create_atom::value, v));
  readdressed(fx, v, "augusta@example.com");
  // The shard had not heard of the replace yet: its fire renders the old
  // address, and the due row it moves is the replace's.
  auto stale = make_fire(v);
  REQUIRE(*fx.ask<bool>(fire_atom::value, stale));
  auto a = proceeding(fx, stale.delivery.key, f_at_ms(v) + 10);
  CHECK(a.user_changed);
  CHECK(sent_to(a) == "augusta@example.com");
}

TEMPLATE_TEST_CASE("a dead delivery of a deleted user, redriven, is cancelled "
                   "at its attempt, not sent",
                   "[pg][journal]", pg_backend, memory_backend) {
  journal_fixture fx{std::make_unique<TestType>()};
  auto f = fx.fired_user();
  auto now = f.due.due_at_ms + 10;
  REQUIRE(fx.ask<caf::ok_atom>(
    outcome_atom::value,
    delivery_outcome{f.delivery.key, delivery_status::dead, "HTTP 500", now, 1}));
  REQUIRE(fx.ask<caf::ok_atom>(remove_atom::value, std::string{"u1"}, now + 1));
  REQUIRE(fx.ask<delivery_record>(redrive_atom::value, f.delivery.key, now + 2));
  auto a = fx.ask<attempt_verdict>(attempt_atom::value, f.delivery.key,
                                   now + 3, catch_up_ms);
  REQUIRE(a);
  CHECK_FALSE(a->proceed);
  CHECK(a->status == delivery_status::cancelled);
}
