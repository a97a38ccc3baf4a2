#include "actors/mailer_front.hpp"

#include "runtime/directory.hpp"
#include "runtime/request_deadlines.hpp"

#include <caf/all.hpp>

#include <deque>
#include <memory>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

namespace chime {

namespace {

struct front_state {
  /// Where sends go: the inner mailer when there is one, else the transport.
  std::shared_ptr<mail_transport> transport;
  mailer_actor inner;
  /// The transport's requests in flight: their keys, by id.
  std::unordered_map<uint64_t, std::string> key_of;
  uint64_t next_id = 0;
  size_t accepted_max = 0;
  /// Keys in flight, with everyone waiting for their answer.
  std::unordered_map<std::string,
                     std::vector<caf::typed_response_promise<send_result>>>
    in_flight;
  std::unordered_set<std::string> accepted;
  std::deque<std::string> accepted_order; ///< oldest first, for eviction
  request_deadlines deadlines;
  static inline const char* name = "chime.mailer_front";
};

using front_actor = mailer_actor::extend<
  caf::reacts_to<deadline_tick_atom>,
  caf::reacts_to<mail_done_atom, uint64_t, send_result>>;
using front_self = front_actor::stateful_pointer<front_state>;

void remember_accepted(front_state& st, const std::string& key) {
  if (!st.accepted.insert(key).second)
    return;
  st.accepted_order.push_back(key);
  while (st.accepted_order.size() > st.accepted_max) {
    st.accepted.erase(st.accepted_order.front());
    st.accepted_order.pop_front();
  }
}

/// Answers everyone waiting for `key`.
template <class Answer>
void answer(front_self self, const std::string& key, const Answer& a) {
  auto& st = self->state;
  auto waiters = std::move(st.in_flight[key]);
  st.in_flight.erase(key);
  if constexpr (std::is_same_v<Answer, send_result>)
    if (a.http_status >= 200 && a.http_status < 300)
      remember_accepted(st, key);
  for (auto& w : waiters)
    w.deliver(a);
}

front_actor::behavior_type mailer_front(front_self self,
                                         mailer_factory make_inner,
                                         mail_transport_factory make_transport,
                                         size_t accepted_max) {
  auto& st = self->state;
  if (make_inner) {
    st.inner = make_inner(self->system());
    self->link_to(st.inner);
  } else {
    st.transport = make_transport(self->address());
    // Its transfers end with the front (a stuck one is replaced by killing it).
    self->attach_functor([t = st.transport] { t->stop(); });
  }
  st.accepted_max = accepted_max;
  return {
    [=](send_atom a, std::string& email, std::string& message, std::string& key,
        int64_t timeout_ms) -> caf::result<send_result> {
      auto& st = self->state;
      if (st.accepted.count(key) > 0)
        return send_result{200, -1, {}, false};
      auto rp = self->make_response_promise<send_result>();
      auto [i, first] = st.in_flight.try_emplace(key);
      i->second.push_back(rp);
      if (!first)
        return rp;
      if (st.transport) {
        auto id = ++st.next_id;
        if (st.transport->start(id, email, message, key, timeout_ms))
          st.key_of.emplace(id, key);
        else
          answer(self, key, send_result{0, -1, "email client: too many requests in flight",
                                        false});
        return rp;
      }
      // The inner mailer answers within the time-out; the margin only
      // bounds a stuck one (its askers time out on their own anyway).
      request_within(
        self, st.inner,
        std::chrono::milliseconds{timeout_ms} + std::chrono::seconds{10},
          [=](send_result& r) { answer(self, key, r); },
          [=](caf::error& err) { answer(self, key, err); },
        a, std::move(email), std::move(message), key, timeout_ms);
      return rp;
    },
    [=](mail_done_atom, uint64_t id, send_result& r) {
      auto& st = self->state;
      auto i = st.key_of.find(id);
      if (i == st.key_of.end())
        return;
      auto key = std::move(i->second);
      st.key_of.erase(i);
      answer(self, key, r);
    },
    [=](deadline_tick_atom) {
      check_deadlines(self);
    },
  };
}

} // namespace

mailer_actor mailer_at(const directory& dir, const char* name) {
  return dir.get_as<mailer_actor>(name);
}

mailer_actor spawn_mailer_front(caf::actor_system& sys,
                                mailer_factory make_inner,
                                mail_transport_factory make_transport,
                                size_t accepted_max) {
  return sys.spawn(mailer_front, std::move(make_inner), std::move(make_transport),
                   accepted_max);
}

} // namespace chime
