#include "actors/mailer_front.hpp"

#include "actors/node_context.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <iterator>
#include <mutex>

namespace chime {

namespace {

/// The relay's request: (send_atom, id, email, message, key, timeout_ms),
/// answered as (mail_done_atom, id, send_result) to the transport's box.
using relay_actor = caf::typed_actor<
  caf::reacts_to<send_atom, uint64_t, std::string, std::string, std::string, int64_t>>;

using answer_sink = std::function<void(uint64_t, send_result)>;

/// Asks the mailer actor, and hands its answer back as a transport would.
relay_actor::behavior_type relay(relay_actor::pointer self, mailer_actor inner,
                                 answer_sink sink) {
  // It goes with the relay (a stopped transport runs nothing more).
  self->link_to(inner);
  return {
    [=](send_atom a, uint64_t id, std::string& email, std::string& message,
        std::string& key, int64_t timeout_ms) {
      // The mailer answers within the time-out; the margin only bounds a
      // stuck one, whose request may still run: ambiguous.
      self->request(inner, std::chrono::milliseconds{timeout_ms} + std::chrono::seconds{10},
                    a, std::move(email), std::move(message), std::move(key),
                    timeout_ms)
        .then([=](send_result& r) { sink(id, std::move(r)); },
              [=](caf::error& err) {
                sink(id, send_result{0, -1, self->system().render(err), true});
              });
    },
  };
}

/// A mailer actor as a transport.
class relay_transport final : public mail_transport,
                              public std::enable_shared_from_this<relay_transport> {
public:
  relay_transport(caf::actor_system& sys, mailer_actor inner, caf::actor_addr driver)
    : mail_transport(std::move(driver)), sys_(sys), inner_(std::move(inner)) {
  }

  bool start(uint64_t id, const std::string& email, const std::string& message,
             const std::string& key, int64_t timeout_ms) override {
    if (!relay_) {
      // The relay holds the transport only weakly: the front owns it.
      std::weak_ptr<relay_transport> weak = shared_from_this();
      relay_ = sys_.spawn(relay, std::move(inner_), [weak](uint64_t id, send_result r) {
        if (auto t = weak.lock())
          t->hand_back(id, std::move(r));
      });
    }
    caf::anon_send(relay_, send_atom::value, id, email, message, key, timeout_ms);
    return true;
  }

  void stop() override {
    if (relay_)
      caf::anon_send_exit(relay_, caf::exit_reason::kill);
    else if (inner_)
      caf::anon_send_exit(inner_, caf::exit_reason::kill);
  }

private:
  caf::actor_system& sys_;
  mailer_actor inner_;
  relay_actor relay_;
};

} // namespace

mail_transport::mail_transport(caf::actor_addr driver) : driver_(std::move(driver)) {
}

mail_transport::~mail_transport() = default;

void mail_transport::answer_to(const caf::actor_addr& driver) {
  bool waiting = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    driver_ = driver;
    waiting = !answers_.empty();
  }
  if (waiting)
    caf::anon_send(caf::actor_cast<caf::actor>(driver), mail_done_atom::value);
}

void mail_transport::take_answers(std::vector<mail_answer>& out) {
  std::lock_guard<std::mutex> guard{mtx_};
  std::move(answers_.begin(), answers_.end(), std::back_inserter(out));
  answers_.clear();
}

void mail_transport::hand_back(uint64_t id, send_result r) {
  caf::actor driver;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    answers_.push_back({id, std::move(r)});
    // The driver was told when the first of those waiting came.
    if (answers_.size() > 1)
      return;
    driver = caf::actor_cast<caf::actor>(driver_);
  }
  caf::anon_send(driver, mail_done_atom::value);
}

std::shared_ptr<mailer_front> make_mailer_front() {
  return std::make_shared<mailer_front>();
}

mailer_front::~mailer_front() {
  stop();
}

void mailer_front::drive(caf::actor_system& sys, const caf::actor_addr& driver,
                         mailer_factory make_mailer,
                         mail_transport_factory make_transport,
                         size_t accepted_max) {
  sys_ = &sys;
  driver_ = driver;
  make_mailer_ = std::move(make_mailer);
  make_transport_ = std::move(make_transport);
  accepted_max_ = accepted_max;
  if (transport_)
    transport_->answer_to(driver);
  if (!known_.empty())
    caf::anon_send(caf::actor_cast<caf::actor>(driver), mail_done_atom::value);
}

uint64_t mailer_front::send(const std::string& email, const std::string& message,
                            const std::string& key, int64_t timeout_ms) {
  if (auto i = id_of_.find(key); i != id_of_.end())
    return i->second;
  auto id = ++next_id_;
  auto known = [&](send_result r) {
    known_.push_back({id, std::move(r)});
    if (known_.size() == 1)
      caf::anon_send(caf::actor_cast<caf::actor>(driver_), mail_done_atom::value);
    return id;
  };
  if (accepted_.count(key) > 0)
    return known(send_result{200, -1, {}, false});
  if (!transport_)
    transport_ = make_mailer_
                   ? std::make_shared<relay_transport>(*sys_, make_mailer_(*sys_), driver_)
                   : make_transport_(driver_);
  if (!transport_->start(id, email, message, key, timeout_ms))
    return known(send_result{0, -1, "email client: too many requests in flight", false});
  key_of_.emplace(id, key);
  id_of_.emplace(key, id);
  return id;
}

void mailer_front::take_answers(std::vector<mail_answer>& out) {
  auto first = out.size();
  std::move(known_.begin(), known_.end(), std::back_inserter(out));
  known_.clear();
  if (transport_)
    transport_->take_answers(out);
  for (auto i = first; i < out.size(); ++i)
    answered(out[i]);
}

void mailer_front::answered(const mail_answer& a) {
  auto i = key_of_.find(a.id);
  if (i == key_of_.end())
    return;
  if (a.result.http_status >= 200 && a.result.http_status < 300)
    remember_accepted(i->second);
  id_of_.erase(i->second);
  key_of_.erase(i);
}

std::vector<std::string> mailer_front::replace() {
  if (transport_) {
    // An accepted send it answered since the driver last looked is
    // remembered (the driver counts its sends ambiguous all the same).
    std::vector<mail_answer> late;
    transport_->take_answers(late);
    for (auto& a : late)
      answered(a);
  }
  std::vector<std::string> keys;
  for (auto& [id, key] : key_of_)
    keys.push_back(key);
  key_of_.clear();
  id_of_.clear();
  stop();
  return keys;
}

void mailer_front::stop() {
  if (transport_)
    transport_->stop();
  transport_ = nullptr;
}

void mailer_front::remember_accepted(const std::string& key) {
  if (!accepted_.insert(key).second)
    return;
  accepted_order_.push_back(key);
  while (accepted_order_.size() > accepted_max_) {
    accepted_.erase(accepted_order_.front());
    accepted_order_.pop_front();
  }
}

} // namespace chime
