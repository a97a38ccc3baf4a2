#include "actors/user.hpp"

#include "actors/occasion.hpp"
#include "actors/protocol.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>

namespace chime {

std::string shard_name(uint32_t shard) {
  return "shard/" + std::to_string(shard);
}

namespace {

struct user_state {
  context_ptr ctx;
  user_view view;
  uint64_t generation = 0; ///< timers of older generations are ignored
  uint64_t version = 0;    ///< bumped when the shard replaces the view
  static inline const char* name = "chime.user";
};

using user_actor = caf::stateful_actor<user_state>;

/// Arms one timer per occasion due within the horizon; passivates when none.
void arm(user_actor* self) {
  auto& st = self->state;
  ++st.generation;
  auto now = st.ctx->clock->now();
  bool any = false;
  for (auto& d : st.view.due) {
    auto due = from_ms(d.due_at_ms);
    if (due - now > st.ctx->horizon)
      continue;
    any = true;
    auto wait = std::max(millis{0}, due - now);
    self->delayed_send(self, st.ctx->clock->real_delay(wait), wake_atom::value,
                       d.occasion, st.generation);
  }
  if (!any)
    self->quit();
}

void fire(user_actor* self, const due_entry& entry) {
  auto& st = self->state;
  auto& ctx = *st.ctx;
  auto kind = find_occasion(entry.occasion);
  auto zone = find_zone(st.view.user.timezone);
  auto date = kind ? kind->date_of(st.view.user) : std::nullopt;
  if (kind == nullptr || zone == nullptr || !date) {
    log(log_level::warn, "user", "due entry without a valid occasion",
        {{"user_id", st.view.user.id}, {"occasion", entry.occasion}});
    return;
  }
  auto now = ctx.clock->now();
  auto due_at = from_ms(entry.due_at_ms);
  auto next = next_due(*date, zone, kind->send_time(), ctx.rules.feb29,
                       due_at + millis{1});
  auto local = parse_date(entry.local_date).value_or(next.local_date);
  fire_request req;
  req.user_id = st.view.user.id;
  req.due = entry;
  req.next = due_entry{entry.occasion, to_ms(next.at),
                       format_date(next.local_date)};
  req.at_ms = to_ms(now);
  auto& d = req.delivery;
  d.key = idempotency_key(st.view.user.id, entry.occasion, local);
  d.user_id = st.view.user.id;
  d.occasion = entry.occasion;
  d.local_date = entry.local_date;
  d.due_at_ms = entry.due_at_ms;
  d.status = is_expired(due_at, now, ctx.rules) ? "expired" : "scheduled";
  d.email = st.view.user.email;
  d.message = kind->message(st.view.user);
  auto generation = st.generation;
  auto version = st.version;
  auto journal = ctx.dir->get(journal_name);
  self->request(journal, journal_timeout, fire_atom::value, req)
    .then(
      [=](bool recorded) {
        auto& st = self->state;
        if (recorded && d.status == "scheduled") {
          caf::anon_send(st.ctx->dir->get(handoff_name), submit_atom::value, d);
        } else if (recorded) {
          get_metric("chime_deliveries_expired_total").add();
          log(log_level::info, "user", "occasion expired",
              {{"user_id", d.user_id}, {"key", d.key}});
        }
        if (version != st.version)
          return; // replaced meanwhile: the new view is authoritative
        for (auto& e : st.view.due)
          if (e.occasion == req.due.occasion && e.due_at_ms == req.due.due_at_ms)
            e = req.next;
        arm(self);
      },
      [=](caf::error& err) {
        log(log_level::warn, "user", "journal did not record a due occasion",
            {{"user_id", req.user_id},
             {"error", self->system().render(err)}});
        // Try again shortly with the same timer generation.
        self->delayed_send(self, std::chrono::seconds{1}, wake_atom::value,
                           req.due.occasion, generation);
      });
}

caf::behavior user(user_actor* self, context_ptr ctx, user_view v) {
  self->state.ctx = std::move(ctx);
  self->state.view = std::move(v);
  arm(self);
  return {
    [=](upsert_atom, user_view& v) {
      self->state.view = std::move(v);
      ++self->state.version;
      arm(self);
    },
    [=](wake_atom, const std::string& occasion, uint64_t generation) {
      auto& st = self->state;
      if (generation != st.generation)
        return;
      for (auto& e : st.view.due) {
        if (e.occasion != occasion)
          continue;
        auto now = st.ctx->clock->now();
        auto due = from_ms(e.due_at_ms);
        if (now < due) {
          // Woken early (timer granularity or clock rounding): wait the rest.
          self->delayed_send(self, st.ctx->clock->real_delay(due - now),
                             wake_atom::value, occasion, generation);
          return;
        }
        fire(self, e);
        return;
      }
    },
  };
}

} // namespace

caf::actor spawn_user(caf::local_actor* shard, context_ptr ctx, user_view v) {
  return shard->spawn<caf::linked>(user, std::move(ctx), std::move(v));
}

} // namespace chime
