#include "actors/delivery.hpp"

#include "actors/backoff.hpp"
#include "actors/protocol.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>

#include <deque>
#include <random>
#include <unordered_map>
#include <unordered_set>

namespace chime {

namespace {

struct delivery_state {
  context_ptr ctx;
  std::deque<delivery_record> queue;
  std::vector<caf::actor> idle_mailers;
  std::unordered_set<std::string> active; ///< queued, in flight or backing off
  std::unordered_map<std::string, uint32_t> in_flight_by_user;
  std::unordered_multimap<std::string, caf::response_promise> drains;
  std::mt19937_64 rng;
  static inline const char* name = "chime.delivery";
};

using delivery_actor = caf::stateful_actor<delivery_state>;

void pump(delivery_actor* self);

caf::actor journal_of(delivery_actor* self) {
  return self->state.ctx->dir->get(journal_name);
}

/// Returns the mailer and, unless `keep_active`, forgets the delivery.
void finish(delivery_actor* self, const delivery_record& d, caf::actor mailer,
            bool keep_active) {
  auto& st = self->state;
  st.idle_mailers.push_back(std::move(mailer));
  if (!keep_active)
    st.active.erase(d.key);
  if (--st.in_flight_by_user[d.user_id] == 0) {
    st.in_flight_by_user.erase(d.user_id);
    auto [first, last] = st.drains.equal_range(d.user_id);
    for (auto i = first; i != last; ++i)
      i->second.deliver(caf::ok_atom::value);
    st.drains.erase(first, last);
  }
  pump(self);
}

void retry_later(delivery_actor* self, delivery_record d, millis delay) {
  self->delayed_send(self, delay, retry_atom::value, std::move(d));
}

/// Journals the outcome; keeps trying while the journal is away, because the
/// email service already answered and must not be asked again.
void record(delivery_actor* self, delivery_record d, delivery_outcome o,
            caf::actor mailer, millis retry_delay) {
  self->request(journal_of(self), journal_timeout, outcome_atom::value, o)
    .then(
      [=](caf::ok_atom) {
        get_metric("chime_deliveries_total{status=\"" + o.status + "\"}")
          .add();
        log(o.status == "dead" ? log_level::warn : log_level::info,
            "delivery", "delivery " + o.status,
            {{"user_id", d.user_id}, {"key", d.key},
             {"attempts", int64_t{d.attempts}}});
        bool again = o.status == "failed";
        finish(self, d, mailer, again);
        if (again)
          retry_later(self, d, retry_delay);
      },
      [=](caf::error&) {
        self->delayed_send(self, std::chrono::seconds{1}, outcome_atom::value,
                           d, o, mailer, retry_delay.count());
      });
}

void classify(delivery_actor* self, delivery_record d, const send_result& r,
              caf::actor mailer) {
  auto& st = self->state;
  auto& ctx = *st.ctx;
  delivery_outcome o;
  o.key = d.key;
  o.at_ms = to_ms(ctx.clock->now());
  millis retry_delay{0};
  if (r.http_status >= 200 && r.http_status < 300) {
    o.status = "sent";
  } else {
    o.error = r.http_status == 0 ? r.error
                                 : "HTTP " + std::to_string(r.http_status);
    bool permanent = r.http_status >= 400 && r.http_status < 500
                     && r.http_status != 408 && r.http_status != 429;
    if (permanent || d.attempts >= ctx.delivery_attempts_max) {
      o.status = "dead";
    } else {
      o.status = "failed";
      retry_delay = backoff_delay(d.attempts, ctx.backoff_base,
                                  ctx.backoff_cap, millis{r.retry_after_ms},
                                  st.rng);
    }
  }
  d.status = o.status;
  d.last_error = o.error;
  record(self, std::move(d), std::move(o), std::move(mailer), retry_delay);
}

void attempt(delivery_actor* self, delivery_record d, caf::actor mailer) {
  auto& ctx = *self->state.ctx;
  self
    ->request(journal_of(self), journal_timeout, attempt_atom::value, d.key,
              to_ms(ctx.clock->now()),
              static_cast<int64_t>(ctx.rules.catch_up.count()))
    .then(
      [=](attempt_verdict& v) mutable {
        if (!v.proceed) {
          log(log_level::info, "delivery", "delivery skipped",
              {{"user_id", d.user_id}, {"key", d.key}, {"status", v.status}});
          finish(self, d, mailer, false);
          return;
        }
        d.attempts = v.attempts;
        auto timeout = self->state.ctx->email_timeout + std::chrono::seconds{5};
        self
          ->request(mailer, timeout, send_atom::value, d.email, d.message,
                    d.key)
          .then(
            [=](send_result& r) { classify(self, d, r, mailer); },
            [=](caf::error& err) {
              classify(self, d,
                       send_result{0, -1, self->system().render(err)}, mailer);
            });
      },
      [=](caf::error& err) {
        // The journal is away: nothing was attempted; try again later.
        log(log_level::warn, "delivery", "journal unavailable before attempt",
            {{"key", d.key}, {"error", self->system().render(err)}});
        finish(self, d, mailer, true);
        retry_later(self, d, std::chrono::seconds{1});
      });
}

void pump(delivery_actor* self) {
  auto& st = self->state;
  while (!st.queue.empty() && !st.idle_mailers.empty()) {
    auto d = std::move(st.queue.front());
    st.queue.pop_front();
    auto mailer = std::move(st.idle_mailers.back());
    st.idle_mailers.pop_back();
    ++st.in_flight_by_user[d.user_id];
    attempt(self, std::move(d), std::move(mailer));
  }
  get_metric("chime_delivery_queue", "gauge", "deliveries waiting for a mailer")
    .set(static_cast<int64_t>(st.queue.size()));
}

void resume_open(delivery_actor* self) {
  self->request(journal_of(self), journal_timeout, pending_atom::value)
    .then(
      [=](std::vector<delivery_record>& open) {
        if (!open.empty())
          log(log_level::info, "delivery", "resuming open deliveries",
              {{"count", static_cast<int64_t>(open.size())}});
        for (auto& d : open)
          self->send(self, submit_atom::value, std::move(d));
      },
      [=](caf::error&) {
        self->delayed_send(self, std::chrono::seconds{1}, pending_atom::value);
      });
}

caf::behavior delivery(delivery_actor* self, context_ptr ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.rng.seed(st.ctx->seed);
  for (uint32_t i = 0; i < st.ctx->delivery_concurrency_max; ++i) {
    auto mailer = st.ctx->make_mailer(self->system());
    self->link_to(mailer);
    st.idle_mailers.push_back(std::move(mailer));
  }
  resume_open(self);
  return {
    [=](submit_atom, delivery_record& d) {
      auto& st = self->state;
      if (!st.active.insert(d.key).second)
        return; // already queued, in flight or waiting for a retry
      st.queue.push_back(std::move(d));
      pump(self);
    },
    [=](retry_atom, delivery_record& d) {
      self->state.queue.push_back(std::move(d));
      pump(self);
    },
    [=](outcome_atom, delivery_record& d, delivery_outcome& o,
        caf::actor& mailer, int64_t retry_delay_ms) {
      record(self, std::move(d), std::move(o), std::move(mailer),
             millis{retry_delay_ms});
    },
    [=](pending_atom) { resume_open(self); },
    [=](drain_atom, const std::string& user_id) {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      if (st.in_flight_by_user.count(user_id) == 0)
        rp.deliver(caf::ok_atom::value);
      else
        st.drains.emplace(user_id, rp);
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_delivery(caf::actor_system& sys, context_ptr ctx) {
  return sys.spawn(delivery, std::move(ctx));
}

} // namespace chime
