#include "sims/sim/memory_email.hpp"

#include "actors/protocol.hpp"
#include "sims/sim/env.hpp"

#include <caf/all.hpp>

namespace chime::sim {

namespace {

struct service_state {
  std::shared_ptr<email_ledger> ledger;
  env* e = nullptr;
  deferred_replies later;
  static inline const char* name = "chime.sim.email";
};

// The mailer's request with the sending incarnation appended.
using service_actor = caf::typed_actor<
  caf::replies_to<send_atom, std::string, std::string, std::string, int64_t,
                  std::string>::with<send_result>,
  caf::reacts_to<sim_reply_atom, uint64_t>>;

service_actor::behavior_type
email_service(service_actor::stateful_pointer<service_state> self,
              std::shared_ptr<email_ledger> ledger, env* e) {
  self->state.ledger = std::move(ledger);
  self->state.e = e;
  return {
    [=](sim_reply_atom, uint64_t id) { self->state.later.fire(id); },
    [=](send_atom, const std::string&, const std::string&,
        const std::string& key, int64_t timeout_ms,
        const std::string& owner) -> caf::result<send_result> {
      auto& st = self->state;
      auto& e = *st.e;
      auto& f = e.faults;
      auto rp = self->make_response_promise<send_result>();
      if (e.now_ms() < e.email_down_until_ms) {
        rp.deliver(send_result{0, -1, "connection refused"});
        return rp;
      }
      send_result r{200, -1, {}};
      millis delay{e.between(5, 100)};
      bool answer_lost = false;
      if (e.chance(f.email_timeout)) {
        r = send_result{0, -1, "timed out", true};
        delay = e.email_timeout;
      } else if (e.chance(f.email_accept_timeout)) {
        r = send_result{0, -1, "timed out", true};
        delay = e.email_timeout;
        answer_lost = true;
      } else if (e.chance(f.email_5xx)) {
        r.http_status = 503;
      } else if (e.chance(f.email_429)) {
        r.http_status = 429;
        r.retry_after_ms = e.between(1, 10) * 1000;
      } else if (e.chance(f.email_slow)) {
        delay = millis{e.between(1000, e.email_timeout.count() - 1)};
      }
      if (delay > millis{timeout_ms}) {
        // The client gives up first: an answer that was coming is lost.
        answer_lost = answer_lost || (r.http_status >= 200 && r.http_status < 300);
        r = send_result{0, -1, "timed out", true};
        delay = millis{timeout_ms};
      }
      st.ledger->requests.push_back(
        {key, owner, e.now_ms(), r.http_status, answer_lost});
      e.trace.add(e.now_ms(), "email." + std::to_string(r.http_status),
                  key + " " + owner);
      st.later.run(self, delay, [rp, r]() mutable { rp.deliver(r); });
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_email_service(caf::actor_system& sys,
                               std::shared_ptr<email_ledger> ledger, env* e) {
  return caf::actor_cast<caf::actor>(
    sys.spawn(email_service, std::move(ledger), e));
}

mailer_actor spawn_memory_mailer(caf::actor_system& sys, caf::actor service_handle,
                                 std::string owner,
                                 std::function<void(const std::string&)> on_send) {
  auto service = caf::actor_cast<service_actor>(service_handle);
  return sys.spawn([service, owner, on_send](mailer_actor::pointer self) {
    return mailer_actor::behavior_type{
      [=](send_atom a, std::string& email, std::string& message,
          std::string& key, int64_t timeout_ms) {
        if (on_send)
          on_send(key);
        return self->delegate(service, a, std::move(email),
                              std::move(message), std::move(key), timeout_ms,
                              owner);
      },
    };
  });
}

} // namespace chime::sim
