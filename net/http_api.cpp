#include "net/http_api.hpp"

#include "actors/delivery_status.hpp"
#include "actors/errc.hpp"
#include "actors/cluster_view.hpp"
#include "actors/handoff.hpp"
#include "actors/journal.hpp"
#include "actors/protocol.hpp"
#include "actors/sharding.hpp"
#include "actors/user_commands.hpp"
#include "net/amqp_handoff.hpp"
#include "net/dashboard.hpp"
#include "net/http_listen.hpp"
#include "net/openapi.hpp"
#include "net/user_import.hpp"
#include "net/user_json.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <openssl/crypto.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <random>
#include <regex>
#include <thread>

namespace chime {

namespace {

constexpr const char* problem_type = "application/problem+json";
constexpr const char* json_type = "application/json";
constexpr uint32_t page_limit_max = 1000;
constexpr const char* import_path = "/v1/users:import";


void reply_problem(httplib::Response& res, const problem& p) {
  res.status = p.status;
  // Every 503 is a "not now": say when to come back.
  if (p.status == 503)
    res.set_header("Retry-After", "1");
  res.set_content(problem_json(p), problem_type);
}

/// How much of a body past the limit is read (and dropped) before the 413.
constexpr size_t body_drain_max = 4 * 1024 * 1024;

const problem too_large{413, "Payload too large",
                        "the request body exceeds 64 KiB", {}};
const problem length_required{411, "Length required",
                              "this route takes a body with a Content-Length,"
                              " not a chunked one",
                              {}};

std::string new_user_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto hex = [](uint64_t x, int digits) {
    static const char* d = "0123456789abcdef";
    std::string s(static_cast<size_t>(digits), '0');
    for (int i = digits - 1; i >= 0; --i, x >>= 4)
      s[static_cast<size_t>(i)] = d[x & 0xF];
    return s;
  };
  // UUID version 7 (RFC 9562): wall-clock milliseconds first, so the ids of
  // users created together sort together and the users, due and delivery
  // indexes take them at their right edge, not on a random page each (a
  // page read and a full-page image in the WAL per user in an import). The
  // real clock, not the node's: an id only needs to be new, not scheduled.
  auto ms = static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch())
      .count());
  auto a = (ms << 16) | (rng() & 0x0FFFull) | 0x7000ull;
  auto b = rng();
  b = (b & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
  auto s = hex(a, 16) + hex(b, 16);
  return s.substr(0, 8) + "-" + s.substr(8, 4) + "-" + s.substr(12, 4) + "-"
         + s.substr(16, 4) + "-" + s.substr(20, 12);
}

} // namespace

struct http_api::impl {
  caf::actor_system& sys;
  context_ptr ctx;
  http_api_options opts;
  httplib::Server server;
  std::thread thread;

  /// The blocking actors HTTP threads wait for replies with, kept between
  /// requests: one made and destroyed per request cost a wake-up of CAF's
  /// clock thread each (an actor's clean-up cancels its time-outs there),
  /// a fifth of the node's context switches in a run of creates. At most
  /// one per HTTP thread is ever idle here.
  struct asker_pool {
    std::mutex mtx;
    std::vector<std::unique_ptr<caf::scoped_actor>> idle;

    std::unique_ptr<caf::scoped_actor> take(caf::actor_system& sys) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        if (!idle.empty()) {
          auto self = std::move(idle.back());
          idle.pop_back();
          return self;
        }
      }
      // Hidden: a kept one is not an actor the system waits for at exit.
      return std::make_unique<caf::scoped_actor>(sys, true);
    }

    void give_back(std::unique_ptr<caf::scoped_actor> self) {
      std::lock_guard<std::mutex> guard{mtx};
      idle.push_back(std::move(self));
    }
  } askers;

  impl(caf::actor_system& s, context_ptr c, http_api_options o)
    : sys(s), ctx(std::move(c)), opts(std::move(o)) {
  }

  /// Sends a request to `dest` and waits (on this HTTP thread) for the reply
  /// until `timeout`.
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask_within(std::chrono::milliseconds timeout,
                              const Handle& dest, Ts&&... xs) {
    if (!dest)
      return make_error(journal_errc::unavailable);
    auto self = askers.take(sys);
    caf::expected<T> result{caf::error{}};
    // The time-out is this thread's own wait, not one of CAF's request
    // time-outs: each of those wakes CAF's clock thread twice (when set and
    // when due), a fifth of the node's context switches in a run of creates.
    auto reply = (*self)->request(dest, caf::infinite, std::forward<Ts>(xs)...);
    caf::blocking_actor::accept_one_cond one;
    bool gave_up = false;
    (*self)->varargs_receive(
      one, reply.id(), [&](T& x) { result = std::move(x); },
      [&](caf::error& err) { result = std::move(err); },
      caf::after(timeout) >> [&] {
        gave_up = true;
        result = caf::make_error(caf::sec::request_timeout);
      });
    // One that gave up waiting may still get its reply: not used again.
    if (!gave_up)
      askers.give_back(std::move(self));
    return result;
  }

  /// Commands chain a few journal requests, each with its own time-out.
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dest, Ts&&... xs) {
    return ask_within<T>(3 * journal_timeout, dest, std::forward<Ts>(xs)...);
  }

  journal_actor journal() const {
    return journal_at(*ctx->dir, journal_name);
  }

  bool authorized(const httplib::Request& req, httplib::Response& res) const {
    if (opts.api_token.empty())
      return true;
    // Compared in constant time: how long a refusal takes says nothing of
    // how much of the token was right.
    auto given = req.get_header_value("Authorization");
    auto wanted = "Bearer " + opts.api_token;
    if (given.size() == wanted.size()
        && CRYPTO_memcmp(given.data(), wanted.data(), wanted.size()) == 0)
      return true;
    res.set_header("WWW-Authenticate", "Bearer");
    reply_problem(res, {401, "Unauthorized",
                        "a valid 'Authorization: Bearer <token>' header is"
                        " required",
                        {}});
    return false;
  }

  /// Whether `user_id`'s commands run on this node (alone, or owner of
  /// its shard by the view or by a lease it holds).
  bool commanded_here(const std::string& user_id) const {
    if (!ctx->cluster)
      return true;
    auto shard = shard_of(user_id, ctx->shard_count);
    return ctx->cluster->owner_of(shard) == ctx->cluster->self()
           || ctx->cluster->held_epoch(shard) != 0;
  }

  /// The user-command actor of the node that owns `user_id`'s shard: this
  /// node's, or a peer's over CAF. Nothing (and `why`) when the owner is
  /// unknown or cannot be reached.
  caf::actor commands(const std::string& user_id, std::string& why) const {
    auto local = ctx->dir->get(user_commands_name);
    if (commanded_here(user_id))
      return local;
    auto shard = shard_of(user_id, ctx->shard_count);
    auto owner = ctx->cluster->owner_of(shard);
    if (owner.empty()) {
      why = "shard " + std::to_string(shard)
            + " has no owner right now (a takeover is in progress); retry";
      return {};
    }
    if (auto peer = ctx->cluster->peer(owner, user_commands_name))
      return peer;
    why = "node '" + owner + "', owner of shard " + std::to_string(shard)
          + ", cannot be reached; retry";
    return {};
  }

  /// Asks the owner of `user_id` to run a user command: 503 naming the
  /// owner when it cannot be reached or does not answer in time.
  template <class T, class... Ts>
  std::optional<T> command(httplib::Response& res, const std::string& user_id,
                           Ts&&... xs) {
    std::string why;
    auto dest = commands(user_id, why);
    if (!dest) {
      reply_problem(res, {503, "Unavailable", why, {}});
      return std::nullopt;
    }
    return answered(res, user_id, ask<T>(dest, std::forward<Ts>(xs)...));
  }

  /// The answer to a user command, or nothing and the problem sent: 503
  /// when it was not answered in time, the journal's refusal otherwise.
  template <class T>
  std::optional<T> answered(httplib::Response& res, const std::string& user_id,
                            caf::expected<T> v) {
    if (v)
      return std::move(*v);
    if (v.error().category() != caf::atom("journal")) {
      // The owner did not answer (it died, or the connection is gone).
      log(log_level::warn, "http", "user command unanswered",
          {{"user_id", user_id}, {"error", sys.render(v.error())}});
      reply_problem(res, {503, "Unavailable",
                          "the node owning this user did not answer in time;"
                          " retry",
                          {}});
      return std::nullopt;
    }
    reply_problem(res, journal_problem(v.error()));
    return std::nullopt;
  }

  /// A JSON request body, read up to the size limit whether it comes with
  /// a length or in chunks; nothing (and the problem sent) otherwise.
  std::optional<std::string> json_body(const httplib::Request& req,
                                       httplib::Response& res,
                                       const httplib::ContentReader* reader) {
    auto type = req.get_header_value("Content-Type");
    auto base = type.substr(0, type.find(';'));
    while (!base.empty() && base.back() == ' ')
      base.pop_back();
    if (base != "application/json") {
      reply_problem(res, {415, "Unsupported media type",
                          "the body must be JSON, sent as 'Content-Type:"
                          " application/json'",
                          {}});
      return std::nullopt;
    }
    if (!reader)
      return req.body;
    std::string body;
    bool over = false;
    size_t drained = 0;
    bool whole = (*reader)([&](const char* data, size_t n) {
      over = over || body.size() + n > opts.body_size_max;
      if (!over) {
        body.append(data, n);
        return true;
      }
      // Past the limit, read on without keeping it (a bounded amount), so
      // that a client still sending can finish and read the 413 rather
      // than have its connection reset.
      drained += n;
      return drained <= body_drain_max;
    });
    // httplib stops reading a body whose length is past the limit before
    // any of it arrives here.
    if (over || !whole) {
      reply_problem(res, too_large);
      return std::nullopt;
    }
    return body;
  }

  void create(const httplib::Request& req, httplib::Response& res,
              const httplib::ContentReader& reader) {
    if (!authorized(req, res))
      return;
    auto body = json_body(req, res, &reader);
    if (!body)
      return;
    auto parsed = parse_user(*body, ctx->clock->now());
    if (parsed.error)
      return reply_problem(res, *parsed.error);
    parsed.user.id = new_user_id();
    auto v = commanded_here(parsed.user.id)
               ? create_here(res, std::move(parsed.user))
               : command<user_view>(res, parsed.user.id, create_atom::value,
                                    parsed.user);
    if (!v)
      return;
    res.status = 201;
    res.set_header("Location", "/v1/users/" + v->user.id);
    res.set_content(user_view_json(*v, ctx->shard_count), json_type);
  }

  /// A create of a user whose shard this node owns, journaled from this
  /// thread. The user-command actor would cost three more thread wake-ups
  /// and two of CAF's clock thread (its request's time-out set and
  /// cancelled): about half of a create's CPU on this machine.
  std::optional<user_view> create_here(httplib::Response& res, user_record u) {
    if (!owns_user(*ctx, u.id)) {
      reply_problem(res, journal_problem(make_error(journal_errc::fenced)));
      return std::nullopt;
    }
    auto v = planned_create(*ctx, std::move(u), ctx->clock->now());
    if (!answered(res, v.user.id, ask<caf::ok_atom>(journal(), create_atom::value, v)))
      return std::nullopt;
    created(*ctx, v);
    return v;
  }

  /// POST /v1/users:import: the body streams through import_lines (no
  /// body limit, a limit per line and on the lines) into an import_writer
  /// on the import journal; answered once every written line committed.
  void import(const httplib::Request& req, httplib::Response& res,
              const httplib::ContentReader& reader) {
    if (!authorized(req, res))
      return;
    auto format = import_format_of(req.get_header_value("Content-Type"));
    if (!format)
      return reply_problem(res, {415, "Unsupported media type",
                                 "an import is NDJSON ('Content-Type:"
                                 " application/x-ndjson') or CSV"
                                 " ('Content-Type: text/csv')",
                                 {}});
    import_lines lines{*format, opts.body_size_max};
    std::vector<journal_actor> journals;
    for (auto name : import_journal_names)
      journals.push_back(journal_at(*ctx->dir, name));
    import_writer writer{sys, ctx, std::move(journals),
                         opts.import_batch_size_max};
    bool too_many = false;
    bool journal_up = true;
    auto take = [&](uint64_t line, parsed_user& parsed) {
      if (line > opts.import_lines_max) {
        too_many = true;
        return;
      }
      if (!parsed.error)
        parsed.user.id = new_user_id();
      journal_up = writer.add(line, parsed);
    };
    reader([&](const char* data, size_t n) {
      lines.feed({data, n}, ctx->clock->now(), take);
      return journal_up && !too_many && !lines.header_problem();
    });
    if (journal_up && !too_many)
      lines.finish(ctx->clock->now(), take);
    if (lines.header_problem())
      return reply_problem(res, *lines.header_problem());
    journal_up = writer.finish() && journal_up;
    if (!journal_up) {
      res.status = 503;
      res.set_header("Retry-After", "1");
      problem p{503, "Unavailable",
                "the journal became unavailable: the import stopped at line "
                  + std::to_string(writer.resume_line()),
                {}};
      return res.set_content(
        import_stopped_json(p, writer.tally(), writer.resume_line()),
        problem_type);
    }
    if (too_many) {
      static auto& hits = get_metric("chime_import_lines_limit_hits_total");
      hits.add();
      res.status = 413;
      problem p{413, "Payload too large",
                "an import reads at most "
                  + std::to_string(opts.import_lines_max)
                  + " lines: those were read, the rest was not",
                {}};
      return res.set_content(
        import_stopped_json(p, writer.tally(), opts.import_lines_max + 1),
        problem_type);
    }
    res.set_content(import_result_json(writer.tally()), json_type);
  }

  void replace(const httplib::Request& req, httplib::Response& res,
               const httplib::ContentReader& reader) {
    if (!authorized(req, res))
      return;
    auto id = req.matches[1].str();
    if (!is_user_id(id))
      return reply_problem(res, no_such_user);
    auto body = json_body(req, res, &reader);
    if (!body)
      return;
    auto parsed = parse_user_update(*body, ctx->clock->now(), id,
                                    ctx->shard_count);
    if (parsed.error)
      return reply_problem(res, *parsed.error);
    parsed.user.id = id;
    auto v = command<user_view>(res, parsed.user.id, replace_atom::value,
                                parsed.user);
    if (!v)
      return;
    res.set_content(user_view_json(*v, ctx->shard_count), json_type);
  }

  void remove(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res))
      return;
    auto id = req.matches[1].str();
    if (!is_user_id(id))
      return reply_problem(res, no_such_user);
    if (!command<caf::ok_atom>(res, id, remove_atom::value, id))
      return;
    res.status = 204;
  }

  void read(const httplib::Request& req, httplib::Response& res) {
    if (!is_user_id(req.matches[1].str()))
      return reply_problem(res, no_such_user);
    auto v = ask<user_view>(journal(), read_atom::value, req.matches[1].str());
    if (!v)
      return reply_problem(res, journal_problem(v.error()));
    res.set_content(user_view_json(*v, ctx->shard_count), json_type);
  }

  /// Reads an optional numeric query parameter within [1, page_limit_max].
  std::optional<uint32_t> limit_param(const httplib::Request& req,
                                      httplib::Response& res,
                                      uint32_t fallback) {
    if (!req.has_param("limit"))
      return fallback;
    auto text = req.get_param_value("limit");
    char* end = nullptr;
    auto n = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || n < 1 || n > page_limit_max) {
      reply_problem(res, {400, "Invalid parameter",
                          "parameter 'limit': expected a number from 1 to "
                            + std::to_string(page_limit_max),
                          "limit"});
      return std::nullopt;
    }
    return static_cast<uint32_t>(n);
  }

  void list(const httplib::Request& req, httplib::Response& res) {
    auto limit = limit_param(req, res, 100);
    if (!limit)
      return;
    auto cursor = req.get_param_value("cursor");
    if (!cursor.empty() && !is_user_id(cursor))
      return reply_problem(res, {400, "Invalid parameter",
                                 "parameter 'cursor': not a cursor this API"
                                 " gave (a next_cursor value)",
                                 "cursor"});
    auto page = ask<users_page>(journal(), list_atom::value, cursor, *limit);
    if (!page)
      return reply_problem(res, journal_problem(page.error()));
    res.set_content(users_page_json(page->users, page->next_cursor,
                                    ctx->shard_count),
                    json_type);
  }

  void deliveries(const httplib::Request& req, httplib::Response& res) {
    auto limit = limit_param(req, res, 100);
    if (!limit)
      return;
    auto status = req.get_param_value("status");
    if (!status.empty() && !parse_delivery_status(status))
      return reply_problem(res, {400, "Invalid parameter",
                                 "parameter 'status': unknown status '"
                                   + status + "'",
                                 "status"});
    auto user = req.get_param_value("user");
    if (!user.empty() && !is_user_id(user))
      return reply_problem(res, {400, "Invalid parameter",
                                 "parameter 'user': not a user id", "user"});
    auto list = ask<std::vector<delivery_record>>(
      journal(), deliveries_atom::value, user, status, *limit);
    if (!list)
      return reply_problem(res, journal_problem(list.error()));
    res.set_content(deliveries_json(*list), json_type);
  }

  void redrive(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res))
      return;
    auto key = req.matches[1].str();
    problem no_such_dead{404, "Not found",
                         "no dead delivery with key '" + key + "'", {}};
    if (!is_delivery_key(key))
      return reply_problem(res, no_such_dead);
    auto d = ask<delivery_record>(journal(), redrive_atom::value, key,
                                  to_ms(ctx->clock->now()));
    if (!d) {
      if (is(d.error(), journal_errc::not_found))
        return reply_problem(res, no_such_dead);
      return reply_problem(res, journal_problem(d.error()));
    }
    caf::anon_send(handoff_at(*ctx->dir), submit_atom::value, *d);
    res.set_content(deliveries_json({*d}), json_type);
  }

  void cluster(const httplib::Request&, httplib::Response& res) {
    res.set_content(cluster_json(*ctx->cluster), json_type);
  }

  void leave(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res))
      return;
    caf::anon_send(ctx->dir->get(membership_name), leave_atom::value);
    res.status = 202;
    res.set_content(R"({"status":"leaving"})", json_type);
  }

  void join(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res))
      return;
    auto body = json_body(req, res, nullptr);
    if (!body)
      return;
    auto seed = parse_seed(*body);
    if (seed.error)
      return reply_problem(res, *seed.error);
    caf::anon_send(ctx->dir->get(membership_name), join_atom::value,
                   seed.value);
    res.status = 202;
    res.set_content(R"({"status":"joining"})", json_type);
  }

  void ready(httplib::Response& res) {
    // Ready means answering now: a journal that cannot say so within two
    // seconds (a frozen database) is not.
    auto ok = ask_within<caf::ok_atom>(std::chrono::seconds{2}, journal(),
                                       ping_atom::value);
    // Shards owned: admitted as up, and every shard held runs here.
    auto me = ctx->cluster->member(ctx->cluster->self());
    bool shards = me && me->state == "up";
    for (auto s : ctx->shards_here())
      shards = shards && ctx->dir->get(shard_name(s));
    bool broker = get_metric("chime_amqp_connected").value() > 0;
    if (ok && shards && broker) {
      res.set_content(R"({"status":"ready"})", json_type);
    } else {
      reply_problem(res, {503, "Not ready",
                          !ok      ? "journal unreachable"
                          : !broker ? "broker unreachable: " + broker_last_error()
                                    : "not an up member of the cluster with"
                                      " its shards started",
                          {}});
    }
  }

  /// The gauges the journal gives (its running counts).
  void refresh_journal_gauges() {
    auto stats = ask<journal_stats>(journal(), stats_atom::value,
                                    to_ms(ctx->clock->now()));
    if (stats) {
      get_metric("chime_users").set(stats->users);
      get_metric("chime_due_next_hour")
        .set(stats->due_next_hour);
      get_metric("chime_deliveries_open")
        .set(stats->pending_deliveries);
    }
    get_metric("chime_journal_up").set(stats ? 1 : 0);
  }

  void metrics(httplib::Response& res) {
    refresh_gauges();
    res.set_content(render_metrics(), "text/plain; version=0.0.4");
  }

  // -- dashboard, supervision, test hooks ------------------------------------

  /// When the journal's gauges were last read (steady clock, ms).
  std::atomic<int64_t> gauges_read_at_ms{0};
  std::mutex streams_mtx;
  std::condition_variable streams_cv;
  size_t streams_open = 0;
  bool stopping = false;

  /// At most one journal read a second, whoever asks: the read counts the
  /// open deliveries (100,000 rows in a burst) and waits behind the fires,
  /// so scrapes every 100 ms stalled for 15 s and slowed the burst itself.
  /// Concurrent askers in the same second get the last values.
  void refresh_gauges() {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
    auto last = gauges_read_at_ms.load();
    if (now - last >= 1000 && gauges_read_at_ms.compare_exchange_strong(last, now))
      refresh_journal_gauges();
  }

  void dashboard_snapshot(httplib::Response& res) {
    refresh_gauges();
    // The page reads every member's snapshot from whichever node serves it.
    res.set_header("Access-Control-Allow-Origin", "*");
    res.set_content(dashboard_json(*ctx), json_type);
  }

  /// Server-sent events: a snapshot a second, on one HTTP thread per open
  /// page, so their number is capped; past it the page polls.
  void dashboard_events(httplib::Response& res) {
    {
      std::lock_guard<std::mutex> guard{streams_mtx};
      if (stopping || streams_open >= opts.dashboard_streams_max) {
        res.set_header("Retry-After", "10");
        return reply_problem(res, {503, "Busy",
                                   "too many dashboard streams are open; poll"
                                   " GET /v1/dashboard instead",
                                   {}});
      }
      ++streams_open;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("Access-Control-Allow-Origin", "*");
    res.set_chunked_content_provider(
      "text/event-stream",
      [this](size_t, httplib::DataSink& sink) {
        refresh_gauges();
        auto event = "data: " + dashboard_json(*ctx) + "\n\n";
        if (!sink.write(event.data(), event.size()))
          return false;
        std::unique_lock<std::mutex> lock{streams_mtx};
        streams_cv.wait_for(lock, opts.dashboard_interval,
                            [this] { return stopping; });
        if (stopping)
          sink.done();
        return true;
      },
      [this](bool) {
        std::lock_guard<std::mutex> guard{streams_mtx};
        --streams_open;
      });
  }

  void end_streams() {
    std::lock_guard<std::mutex> guard{streams_mtx};
    stopping = true;
    streams_cv.notify_all();
  }

  /// POST /v1/admin/crash {"actor": NAME}: the actor registered as NAME
  /// fails as if it had thrown, for its supervisor to restart. Served only
  /// with --test-hooks 1.
  void crash(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res))
      return;
    auto body = json_body(req, res, nullptr);
    if (!body)
      return;
    auto target = parse_string_body(*body, "actor");
    if (target.error)
      return reply_problem(res, *target.error);
    auto actor = ctx->dir->get(target.value);
    if (!actor)
      return reply_problem(res, {404, "Not found",
                                 "no running actor is named '" + target.value + "'",
                                 "actor"});
    log(log_level::warn, "http", "crash requested through the test hook",
        {{"actor", target.value}});
    caf::anon_send_exit(actor, caf::exit_reason::unhandled_exception);
    res.status = 202;
    res.set_content(nlohmann::json{{"actor", target.value}, {"crashed", true}}.dump(),
                    json_type);
  }

  /// The methods of each route, for a 405's Allow header.
  std::vector<std::pair<std::regex, std::string>> methods;

  void route(const char* allow, const char* pattern) {
    methods.emplace_back(std::regex{pattern}, allow);
  }

  std::string allowed(const std::string& path) const {
    for (auto& [pattern, allow] : methods)
      if (std::regex_match(path, pattern))
        return allow;
    return {};
  }

  void routes() {
    using req_t = const httplib::Request&;
    using res_t = httplib::Response&;
    // httplib's body limit is one for all routes: an import's body has
    // none, so every other route's is checked before routing.
    server.set_payload_max_length(std::numeric_limits<size_t>::max());
    server.set_pre_routing_handler([this](req_t q, res_t s) {
      auto length = q.get_header_value("Content-Length");
      // The routes that read their body as it streams, each with its own
      // limit; the others get theirs whole, so its length must be known.
      bool streams = q.path == import_path
                     || (q.path.rfind("/v1/users", 0) == 0
                         && (q.method == "POST" || q.method == "PUT"));
      bool chunked = q.get_header_value("Transfer-Encoding").find("chunked")
                     != std::string::npos;
      // A streaming route reads up to its limit and answers 413 itself,
      // having read the body httplib's way (so the client can finish
      // sending and read the answer).
      if (streams
          || (!chunked
              && std::strtoull(length.c_str(), nullptr, 10) <= opts.body_size_max))
        return httplib::Server::HandlerResponse::Unhandled;
      // Its body is not read: the connection cannot serve another request.
      s.set_header("Connection", "close");
      reply_problem(s, chunked ? length_required : too_large);
      return httplib::Server::HandlerResponse::Handled;
    });
    server.set_tcp_nodelay(true);
    server.set_keep_alive_max_count(opts.keep_alive_requests_max);
    server.new_task_queue = [n = opts.threads] {
      return new httplib::ThreadPool(n);
    };
    using reader_t = const httplib::ContentReader&;
    route("POST", import_path);
    server.Post(import_path, [this](req_t q, res_t s, reader_t r) { import(q, s, r); });
    route("GET, POST", "/v1/users");
    server.Post("/v1/users", [this](req_t q, res_t s, reader_t r) { create(q, s, r); });
    server.Get("/v1/users", [this](req_t q, res_t s) { list(q, s); });
    auto user_path = R"(/v1/users/([^/:]+))";
    route("GET, PUT, DELETE", user_path);
    server.Get(user_path, [this](req_t q, res_t s) { read(q, s); });
    server.Put(user_path, [this](req_t q, res_t s, reader_t r) { replace(q, s, r); });
    server.Delete(user_path, [this](req_t q, res_t s) { remove(q, s); });
    route("GET", "/v1/deliveries");
    server.Get("/v1/deliveries",
               [this](req_t q, res_t s) { deliveries(q, s); });
    route("POST", R"(/v1/deliveries/(.+):retry)");
    server.Post(R"(/v1/deliveries/(.+):retry)",
                [this](req_t q, res_t s) { redrive(q, s); });
    for (auto path : {"/healthz", "/readyz", "/v1/cluster", "/metrics",
                      "/openapi.json", "/v1/supervision", "/v1/dashboard",
                      "/v1/dashboard/events", "/dashboard"})
      route("GET", path);
    server.Get("/v1/supervision", [this](req_t, res_t s) {
      s.set_content(supervision_json(*ctx), json_type);
    });
    server.Get("/v1/dashboard", [this](req_t, res_t s) { dashboard_snapshot(s); });
    server.Get("/v1/dashboard/events",
               [this](req_t, res_t s) { dashboard_events(s); });
    server.Get("/dashboard", [](req_t, res_t s) {
      auto page = dashboard_page();
      s.set_content(page.data(), page.size(), "text/html; charset=utf-8");
    });
    if (opts.test_hooks) {
      route("POST", "/v1/admin/crash");
      server.Post("/v1/admin/crash", [this](req_t q, res_t s) { crash(q, s); });
    }
    for (auto path : {"/v1/cluster:leave", "/v1/cluster:join"})
      route("POST", path);
    server.Get("/healthz", [this](req_t, res_t s) {
      // The node's clock is part of its health: black-box tests on a
      // virtual clock synchronise on it.
      s.set_content(R"({"status":"ok","now":")"
                      + format_instant(ctx->clock->now()) + R"("})",
                    json_type);
    });
    server.Get("/readyz", [this](req_t, res_t s) { ready(s); });
    server.Get("/v1/cluster", [this](req_t q, res_t s) { cluster(q, s); });
    server.Post("/v1/cluster:leave", [this](req_t q, res_t s) { leave(q, s); });
    server.Post("/v1/cluster:join", [this](req_t q, res_t s) { join(q, s); });
    server.Get("/metrics", [this](req_t, res_t s) { metrics(s); });
    server.Get("/openapi.json", [](req_t, res_t s) {
      auto doc = openapi_document();
      s.set_content(doc.data(), doc.size(), json_type);
    });
    server.set_error_handler([this](req_t q, res_t s) {
      // Our handlers answer with a body; this only shapes httplib's own
      // errors (body too large, no such route, unreadable request).
      if (!s.body.empty())
        return;
      if (s.status == 413)
        reply_problem(s, too_large);
      else if (s.status == 404 && !allowed(q.path).empty()) {
        s.set_header("Allow", allowed(q.path));
        reply_problem(s, {405, "Method not allowed",
                          q.method + " is not a method of this resource; it"
                                     " allows " + allowed(q.path),
                          {}});
      } else if (s.status == 404)
        reply_problem(s, {404, "Not found", "no such resource", {}});
      else
        reply_problem(s, {s.status, "Error", "the request failed", {}});
    });
    server.set_exception_handler([](req_t, res_t s, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log(log_level::error, "http", "handler failed", {{"error", what}});
      reply_problem(s, {500, "Internal error", "internal error", {}});
    });
    server.set_logger([](req_t q, const httplib::Response& s) {
      get_metric("chime_http_requests_total{code=\"" + std::to_string(s.status)
                 + "\"}")
        .add();
      log(log_level::debug, "http", "request",
          {{"method", q.method}, {"path", q.path},
           {"status", int64_t{s.status}}});
    });
  }
};

http_api::http_api(caf::actor_system& sys, context_ptr ctx,
                   http_api_options opts)
  : impl_(std::make_unique<impl>(sys, std::move(ctx), std::move(opts))) {
  impl_->routes();
}

http_api::~http_api() {
  stop();
}

bool http_api::start() {
  auto& i = *impl_;
  if (auto error = bind_with_backlog(i.server, i.opts.bind, i.opts.port);
      !error.empty()) {
    log(log_level::error, "http", "not serving", {{"error", error}});
    return false;
  }
  i.thread = std::thread{[&i] { i.server.listen_after_bind(); }};
  return true;
}

void http_api::stop() {
  if (impl_ && impl_->thread.joinable()) {
    impl_->end_streams();
    impl_->server.stop();
    impl_->thread.join();
  }
}

namespace {

struct http_server_state {
  std::unique_ptr<http_api> api;
  static inline const char* name = "chime.http";
};

caf::behavior http_server(caf::stateful_actor<http_server_state>* self,
                          context_ptr ctx, http_api_options opts) {
  auto port = opts.port;
  self->state.api = std::make_unique<http_api>(self->system(), std::move(ctx),
                                               std::move(opts));
  if (!self->state.api->start()) {
    log(log_level::error, "http", "cannot listen on the HTTP port",
        {{"port", int64_t{port}}});
    self->quit(make_error(caf::sec::cannot_open_port));
    return {};
  }
  // The state (and with it the server, stopped by its destructor) goes
  // before the exit reaches the supervisor.
  return {
    [](ping_atom) { return caf::ok_atom::value; },
  };
}

} // namespace

caf::actor spawn_http_server(caf::actor_system& sys, context_ptr ctx,
                             http_api_options opts) {
  // Detached: starting and stopping the server block on its threads.
  return sys.spawn<caf::detached>(http_server, std::move(ctx), std::move(opts));
}

} // namespace chime
