#include "sims/sim/memory_journal.hpp"

#include "actors/cluster_view.hpp"
#include "sims/sim/memory_coordination.hpp"

#include "actors/delivery_status.hpp"
#include "actors/errc.hpp"
#include "actors/sharding.hpp"
#include "sims/sim/env.hpp"
#include "runtime/assert.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cctype>
#include <map>

namespace chime::sim {

namespace {

struct journal_state {
  std::shared_ptr<journal_store> store;
  env* e = nullptr;
  journal_fence fence;

  /// True when a write for `user_id`'s shard must be refused.
  bool fenced(std::string_view user_id) const {
    if (!fence.view || !fence.leases)
      return false;
    auto shard = shard_of(user_id, store->shard_count);
    return !fence.leases->holds(shard, fence.view->held_epoch(shard),
                                fence.view->self());
  }
  deferred_replies later;
  static inline const char* name = "chime.sim.journal";
};

/// The journal interface, plus the deferred replies it sends itself.
using memory_journal_actor
  = journal_actor::extend<caf::reacts_to<sim_reply_atom, uint64_t>>;
using journal_self = memory_journal_actor::stateful_pointer<journal_state>;

/// Emails are unique whatever their case (as PostgreSQL's unique index on
/// lower(email)).
std::string email_key(const std::string& email) {
  std::string out = email;
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void set_status(journal_store& s, stored_delivery& d, delivery_status status) {
  CHIME_ASSERT(d.rec.status != delivery_status::sent
                 || status == delivery_status::sent,
               "a sent delivery became owed again");
  d.rec.status = status;
  if (is_open(d.rec.status))
    s.open.insert(d.rec.key);
  else
    s.open.erase(d.rec.key);
  if (!is_open(d.rec.status) && d.rec.status != delivery_status::cancelled)
    d.closed_ms = std::min(d.closed_ms, s.now_ms);
}

void write_due(journal_store& s, const user_view& v) {
  for (auto& d : s.due[v.user.id])
    s.due_index.erase({d.due_at_ms, v.user.id, d.occasion});
  s.due[v.user.id] = v.due;
  for (auto& d : v.due)
    s.due_index.emplace(d.due_at_ms, v.user.id, d.occasion);
}

void erase_due(journal_store& s, const std::string& id) {
  for (auto& d : s.due[id])
    s.due_index.erase({d.due_at_ms, id, d.occasion});
  s.due.erase(id);
}

std::vector<due_entry> sorted_due(const journal_store& s,
                                  const std::string& id) {
  auto i = s.due.find(id);
  if (i == s.due.end())
    return {};
  auto out = i->second;
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return a.due_at_ms < b.due_at_ms;
  });
  return out;
}

std::vector<delivery_record> user_deliveries(const journal_store& s,
                                             const std::string& id) {
  std::vector<delivery_record> out;
  if (auto i = s.keys_by_user.find(id); i != s.keys_by_user.end())
    for (auto& key : i->second)
      out.push_back(s.deliveries.at(key).rec);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return a.due_at_ms > b.due_at_ms;
  });
  if (out.size() > 50)
    out.resize(50);
  return out;
}

/// Answers `rp` with `value` now, or later while the journal is slow; or
/// with `unavailable` (changing nothing) while it is down.
template <class T>
caf::result<T> answer(journal_self self, std::function<caf::expected<T>()> op) {
  auto& e = *self->state.e;
  auto now = e.now_ms();
  auto& view = self->state.fence.view;
  if (now < e.journal_down_until_ms || (view && !e.db_reachable(view->self())))
    return make_error(journal_errc::unavailable);
  self->state.store->now_ms = now;
  auto result = op();
  millis delay{0};
  if (now < e.journal_slow_until_ms)
    delay = e.up_to(e.faults.journal_slow_max);
  if (delay.count() == 0) {
    if (result)
      return std::move(*result);
    return std::move(result.error());
  }
  auto rp = self->make_response_promise<T>();
  self->state.later.run(self, delay, [rp, result]() mutable {
    if (result)
      rp.deliver(std::move(*result));
    else
      rp.deliver(result.error());
  });
  return rp;
}

caf::expected<caf::ok_atom> create(journal_store& s, const user_view& v) {
  auto& u = v.user;
  if (s.users.count(u.id) || s.emails.count(email_key(u.email)))
    return make_error(journal_errc::conflict);
  s.users[u.id] = u;
  s.emails[email_key(u.email)] = u.id;
  write_due(s, v);
  s.history[u.id].push_back({v.at_ms, s.now_ms, u});
  return caf::ok_atom::value;
}

/// As pg_journal's: "rows/closed" of the user's deliveries.
std::string deliveries_version(const journal_store& s, const std::string& id) {
  size_t rows = 0, closed = 0;
  if (auto k = s.keys_by_user.find(id); k != s.keys_by_user.end())
    for (auto& key : k->second) {
      ++rows;
      closed += !is_open(s.deliveries.at(key).rec.status);
    }
  return std::to_string(rows) + "/" + std::to_string(closed);
}

caf::expected<caf::ok_atom> replace(journal_store& s, const user_view& v) {
  auto& u = v.user;
  auto i = s.users.find(u.id);
  if (i == s.users.end())
    return make_error(journal_errc::not_found);
  if (deliveries_version(s, u.id) != v.deliveries_version)
    return make_error(journal_errc::stale);
  if (auto j = s.emails.find(email_key(u.email));
      j != s.emails.end() && j->second != u.id)
    return make_error(journal_errc::conflict);
  s.emails.erase(email_key(i->second.email));
  s.emails[email_key(u.email)] = u.id;
  i->second = u;
  write_due(s, v);
  s.history[u.id].push_back({v.at_ms, s.now_ms, u});
  return caf::ok_atom::value;
}

caf::expected<caf::ok_atom> remove(journal_store& s, const std::string& id,
                                   int64_t at_ms) {
  auto i = s.users.find(id);
  if (i == s.users.end())
    return make_error(journal_errc::not_found);
  s.emails.erase(email_key(i->second.email));
  s.users.erase(i);
  erase_due(s, id);
  s.history[id].push_back({at_ms, s.now_ms, std::nullopt});
  if (auto k = s.keys_by_user.find(id); k != s.keys_by_user.end())
    for (auto& key : k->second) {
      auto& d = s.deliveries.at(key);
      if (is_open(d.rec.status)) {
        set_status(s, d, delivery_status::cancelled);
        d.updated_at_ms = at_ms;
      }
    }
  return caf::ok_atom::value;
}

bool fire(journal_store& s, const fire_request& f) {
  auto i = s.due.find(f.user_id);
  if (i == s.due.end())
    return false;
  auto e = std::find_if(i->second.begin(), i->second.end(), [&](auto& d) {
    return d.occasion == f.due.occasion && d.due_at_ms == f.due.due_at_ms;
  });
  if (e == i->second.end())
    return false;
  s.due_index.erase({e->due_at_ms, f.user_id, e->occasion});
  e->due_at_ms = f.next.due_at_ms;
  e->local_date = f.next.local_date;
  s.due_index.emplace(e->due_at_ms, f.user_id, e->occasion);
  auto& d = f.delivery;
  // Fired ahead of its instant (the fire lead), it counts as touched at the
  // instant, as in PostgreSQL.
  auto touched_ms = std::max(f.at_ms, d.due_at_ms);
  auto [row, added] = s.deliveries.emplace(d.key,
                                           stored_delivery{d, touched_ms});
  if (added) {
    s.keys_by_user[d.user_id].push_back(d.key);
    set_status(s, row->second, d.status);
  } else if (row->second.rec.status == delivery_status::cancelled) {
    // A date moved away and back again: owed once more.
    auto& r = row->second.rec;
    r.due_at_ms = d.due_at_ms;
    r.email = d.email;
    r.message = d.message;
    row->second.updated_at_ms = touched_ms;
    set_status(s, row->second, d.status);
  }
  return true;
}

attempt_verdict attempt(journal_store& s, const std::string& key,
                        int64_t now_ms, int64_t catch_up_ms) {
  attempt_verdict v;
  auto i = s.deliveries.find(key);
  if (i == s.deliveries.end()) {
    v.missing = true;
    return v;
  }
  auto& d = i->second;
  bool open = is_open(d.rec.status);
  if (open && s.users.count(d.rec.user_id) == 0)
    set_status(s, d, delivery_status::cancelled);
  else if (open && now_ms - d.rec.due_at_ms > catch_up_ms)
    set_status(s, d, delivery_status::expired);
  else if (open)
    v.proceed = true;
  auto before = d.rec.status;
  if (v.proceed && before == delivery_status::scheduled)
    set_status(s, d, delivery_status::handed_off); // it reached delivery
  if (d.rec.status != before)
    d.updated_at_ms = now_ms;
  v.status = d.rec.status;
  v.unsettled = v.proceed && d.begun_attempts > d.rec.attempts;
  if (v.proceed)
    d.begun_attempts = std::max(d.begun_attempts, d.rec.attempts) + 1;
  v.attempts = v.proceed ? d.begun_attempts : d.rec.attempts;
  // Every user reads as changed here: what is sent is always rendered from
  // the user as they are now (the journal of persistence/ skips that only
  // for users untouched since the fire, with the same outcome).
  if (v.proceed) {
    v.user_changed = true;
    v.user = s.users.at(d.rec.user_id);
  }
  return v;
}

void outcome(journal_store& s, const delivery_outcome& o) {
  auto i = s.deliveries.find(o.key);
  if (i == s.deliveries.end() || !is_open(i->second.rec.status))
    return;
  auto& d = i->second;
  set_status(s, d, o.status);
  d.rec.attempts = std::max(d.rec.attempts, o.attempts);
  d.rec.last_error = o.error;
  if (o.status == delivery_status::sent)
    d.rec.sent_at_ms = o.at_ms;
  d.updated_at_ms = o.at_ms;
}

memory_journal_actor::behavior_type memory_journal(journal_self self,
                             std::shared_ptr<journal_store> store, env* e,
                             journal_fence fence) {
  self->state.store = std::move(store);
  self->state.e = e;
  self->state.fence = std::move(fence);
  auto trace = [self](std::string_view op, std::string_view detail) {
    auto& e = *self->state.e;
    e.trace.add(e.now_ms(), op, detail);
  };
  auto fire_traced = [trace](journal_self self, const fire_request& f) {
    bool recorded = !self->state.fenced(f.user_id)
                    && fire(*self->state.store, f);
    trace("journal.fire", f.delivery.key + (recorded ? " recorded" : " stale"));
    return recorded;
  };
  auto attempt_traced = [trace](journal_self self, const std::string& key,
                                int64_t now_ms, int64_t catch_up_ms) {
    attempt_verdict v;
    if (self->state.fenced(user_of_key(key)))
      v.fenced = true;
    else
      v = attempt(*self->state.store, key, now_ms, catch_up_ms);
    trace("journal.attempt", key + " " + std::string{verdict_text(v)});
    return v;
  };
  /// No error: recorded.
  auto outcome_traced = [trace](journal_self self,
                                const delivery_outcome& o) -> caf::error {
    if (self->state.fenced(user_of_key(o.key))) {
      trace("journal.outcome", o.key + " fenced");
      return make_error(journal_errc::fenced);
    }
    outcome(*self->state.store, o);
    trace("journal.outcome", o.key + " " + status_name(o.status));
    return {};
  };
  return {
    [=](sim_reply_atom, uint64_t id) { self->state.later.fire(id); },
    [=](create_atom, user_view& v) {
      return answer<caf::ok_atom>(self, [=] {
        trace("journal.create", v.user.id);
        return create(*self->state.store, v);
      });
    },
    [=](import_atom, std::vector<user_view>& views) {
      return answer<std::vector<caf::error>>(self, [=] {
        trace("journal.import", std::to_string(views.size()));
        std::vector<caf::error> refusals;
        for (auto& v : views) {
          auto created = create(*self->state.store, v);
          refusals.push_back(created ? caf::error{} : created.error());
        }
        return caf::expected<std::vector<caf::error>>{std::move(refusals)};
      });
    },
    [=](replace_atom, user_view& v) {
      return answer<caf::ok_atom>(self, [=] {
        trace("journal.replace", v.user.id);
        return replace(*self->state.store, v);
      });
    },
    [=](remove_atom, std::string& id, int64_t at_ms) {
      return answer<caf::ok_atom>(self, [=] {
        trace("journal.remove", id);
        return remove(*self->state.store, id, at_ms);
      });
    },
    [=](read_atom, std::string& id) {
      return answer<user_view>(self, [=]() -> caf::expected<user_view> {
        auto& s = *self->state.store;
        auto i = s.users.find(id);
        if (i == s.users.end())
          return make_error(journal_errc::not_found);
        return user_view{i->second, sorted_due(s, id), user_deliveries(s, id),
                         0, deliveries_version(s, id)};
      });
    },
    [=](list_atom, std::string& cursor, uint32_t limit) {
      return answer<users_page>(self, [=]() -> caf::expected<users_page> {
        auto& s = *self->state.store;
        std::map<std::string, const user_record*> sorted;
        for (auto& [id, u] : s.users)
          if (id > cursor)
            sorted.emplace(id, &u);
        users_page page;
        for (auto& [id, u] : sorted) {
          if (page.users.size() == limit) {
            page.next_cursor = page.users.back().user.id;
            break;
          }
          page.users.push_back(user_view{*u, sorted_due(s, id), {}, 0});
        }
        return page;
      });
    },
    [=](load_due_atom, int64_t until_ms, std::vector<uint32_t>& owned,
        int64_t after_due_ms, std::string& after_user, uint32_t limit) {
      return answer<due_page>(self, [=]() -> caf::expected<due_page> {
        auto& s = *self->state.store;
        std::vector<bool> mine(s.shard_count, false);
        for (auto shard : owned)
          mine[shard] = true;
        due_page out;
        std::map<std::string, size_t> index_of;
        uint32_t rows = 0;
        for (auto& [due_ms, id, occasion] : s.due_index) {
          if (due_ms > until_ms || rows == limit)
            break;
          if (std::tie(due_ms, id) <= std::tie(after_due_ms, after_user)
              || !mine[shard_of(id, s.shard_count)])
            continue;
          ++rows;
          out.last_due_ms = due_ms;
          out.last_user = id;
          if (index_of.emplace(id, out.users.size()).second) {
            user_view v{s.users.at(id), {}, {}, 0};
            for (auto& d : s.due.at(id))
              if (d.due_at_ms <= until_ms)
                v.due.push_back(d);
            out.users.push_back(std::move(v));
          }
        }
        out.more = rows == limit;
        return out;
      });
    },
    [=](fire_atom, fire_request& f) {
      return answer<bool>(self, [=]() -> caf::expected<bool> {
        return fire_traced(self, f);
      });
    },
    [=](fire_atom, std::vector<fire_request>& fs, handoff_actor& to) {
      return answer<std::vector<bool>>(
        self, [=]() mutable -> caf::expected<std::vector<bool>> {
          std::vector<bool> out;
          for (auto& f : fs)
            out.push_back(fire_traced(self, f));
          fired_deliveries fired;
          fired.add(to, std::move(fs), out);
          fired.submit();
          return out;
        });
    },
    [=](attempt_atom, std::string& key, int64_t now_ms, int64_t catch_up_ms) {
      return answer<attempt_verdict>(self, [=]() -> caf::expected<attempt_verdict> {
        return attempt_traced(self, key, now_ms, catch_up_ms);
      });
    },
    [=](attempt_atom, std::vector<std::string>& keys, int64_t now_ms,
        int64_t catch_up_ms) {
      return answer<std::vector<attempt_verdict>>(
        self, [=]() -> caf::expected<std::vector<attempt_verdict>> {
          std::vector<attempt_verdict> out;
          for (auto& key : keys)
            out.push_back(attempt_traced(self, key, now_ms, catch_up_ms));
          return out;
        });
    },
    [=](outcome_atom, delivery_outcome& o) {
      return answer<caf::ok_atom>(self, [=]() -> caf::expected<caf::ok_atom> {
        if (auto err = outcome_traced(self, o))
          return err;
        return caf::ok_atom::value;
      });
    },
    [=](outcome_atom, std::vector<delivery_outcome>& os) {
      return answer<std::vector<caf::error>>(
        self, [=]() -> caf::expected<std::vector<caf::error>> {
          std::vector<caf::error> out;
          for (auto& o : os)
            out.push_back(outcome_traced(self, o));
          return out;
        });
    },
    [=](outbox_atom, int64_t scheduled_before_ms, int64_t open_before_ms,
        uint32_t limit, int64_t now_ms) {
      return answer<std::vector<delivery_record>>(
        self, [=]() -> caf::expected<std::vector<delivery_record>> {
          std::vector<delivery_record> out;
          auto& s = *self->state.store;
          auto& fence = self->state.fence;
          std::vector<bool> held(s.shard_count, false);
          if (fence.view)
            for (auto shard : fence.view->held())
              held[shard] = true;
          for (auto& key : s.open) {
            auto& d = s.deliveries.at(key);
            if (fence.view && !held[shard_of(d.rec.user_id, s.shard_count)])
              continue; // in a cluster, a node sweeps only its own shards
            auto& st = d.rec.status;
            if ((st == delivery_status::scheduled && d.updated_at_ms < scheduled_before_ms)
                || ((st == delivery_status::handed_off || st == delivery_status::failed)
                    && d.updated_at_ms < open_before_ms))
              out.push_back(d.rec);
          }
          std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
            return std::tie(a.due_at_ms, a.key) < std::tie(b.due_at_ms, b.key);
          });
          if (out.size() > limit)
            out.resize(limit);
          for (auto& d : out)
            s.deliveries.at(d.key).updated_at_ms = now_ms;
          return out;
        });
    },
    [=](redrive_atom, std::string& key, int64_t at_ms) {
      return answer<delivery_record>(
        self, [=]() -> caf::expected<delivery_record> {
          auto& s = *self->state.store;
          auto i = s.deliveries.find(key);
          if (i == s.deliveries.end() || i->second.rec.status != delivery_status::dead)
            return make_error(journal_errc::not_found);
          set_status(s, i->second, delivery_status::scheduled);
          i->second.updated_at_ms = at_ms;
          return i->second.rec;
        });
    },
    [=](deliveries_atom, std::string& user, std::string& status,
        uint32_t limit) {
      return answer<std::vector<delivery_record>>(
        self, [=]() -> caf::expected<std::vector<delivery_record>> {
          std::vector<delivery_record> out;
          for (auto& [key, d] : self->state.store->deliveries)
            if ((user.empty() || d.rec.user_id == user)
                && (status.empty() || to_string(d.rec.status) == status))
              out.push_back(d.rec);
          std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
            return std::tie(b.due_at_ms, a.key) < std::tie(a.due_at_ms, b.key);
          });
          if (out.size() > limit)
            out.resize(limit);
          return out;
        });
    },
    [=](stats_atom, int64_t now_ms) {
      return answer<journal_stats>(self, [=]() -> caf::expected<journal_stats> {
        auto& s = *self->state.store;
        journal_stats st;
        st.users = static_cast<int64_t>(s.users.size());
        for (auto& [due_ms, id, occasion] : s.due_index)
          if (due_ms >= now_ms && due_ms <= now_ms + 3600000)
            ++st.due_next_hour;
        st.pending_deliveries = static_cast<int64_t>(s.open.size());
        return st;
      });
    },
    [=](ping_atom) {
      return answer<caf::ok_atom>(self, [] { return caf::ok_atom::value; });
    },
  };
}

} // namespace

journal_actor spawn_memory_journal(caf::actor_system& sys,
                                std::shared_ptr<journal_store> store, env* e,
                                journal_fence fence) {
  return sys.spawn(memory_journal, std::move(store), e, std::move(fence));
}

} // namespace chime::sim
