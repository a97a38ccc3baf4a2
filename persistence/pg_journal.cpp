#include "persistence/pg_journal.hpp"

#include "actors/cluster_view.hpp"
#include "actors/sharding.hpp"

#include "actors/delivery_status.hpp"
#include "actors/errc.hpp"
#include "actors/journal.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_deadline.hpp"
#include "runtime/json_text.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <functional>
#include <type_traits>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <map>
#include <memory>

namespace chime {

namespace {

using json = nlohmann::json;

/// Thrown by an operation to fail only itself (its savepoint is rolled back).
struct op_failure {
  journal_errc code;
};

using op_fn = std::function<caf::message(pqxx::transaction_base&)>;

/// Writes that a delivery makes, one per message at a burst's rate, are
/// executed for the whole batch in a few set-based statements instead of
/// one savepoint each. They cannot fail alone (no constraint to violate).
enum class batch_kind : uint8_t {
  single,
  create,
  fire,
  attempt,
  outcome
};

struct queued_op {
  batch_kind kind = batch_kind::single;
  op_fn run;           ///< single writes
  caf::message request; ///< batched writes: the request's arguments
  caf::response_promise promise;
};

/// The lease check of writes made for a shard: per row the shard and the
/// epoch this node holds for it, and one SQL condition on them.
struct fence {
  std::shared_ptr<const cluster_view> view;
  uint32_t shard_count = 256;

  /// The node's name; empty when unfenced (the condition then holds).
  std::string owner() const { return view ? view->self() : std::string{}; }

  void add(std::string_view user_id, std::vector<std::string>& shards,
           std::vector<std::string>& epochs) const {
    auto shard = shard_of(user_id, shard_count);
    shards.push_back(std::to_string(shard));
    epochs.push_back(std::to_string(view ? view->held_epoch(shard) : 0));
  }

  /// True when `r.shard` and `r.epoch` name a lease this node ($owner)
  /// holds now; always true when $owner is empty.
  static std::string holds(int owner_param) {
    auto p = "$" + std::to_string(owner_param);
    return "(" + p + " = '' OR EXISTS (SELECT 1 FROM shard_leases l"
           " WHERE l.shard = r.shard AND l.epoch = r.epoch AND l.owner = " + p
           + "))";
  }
};

using batch_fn = std::function<std::vector<caf::message>(
  pqxx::transaction_base&, const std::vector<caf::message>&, const fence&)>;

struct journal_state {
  pg_journal_options opts;
  std::unique_ptr<pqxx::connection> conn;
  /// After a failed connect, calls fail at once until then rather than each
  /// waiting out a connect time-out of its own.
  std::chrono::steady_clock::time_point reconnect_at{};
  std::vector<queued_op> queue;
  size_t queued_fires = 0; ///< due occasions the queued fire requests carry
  bool flush_pending = false;
  metric* busy = nullptr;
  static inline const char* name = "chime.journal";
};

/// The journal interface, plus the flush it sends itself.
using pg_journal_actor = journal_actor::extend<caf::reacts_to<flush_atom>>;
using journal_self = pg_journal_actor::stateful_pointer<journal_state>;

const std::string open_statuses = open_statuses_sql();

pqxx::connection& connection(journal_self self) {
  auto& st = self->state;
  if (st.conn && st.conn->is_open())
    return *st.conn;
  st.conn.reset();
  if (std::chrono::steady_clock::now() < st.reconnect_at)
    throw op_failure{journal_errc::unavailable};
  try {
    auto conn = std::make_unique<pqxx::connection>(st.opts.url);
    pg_deadline deadline{*conn, pg_call_limit};
    migrate(*conn);
    // Every journal statement is driven by keys (a batch of at most
    // batch_max of them, or one due range). The planner, seeing a few hundred
    // keys from unnest() or stale statistics in a burst, prefers scanning a
    // whole table per batch (hashing it, or filtering it by status), which
    // grows with the table: measured 25-46 us per row at 30,000 users, two
    // to four times the index plan. Index nested loops cost the same at any
    // table size.
    pqxx::nontransaction{*conn}.exec("SET enable_hashjoin = off;"
                                     " SET enable_mergejoin = off;"
                                     " SET enable_seqscan = off");
    st.conn = std::move(conn);
    log(log_level::info, "journal", "connected to PostgreSQL");
  } catch (const std::exception& e) {
    log(log_level::warn, "journal", "PostgreSQL unreachable",
        {{"error", std::string{e.what()}}});
    st.reconnect_at = std::chrono::steady_clock::now() + std::chrono::seconds{1};
    throw op_failure{journal_errc::unavailable};
  }
  return *st.conn;
}

/// A failure as logs may show it: a statement's error by its SQLSTATE only,
/// since PostgreSQL's message quotes the row (names, emails).
std::string failure_text(const std::exception& e) {
  if (auto sql = dynamic_cast<const pqxx::sql_error*>(&e))
    return "SQLSTATE " + sql->sqlstate();
  return e.what();
}

/// Adds the time until it goes out of scope to the journal's busy time.
struct busy_span {
  metric& busy;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~busy_span() {
    busy.add(std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now() - start)
               .count());
  }
};

/// Runs `fn` in a read transaction (or, as Tx = pqxx::work, one that may
/// write and commits after it); maps failures to journal errors.
template <class Tx = pqxx::read_transaction, class F>
auto read(journal_self self, F fn) -> caf::result<decltype(fn(
  std::declval<pqxx::transaction_base&>()))> {
  busy_span span{*self->state.busy};
  try {
    auto& conn = connection(self);
    pg_deadline deadline{conn, pg_call_limit};
    Tx tx{conn};
    auto out = fn(tx);
    if constexpr (std::is_same_v<Tx, pqxx::work>)
      tx.commit();
    return out;
  } catch (const op_failure& f) {
    return make_error(f.code);
  } catch (const pqxx::broken_connection& e) {
    self->state.conn.reset();
    return make_error(journal_errc::unavailable);
  } catch (const std::exception& e) {
    log(log_level::warn, "journal", "read failed",
        {{"error", failure_text(e)}});
    self->state.conn.reset();
    return make_error(journal_errc::unavailable);
  }
}

const std::map<batch_kind, batch_fn>& batch_executors();

/// Runs `fn` on `tx` inside a savepoint that is rolled back when it throws,
/// so that its failure is its own. (libpqxx 6.4's subtransaction leaves the
/// whole transaction aborted when a parameterised statement fails in it.)
template <class F>
auto in_savepoint(pqxx::transaction_base& tx, F fn) -> decltype(fn()) {
  tx.exec("SAVEPOINT op");
  try {
    auto out = fn();
    tx.exec("RELEASE SAVEPOINT op");
    return out;
  } catch (const pqxx::broken_connection&) {
    throw;
  } catch (...) {
    tx.exec("ROLLBACK TO SAVEPOINT op");
    throw;
  }
}

/// What a write that PostgreSQL refused is, by its SQLSTATE: a unique
/// violation (the email) is a conflict, bad data (class 22) and any other
/// constraint (class 23) are the request's fault, the rest (a deadlock, a
/// serialization failure) is worth a retry. The message is not logged: it
/// quotes the row, personal data included.
journal_errc refusal_of(const pqxx::sql_error& e) {
  auto state = e.sqlstate();
  if (state == "23505")
    return journal_errc::conflict;
  if (state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0)
    return journal_errc::refused;
  log(log_level::warn, "journal", "write refused", {{"sqlstate", state}});
  return journal_errc::unavailable;
}

/// Runs one of the statements that run once a batch (the send path's, and
/// the set inserts of a group commit's creates), prepared on first use on
/// this connection: thousands of times a burst, parsing and planning each
/// anew cost the database about as much as running it did for the smaller
/// ones (0.3 ms a plan). The names share one namespace per connection, and
/// two texts under one name fail only when the second runs ("Inconsistent
/// redefinition"): the pg tests run every caller.
template <class... Args>
pqxx::result exec_hot(pqxx::transaction_base& tx, const char* name,
                      const std::string& sql, Args&&... args) {
  // Defined once per connection (a later call compares the text only).
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

metric& commits() {
  static auto& m = get_metric("chime_journal_commits_total");
  return m;
}

/// Commits every queued write in one transaction: single writes each in
/// their own savepoint, so that one failing write (say, a duplicate email)
/// fails alone; batched writes kind by kind.
void flush(journal_self self) {
  auto& st = self->state;
  st.flush_pending = false;
  if (st.queue.empty())
    return;
  auto ops = std::move(st.queue);
  st.queue.clear();
  st.queued_fires = 0;
  busy_span span{*st.busy};
  std::vector<caf::message> results(ops.size());
  std::vector<caf::error> errors(ops.size());
  auto fail_all = [&](journal_errc code) {
    for (auto& err : errors)
      err = make_error(code);
  };
  try {
    auto& conn = connection(self);
    pg_deadline deadline{conn, pg_call_limit};
    pqxx::work tx{conn};
    std::map<batch_kind, std::vector<size_t>> batches;
    size_t singles = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].kind != batch_kind::single) {
        batches[ops[i].kind].push_back(i);
        continue;
      }
      ++singles;
      try {
        results[i] = in_savepoint(tx, [&] { return ops[i].run(tx); });
      } catch (const op_failure& f) {
        errors[i] = make_error(f.code);
      } catch (const pqxx::sql_error& e) {
        // The savepoint is rolled back: this write fails alone.
        errors[i] = make_error(refusal_of(e));
      }
    }
    // Each kind in its own savepoint too: what one kind's statement runs
    // into fails that kind, not the users' writes beside it. A kind alone
    // in the transaction needs none (it fails with the transaction, which
    // holds nothing else): a group commit of creates is one kind, and its
    // savepoint was two of its round trips.
    bool alone = batches.size() == 1 && singles == 0;
    bool aborted = false; // a lone kind failed, and the transaction with it
    for (auto& [kind, indices] : batches) {
      std::vector<caf::message> requests;
      for (auto i : indices)
        requests.push_back(ops[i].request);
      try {
        // The kind by init-capture: clang 14 (the sanitizer and fuzz build)
        // cannot capture a structured binding.
        auto run = [&, &kind = kind] {
          return batch_executors().at(kind)(
            tx, requests, fence{st.opts.fence, st.opts.shard_count});
        };
        auto replies = alone ? run() : in_savepoint(tx, run);
        for (size_t j = 0; j < indices.size(); ++j)
          results[indices[j]] = std::move(replies[j]);
      } catch (const pqxx::sql_error& e) {
        auto code = refusal_of(e);
        for (auto i : indices)
          errors[i] = make_error(code == journal_errc::refused
                                   ? journal_errc::unavailable
                                   : code);
        aborted = alone;
      }
    }
    // Nothing to commit then (the transaction's end rolls it back).
    if (!aborted) {
      tx.commit();
      commits().add();
    }
  } catch (const op_failure& f) {
    fail_all(f.code);
  } catch (const std::exception& e) {
    log(log_level::warn, "journal", "batch not committed",
        {{"error", failure_text(e)},
         {"writes", static_cast<int64_t>(ops.size())}});
    st.conn.reset();
    fail_all(journal_errc::unavailable);
  }
  fired_deliveries fired;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!errors[i] && results[i].match_elements<caf::error>())
      errors[i] = results[i].get_as<caf::error>(0);
    if (!errors[i] && ops[i].kind == batch_kind::fire
        && ops[i].request.match_elements<std::vector<fire_request>, handoff_actor>()
        && results[i].match_elements<std::vector<bool>>())
      // The request is read no more: its deliveries move on.
      fired.add(ops[i].request.get_as<handoff_actor>(1),
                std::move(ops[i].request.get_mutable_as<std::vector<fire_request>>(0)),
                results[i].get_as<std::vector<bool>>(0));
  }
  // The way to the broker first: the shards' replies are not on it.
  fired.submit();
  for (size_t i = 0; i < ops.size(); ++i) {
    if (errors[i])
      ops[i].promise.deliver(std::move(errors[i]));
    else
      ops[i].promise.deliver(std::move(results[i]));
  }
}

/// The fire requests of one queued request: one, or a shard's wake's all.
std::vector<const fire_request*> fires_of(const caf::message& m);

constexpr size_t fires_per_commit = 512;

template <class T>
caf::typed_response_promise<T> enqueue(journal_self self, queued_op op) {
  auto& st = self->state;
  auto rp = self->make_response_promise<T>();
  op.promise = rp;
  if (op.kind == batch_kind::fire)
    st.queued_fires += fires_of(op.request).size();
  st.queue.push_back(std::move(op));
  // A burst's fires commit a few hundred at a time: their hand-offs and
  // sends start while the next ones are written, instead of after all of
  // them (2,000 due at once waited 130 ms for their one transaction).
  if (st.queue.size() >= st.opts.batch_max || st.queued_fires >= fires_per_commit) {
    flush(self);
  } else if (!st.flush_pending) {
    // Everything already in the mailbox is handled before this message, so
    // writes that arrive together are committed together.
    st.flush_pending = true;
    self->send(self, flush_atom::value);
  }
  return rp;
}

/// A single write; `fn`'s message is the reply, of type T.
template <class T>
caf::typed_response_promise<T> enqueue(journal_self self, op_fn fn) {
  return enqueue<T>(self, queued_op{batch_kind::single, std::move(fn), {}, {}});
}

/// A write batched with the others of its kind; its executor's message for
/// it is the reply, of type T.
template <class T>
caf::typed_response_promise<T> enqueue(journal_self self, batch_kind kind,
                                       caf::message request) {
  return enqueue<T>(self, queued_op{kind, nullptr, std::move(request), {}});
}

// -- row mapping ---------------------------------------------------------------

const char* user_columns
  = "u.id, u.first_name, u.last_name, u.email, u.timezone, u.dates::text,"
    " u.created_at_ms";

user_record user_from(const pqxx::row& r, int first = 0) {
  user_record u;
  u.id = r[first].as<std::string>();
  u.first_name = r[first + 1].as<std::string>();
  u.last_name = r[first + 2].as<std::string>();
  u.email = r[first + 3].as<std::string>();
  u.timezone = r[first + 4].as<std::string>();
  u.dates = json::parse(r[first + 5].as<std::string>())
              .get<std::map<std::string, std::string>>();
  u.created_at_ms = r[first + 6].as<int64_t>();
  return u;
}

/// The deliveries of the user named by parameter `p`: a range of the
/// primary key, as a delivery's key is "user:occasion:date" (migration 9).
std::string of_user(int p) {
  auto u = "$" + std::to_string(p) + "::text";
  return "(key >= " + u + " || ':' AND key < " + u + " || ';' AND user_id = "
         + u + ")";
}

/// A delivery re-checked before its attempt keeps the status "scheduled" in
/// its row and counts the attempt as begun: it reads as handed off while
/// begun_attempts is ahead of attempts (its outcome catches attempts up).
/// The re-check writes no indexed column, and none that a partial index's
/// predicate names, so it is a HOT update: no index entry, where a status
/// of its own in the row cost two.
const char* reported_status
  = "(CASE WHEN status = 'scheduled' AND begun_attempts > attempts"
    " THEN 'handed_off' ELSE status END)";

/// Rows whose reported status is parameter `p` (any when it is empty),
/// each status through the partial index that holds it.
std::string status_is(int p) {
  auto s = "$" + std::to_string(p);
  return "(" + s + " = '' OR (status = " + s + " AND " + s + " <> 'scheduled')"
         " OR (" + s + " = 'scheduled' AND status = 'scheduled'"
         " AND begun_attempts <= attempts)"
         " OR (" + s + " = 'handed_off' AND status = 'scheduled'"
         " AND begun_attempts > attempts))";
}

const std::string delivery_columns
  = std::string{"key, user_id, occasion, local_date::text, due_at_ms, "}
    + reported_status + ", attempts, coalesce(last_error, ''),"
    " coalesce(sent_at_ms, 0), email, message";

delivery_record delivery_from(const pqxx::row& r) {
  delivery_record d;
  d.key = r[0].as<std::string>();
  d.user_id = r[1].as<std::string>();
  d.occasion = r[2].as<std::string>();
  d.local_date = r[3].as<std::string>();
  d.due_at_ms = r[4].as<int64_t>();
  d.status = status_named(r[5].as<std::string>());
  d.attempts = r[6].as<uint32_t>();
  d.last_error = r[7].as<std::string>();
  d.sent_at_ms = r[8].as<int64_t>();
  d.email = r[9].as<std::string>();
  d.message = r[10].as<std::string>();
  return d;
}

/// Deliveries matching `where` (with its ORDER BY and LIMIT), parameterised.
template <class... Ts>
std::vector<delivery_record> select_deliveries(pqxx::transaction_base& tx,
                                               const std::string& where,
                                               Ts&&... params) {
  std::vector<delivery_record> out;
  for (const auto& r :
       tx.exec_params(std::string{"SELECT "} + delivery_columns
                        + " FROM deliveries WHERE " + where,
                      std::forward<Ts>(params)...))
    out.push_back(delivery_from(r));
  return out;
}

std::string dates_text(const user_record& u) {
  json_object_text dates;
  for (auto& [occasion, date] : u.dates)
    dates.field(occasion, date);
  return dates.take();
}

/// A created or replaced user's event data: the user, and its due instants.
std::string user_event_text(const user_view& v) {
  auto& u = v.user;
  json_array_text due;
  for (auto& d : v.due)
    due.raw(json_object_text{}.field("occasion", d.occasion)
              .field("due_at_ms", d.due_at_ms)
              .field("local_date", d.local_date)
              .take());
  return json_object_text{}
    .raw_field("user", json_object_text{}.field("id", u.id)
                         .field("first_name", u.first_name)
                         .field("last_name", u.last_name)
                         .field("email", u.email)
                         .field("timezone", u.timezone)
                         .raw_field("dates", dates_text(u))
                         .take())
    .raw_field("due", due.take())
    .take();
}

void append_event(pqxx::transaction_base& tx, int64_t at_ms,
                  const std::string& kind, const std::string& user_id,
                  const std::string& data) {
  tx.exec_params("INSERT INTO journal (at_ms, kind, user_id, data)"
                 " VALUES ($1, $2, $3, $4::json)",
                 at_ms, kind, user_id, data);
}

/// A due row's `column` (due_at_ms or local_date) as it is now: the next
/// one a fire recorded in place, until the due poll files the row under it
/// (migration 13).
std::string due_now(const std::string& column, const std::string& alias = {}) {
  auto a = alias.empty() ? alias : alias + ".";
  return "coalesce(" + a + "next_" + column + ", " + a + column + ")";
}

/// `replaced`: the user existed before, and a shard may still hold them as
/// they were (migration 14).
void write_due(pqxx::transaction_base& tx, const user_view& v,
               uint32_t shard_count, bool replaced) {
  tx.exec_params("DELETE FROM due_index WHERE user_id = $1", v.user.id);
  auto shard = static_cast<int>(shard_of(v.user.id, shard_count));
  for (auto& d : v.due)
    tx.exec_params("INSERT INTO due_index (user_id, occasion, shard,"
                   " due_at_ms, local_date, user_replaced)"
                   " VALUES ($1, $2, $3, $4, $5::date, $6)",
                   v.user.id, d.occasion, shard, d.due_at_ms, d.local_date,
                   replaced);
}

/// Every delivery of the user renders anew from the user at its next
/// attempt, whatever its status now (a dead one may be redriven).
void mark_user_changed(pqxx::transaction_base& tx, const std::string& id) {
  tx.exec_params("UPDATE deliveries SET user_changed = true WHERE "
                   + of_user(1) + " AND NOT user_changed",
                 id);
}

std::vector<due_entry> read_due(pqxx::transaction_base& tx,
                                const std::string& id) {
  std::vector<due_entry> out;
  for (const auto& r : tx.exec_params("SELECT occasion, " + due_now("due_at_ms")
                                + ", " + due_now("local_date")
                                + "::text FROM due_index"
                                " WHERE user_id = $1 ORDER BY 2",
                                id))
    out.push_back({r[0].as<std::string>(), r[1].as<int64_t>(),
                   r[2].as<std::string>()});
  return out;
}

/// A PostgreSQL array literal of texts, written element by element (the
/// send path's arrays hold thousands: no vector of copies first).
class text_array_writer {
public:
  explicit text_array_writer(size_t expected_size = 0) {
    out_.reserve(expected_size);
  }
  void add(std::string_view s) {
    out_ += out_.size() > 1 ? ",\"" : "\"";
    // Copied in runs between the characters to escape, found by a plain
    // scan: find_first_of called memchr on its set for every character
    // (2 % of the node's CPU in a burst).
    size_t from = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '"' && s[i] != '\\')
        continue;
      out_.append(s.substr(from, i - from));
      out_ += '\\';
      out_ += s[i];
      from = i + 1;
    }
    out_.append(s.substr(from));
    out_ += '"';
  }
  void add(int64_t n) { add(std::string_view{std::to_string(n)}); }
  std::string done() && {
    out_ += '}';
    return std::move(out_);
  }

private:
  std::string out_{"{"};
};

std::string text_array(const std::vector<std::string>& items) {
  size_t size = 2;
  for (auto& s : items)
    size += s.size() + 3;
  text_array_writer w{size + size / 16};
  for (auto& s : items)
    w.add(s);
  return std::move(w).done();
}

// -- operations ------------------------------------------------------------------

caf::message create_user(pqxx::transaction_base& tx, const user_view& v,
                         uint32_t shard_count) {
  auto& u = v.user;
  tx.exec_params("INSERT INTO users (id, first_name, last_name, email,"
                 " timezone, dates, created_at_ms, updated_at_ms)"
                 " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7)",
                 u.id, u.first_name, u.last_name, u.email, u.timezone,
                 dates_text(u), u.created_at_ms);
  write_due(tx, v, shard_count, false);
  append_event(tx, v.at_ms, "user_created", u.id, user_event_text(v));
  return caf::make_message(caf::ok_atom::value);
}

std::string deliveries_version(pqxx::transaction_base& tx,
                               const std::string& id) {
  return tx
    .exec_params(std::string{"SELECT count(*) || '/' || count(*) FILTER"
                             " (WHERE status NOT IN "}
                   + open_statuses + ") FROM deliveries WHERE " + of_user(1),
                 id)[0][0]
    .as<std::string>();
}

caf::message replace_user(pqxx::transaction_base& tx, const user_view& v,
                          uint32_t shard_count) {
  auto& u = v.user;
  // The due rows first: a fire of this user in flight commits before this
  // goes on (and one that comes later finds the rows changed).
  tx.exec_params("SELECT 1 FROM due_index WHERE user_id = $1 FOR UPDATE", u.id);
  if (deliveries_version(tx, u.id) != v.deliveries_version)
    throw op_failure{journal_errc::stale};
  auto r = tx.exec_params("UPDATE users SET first_name = $2, last_name = $3,"
                          " email = $4, timezone = $5, dates = $6::jsonb,"
                          " updated_at_ms = $7 WHERE id = $1",
                          u.id, u.first_name, u.last_name, u.email, u.timezone,
                          dates_text(u), v.at_ms);
  if (r.affected_rows() == 0)
    throw op_failure{journal_errc::not_found};
  write_due(tx, v, shard_count, true);
  mark_user_changed(tx, u.id);
  append_event(tx, v.at_ms, "user_replaced", u.id, user_event_text(v));
  return caf::make_message(caf::ok_atom::value);
}

caf::message remove_user(pqxx::transaction_base& tx, const std::string& id,
                         int64_t at_ms) {
  auto r = tx.exec_params("DELETE FROM users WHERE id = $1", id);
  if (r.affected_rows() == 0)
    throw op_failure{journal_errc::not_found};
  tx.exec_params("DELETE FROM due_index WHERE user_id = $1", id);
  auto cancelled = tx.exec_params(
    std::string{"UPDATE deliveries SET status = 'cancelled', updated_at_ms = $2"
                " WHERE "} + of_user(1) + " AND status IN "
      + open_statuses,
    id, at_ms);
  mark_user_changed(tx, id);
  append_event(tx, at_ms, "user_deleted", id,
               json_object_text{}
                 .field("cancelled",
                        static_cast<int64_t>(cancelled.affected_rows()))
                 .take());
  return caf::make_message(caf::ok_atom::value);
}

/// One journal event per row, inserted in one statement.
struct event_rows {
  std::vector<std::string> at_ms, kind, user_id, data;
  /// The send path's events, one row per kind and batch: {"batch": [...]}.
  /// A row per delivery cost each message two journal rows (a fifth of the
  /// database's time in a burst) for events read only as a whole.
  /// By kind: the latest instant, and the entries' text, comma-separated.
  std::map<std::string, std::pair<int64_t, std::string>> batched;

  void add(int64_t at, std::string k, std::string user, std::string json_text) {
    at_ms.push_back(std::to_string(at));
    kind.push_back(std::move(k));
    user_id.push_back(std::move(user));
    data.push_back(std::move(json_text));
  }

  void add_to_batch(int64_t at, const std::string& k, json_object_text& entry) {
    add_to_batch(at, k, entry.take());
  }

  void add_to_batch(int64_t at, const std::string& k, std::string_view entry) {
    auto [i, fresh] = batched.try_emplace(k, at, std::string{});
    i->second.first = std::max(i->second.first, at);
    if (!fresh)
      i->second.second += ',';
    i->second.second += entry;
  }

  void insert(pqxx::transaction_base& tx) {
    if (!at_ms.empty())
      exec_hot(tx, "journal_events",
               "INSERT INTO journal (at_ms, kind, user_id, data)"
               " SELECT a, k, nullif(u, ''), d FROM unnest($1::bigint[],"
               " $2::text[], $3::text[], $4::json[]) AS r(a, k, u, d)",
               text_array(at_ms), text_array(kind), text_array(user_id),
               text_array(data));
    // After the rows above, as when they shared that statement. A batch's
    // document goes in as a parameter of its own: inside an array literal
    // each of its quotes was escaped by the node and parsed again by
    // array_in (a thirtieth of the database's CPU in an import, whose
    // documents carry every user).
    for (auto& [k, b] : batched)
      exec_hot(tx, "journal_batch_event",
               "INSERT INTO journal (at_ms, kind, data)"
               " VALUES ($1, $2, $3::json)",
               b.first, k, "{\"batch\":[" + b.second + "]}");
    batched.clear();
  }
};

/// The rows a created user writes, field by field in their tables' column
/// order (users_columns, due_columns, the journal's): insert_users and
/// copy_users write the same users and due rows in two shapes, array
/// parameters and COPY rows (and the same events, a row each or a batch's
/// in one). `field` takes text (std::string_view) and numbers (int64_t).
template <class Field>
void user_row(const user_view& v, Field&& field) {
  auto& u = v.user;
  for (auto* text : {&u.id, &u.first_name, &u.last_name, &u.email,
                     &u.timezone})
    field(std::string_view{*text});
  field(std::string_view{dates_text(u)});
  field(u.created_at_ms);
  field(u.created_at_ms);
}

template <class Field>
void due_row(const user_view& v, const due_entry& d, int64_t shard,
             Field&& field) {
  field(std::string_view{v.user.id});
  field(std::string_view{d.occasion});
  field(shard);
  field(d.due_at_ms);
  field(std::string_view{d.local_date});
}

template <class Field>
void created_event_row(const user_view& v, Field&& field) {
  field(v.at_ms);
  field(std::string_view{"user_created"});
  field(std::string_view{v.user.id});
  field(std::string_view{user_event_text(v)});
}

const std::vector<std::string> users_columns{
  "id", "first_name", "last_name", "email", "timezone", "dates",
  "created_at_ms", "updated_at_ms"};
const std::vector<std::string> due_columns{"user_id", "occasion", "shard",
                                           "due_at_ms", "local_date"};

/// Columns of array parameters, filled a row at a time.
template <size_t N>
struct column_arrays {
  std::vector<std::string> cols[N];

  /// The `field` of one row: the next column's value.
  auto row() {
    return [this, i = size_t{0}](auto value) mutable {
      if constexpr (std::is_same_v<decltype(value), int64_t>)
        cols[i++].push_back(std::to_string(value));
      else
        cols[i++].emplace_back(value);
    };
  }
};

/// The set-based part of import_users: one statement for the three tables
/// (a round trip each cost the journal's thread and the database a wake-up
/// apiece, for a group commit of a few dozen creates). A user whose email
/// is taken, by a live user or by one earlier in `views`, is skipped by the
/// users insert and gets no rows elsewhere.
std::vector<caf::error> insert_users(pqxx::transaction_base& tx,
                                     const std::vector<user_view>& views,
                                     uint32_t shard_count) {
  column_arrays<8> users;
  column_arrays<5> due;
  column_arrays<4> events;
  for (auto& v : views) {
    user_row(v, users.row());
    auto shard = static_cast<int64_t>(shard_of(v.user.id, shard_count));
    for (auto& d : v.due)
      due_row(v, d, shard, due.row());
    created_event_row(v, events.row());
  }
  static const std::string sql =
    "WITH u AS (INSERT INTO users (id, first_name, last_name, email,"
    " timezone, dates, created_at_ms, updated_at_ms)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::jsonb[], $7::bigint[], $8::bigint[])"
    // Only the email's index decides: a check of the primary key as well
    // costs a probe per row, for ids that are new UUIDs.
    " ON CONFLICT ((lower(email))) DO NOTHING RETURNING id),"
    " d AS (INSERT INTO due_index (user_id, occasion, shard, due_at_ms,"
    " local_date) SELECT r.* FROM unnest($9::text[], $10::text[], $11::int[],"
    " $12::bigint[], $13::date[]) AS r(i, o, s, t, l) JOIN u ON u.id = r.i),"
    " e AS (INSERT INTO journal (at_ms, kind, user_id, data)"
    " SELECT r.* FROM unnest($14::bigint[], $15::text[], $16::text[],"
    " $17::json[]) AS r(a, k, i, d) JOIN u ON u.id = r.i)"
    " SELECT id FROM u";
  std::unordered_set<std::string> inserted;
  auto& uc = users.cols;
  auto& dc = due.cols;
  auto& ec = events.cols;
  for (const auto& r : exec_hot(tx, "insert_user_set", sql,
         text_array(uc[0]), text_array(uc[1]), text_array(uc[2]),
         text_array(uc[3]), text_array(uc[4]), text_array(uc[5]),
         text_array(uc[6]), text_array(uc[7]), text_array(dc[0]),
         text_array(dc[1]), text_array(dc[2]), text_array(dc[3]),
         text_array(dc[4]), text_array(ec[0]), text_array(ec[1]),
         text_array(ec[2]), text_array(ec[3])))
    inserted.insert(r[0].as<std::string>());
  std::vector<caf::error> refusals(views.size());
  for (size_t i = 0; i < views.size(); ++i)
    if (inserted.count(views[i].user.id) == 0)
      refusals[i] = make_error(journal_errc::conflict);
  return refusals;
}

/// A row in COPY's text format: fields separated by tabs, and in them the
/// four characters COPY reads specially escaped with a backslash.
class copy_row {
public:
  copy_row& field(std::string_view s) {
    start_field();
    size_t from = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      char c = s[i];
      if (c != '\\' && c != '\t' && c != '\n' && c != '\r')
        continue;
      line_.append(s.substr(from, i - from));
      line_ += '\\';
      line_ += c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : c;
      from = i + 1;
    }
    line_.append(s.substr(from));
    return *this;
  }

  copy_row& field(int64_t n) {
    start_field();
    line_ += std::to_string(n);
    return *this;
  }

  std::string take() { return std::move(line_); }

private:
  void start_field() {
    if (fields_++ > 0)
      line_ += '\t';
  }

  std::string line_;
  size_t fields_ = 0;
};

/// A row that copy_row has written: stream_to sends it as it is.
struct copy_line {
  std::string text;
};

} // namespace
} // namespace chime

namespace pqxx::internal {
// stream_to escapes each field of a tuple byte by byte, octal-escaping every
// non-ASCII one: a tenth of the node's CPU in an import. A tuple of one
// copy_line is a whole row, written by copy_row already.
template <>
inline std::string TypedCopyEscaper::operator()<chime::copy_line>(
  const chime::copy_line* row) const {
  return row->text;
}
} // namespace pqxx::internal

namespace chime {
namespace {

/// import_users' fast path: each table's rows streamed in by COPY, which
/// PostgreSQL takes at a fraction of the cost of the same rows as array
/// parameters (half an import's database time went to parsing those). It
/// has no ON CONFLICT: an email already taken fails it whole.
std::vector<caf::error> copy_users(pqxx::transaction_base& tx,
                                   const std::vector<user_view>& views,
                                   uint32_t shard_count) {
  // A row's fields (user_row & co) into one COPY line.
  auto put = [](pqxx::stream_to& to, auto&& row_of) {
    copy_row row;
    row_of([&row](auto value) { row.field(value); });
    to << std::make_tuple(copy_line{row.take()});
  };
  // One stream per table: COPY takes one table at a time.
  pqxx::stream_to users{tx, "users", users_columns};
  for (auto& v : views)
    put(users, [&](auto field) { user_row(v, field); });
  users.complete();
  pqxx::stream_to due{tx, "due_index", due_columns};
  for (auto& v : views) {
    auto shard = static_cast<int64_t>(shard_of(v.user.id, shard_count));
    for (auto& d : v.due)
      put(due, [&](auto field) { due_row(v, d, shard, field); });
  }
  due.complete();
  // The events in one row, as the send path writes its own: a row per user
  // was a tenth of the database's CPU in an import of 1,000,000 users (the
  // row, its key and their WAL; 25.4 and 23.1 s against 22.1 and 20.8).
  event_rows events;
  for (auto& v : views)
    events.add_to_batch(v.at_ms, "user_created", user_event_text(v));
  events.insert(tx);
  return std::vector<caf::error>(views.size());
}

/// Fewer users than this are not worth a COPY (see import_users).
constexpr size_t copy_users_min = 256;

/// Creates many users at once with the rows and events create_user writes
/// for each. Replies one error per user, empty when it was created.
caf::message import_users(pqxx::transaction_base& tx,
                          const std::vector<user_view>& views,
                          uint32_t shard_count) {
  // Each way in turn, cheapest first, until one takes the whole set: by
  // COPY; by one statement per table that skips a taken email; user by user.
  // A COPY costs the database about 0.3 ms to set up whatever it carries:
  // a group commit's dozen creates went 20 % cheaper without it.
  std::vector<decltype(&copy_users)> ways{&insert_users};
  if (views.size() >= copy_users_min)
    ways.insert(ways.begin(), &copy_users);
  for (auto* way : ways) {
    try {
      return caf::make_message(
        in_savepoint(tx, [&] { return way(tx, views, shard_count); }));
    } catch (const pqxx::sql_error& e) {
      if (refusal_of(e) == journal_errc::unavailable)
        throw;
    }
  }
  // A value the database refuses (class 22 or 23) fails the whole set's
  // statement: user by user then, so that it fails only its own.
  std::vector<caf::error> refusals(views.size());
  for (size_t i = 0; i < views.size(); ++i) {
    try {
      in_savepoint(tx, [&] { return create_user(tx, views[i], shard_count); });
    } catch (const pqxx::sql_error& e) {
      refusals[i] = make_error(refusal_of(e));
    }
  }
  return caf::make_message(std::move(refusals));
}

/// The creates of a group commit, written as an import of them: a few
/// statements for all instead of a savepoint and four statements each.
std::vector<caf::message>
create_batch(pqxx::transaction_base& tx, const std::vector<caf::message>& reqs,
             const fence& fn) {
  std::vector<user_view> views;
  for (auto& m : reqs)
    views.push_back(m.get_as<user_view>(0));
  auto refusals = import_users(tx, views, fn.shard_count)
                    .get_as<std::vector<caf::error>>(0);
  std::vector<caf::message> replies;
  for (auto& err : refusals)
    replies.push_back(err ? caf::make_message(std::move(err))
                          : caf::make_message(caf::ok_atom::value));
  return replies;
}

/// The fire requests of one queued request: one, or a shard's wake's all.
std::vector<const fire_request*> fires_of(const caf::message& m) {
  if (m.match_element<fire_request>(0))
    return {&m.get_as<fire_request>(0)};
  std::vector<const fire_request*> out;
  for (auto& f : m.get_as<std::vector<fire_request>>(0))
    out.push_back(&f);
  return out;
}

/// Records due occasions whose due index still holds them: one UPDATE moves
/// every matching index row to its next instant, and only the moved ones get
/// their delivery (idempotent by key). Replies true for recorded requests.
std::vector<caf::message> fire_batch(pqxx::transaction_base& tx,
                                     const std::vector<caf::message>& reqs,
                                     const fence& fn) {
  std::vector<std::string> users, occasions, dues, next_dues, next_dates,
    shards, epochs;
  std::vector<const fire_request*> all;
  for (auto& m : reqs)
    for (auto* f : fires_of(m))
      all.push_back(f);
  for (auto* fp : all) {
    auto& f = *fp;
    fn.add(f.user_id, shards, epochs);
    users.push_back(f.user_id);
    occasions.push_back(f.due.occasion);
    dues.push_back(std::to_string(f.due.due_at_ms));
    next_dues.push_back(std::to_string(f.next.due_at_ms));
    next_dates.push_back(f.next.local_date);
  }
  /// Moved due rows, and whether the user was replaced since (so that
  /// this fire may have rendered from the user as they were).
  std::map<std::pair<std::string, std::string>, bool> moved;
  // The row takes its next instant in place, in columns no index names: a
  // HOT update (moving it in the index here cost a burst about a third of
  // the database's time at the due instant); the due poll's next pass over
  // it files it anew (load_due).
  static const std::string due_move_sql =
    "UPDATE due_index d SET next_due_at_ms = r.next_due,"
    " next_local_date = r.next_date"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],"
    " $5::date[], $6::int[], $7::bigint[]) AS r(user_id, occasion, due,"
    " next_due, next_date, shard, epoch)"
    " WHERE d.user_id = r.user_id AND d.occasion = r.occasion"
    " AND " + due_now("due_at_ms", "d") + " = r.due AND " + fence::holds(8)
    + " RETURNING d.user_id, d.occasion, d.user_replaced";
  for (const auto& r : exec_hot(tx, "fire_due_move", due_move_sql,
         text_array(users), text_array(occasions), text_array(dues),
         text_array(next_dues), text_array(next_dates), text_array(shards),
         text_array(epochs), fn.owner()))
    moved.emplace(std::pair{r[0].as<std::string>(), r[1].as<std::string>()},
                  r[2].as<bool>());
  text_array_writer cols[10];
  size_t recorded_count = 0;
  event_rows events;
  std::vector<caf::message> replies;
  std::map<const fire_request*, bool> recorded_by;
  for (auto* fp : all) {
    auto& f = *fp;
    // A request recorded once in this batch; a copy of it is stale.
    auto row = moved.find({f.user_id, f.due.occasion});
    bool recorded = row != moved.end();
    recorded_by[fp] = recorded;
    if (!recorded)
      continue;
    bool user_replaced = row->second;
    moved.erase(row);
    auto& d = f.delivery;
    ++recorded_count;
    cols[0].add(d.key);
    cols[1].add(d.user_id);
    cols[2].add(d.occasion);
    cols[3].add(d.local_date);
    cols[4].add(d.due_at_ms);
    cols[5].add(status_name(d.status));
    cols[6].add(d.email);
    cols[7].add(d.message);
    cols[8].add(f.at_ms);
    cols[9].add(user_replaced ? "t" : "f");
    events.add_to_batch(f.at_ms, "occasion_due",
                        json_object_text{}.field("user_id", f.user_id)
                          .field("key", d.key)
                          .field("status", status_name(d.status))
                          .field("next_due_at_ms", f.next.due_at_ms));
  }
  if (recorded_count > 0) {
    std::vector<std::string> arrays;
    for (auto& c : cols)
      arrays.push_back(std::move(c).done());
    auto insert = [&](const char* name, const std::string& sql) {
      exec_hot(tx, name, sql, arrays[0], arrays[1], arrays[2], arrays[3],
               arrays[4], arrays[5], arrays[6], arrays[7], arrays[8],
               arrays[9]);
    };
    // A delivery fired ahead of its instant (the fire lead) counts as
    // touched at the instant: the outbox sweeper leaves it to the delivery
    // actor that holds it until then.
    static const std::string insert_sql =
      "INSERT INTO deliveries (key, user_id, occasion, local_date,"
      " due_at_ms, status, email, message, created_at_ms,"
      " updated_at_ms, user_changed)"
      " SELECT k, u, o, l, d, s, e, m, a, greatest(a, d), c"
      " FROM unnest($1::text[], $2::text[], $3::text[], $4::date[],"
      " $5::bigint[], $6::text[], $7::text[], $8::text[], $9::bigint[],"
      " $10::boolean[]) AS r(k, u, o, l, d, s, e, m, a, c)";
    // A date moved away and back again: the message of the occasion
    // cancelled in between is owed once more.
    static const std::string again_sql =
      insert_sql
      + " ON CONFLICT (key) DO UPDATE SET status = EXCLUDED.status,"
        " due_at_ms = EXCLUDED.due_at_ms, email = EXCLUDED.email,"
        " message = EXCLUDED.message,"
        " updated_at_ms = EXCLUDED.updated_at_ms,"
        " user_changed = EXCLUDED.user_changed,"
        // Scheduled anew: it reads as scheduled (reported_status).
        " begun_attempts = deliveries.attempts"
        " WHERE deliveries.status = 'cancelled'";
    // A plain insert first: ON CONFLICT's speculative insertion (a probe
    // of the key and a confirming WAL record a row) cost 7.7 ms where the
    // plain one took 5.8 (480 rows, medians of 15), and a key met again is
    // rare: only then is the batch written the other way.
    try {
      in_savepoint(tx, [&] {
        insert("fire_deliveries", insert_sql);
        return true;
      });
    } catch (const pqxx::unique_violation&) {
      insert("fire_deliveries_again", again_sql);
    }
  }
  events.insert(tx);
  for (auto& m : reqs) {
    std::vector<bool> answers;
    for (auto* f : fires_of(m))
      answers.push_back(recorded_by[f]);
    replies.push_back(m.match_element<fire_request>(0)
                        ? caf::make_message(bool{answers.front()})
                        : caf::make_message(std::move(answers)));
  }
  return replies;
}

/// One attempt asked of the journal, in a request that outlives it.
struct attempt_ask {
  const std::string* key;
  int64_t now_ms;
  int64_t catch_up_ms;
};

/// Decides, for each attempt request, whether the delivery is still owed,
/// and counts the attempt as begun before anything is sent, so that the next
/// sender knows when an attempt ended with no recorded outcome. An answer of
/// no because the user is gone (cancelled) or the catch-up window has passed
/// (expired) is written as the delivery's status. Reads first, then writes:
/// any request, in order, duplicates included.
std::vector<attempt_verdict>
attempts_read_then_written(pqxx::transaction_base& tx,
                           const std::vector<attempt_ask>& asks,
                           const fence& fn) {
  struct row {
    delivery_status status;
    uint32_t attempts;
    uint32_t begun;
    int64_t due_at_ms;
    bool user_alive;
    bool leased;
    user_record user;
    int64_t at_ms = 0;
    bool changed = false;
  };
  std::vector<std::string> keys, shards, epochs;
  for (auto& a : asks) {
    keys.push_back(*a.key);
    fn.add(user_of_key(keys.back()), shards, epochs);
  }
  std::map<std::string, row> rows;
  for (const auto& r : tx.exec_params(
         "SELECT DISTINCT ON (d.key) d.key, d.status, d.attempts,"
         " d.begun_attempts, d.due_at_ms, u.id IS NOT NULL, " + fence::holds(4)
         + ", " + user_columns
         + " FROM unnest($1::text[], $2::int[], $3::bigint[])"
           " AS r(key, shard, epoch) JOIN deliveries d ON d.key = r.key"
           " LEFT JOIN users u ON u.id = d.user_id",
         text_array(keys), text_array(shards), text_array(epochs),
         fn.owner()))
    rows[r[0].as<std::string>()] = row{
      status_named(r[1].as<std::string>()), r[2].as<uint32_t>(), r[3].as<uint32_t>(),
      r[4].as<int64_t>(),     r[5].as<bool>(),     r[6].as<bool>(),
      r[5].as<bool>() ? user_from(r, 7) : user_record{}};
  event_rows events;
  std::vector<attempt_verdict> replies;
  for (auto& a : asks) {
    auto& key = *a.key;
    auto now_ms = a.now_ms;
    auto catch_up_ms = a.catch_up_ms;
    attempt_verdict v;
    auto i = rows.find(key);
    if (i == rows.end()) {
      v.missing = true;
      replies.push_back(std::move(v));
      continue;
    }
    auto& r = i->second;
    if (!r.leased) {
      // Not this node's to decide: its lease on the shard is gone.
      v.fenced = true;
      replies.push_back(std::move(v));
      continue;
    }
    bool open = is_open(r.status);
    bool closes = open && (!r.user_alive || now_ms - r.due_at_ms > catch_up_ms);
    if (closes) {
      r.status = r.user_alive ? delivery_status::expired : delivery_status::cancelled;
      r.changed = true;
      r.at_ms = now_ms;
      events.add_to_batch(now_ms, "delivery_" + status_name(r.status),
                          json_object_text{}.field("key", key));
    }
    v.proceed = open && !closes;
    // It reached delivery: the attempt begun reads as handed off (see
    // reported_status); no separate mark when the broker confirmed it.
    v.status = v.proceed && r.status == delivery_status::scheduled
                 ? delivery_status::handed_off
                 : r.status;
    v.unsettled = v.proceed && r.begun > r.attempts;
    if (v.proceed) {
      r.begun = std::max(r.begun, r.attempts) + 1;
      r.changed = true;
    }
    v.attempts = v.proceed ? r.begun : r.attempts;
    // Read whether or not it changed: rendered from as it is now.
    v.user_changed = v.proceed;
    if (v.proceed)
      v.user = r.user;
    replies.push_back(std::move(v));
  }
  std::vector<std::string> k, s, t, b;
  for (auto& [key, r] : rows) {
    if (!r.changed)
      continue;
    k.push_back(key);
    s.push_back(status_name(r.status));
    t.push_back(std::to_string(r.at_ms));
    b.push_back(std::to_string(r.begun));
  }
  // A begun attempt leaves updated_at_ms alone: it records when the status
  // last changed.
  if (!k.empty())
    tx.exec_params("UPDATE deliveries d SET status = r.s, begun_attempts = r.b,"
                   " updated_at_ms = CASE WHEN r.s = d.status"
                   " THEN d.updated_at_ms ELSE r.t END"
                   " FROM unnest($1::text[], $2::text[], $3::bigint[],"
                   " $4::int[]) AS r(k, s, t, b) WHERE d.key = r.k",
                   text_array(k), text_array(s), text_array(t), text_array(b));
  events.insert(tx);
  return replies;
}

/// What attempts_read_then_written decides, in one statement for the usual
/// case: each key's first request whose delivery is open, its user alive,
/// within the catch-up window and its lease held proceeds, and the UPDATE
/// that counts the attempt returns what the verdict needs (a read before the
/// write cost every message a statement, a fifth of the database's time on
/// the send path). The rest, duplicates after the first and every "no", go
/// through attempts_read_then_written after it, in order, and so see what
/// this statement wrote.
std::vector<attempt_verdict>
attempts_decided(pqxx::transaction_base& tx,
                 const std::vector<attempt_ask>& asks, const fence& fn) {
  std::vector<std::string> keys, shards, epochs, nows, windows;
  std::unordered_set<std::string_view> firsts;
  for (auto& a : asks) {
    if (!firsts.insert(*a.key).second)
      continue;
    keys.push_back(*a.key);
    fn.add(user_of_key(*a.key), shards, epochs);
    nows.push_back(std::to_string(a.now_ms));
    windows.push_back(std::to_string(a.catch_up_ms));
  }
  std::unordered_map<std::string, attempt_verdict> proceeding;
  // It reached delivery, and reads as handed off from now on (see
  // reported_status): no separate mark when the broker confirmed it. A
  // delivery whose user changed since its fire (deleted ones included) is
  // left to the rest, which reads the user.
  static const std::string begin_sql =
    "UPDATE deliveries d SET begun_attempts"
    " = greatest(d.begun_attempts, d.attempts) + 1"
    " FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[],"
    " $5::bigint[]) AS r(key, shard, epoch, now, catch_up)"
    " WHERE d.key = r.key AND NOT d.user_changed AND d.status IN "
    + open_statuses + " AND r.now - d.due_at_ms <= r.catch_up AND "
    + fence::holds(6) + " RETURNING d.key, d.status, d.attempts,"
    " d.begun_attempts, d.email, d.message";
  for (const auto& r : exec_hot(tx, "attempt_begin", begin_sql,
         text_array(keys), text_array(shards), text_array(epochs),
         text_array(nows), text_array(windows), fn.owner())) {
    attempt_verdict v;
    v.proceed = true;
    v.status = status_named(r[1].as<std::string>());
    if (v.status == delivery_status::scheduled)
      v.status = delivery_status::handed_off;
    auto attempts = r[2].as<uint32_t>();
    v.attempts = r[3].as<uint32_t>();
    // begun = max(begun before, attempts) + 1: above attempts + 1 exactly
    // when an earlier attempt had begun with no outcome recorded.
    v.unsettled = v.attempts > attempts + 1;
    v.email = r[4].as<std::string>();
    v.message = r[5].as<std::string>();
    proceeding.emplace(r[0].as<std::string>(), std::move(v));
  }
  std::vector<attempt_verdict> replies(asks.size());
  std::vector<attempt_ask> rest;
  std::vector<size_t> rest_at;
  for (size_t i = 0; i < asks.size(); ++i) {
    auto j = proceeding.find(*asks[i].key);
    if (j != proceeding.end()) {
      replies[i] = std::move(j->second);
      proceeding.erase(j); // a duplicate after it is decided as the rest
      continue;
    }
    rest.push_back(asks[i]);
    rest_at.push_back(i);
  }
  if (!rest.empty()) {
    auto decided = attempts_read_then_written(tx, rest, fn);
    for (size_t i = 0; i < rest.size(); ++i)
      replies[rest_at[i]] = std::move(decided[i]);
  }
  return replies;
}

/// The attempts of the queued requests, each a key or (delivery's, one a
/// turn of its mailbox) many, decided together and answered in kind.
std::vector<caf::message>
attempt_batch(pqxx::transaction_base& tx,
              const std::vector<caf::message>& reqs, const fence& fn) {
  std::vector<attempt_ask> asks;
  for (auto& m : reqs) {
    auto now_ms = m.get_as<int64_t>(1);
    auto catch_up_ms = m.get_as<int64_t>(2);
    if (m.match_element<std::string>(0))
      asks.push_back({&m.get_as<std::string>(0), now_ms, catch_up_ms});
    else
      for (auto& key : m.get_as<std::vector<std::string>>(0))
        asks.push_back({&key, now_ms, catch_up_ms});
  }
  auto verdicts = attempts_decided(tx, asks, fn);
  std::vector<caf::message> replies;
  auto next = verdicts.begin();
  for (auto& m : reqs) {
    if (m.match_element<std::string>(0)) {
      replies.push_back(caf::make_message(std::move(*next++)));
      continue;
    }
    auto n = static_cast<std::ptrdiff_t>(
      m.get_as<std::vector<std::string>>(0).size());
    replies.push_back(caf::make_message(
      std::vector<attempt_verdict>{std::make_move_iterator(next),
                                   std::make_move_iterator(next + n)}));
    next += n;
  }
  return replies;
}

/// The keys among `reqs` (each request's keys as `keys_of` lists them) whose
/// shard lease this node no longer holds under the epoch it believes.
template <class Request, class KeysOf>
std::set<std::string> fenced_keys(pqxx::transaction_base& tx,
                                  const std::vector<Request>& reqs,
                                  const fence& fn, KeysOf keys_of) {
  std::set<std::string> out;
  if (!fn.view || reqs.empty())
    return out;
  std::vector<std::string> keys, shards, epochs;
  for (auto& m : reqs)
    for (auto& k : keys_of(m)) {
      fn.add(user_of_key(k), shards, epochs);
      keys.push_back(std::move(k));
    }
  static const std::string fenced_sql =
    "SELECT r.key FROM unnest($1::text[], $2::int[], $3::bigint[])"
    " AS r(key, shard, epoch) WHERE NOT " + fence::holds(4);
  for (const auto& r : exec_hot(tx, "fenced_keys", fenced_sql,
         text_array(keys), text_array(shards), text_array(epochs),
         fn.owner()))
    out.insert(r[0].as<std::string>());
  return out;
}

/// Records outcomes. Only an open delivery changes: a sent one never becomes
/// open again, and of two outcomes for one key in a batch, `sent` wins. The
/// fence is part of the write: only the keys it left alone are looked at
/// again (a statement of its own for every batch was 1.7 us a message).
std::vector<caf::message>
outcome_batch(pqxx::transaction_base& tx,
              const std::vector<caf::message>& reqs, const fence& fn) {
  // Each request is an outcome or (delivery's, one a turn of its mailbox)
  // many, answered in kind.
  std::vector<const delivery_outcome*> all;
  for (auto& m : reqs)
    if (m.match_element<delivery_outcome>(0))
      all.push_back(&m.get_as<delivery_outcome>(0));
    else
      for (auto& o : m.get_as<std::vector<delivery_outcome>>(0))
        all.push_back(&o);
  std::map<std::string, delivery_outcome> last;
  for (auto* op : all) {
    auto& o = *op;
    auto i = last.find(o.key);
    if (i == last.end() || i->second.status != delivery_status::sent)
      last[o.key] = o;
  }
  std::vector<std::string> k, s, e, t, a, shards, epochs;
  for (auto& [key, o] : last) {
    k.push_back(key);
    s.emplace_back(to_string(o.status));
    e.push_back(o.error);
    t.push_back(std::to_string(o.at_ms));
    a.push_back(std::to_string(o.attempts));
    fn.add(user_of_key(key), shards, epochs);
  }
  static const std::string record_sql =
    std::string{"UPDATE deliveries d SET status = r.s,"
                " last_error = nullif(r.e, ''),"
                " sent_at_ms = CASE WHEN r.s = 'sent' THEN r.t"
                " ELSE d.sent_at_ms END, updated_at_ms = r.t,"
                " attempts = greatest(d.attempts, r.a)"
                " FROM unnest($1::text[], $2::text[], $3::text[],"
                " $4::bigint[], $5::int[], $6::int[], $7::bigint[])"
                " AS r(k, s, e, t, a, shard, epoch)"
                " WHERE d.key = r.k AND d.status IN "}
    + open_statuses + " AND " + fence::holds(8) + " RETURNING d.key";
  std::unordered_set<std::string> written;
  for (const auto& r : exec_hot(tx, "outcome_record", record_sql,
         text_array(k), text_array(s), text_array(e), text_array(t),
         text_array(a), text_array(shards), text_array(epochs), fn.owner()))
    written.insert(r[0].as<std::string>());
  // Left alone: settled already (an answer like any other), or fenced.
  std::vector<const delivery_outcome*> left_alone;
  for (auto* o : all)
    if (written.count(o->key) == 0)
      left_alone.push_back(o);
  auto fenced = fenced_keys(tx, left_alone, fn, [](const delivery_outcome* o) {
    return std::vector<std::string>{o->key};
  });
  event_rows events;
  std::vector<caf::error> answers;
  for (auto* op : all) {
    auto& o = *op;
    if (fenced.count(o.key) > 0) {
      answers.push_back(make_error(journal_errc::fenced));
      continue;
    }
    answers.emplace_back();
    events.add_to_batch(o.at_ms, "delivery_" + status_name(o.status),
                        json_object_text{}.field("key", o.key)
                          .field("error", o.error)
                          .field("attempt", int64_t{o.attempts}));
  }
  events.insert(tx);
  std::vector<caf::message> replies;
  auto next = answers.begin();
  for (auto& m : reqs) {
    if (m.match_element<delivery_outcome>(0)) {
      auto& err = *next++;
      replies.push_back(err ? caf::make_message(std::move(err))
                            : caf::make_message(caf::ok_atom::value));
      continue;
    }
    auto n = static_cast<std::ptrdiff_t>(
      m.get_as<std::vector<delivery_outcome>>(0).size());
    replies.push_back(caf::make_message(
      std::vector<caf::error>{std::make_move_iterator(next),
                              std::make_move_iterator(next + n)}));
    next += n;
  }
  return replies;
}

const std::map<batch_kind, batch_fn>& batch_executors() {
  static const std::map<batch_kind, batch_fn> executors = {
    {batch_kind::create, create_batch},
    {batch_kind::fire, fire_batch},
    {batch_kind::attempt, attempt_batch},
    {batch_kind::outcome, outcome_batch},
  };
  return executors;
}

caf::message redrive(pqxx::transaction_base& tx, const std::string& key,
                     int64_t at_ms) {
  auto rows = tx.exec_params(
    // Settled: no attempt counts as begun without its outcome.
    std::string{"UPDATE deliveries SET status = 'scheduled', updated_at_ms = $2,"
                " begun_attempts = attempts WHERE key = $1 AND status = 'dead'"
                " RETURNING "}
      + delivery_columns,
    key, at_ms);
  if (rows.empty())
    throw op_failure{journal_errc::not_found};
  append_event(tx, at_ms, "delivery_redriven", {},
               json_object_text{}.field("key", key).take());
  return caf::make_message(delivery_from(rows[0]));
}

std::vector<delivery_record> user_deliveries(pqxx::transaction_base& tx,
                                             const std::string& id) {
  return select_deliveries(tx, of_user(1) + " ORDER BY due_at_ms DESC LIMIT 50",
                           id);
}

pg_journal_actor::behavior_type journal(journal_self self,
                                       pg_journal_options opts) {
  self->state.opts = std::move(opts);
  self->state.busy = &get_metric("chime_journal_busy_microseconds_total{journal=\""
                                 + self->state.opts.name + "\"}");
  auto shards = self->state.opts.shard_count;
  return {
    [=](flush_atom) { flush(self); },
    [=](create_atom, user_view& v) {
      return enqueue<caf::ok_atom>(self, batch_kind::create, caf::make_message(std::move(v)));
    },
    [=](import_atom, std::vector<user_view>& views) {
      return enqueue<std::vector<caf::error>>(self, [views = std::move(views), shards](auto& tx) {
        return import_users(tx, views, shards);
      });
    },
    [=](replace_atom, user_view& v) {
      return enqueue<caf::ok_atom>(self, [v = std::move(v), shards](auto& tx) {
        return replace_user(tx, v, shards);
      });
    },
    [=](remove_atom, std::string& id, int64_t at_ms) {
      return enqueue<caf::ok_atom>(self, [id = std::move(id), at_ms](auto& tx) {
        return remove_user(tx, id, at_ms);
      });
    },
    [=](fire_atom, fire_request& f) {
      return enqueue<bool>(self, batch_kind::fire, caf::make_message(std::move(f)));
    },
    [=](fire_atom, std::vector<fire_request>& fs, handoff_actor& to) {
      return enqueue<std::vector<bool>>(self, batch_kind::fire,
                                       caf::make_message(std::move(fs), std::move(to)));
    },
    [=](attempt_atom, std::string& key, int64_t now_ms, int64_t catch_up_ms) {
      return enqueue<attempt_verdict>(self, batch_kind::attempt,
                     caf::make_message(std::move(key), now_ms, catch_up_ms));
    },
    [=](attempt_atom, std::vector<std::string>& keys, int64_t now_ms,
        int64_t catch_up_ms) {
      return enqueue<std::vector<attempt_verdict>>(self, batch_kind::attempt,
                     caf::make_message(std::move(keys), now_ms, catch_up_ms));
    },
    [=](outcome_atom, delivery_outcome& o) {
      return enqueue<caf::ok_atom>(self, batch_kind::outcome,
                     caf::make_message(std::move(o)));
    },
    [=](outcome_atom, std::vector<delivery_outcome>& os) {
      return enqueue<std::vector<caf::error>>(self, batch_kind::outcome,
                     caf::make_message(std::move(os)));
    },
    [=](redrive_atom, std::string& key, int64_t at_ms) {
      return enqueue<delivery_record>(self, [key = std::move(key), at_ms](auto& tx) {
        return redrive(tx, key, at_ms);
      });
    },
    [=](outbox_atom, int64_t scheduled_before_ms, int64_t open_before_ms,
        uint32_t limit, int64_t now_ms) {
      // Claims what it returns (touched now), so that a delivery stuck for
      // long (an email outage) is republished once per period, not at
      // every sweep.
      // In a cluster, only the shards this node holds are its to sweep.
      auto fn = fence{self->state.opts.fence, self->state.opts.shard_count};
      std::vector<std::string> held;
      if (fn.view)
        for (auto s : fn.view->held())
          held.push_back(std::to_string(s));
      return enqueue<std::vector<delivery_record>>(self, [=](pqxx::transaction_base& tx) {
        auto out = select_deliveries(
          tx,
          // The longest untouched of each kind, each through its own
          // partial index (migration 5): a sweep costs what it claims, not
          // the number of deliveries open (164 ms a sweep at 30,000).
          // A re-checked delivery is still "scheduled" in its row (see
          // reported_status) and counts as handed off; the few of them
          // (those in flight) are passed over in the scheduled ones' index.
          "key IN (SELECT key FROM ((SELECT key, user_id FROM deliveries"
          " WHERE status = 'scheduled' AND begun_attempts <= attempts"
          " AND updated_at_ms < $1 ORDER BY updated_at_ms LIMIT $3)"
          " UNION ALL (SELECT key, user_id FROM deliveries"
          " WHERE status = 'scheduled' AND begun_attempts > attempts"
          " AND updated_at_ms < $2 ORDER BY updated_at_ms LIMIT $3)"
          " UNION ALL (SELECT key, user_id"
          " FROM deliveries WHERE status IN ('handed_off', 'failed')"
          " AND updated_at_ms < $2 ORDER BY updated_at_ms LIMIT $3)) c"
          " WHERE $4 = '' OR EXISTS (SELECT 1 FROM due_index x"
          " WHERE x.user_id = c.user_id AND x.shard = ANY($5::int[])))"
          // Rows locked now are being written by the send path (a
          // hand-off, an attempt or an outcome): they are not stuck, and
          // waiting for them held up those writes behind this sweep
          // (seen in a 60,000 burst: most lock waits were on it).
          " ORDER BY due_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED",
          scheduled_before_ms, open_before_ms, limit, fn.owner(),
          text_array(held));
        std::vector<std::string> keys;
        for (auto& d : out)
          keys.push_back(d.key);
        if (!keys.empty())
          tx.exec_params("UPDATE deliveries SET updated_at_ms = $2"
                         " WHERE key = ANY($1::text[])",
                         text_array(keys), now_ms);
        return caf::make_message(std::move(out));
      });
    },
    [=](read_atom, const std::string& id) -> caf::result<user_view> {
      flush(self);
      return read(self, [&](pqxx::transaction_base& tx) -> user_view {
        auto rows = tx.exec_params(std::string{"SELECT "} + user_columns
                                     + " FROM users u WHERE u.id = $1",
                                   id);
        if (rows.empty())
          throw op_failure{journal_errc::not_found};
        return user_view{user_from(rows[0]), read_due(tx, id),
                         user_deliveries(tx, id), 0,
                         deliveries_version(tx, id)};
      });
    },
    [=](list_atom, const std::string& cursor,
        uint32_t limit) -> caf::result<users_page> {
      flush(self);
      return read(self, [&](pqxx::transaction_base& tx) {
        users_page page;
        auto rows = tx.exec_params(std::string{"SELECT "} + user_columns
                                     + " FROM users u WHERE u.id > $1"
                                       " ORDER BY u.id LIMIT $2",
                                   cursor, limit + 1);
        for (const auto& r : rows) {
          if (page.users.size() == limit) {
            page.next_cursor = page.users.back().user.id;
            break;
          }
          auto u = user_from(r);
          auto due = read_due(tx, u.id);
          page.users.push_back(user_view{std::move(u), std::move(due), {}, 0, {}});
        }
        return page;
      });
    },
    [=](load_due_atom, int64_t until_ms, const std::vector<uint32_t>& owned,
        int64_t after_due_ms, const std::string& after_user,
        uint32_t limit) -> caf::result<due_page> {
      flush(self);
      return read<pqxx::work>(self, [&](pqxx::transaction_base& tx) {
        std::vector<std::string> shard_list;
        for (auto s : owned)
          shard_list.push_back(std::to_string(s));
        // A keyset page of due rows (index due_index_due_user), then every
        // due row by then of the users it names: a page costs its size,
        // whatever the number of users due or stored. The user and their
        // due rows are looked up by key, user by user (OFFSET 0 keeps each
        // lookup a subquery of its own): joined plainly, the planner hashed
        // a page of 4,096 users against a scan of the whole users and due
        // tables, 180 ms a page at 100,000 users (54 ms so), growing with
        // the tables.
        // The page's rows a fire moved on in place are filed anew under
        // their next instant (refiled): a pass meets each of them once, as
        // they lie before the instant it reads up to. The page's scan reads
        // each row's place (ctid) and whether it moved on, and the refile
        // writes by place, whatever the statistics say: joined plainly, a
        // planner whose statistics saw no row moved on scanned the whole
        // due table at every page (EXPLAIN at 1,000,000 users: 85 of a
        // page's 165 ms, growing with the table); looked up again by key,
        // each page row cost one more index descent. A row written since is
        // refiled as it is then if it is still moved on (the condition is
        // checked again on its newest version); one a replace deleted (it
        // writes a user's rows anew) is passed over. A row the page's limit
        // left out (another occasion of the page's last user at the same
        // instant) is refiled by the next pass. A replace's mark goes with
        // it: the fire that moved it marked its delivery, and the next fire
        // renders from a copy of the user read after it. Every statement of
        // the query sees the rows as they were, which is why the users'
        // rows are read by their instant now (due_now), and the page's
        // size and last row come in every answer row (stats), an answer
        // of no user too: a page may hold only rows that moved on.
        auto rows = tx.exec_params(
          std::string{"WITH page AS (SELECT user_id, due_at_ms, ctid AS place,"
                      " next_due_at_ms IS NOT NULL AS moved FROM due_index"
                      " WHERE due_at_ms <= $1 AND shard = ANY($2::int[])"
                      " AND (due_at_ms, user_id) > ($3, $4)"
                      " ORDER BY due_at_ms, user_id LIMIT $5),"
                      " refiled AS (UPDATE due_index d"
                      " SET due_at_ms = d.next_due_at_ms,"
                      " local_date = d.next_local_date,"
                      " next_due_at_ms = NULL, next_local_date = NULL,"
                      " user_replaced = false"
                      " WHERE d.ctid = ANY (ARRAY(SELECT place FROM page"
                      " WHERE moved)) AND d.next_due_at_ms IS NOT NULL),"
                      " stats AS (SELECT (SELECT count(*) FROM page) AS n,"
                      " l.due_at_ms AS last_due, l.user_id AS last_user"
                      " FROM (SELECT 1) one LEFT JOIN (SELECT * FROM page"
                      " ORDER BY due_at_ms DESC, user_id DESC LIMIT 1) l"
                      " ON true),"
                      " first AS (SELECT user_id, min(due_at_ms) AS m"
                      " FROM page GROUP BY user_id),"
                      " body AS (SELECT "}
            + user_columns
            + ", d.occasion, d.due, d.date, f.m FROM first f"
              " CROSS JOIN LATERAL (SELECT * FROM users WHERE id = f.user_id"
              " OFFSET 0) u"
              " CROSS JOIN LATERAL (SELECT occasion, " + due_now("due_at_ms")
            + " AS due, " + due_now("local_date") + "::text AS date"
              " FROM due_index WHERE user_id = f.user_id AND "
            + due_now("due_at_ms") + " <= $1"
              " OFFSET 0) d)"
              " SELECT b.*, s.n, s.last_due, s.last_user"
              " FROM stats s LEFT JOIN body b ON true ORDER BY b.m, b.id",
          until_ms, text_array(shard_list), after_due_ms, after_user, limit);
        due_page out;
        int64_t page_rows = 0;
        for (const auto& r : rows) {
          page_rows = r[11].as<int64_t>();
          if (page_rows > 0) {
            out.last_due_ms = r[12].as<int64_t>();
            out.last_user = r[13].as<std::string>();
          }
          if (r[0].is_null())
            continue; // no user due by then on this page
          auto id = r[0].as<std::string>();
          if (out.users.empty() || out.users.back().user.id != id)
            out.users.push_back(user_view{user_from(r), {}, {}, 0, {}});
          out.users.back().due.push_back({r[7].as<std::string>(),
                                          r[8].as<int64_t>(),
                                          r[9].as<std::string>()});
        }
        out.more = page_rows >= static_cast<int64_t>(limit);
        return out;
      });
    },
    [=](deliveries_atom, const std::string& user, const std::string& status,
        uint32_t limit) -> caf::result<std::vector<delivery_record>> {
      flush(self);
      return read(self, [&](pqxx::transaction_base& tx) {
        return select_deliveries(tx,
                                 "($1 = '' OR " + of_user(1) + ")"
                                 " AND " + status_is(2) +
                                 " ORDER BY due_at_ms DESC, key LIMIT $3",
                                 user, status, limit);
      });
    },
    [=](stats_atom, int64_t now_ms) -> caf::result<journal_stats> {
      return read(self, [&](pqxx::transaction_base& tx) {
        journal_stats s;
        // Each figure costs what it counts, never the size of a table: the
        // users from PostgreSQL's running count of live rows (it may lag a
        // second), the rest through indexes over what is due or open.
        auto r = tx.exec_params(
          std::string{"SELECT (SELECT coalesce(max(n_live_tup), 0)"
                      " FROM pg_stat_user_tables WHERE relid = 'users'::regclass),"
                      " (SELECT count(*) FROM due_index WHERE due_at_ms"
                      " BETWEEN $1 AND $1 + 3600000),"
                      " (SELECT count(*) FROM deliveries WHERE status IN "}
            + open_statuses + ")",
          now_ms);
        s.users = r[0][0].as<int64_t>();
        s.due_next_hour = r[0][1].as<int64_t>();
        s.pending_deliveries = r[0][2].as<int64_t>();
        return s;
      });
    },
    [=](ping_atom) -> caf::result<caf::ok_atom> {
      return read(self, [](pqxx::transaction_base& tx) {
        tx.exec("SELECT 1");
        return caf::ok_atom::value;
      });
    },
  };
}

} // namespace

journal_actor spawn_pg_journal(caf::actor_system& sys, pg_journal_options opts) {
  return sys.spawn<caf::detached>(journal, std::move(opts));
}

} // namespace chime
