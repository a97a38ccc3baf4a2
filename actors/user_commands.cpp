#include "actors/user_commands.hpp"

#include "actors/cluster_view.hpp"
#include "actors/delivery.hpp"
#include "actors/delivery_status.hpp"
#include "actors/errc.hpp"
#include "actors/occasion.hpp"

#include "actors/journal.hpp"
#include "actors/protocol.hpp"
#include "actors/shard.hpp"
#include "actors/sharding.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <type_traits>

namespace chime {

namespace {

caf::actor shard_for(const node_context& ctx, const std::string& user_id) {
  return ctx.dir->get(shard_name(shard_of(user_id, ctx.shard_count)));
}

struct commands_state {
  context_ptr ctx;
  static inline const char* name = "chime.user_commands";
};

using commands_actor = caf::stateful_actor<commands_state>;

std::vector<due_entry> due_entries(const node_context& ctx,
                                   const user_record& u, instant now,
                                   const std::map<std::string, int>& done) {
  std::vector<due_entry> out;
  for (auto& [occasion, due] : plan_user(u, now, ctx.rules, done))
    out.push_back({occasion, to_ms(due.at), format_date(due.local_date)});
  return out;
}

/// The view that replaces `old` with `u` at `now`.
user_view replaced(const node_context& ctx, const user_view& old,
                   user_record u, instant now) {
  user_view v;
  v.user = std::move(u);
  v.user.created_at_ms = old.user.created_at_ms;
  v.at_ms = to_ms(now);
  v.deliveries = old.deliveries;
  v.deliveries_version = old.deliveries_version;
  // A year already delivered (or expired) for an occasion is never owed
  // again, whatever the update. A message still waiting for an occasion the
  // update removes or moves is not: it is cancelled at its send, and the
  // corrected date is owed this year if it is still ahead.
  std::map<std::string, int> done;
  for (auto& d : old.deliveries) {
    if (d.status == delivery_status::cancelled)
      continue;
    bool open = is_open(d.status);
    auto kind = find_occasion(d.occasion);
    if (open
        && (!kind || !still_owed(*kind, v.user, d.local_date, ctx.rules.feb29)))
      continue;
    auto year = std::stoi(d.local_date.substr(0, 4));
    auto& y = done[d.occasion];
    y = std::max(y, year);
  }
  if (ctx.broken.next_year_on_update) {
    auto year = static_cast<int>(
      date::year_month_day{date::floor<date::days>(to_sys(now))}.year());
    for (auto& [occasion, date] : v.user.dates) {
      auto was = old.user.dates.find(occasion);
      if (was == old.user.dates.end() || was->second != date
          || old.user.timezone != v.user.timezone)
        done[occasion] = std::max(done[occasion], year);
    }
  }
  for (auto& e : due_entries(ctx, v.user, now, done)) {
    // An occasion whose date and zone did not change keeps its pending due
    // instant, even an overdue one still waiting for catch-up.
    auto kept = std::find_if(old.due.begin(), old.due.end(),
                             [&](const due_entry& d) {
                               return d.occasion == e.occasion;
                             });
    auto date_of = [&](const user_record& r) {
      auto i = r.dates.find(e.occasion);
      return i == r.dates.end() ? std::string{} : i->second;
    };
    bool unchanged = kept != old.due.end()
                     && old.user.timezone == v.user.timezone
                     && date_of(old.user) == date_of(v.user);
    v.due.push_back(unchanged ? *kept : e);
  }
  return v;
}

/// Journals `v` with `op`, then upserts it into its shard and replies it;
/// `on_error` decides what a refusal means.
template <class Atom, class OnError>
void store(commands_actor* self, Atom op, user_view v,
           caf::typed_response_promise<user_view> rp, OnError on_error) {
  auto& ctx = *self->state.ctx;
  self->request(journal_at(*ctx.dir, journal_name), journal_timeout, op, v)
    .then(
      [=](caf::ok_atom) mutable {
        auto& ctx = *self->state.ctx;
        if constexpr (std::is_same_v<Atom, create_atom>)
          created(ctx, v);
        else
          self->send(shard_for(ctx, v.user.id), upsert_atom::value, v, false);
        rp.deliver(std::move(v));
      },
      on_error);
}

/// Reads the user, computes the update from what was read and writes it
/// only if the user's deliveries are still as read; else reads again (a
/// message was recorded or sent in between), a few times.
void replace(commands_actor* self, user_record u,
             caf::typed_response_promise<user_view> rp, int tries_left) {
  auto& ctx = *self->state.ctx;
  self->request(journal_at(*ctx.dir, journal_name), journal_timeout, read_atom::value, u.id)
    .then(
      [=](user_view& old) mutable {
        auto& ctx = *self->state.ctx;
        store(self, replace_atom::value,
              replaced(ctx, old, u, ctx.clock->now()), rp,
              [=](caf::error& err) mutable {
                if (is(err, journal_errc::stale) && tries_left > 1)
                  replace(self, std::move(u), rp, tries_left - 1);
                else
                  rp.deliver(is(err, journal_errc::stale)
                               ? make_error(journal_errc::unavailable)
                               : std::move(err));
              });
      },
      [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
}

caf::behavior user_commands(commands_actor* self, context_ptr ctx) {
  self->state.ctx = std::move(ctx);
  return {
    [=](create_atom, user_record& u) {
      auto rp = self->make_response_promise<user_view>();
      if (!owns_user(*self->state.ctx, u.id)) {
        rp.deliver(make_error(journal_errc::fenced));
        return rp;
      }
      auto& ctx = *self->state.ctx;
      store(self, create_atom::value,
            planned_create(ctx, std::move(u), ctx.clock->now()), rp,
            [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](replace_atom, user_record& u) {
      auto rp = self->make_response_promise<user_view>();
      auto& ctx = *self->state.ctx;
      if (!owns_user(ctx, u.id)) {
        rp.deliver(make_error(journal_errc::fenced));
        return rp;
      }
      replace(self, std::move(u), rp, 3);
      return rp;
    },
    [=](remove_atom, const std::string& id) {
      auto rp = self->make_response_promise<caf::ok_atom>();
      auto& ctx = *self->state.ctx;
      if (!owns_user(ctx, id)) {
        rp.deliver(make_error(journal_errc::fenced));
        return rp;
      }
      self->request(journal_at(*ctx.dir, journal_name), journal_timeout,
                    remove_atom::value, id, to_ms(ctx.clock->now()))
        .then(
          [=](caf::ok_atom) mutable {
            auto& ctx = *self->state.ctx;
            self->send(shard_for(ctx, id), evict_atom::value, id);
            // Reply once no request for this user is still in flight, so
            // that nothing reaches the email service after the delete.
            self->request(delivery_at(*ctx.dir), journal_timeout,
                          drain_atom::value, id)
              .then([=](caf::ok_atom) mutable { rp.deliver(caf::ok_atom::value); },
                    // No delivery actor: nothing of its is in flight either.
                    [=](caf::error&) mutable { rp.deliver(caf::ok_atom::value); });
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  };
}

} // namespace

bool owns_user(const node_context& ctx, const std::string& user_id) {
  return !ctx.cluster
         || ctx.cluster->valid_epoch(shard_of(user_id, ctx.shard_count),
                                     ctx.monotonic())
              != 0;
}

void created(const node_context& ctx, user_view v) {
  // Counted once durable: a create that failed created nothing.
  static auto& users_created = get_metric("chime_users_created_total");
  users_created.add();
  to_shard_if_due_soon(ctx, std::move(v));
}

void to_shard_if_due_soon(const node_context& ctx, user_view v) {
  // A new user is resident nowhere yet: its shard has something to do only
  // when the user is due within the horizon (the due poll finds the rest,
  // and a shard owned by another node gets it from that node's poll).
  if (!due_within_horizon(ctx, v))
    return;
  if (auto shard = shard_for(ctx, v.user.id))
    caf::anon_send(shard, upsert_atom::value, std::move(v), false);
}

user_view planned_create(const node_context& ctx, user_record u, instant now) {
  user_view v;
  v.user = std::move(u);
  v.user.created_at_ms = to_ms(now);
  v.at_ms = to_ms(now);
  v.due = due_entries(ctx, v.user, now, {});
  return v;
}

caf::actor spawn_user_commands(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(user_commands, std::move(ctx));
}

} // namespace chime
