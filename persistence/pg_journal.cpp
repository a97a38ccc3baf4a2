#include "persistence/pg_journal.hpp"

#include "actors/errc.hpp"
#include "actors/protocol.hpp"
#include "actors/sharding.hpp"
#include "persistence/migrations.hpp"
#include "runtime/log.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <functional>
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

struct queued_op {
  op_fn run;
  caf::response_promise promise;
};

struct journal_state {
  pg_journal_options opts;
  std::unique_ptr<pqxx::connection> conn;
  std::vector<queued_op> queue;
  bool flush_pending = false;
  static inline const char* name = "chime.journal";
};

using journal_actor = caf::stateful_actor<journal_state>;

const char* open_statuses = "('scheduled', 'handed_off', 'failed')";

pqxx::connection& connection(journal_actor* self) {
  auto& st = self->state;
  if (st.conn && st.conn->is_open())
    return *st.conn;
  st.conn.reset();
  try {
    auto conn = std::make_unique<pqxx::connection>(st.opts.url);
    migrate(*conn);
    st.conn = std::move(conn);
    log(log_level::info, "journal", "connected to PostgreSQL");
  } catch (const std::exception& e) {
    log(log_level::warn, "journal", "PostgreSQL unreachable",
        {{"error", std::string{e.what()}}});
    throw op_failure{journal_errc::unavailable};
  }
  return *st.conn;
}

/// Runs `fn` in a read transaction; maps failures to journal errors.
template <class F>
auto read(journal_actor* self, F fn) -> caf::result<decltype(fn(
  std::declval<pqxx::transaction_base&>()))> {
  try {
    pqxx::read_transaction tx{connection(self)};
    return fn(tx);
  } catch (const op_failure& f) {
    return make_error(f.code);
  } catch (const pqxx::broken_connection& e) {
    self->state.conn.reset();
    return make_error(journal_errc::unavailable);
  } catch (const std::exception& e) {
    log(log_level::warn, "journal", "read failed",
        {{"error", std::string{e.what()}}});
    self->state.conn.reset();
    return make_error(journal_errc::unavailable);
  }
}

/// Commits every queued write in one transaction, each in its own savepoint
/// so that one failing write (say, a duplicate email) fails alone.
void flush(journal_actor* self) {
  auto& st = self->state;
  st.flush_pending = false;
  if (st.queue.empty())
    return;
  auto ops = std::move(st.queue);
  st.queue.clear();
  std::vector<caf::message> results(ops.size());
  std::vector<caf::error> errors(ops.size());
  auto fail_all = [&](journal_errc code) {
    for (auto& err : errors)
      err = make_error(code);
  };
  try {
    pqxx::work tx{connection(self)};
    for (size_t i = 0; i < ops.size(); ++i) {
      try {
        pqxx::subtransaction sub{tx};
        results[i] = ops[i].run(sub);
        sub.commit();
      } catch (const op_failure& f) {
        errors[i] = make_error(f.code);
      } catch (const pqxx::unique_violation&) {
        errors[i] = make_error(journal_errc::conflict);
      }
    }
    tx.commit();
  } catch (const op_failure& f) {
    fail_all(f.code);
  } catch (const std::exception& e) {
    log(log_level::warn, "journal", "batch not committed",
        {{"error", std::string{e.what()}},
         {"writes", static_cast<int64_t>(ops.size())}});
    st.conn.reset();
    fail_all(journal_errc::unavailable);
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    if (errors[i])
      ops[i].promise.deliver(std::move(errors[i]));
    else
      ops[i].promise.deliver(std::move(results[i]));
  }
}

caf::response_promise enqueue(journal_actor* self, op_fn fn) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  st.queue.push_back(queued_op{std::move(fn), rp});
  if (st.queue.size() >= st.opts.batch_max) {
    flush(self);
  } else if (!st.flush_pending) {
    // Everything already in the mailbox is handled before this message, so
    // writes that arrive together are committed together.
    st.flush_pending = true;
    self->send(self, flush_atom::value);
  }
  return rp;
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

const char* delivery_columns
  = "key, user_id, occasion, local_date::text, due_at_ms, status, attempts,"
    " coalesce(last_error, ''), coalesce(sent_at_ms, 0), email, message";

delivery_record delivery_from(const pqxx::row& r) {
  delivery_record d;
  d.key = r[0].as<std::string>();
  d.user_id = r[1].as<std::string>();
  d.occasion = r[2].as<std::string>();
  d.local_date = r[3].as<std::string>();
  d.due_at_ms = r[4].as<int64_t>();
  d.status = r[5].as<std::string>();
  d.attempts = r[6].as<uint32_t>();
  d.last_error = r[7].as<std::string>();
  d.sent_at_ms = r[8].as<int64_t>();
  d.email = r[9].as<std::string>();
  d.message = r[10].as<std::string>();
  return d;
}

json user_json(const user_record& u) {
  return json{{"id", u.id},         {"first_name", u.first_name},
              {"last_name", u.last_name}, {"email", u.email},
              {"timezone", u.timezone},   {"dates", u.dates}};
}

json due_json(const std::vector<due_entry>& due) {
  auto out = json::array();
  for (auto& d : due)
    out.push_back({{"occasion", d.occasion},
                   {"due_at_ms", d.due_at_ms},
                   {"local_date", d.local_date}});
  return out;
}

void append_event(pqxx::transaction_base& tx, int64_t at_ms,
                  const std::string& kind, const std::string& user_id,
                  const json& data) {
  tx.exec_params("INSERT INTO journal (at_ms, kind, user_id, data)"
                 " VALUES ($1, $2, $3, $4::jsonb)",
                 at_ms, kind, user_id, data.dump());
}

void write_due(pqxx::transaction_base& tx, const user_view& v,
               uint32_t shard_count) {
  tx.exec_params("DELETE FROM due_index WHERE user_id = $1", v.user.id);
  auto shard = static_cast<int>(shard_of(v.user.id, shard_count));
  for (auto& d : v.due)
    tx.exec_params("INSERT INTO due_index (user_id, occasion, shard,"
                   " due_at_ms, local_date) VALUES ($1, $2, $3, $4, $5::date)",
                   v.user.id, d.occasion, shard, d.due_at_ms, d.local_date);
}

std::vector<due_entry> read_due(pqxx::transaction_base& tx,
                                const std::string& id) {
  std::vector<due_entry> out;
  for (const auto& r : tx.exec_params("SELECT occasion, due_at_ms, local_date::text"
                                " FROM due_index WHERE user_id = $1"
                                " ORDER BY due_at_ms",
                                id))
    out.push_back({r[0].as<std::string>(), r[1].as<int64_t>(),
                   r[2].as<std::string>()});
  return out;
}

std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (auto& s : items) {
    if (out.size() > 1)
      out += ',';
    out += '"';
    for (char c : s) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// -- operations ------------------------------------------------------------------

caf::message create_user(pqxx::transaction_base& tx, const user_view& v,
                         uint32_t shard_count) {
  auto& u = v.user;
  tx.exec_params("INSERT INTO users (id, first_name, last_name, email,"
                 " timezone, dates, created_at_ms, updated_at_ms)"
                 " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7)",
                 u.id, u.first_name, u.last_name, u.email, u.timezone,
                 json(u.dates).dump(), u.created_at_ms);
  write_due(tx, v, shard_count);
  append_event(tx, v.at_ms, "user_created", u.id,
               {{"user", user_json(u)}, {"due", due_json(v.due)}});
  return caf::make_message(caf::ok_atom::value);
}

caf::message replace_user(pqxx::transaction_base& tx, const user_view& v,
                          uint32_t shard_count) {
  auto& u = v.user;
  auto r = tx.exec_params("UPDATE users SET first_name = $2, last_name = $3,"
                          " email = $4, timezone = $5, dates = $6::jsonb,"
                          " updated_at_ms = $7 WHERE id = $1",
                          u.id, u.first_name, u.last_name, u.email, u.timezone,
                          json(u.dates).dump(), v.at_ms);
  if (r.affected_rows() == 0)
    throw op_failure{journal_errc::not_found};
  write_due(tx, v, shard_count);
  append_event(tx, v.at_ms, "user_replaced", u.id,
               {{"user", user_json(u)}, {"due", due_json(v.due)}});
  return caf::make_message(caf::ok_atom::value);
}

caf::message remove_user(pqxx::transaction_base& tx, const std::string& id,
                         int64_t at_ms) {
  auto r = tx.exec_params("DELETE FROM users WHERE id = $1", id);
  if (r.affected_rows() == 0)
    throw op_failure{journal_errc::not_found};
  auto cancelled = tx.exec_params(
    std::string{"UPDATE deliveries SET status = 'cancelled', updated_at_ms = $2"
                " WHERE user_id = $1 AND status IN "}
      + open_statuses,
    id, at_ms);
  append_event(tx, at_ms, "user_deleted", id,
               {{"cancelled", cancelled.affected_rows()}});
  return caf::make_message(caf::ok_atom::value);
}

caf::message fire(pqxx::transaction_base& tx, const fire_request& f) {
  auto moved = tx.exec_params(
    "UPDATE due_index SET due_at_ms = $3, local_date = $4::date"
    " WHERE user_id = $1 AND occasion = $2 AND due_at_ms = $5",
    f.user_id, f.due.occasion, f.next.due_at_ms, f.next.local_date,
    f.due.due_at_ms);
  if (moved.affected_rows() == 0)
    return caf::make_message(false); // changed or deleted meanwhile
  auto& d = f.delivery;
  tx.exec_params("INSERT INTO deliveries (key, user_id, occasion, local_date,"
                 " due_at_ms, status, email, message, created_at_ms,"
                 " updated_at_ms)"
                 " VALUES ($1, $2, $3, $4::date, $5, $6, $7, $8, $9, $9)"
                 " ON CONFLICT (key) DO NOTHING",
                 d.key, d.user_id, d.occasion, d.local_date, d.due_at_ms,
                 d.status, d.email, d.message, f.at_ms);
  append_event(tx, f.at_ms, "occasion_due", f.user_id,
               {{"key", d.key},
                {"status", d.status},
                {"next_due_at_ms", f.next.due_at_ms}});
  return caf::make_message(true);
}

caf::message begin_attempt(pqxx::transaction_base& tx, const std::string& key,
                           int64_t now_ms, int64_t catch_up_ms) {
  auto rows = tx.exec_params(
    "SELECT d.status, d.attempts, d.due_at_ms, u.id IS NOT NULL"
    " FROM deliveries d LEFT JOIN users u ON u.id = d.user_id"
    " WHERE d.key = $1 FOR UPDATE OF d",
    key);
  attempt_verdict v;
  if (rows.empty()) {
    v.status = "missing";
    return caf::make_message(v);
  }
  auto status = rows[0][0].as<std::string>();
  v.attempts = rows[0][1].as<uint32_t>();
  auto due_at_ms = rows[0][2].as<int64_t>();
  bool user_alive = rows[0][3].as<bool>();
  auto set_status = [&](const char* s) {
    tx.exec_params("UPDATE deliveries SET status = $2, updated_at_ms = $3"
                   " WHERE key = $1",
                   key, s, now_ms);
    append_event(tx, now_ms, std::string{"delivery_"} + s, {}, {{"key", key}});
    v.status = s;
  };
  if (status != "scheduled" && status != "handed_off" && status != "failed") {
    v.status = status;
  } else if (!user_alive) {
    set_status("cancelled");
  } else if (now_ms - due_at_ms > catch_up_ms) {
    set_status("expired");
  } else {
    v.proceed = true;
    v.status = status;
    v.attempts += 1;
    tx.exec_params("UPDATE deliveries SET attempts = $2, updated_at_ms = $3"
                   " WHERE key = $1",
                   key, v.attempts, now_ms);
    append_event(tx, now_ms, "delivery_attempt", {},
                 {{"key", key}, {"attempt", v.attempts}});
  }
  return caf::make_message(v);
}

caf::message record_outcome(pqxx::transaction_base& tx,
                            const delivery_outcome& o) {
  // Only an open delivery changes: a sent one never becomes pending again.
  tx.exec_params(std::string{"UPDATE deliveries SET status = $2,"
                             " last_error = nullif($3, ''),"
                             " sent_at_ms = CASE WHEN $2 = 'sent' THEN $4"
                             " ELSE sent_at_ms END, updated_at_ms = $4"
                             " WHERE key = $1 AND status IN "}
                   + open_statuses,
                 o.key, o.status, o.error, o.at_ms);
  append_event(tx, o.at_ms, "delivery_" + o.status, {},
               {{"key", o.key}, {"error", o.error}});
  return caf::make_message(caf::ok_atom::value);
}

caf::message mark_handed_off(pqxx::transaction_base& tx,
                             const std::vector<std::string>& keys,
                             int64_t at_ms) {
  // Only a delivery still waiting for its confirm moves: one already
  // attempted (the consumer can be faster than the confirm) stays as it is.
  tx.exec_params("UPDATE deliveries SET status = 'handed_off',"
                 " updated_at_ms = $2"
                 " WHERE key = ANY($1::text[]) AND status = 'scheduled'",
                 text_array(keys), at_ms);
  return caf::make_message(caf::ok_atom::value);
}

caf::message redrive(pqxx::transaction_base& tx, const std::string& key,
                     int64_t at_ms) {
  auto rows = tx.exec_params(
    std::string{"UPDATE deliveries SET status = 'scheduled', updated_at_ms = $2"
                " WHERE key = $1 AND status = 'dead' RETURNING "}
      + delivery_columns,
    key, at_ms);
  if (rows.empty())
    throw op_failure{journal_errc::not_found};
  append_event(tx, at_ms, "delivery_redriven", {}, {{"key", key}});
  return caf::make_message(delivery_from(rows[0]));
}

std::vector<delivery_record> user_deliveries(pqxx::transaction_base& tx,
                                             const std::string& id) {
  std::vector<delivery_record> out;
  for (const auto& r : tx.exec_params(std::string{"SELECT "} + delivery_columns
                                  + " FROM deliveries WHERE user_id = $1"
                                    " ORDER BY due_at_ms DESC LIMIT 50",
                                id))
    out.push_back(delivery_from(r));
  return out;
}

caf::behavior journal(journal_actor* self, pg_journal_options opts) {
  self->state.opts = std::move(opts);
  auto shards = self->state.opts.shard_count;
  return {
    [=](flush_atom) { flush(self); },
    [=](create_atom, user_view& v) {
      return enqueue(self, [v = std::move(v), shards](auto& tx) {
        return create_user(tx, v, shards);
      });
    },
    [=](replace_atom, user_view& v) {
      return enqueue(self, [v = std::move(v), shards](auto& tx) {
        return replace_user(tx, v, shards);
      });
    },
    [=](remove_atom, std::string& id, int64_t at_ms) {
      return enqueue(self, [id = std::move(id), at_ms](auto& tx) {
        return remove_user(tx, id, at_ms);
      });
    },
    [=](fire_atom, fire_request& f) {
      return enqueue(self,
                     [f = std::move(f)](auto& tx) { return fire(tx, f); });
    },
    [=](attempt_atom, std::string& key, int64_t now_ms, int64_t catch_up_ms) {
      return enqueue(self, [=](auto& tx) {
        return begin_attempt(tx, key, now_ms, catch_up_ms);
      });
    },
    [=](outcome_atom, delivery_outcome& o) {
      return enqueue(self, [o = std::move(o)](auto& tx) {
        return record_outcome(tx, o);
      });
    },
    [=](handed_atom, std::vector<std::string>& keys, int64_t at_ms) {
      return enqueue(self, [keys = std::move(keys), at_ms](auto& tx) {
        return mark_handed_off(tx, keys, at_ms);
      });
    },
    [=](redrive_atom, std::string& key, int64_t at_ms) {
      return enqueue(self, [key = std::move(key), at_ms](auto& tx) {
        return redrive(tx, key, at_ms);
      });
    },
    [=](outbox_atom, int64_t scheduled_before_ms, int64_t open_before_ms,
        uint32_t limit) -> caf::result<std::vector<delivery_record>> {
      flush(self);
      return read(self, [&](pqxx::transaction_base& tx) {
        std::vector<delivery_record> out;
        for (const auto& r : tx.exec_params(
               std::string{"SELECT "} + delivery_columns
                 + " FROM deliveries WHERE (status = 'scheduled'"
                   " AND updated_at_ms < $1) OR (status IN ('handed_off',"
                   " 'failed') AND updated_at_ms < $2)"
                   " ORDER BY due_at_ms LIMIT $3",
               scheduled_before_ms, open_before_ms, limit))
          out.push_back(delivery_from(r));
        return out;
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
                         user_deliveries(tx, id), 0};
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
          page.users.push_back(user_view{std::move(u), std::move(due), {}, 0});
        }
        return page;
      });
    },
    [=](load_due_atom, int64_t until_ms,
        const std::vector<uint32_t>& owned) -> caf::result<std::vector<user_view>> {
      flush(self);
      return read(self, [&](pqxx::transaction_base& tx) {
        std::vector<std::string> shard_list;
        for (auto s : owned)
          shard_list.push_back(std::to_string(s));
        std::vector<user_view> out;
        // Users are few per shard inside the horizon; the limit only guards
        // against a runaway horizon setting.
        auto rows = tx.exec_params(
          std::string{"SELECT "} + user_columns
            + ", d.occasion, d.due_at_ms, d.local_date::text"
              " FROM due_index d JOIN users u ON u.id = d.user_id"
              " WHERE d.due_at_ms <= $1 AND d.shard = ANY($2::int[])"
              " ORDER BY d.user_id LIMIT 1000000",
          until_ms, text_array(shard_list));
        for (const auto& r : rows) {
          auto id = r[0].as<std::string>();
          if (out.empty() || out.back().user.id != id)
            out.push_back(user_view{user_from(r), {}, {}, 0});
          out.back().due.push_back({r[7].as<std::string>(),
                                    r[8].as<int64_t>(),
                                    r[9].as<std::string>()});
        }
        return out;
      });
    },
    [=](pending_atom) -> caf::result<std::vector<delivery_record>> {
      flush(self);
      return read(self, [&](pqxx::transaction_base& tx) {
        std::vector<delivery_record> out;
        for (const auto& r : tx.exec(std::string{"SELECT "} + delivery_columns
                               + " FROM deliveries WHERE status IN "
                               + open_statuses
                               + " ORDER BY due_at_ms LIMIT 100000"))
          out.push_back(delivery_from(r));
        return out;
      });
    },
    [=](deliveries_atom, const std::string& user, const std::string& status,
        uint32_t limit) -> caf::result<std::vector<delivery_record>> {
      flush(self);
      return read(self, [&](pqxx::transaction_base& tx) {
        std::vector<delivery_record> out;
        for (const auto& r : tx.exec_params(
               std::string{"SELECT "} + delivery_columns
                 + " FROM deliveries WHERE ($1 = '' OR user_id = $1)"
                   " AND ($2 = '' OR status = $2)"
                   " ORDER BY due_at_ms DESC, key LIMIT $3",
               user, status, limit))
          out.push_back(delivery_from(r));
        return out;
      });
    },
    [=](stats_atom, int64_t now_ms) -> caf::result<journal_stats> {
      return read(self, [&](pqxx::transaction_base& tx) {
        journal_stats s;
        auto r = tx.exec_params(
          std::string{"SELECT (SELECT count(*) FROM users),"
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

caf::actor spawn_pg_journal(caf::actor_system& sys, pg_journal_options opts) {
  return sys.spawn<caf::detached>(journal, std::move(opts));
}

} // namespace chime
