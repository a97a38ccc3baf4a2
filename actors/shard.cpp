#include "actors/shard.hpp"

#include "actors/cluster_view.hpp"
#include "actors/handoff.hpp"
#include "actors/journal.hpp"
#include "actors/protocol.hpp"
#include "actors/sharding.hpp"
#include "actors/user.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"
#include "runtime/supervisor.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <limits>
#include <memory>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

namespace chime {

std::string shard_name(uint32_t shard) {
  return "shard/" + std::to_string(shard);
}

namespace {

/// A user due within the horizon, held by its shard: the user as last
/// written and the occasions whose due record is with the journal now.
struct resident {
  user_view view;
  uint64_t version = 0; ///< bumped when an upsert replaces the view
  std::vector<std::string> firing;

  bool is_firing(const std::string& occasion) const {
    return std::find(firing.begin(), firing.end(), occasion) != firing.end();
  }
  void done_firing(const std::string& occasion) {
    firing.erase(std::find(firing.begin(), firing.end(), occasion));
  }
};

struct shard_state {
  context_ptr ctx;
  uint32_t id = 0;
  std::unordered_map<std::string, resident> users;
  /// (when, user id, occasion): when one occasion of a resident user is
  /// due, or asked again after a failed fire; the shard looks at it the
  /// fire lead before. An entry its user no longer needs (the view changed,
  /// or the user left) is skipped when it comes up, not searched for and
  /// erased.
  std::set<std::tuple<int64_t, std::string, std::string>> timers;
  std::set<int64_t> wakes; ///< the instants a wake_atom is on its way for
  static inline const char* name = "chime.shard";

  ~shard_state() {
    // Whatever ends the shard, its residents no longer count toward the bound.
    if (ctx)
      count_resident(ctx, -static_cast<int64_t>(users.size()));
  }

  /// Keeps the node's count of resident users (the bound's) and its gauge.
  static void count_resident(const context_ptr& ctx, int64_t n) {
    *ctx->resident_users += n;
    static auto& gauge = get_metric("chime_users_resident");
    gauge.add(n);
  }
};

using shard_actor = caf::stateful_actor<shard_state>;

/// Makes sure a wake is on its way for the earliest timer (the fire lead
/// before it).
void arm_wake(shard_actor* self) {
  auto& st = self->state;
  if (st.timers.empty())
    return;
  auto earliest = std::get<0>(*st.timers.begin());
  if (!st.wakes.empty() && *st.wakes.begin() <= earliest)
    return;
  auto wait = std::max(millis{0}, from_ms(earliest) - st.ctx->fire_lead
                                    - st.ctx->clock->now());
  st.wakes.insert(earliest);
  self->delayed_send(self, st.ctx->clock->real_delay(wait), wake_atom::value,
                     earliest);
}

/// Sets the timers of a resident user's occasions due within the horizon,
/// or lets the user go (passivates it) when nothing is due nor recording:
/// the due index brings it back through a poll.
void arm_user(shard_actor* self,
              std::unordered_map<std::string, resident>::iterator i) {
  auto& st = self->state;
  auto& r = i->second;
  auto limit = to_ms(st.ctx->clock->now() + st.ctx->horizon);
  bool any = !r.firing.empty();
  for (auto& d : r.view.due) {
    if (d.due_at_ms > limit || r.is_firing(d.occasion))
      continue;
    any = true;
    st.timers.emplace(d.due_at_ms, i->first, d.occasion);
  }
  if (!any) {
    st.users.erase(i);
    shard_state::count_resident(st.ctx, -1);
  }
  arm_wake(self);
}

/// What the answer to a fire request needs of it: the request itself moved
/// into the journal's message (a copy of each for the answer had cost a
/// burst's shards most of their time at the due instant).
struct fire_echo {
  std::string user_id;
  due_entry due;
  due_entry next;
  uint64_t version = 0; ///< of the resident view it was planned from
  std::string expired_key; ///< set when it is recorded as expired
};

fire_echo echo_of(const fire_request& req, uint64_t version) {
  auto expired = req.delivery.status != delivery_status::scheduled;
  return {req.user_id, req.due, req.next, version,
          expired ? req.delivery.key : std::string{}};
}

/// What the journal answered to one fire request (it submitted the
/// delivery to the handoff itself): an expired one counted, and the user's
/// due instant moved on.
void fired(shard_actor* self, const fire_echo& req, bool recorded) {
  auto& st = self->state;
  if (recorded && !req.expired_key.empty()) {
    get_metric("chime_deliveries_expired_total").add();
    log(log_level::info, "user", "occasion expired",
        {{"user_id", req.user_id}, {"key", req.expired_key}});
  }
  auto i = st.users.find(req.user_id);
  if (i == st.users.end())
    return; // deleted meanwhile
  auto& r = i->second;
  r.done_firing(req.due.occasion);
  // A view replaced meanwhile is authoritative: its due instants were
  // planned knowing what this one recorded.
  if (req.version == r.version)
    for (auto& e : r.view.due)
      if (e.occasion == req.due.occasion && e.due_at_ms == req.due.due_at_ms)
        e = req.next;
  arm_user(self, i);
}

/// The journal did not answer a fire request: it is asked again in a second
/// (Chime time), not at once, since the journal is struggling.
void fire_failed(shard_actor* self, const fire_echo& req,
                 const caf::error& err) {
  auto& st = self->state;
  log(log_level::warn, "user", "journal did not record a due occasion",
      {{"user_id", req.user_id}, {"error", self->system().render(err)}});
  auto i = st.users.find(req.user_id);
  if (i == st.users.end())
    return;
  auto& r = i->second;
  r.done_firing(req.due.occasion);
  // A timer is an instant the shard wakes the fire lead before.
  st.timers.emplace(to_ms(st.ctx->clock->now() + millis{1000}
                          + st.ctx->fire_lead),
                    req.user_id, req.due.occasion);
  arm_wake(self);
}

/// At most this many due occasions go to the journal in one message: one
/// message instead of one per user, while each stays a small part of a
/// journal batch.
constexpr size_t fires_per_request = 32;

/// Asks the journal to record these due occasions, in one message, and to
/// hand what it recorded to the node's handoff.
void fire(shard_actor* self, std::vector<fire_request> reqs,
          std::vector<fire_echo> echoes) {
  auto& st = self->state;
  // Shared by the two handlers, not copied into each.
  auto asked = std::make_shared<const std::vector<fire_echo>>(std::move(echoes));
  self
    ->request(journal_at(*st.ctx->dir, journal_name), journal_timeout, fire_atom::value,
              std::move(reqs), handoff_at(*st.ctx->dir))
    .then(
      [self, asked](const std::vector<bool>& recorded) {
        for (size_t k = 0; k < asked->size(); ++k)
          fired(self, (*asked)[k], k < recorded.size() && recorded[k]);
      },
      [self, asked](caf::error& err) {
        for (auto& req : *asked)
          fire_failed(self, req, err);
      });
}

/// Fires every resident occasion that is due within the fire lead.
void wake(shard_actor* self) {
  auto& st = self->state;
  auto fire_until_ms = to_ms(st.ctx->clock->now() + st.ctx->fire_lead);
  std::vector<fire_request> reqs;
  std::vector<fire_echo> echoes;
  while (!st.timers.empty()
         && std::get<0>(*st.timers.begin()) <= fire_until_ms) {
    auto node = st.timers.extract(st.timers.begin());
    auto& [when, user_id, occasion] = node.value();
    auto i = st.users.find(user_id);
    if (i == st.users.end() || i->second.is_firing(occasion))
      continue;
    auto& r = i->second;
    for (auto& e : r.view.due) {
      if (e.occasion != occasion || e.due_at_ms > fire_until_ms)
        continue;
      // Without a valid occasion (logged) the entry stays, and so does the
      // user, until an update.
      if (auto planned = plan_fire(*st.ctx, r.view, e)) {
        if (reqs.empty()) {
          // A request's room at once: growing moved the requests planned
          // so far again at each doubling, a string at a time (pushing them
          // was a fifth of a burst's wake time in a profile).
          reqs.reserve(fires_per_request);
          echoes.reserve(fires_per_request);
        }
        r.firing.push_back(occasion);
        echoes.push_back(echo_of(*planned, r.version));
        reqs.push_back(std::move(*planned));
      }
      break;
    }
    if (reqs.size() == fires_per_request) {
      fire(self, std::move(reqs), std::move(echoes));
      reqs.clear();
      echoes.clear();
    }
  }
  if (!reqs.empty())
    fire(self, std::move(reqs), std::move(echoes));
  arm_wake(self);
}

/// Makes `v` resident (or updates the resident one), unless the bound of
/// resident users is reached: then the user stays in the due index and a
/// later page of the poller brings it in.
void upsert(shard_actor* self, user_view v, bool from_poll) {
  auto& st = self->state;
  v.deliveries.clear(); // not needed to fire; residents are many
  v.deliveries.shrink_to_fit();
  auto i = st.users.find(v.user.id);
  if (i != st.users.end()) {
    // A resident user is known better here than by a poll's snapshot.
    if (from_poll)
      return;
    i->second.view = std::move(v);
    ++i->second.version;
    arm_user(self, i);
    return;
  }
  if (!due_within_horizon(*st.ctx, v))
    return;
  if (*st.ctx->resident_users >= st.ctx->resident_users_max) {
    static auto& hits = get_metric("chime_resident_limit_hits_total");
    hits.add();
    return;
  }
  auto user_id = v.user.id;
  auto j = st.users.emplace(std::move(user_id), resident{std::move(v), 0, {}}).first;
  shard_state::count_resident(st.ctx, 1);
  arm_user(self, j);
}

caf::behavior shard(shard_actor* self, context_ptr ctx, uint32_t id) {
  self->state.ctx = std::move(ctx);
  self->state.id = id;
  return {
    [=](upsert_atom, user_view& v, bool from_poll) {
      upsert(self, std::move(v), from_poll);
    },
    // A page of the due poller: answered once applied, so that the poller
    // reads its next page with the room that is really left.
    [=](upsert_atom, std::vector<user_view>& vs) {
      for (auto& v : vs)
        upsert(self, std::move(v), true);
      return caf::ok_atom::value;
    },
    [=](wake_atom, int64_t at_ms) {
      self->state.wakes.erase(at_ms);
      wake(self);
    },
    [=](evict_atom, const std::string& user_id) {
      auto& st = self->state;
      if (st.users.erase(user_id) > 0)
        shard_state::count_resident(st.ctx, -1);
    },
    [=](caf::get_atom) -> uint64_t { return self->state.users.size(); },
  };
}

using stop_timeout_atom = caf::atom_constant<caf::atom("sh_stopto")>;

struct host_state {
  context_ptr ctx;
  std::map<uint32_t, caf::actor> shards;
  std::map<caf::actor_addr, uint32_t> by_addr;
  std::optional<restart_intensity> intensity;
  /// Set once the host is ending: it exits with this when its shards are gone.
  std::optional<caf::error> ending;
  size_t stopping = 0;
  static inline const char* name = "chime.shard_host";
};

using host_actor = caf::stateful_actor<host_state>;

void host_start(host_actor* self, uint32_t id) {
  auto& st = self->state;
  if (st.shards.count(id) > 0)
    return;
  auto actor = self->spawn<caf::linked>(shard, st.ctx, id);
  st.by_addr.emplace(actor.address(), id);
  st.ctx->dir->put(shard_name(id), actor);
  st.ctx->supervision->set_running(shard_host_name, shard_name(id), true);
  // A shard just taken over has its due users loaded at once, not at the
  // next poll.
  self->send(st.ctx->dir->get(due_poller_name), tick_atom::value, true);
  st.shards.emplace(id, std::move(actor));
}

void host_end(host_actor* self, caf::error reason) {
  auto& st = self->state;
  st.ending = reason;
  for (auto& [id, shard] : st.shards) {
    self->unlink_from(shard);
    self->monitor(shard);
    self->send_exit(shard, caf::exit_reason::user_shutdown);
    ++st.stopping;
  }
  st.shards.clear();
  if (st.stopping == 0)
    return self->quit(reason);
  self->set_down_handler([self](caf::down_msg&) {
    if (--self->state.stopping == 0)
      self->quit(*self->state.ending);
  });
  // Shards answer an exit at once; this only bounds the wait.
  self->delayed_send(self, std::chrono::seconds{10}, stop_timeout_atom::value);
}

/// The shards of a node in a cluster, started and stopped as its leases
/// come and go; each shard registered in the directory while it runs here.
caf::behavior shard_host(host_actor* self, context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    auto i = st.by_addr.find(msg.source);
    if (i == st.by_addr.end()) {
      // From our supervisor: the shards go first, so that our successor's
      // start none while they run.
      if (msg.reason && !st.ending)
        host_end(self, msg.reason);
      return;
    }
    auto id = i->second;
    st.by_addr.erase(i);
    auto j = st.shards.find(id);
    if (j == st.shards.end() || j->second.address() != msg.source)
      return; // given away already
    st.shards.erase(j);
    st.ctx->dir->erase(shard_name(id));
    auto& board = *st.ctx->supervision;
    board.set_running(shard_host_name, shard_name(id), false);
    if (st.ctx->cluster->held_epoch(id) == 0 || !msg.reason)
      return;
    auto reason = self->system().render(msg.reason);
    if (!st.intensity->admit()) {
      // As a supervisor does: the shards go, and ours decides.
      log(log_level::error, "shard", "shard restarts exceeded their limit",
          {{"shard", int64_t{id}}, {"reason", reason}});
      board.exited(shard_host_name, shard_name(id), reason);
      self->quit(msg.reason);
      return;
    }
    log(log_level::warn, "shard", "shard failed; restarting it",
        {{"shard", int64_t{id}}, {"reason", reason}});
    board.restarted(shard_host_name, shard_name(id), reason);
    host_start(self, id);
  });
  auto& c = *self->state.ctx;
  self->state.intensity.emplace(c.restart_max, c.restart_window, c.monotonic);
  supervisor_entry entry;
  entry.name = shard_host_name;
  entry.restart_max = c.restart_max;
  entry.restart_window_ms = c.restart_window.count();
  c.supervision->put(std::move(entry));
  for (auto id : self->state.ctx->shards_here())
    host_start(self, id);
  return {
    [=](take_atom, uint32_t id) {
      if (!self->state.ending)
        host_start(self, id);
    },
    [=](stop_timeout_atom) { self->quit(*self->state.ending); },
    [=](give_atom, uint32_t id) {
      auto& st = self->state;
      auto i = st.shards.find(id);
      if (i == st.shards.end())
        return;
      st.ctx->dir->erase(shard_name(id));
      st.ctx->supervision->set_running(shard_host_name, shard_name(id), false);
      self->send_exit(i->second, caf::exit_reason::user_shutdown);
      st.shards.erase(i);
    },
  };
}

struct poller_state {
  context_ptr ctx;
  /// Where the pass under way goes on: after this due row.
  int64_t after_due_ms = std::numeric_limits<int64_t>::min();
  std::string after_user;
  bool loading = false; ///< a page is being read or applied, or a wait is on
  bool pass_open = false;
  uint64_t pass = 0; ///< a page read for an earlier pass moves no cursor
  static inline const char* name = "chime.due_poller";
};

using poller_actor = caf::stateful_actor<poller_state>;

/// The most users one load brings in: a page is one message and one query.
constexpr uint32_t due_page_max = 5000;

void load_page(poller_actor* self);

/// Hands a page to its shards, one message per shard, and reads the next
/// page only once every shard has answered (or is gone): the room for it is
/// counted from the residents the page really made, not from a count the
/// shards have yet to update (that over-read, the shards turned the surplus
/// away as over the bound, and the pass went past them: they waited for the
/// next poll, a minute on).
void apply_page(poller_actor* self, std::vector<user_view> users) {
  auto& st = self->state;
  std::map<uint32_t, std::vector<user_view>> by_shard;
  for (auto& v : users)
    by_shard[shard_of(v.user.id, st.ctx->shard_count)].push_back(std::move(v));
  // One share for each shard's answer, and one for this loop, so that an
  // empty page, or shards that all answer at once, still read the next.
  auto pending = std::make_shared<size_t>(by_shard.size() + 1);
  auto applied = [self, pending] {
    if (--*pending == 0) {
      self->state.loading = false;
      load_page(self);
    }
  };
  for (auto& [id, vs] : by_shard) {
    auto shard = st.ctx->dir->get(shard_name(id));
    if (!shard) { // given up since the read: its users wait for their owner
      applied();
      continue;
    }
    self->request(shard, journal_timeout, upsert_atom::value, std::move(vs))
      .then([applied](caf::ok_atom) { applied(); },
            [applied](caf::error&) { applied(); });
  }
  applied();
}

/// Loads the next page of the pass under way, as many users as the bound of
/// resident users leaves room for; a full page is followed by the next one
/// as soon as there is room (the residents fire and passivate), so a million
/// users due at once stream through a bounded number of residents.
void load_page(poller_actor* self) {
  auto& st = self->state;
  if (st.loading || !st.pass_open)
    return;
  auto room = static_cast<int64_t>(st.ctx->resident_users_max)
              - st.ctx->resident_users->load();
  // Wait for a worthwhile room (a tenth of the bound, or a page) before
  // reading, rather than reading the same rows for a few slots at a time.
  auto worthwhile = std::min<int64_t>(due_page_max,
                                      std::max<int64_t>(1, st.ctx->resident_users_max / 10));
  // No journal yet: the node is starting, its journals beside this poller.
  // Either way the page is read shortly, not at the next poll a minute on.
  auto journal = journal_at(*st.ctx->dir, journal_name);
  if (room < worthwhile || !journal) {
    self->delayed_send(self, std::chrono::milliseconds{100}, tick_atom::value,
                       false);
    st.loading = true; // the tick above is the next load
    return;
  }
  auto until = to_ms(st.ctx->clock->now() + st.ctx->horizon);
  auto limit = static_cast<uint32_t>(std::min<int64_t>(room, due_page_max));
  st.loading = true;
  auto pass = st.pass;
  self
    ->request(journal, journal_timeout,
              load_due_atom::value, until, st.ctx->shards_here(),
              st.after_due_ms, st.after_user, limit)
    .then(
      [=](due_page& page) {
        auto& st = self->state;
        if (pass == st.pass) {
          st.after_due_ms = page.last_due_ms;
          st.after_user = std::move(page.last_user);
          st.pass_open = page.more;
        }
        apply_page(self, std::move(page.users));
      },
      [=](caf::error& err) {
        log(log_level::warn, "due_poller", "could not load due users",
            {{"error", self->system().render(err)}});
        // Read again from the earliest soon, not at the next poll: a
        // burst's users must not wait a poll interval for a slow answer.
        self->delayed_send(self, std::chrono::seconds{1}, tick_atom::value,
                           true);
        self->state.loading = false;
      });
}

caf::behavior due_poller(poller_actor* self, context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  self->send(self, tick_atom::value, true);
  auto poll_every = [self] {
    auto& ctx = self->state.ctx;
    return std::max<std::chrono::microseconds>(
      ctx->clock->real_delay(ctx->poll_interval), std::chrono::milliseconds{100});
  };
  self->delayed_send(self, poll_every(), tick_atom::value);
  return {
    // A new pass from the earliest due (at every poll interval, and when a
    // shard is taken over); false: the pass under way goes on.
    [=](tick_atom, bool restart) {
      auto& st = self->state;
      if (restart) {
        st.after_due_ms = std::numeric_limits<int64_t>::min();
        st.after_user.clear();
        st.pass_open = true;
        ++st.pass;
      } else {
        st.loading = false;
      }
      load_page(self);
    },
    [=](tick_atom) {
      self->delayed_send(self, poll_every(), tick_atom::value);
      self->send(self, tick_atom::value, true);
    },
  };
}

} // namespace

bool due_within_horizon(const node_context& ctx, const user_view& v) {
  auto limit = to_ms(ctx.clock->now() + ctx.horizon);
  for (auto& d : v.due)
    if (d.due_at_ms <= limit)
      return true;
  return false;
}

caf::actor spawn_shard(caf::actor_system& sys, context_ptr ctx, uint32_t id) {
  return sys.spawn(shard, std::move(ctx), id);
}

caf::actor spawn_shard_host(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(shard_host, std::move(ctx));
}

caf::actor spawn_due_poller(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(due_poller, std::move(ctx));
}

} // namespace chime
