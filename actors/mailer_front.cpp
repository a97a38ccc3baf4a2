#include "actors/mailer_front.hpp"

#include "actors/node_context.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <mutex>

namespace chime {

namespace {

/// Who hears the relay's answers: the delivery actor driving it now, which
/// a crash replaces while requests are out.
class driver_slot {
public:
  explicit driver_slot(caf::actor_addr driver) : driver_(std::move(driver)) {
  }

  void set(const caf::actor_addr& driver) {
    std::lock_guard<std::mutex> guard{mtx_};
    driver_ = driver;
  }

  caf::actor get() {
    std::lock_guard<std::mutex> guard{mtx_};
    return caf::actor_cast<caf::actor>(driver_);
  }

private:
  std::mutex mtx_;
  caf::actor_addr driver_;
};

/// The relay's request: (send_atom, id, email, message, key, timeout_ms).
using relay_actor = caf::typed_actor<
  caf::reacts_to<send_atom, uint64_t, std::string, std::string, std::string, int64_t>>;

/// Asks the mailer actor and answers the driver as a transport would.
relay_actor::behavior_type relay(relay_actor::pointer self, mailer_actor inner,
                                 std::shared_ptr<driver_slot> driver) {
  // It goes with the relay (a stopped transport runs nothing more).
  self->link_to(inner);
  return {
    [=](send_atom a, uint64_t id, std::string& email, std::string& message,
        std::string& key, int64_t timeout_ms) {
      auto answer = [driver, id](send_result r) {
        caf::anon_send(driver->get(), mail_done_atom::value, id, std::move(r));
      };
      // The mailer answers within the time-out; the margin only bounds a
      // stuck one, whose request may still run: ambiguous.
      self->request(inner, std::chrono::milliseconds{timeout_ms} + std::chrono::seconds{10},
                    a, std::move(email), std::move(message), std::move(key),
                    timeout_ms)
        .then([=](send_result& r) { answer(std::move(r)); },
              [=](caf::error& err) {
                answer(send_result{0, -1, self->system().render(err), true});
              });
    },
  };
}

/// A mailer actor as a transport.
class relay_transport final : public mail_transport {
public:
  relay_transport(caf::actor_system& sys, mailer_actor inner, caf::actor_addr driver)
    : driver_(std::make_shared<driver_slot>(std::move(driver))),
      relay_(sys.spawn(relay, std::move(inner), driver_)) {
  }

  bool start(uint64_t id, const std::string& email, const std::string& message,
             const std::string& key, int64_t timeout_ms) override {
    caf::anon_send(relay_, send_atom::value, id, email, message, key, timeout_ms);
    return true;
  }

  void stop() override {
    caf::anon_send_exit(relay_, caf::exit_reason::kill);
  }

  void answer_to(const caf::actor_addr& driver) override {
    driver_->set(driver);
  }

private:
  std::shared_ptr<driver_slot> driver_;
  relay_actor relay_;
};

} // namespace

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
}

mailer_front::ticket mailer_front::send(const std::string& email,
                                        const std::string& message,
                                        const std::string& key,
                                        int64_t timeout_ms) {
  if (accepted_.count(key) > 0)
    return {++next_id_, send_result{200, -1, {}, false}};
  if (auto i = id_of_.find(key); i != id_of_.end())
    return {i->second, std::nullopt};
  if (!transport_)
    transport_ = make_mailer_
                   ? std::make_shared<relay_transport>(*sys_, make_mailer_(*sys_), driver_)
                   : make_transport_(driver_);
  auto id = ++next_id_;
  if (!transport_->start(id, email, message, key, timeout_ms))
    return {id, send_result{0, -1, "email client: too many requests in flight", false}};
  key_of_.emplace(id, key);
  id_of_.emplace(key, id);
  return {id, std::nullopt};
}

void mailer_front::answered(uint64_t id, const send_result& r) {
  auto i = key_of_.find(id);
  if (i == key_of_.end())
    return;
  if (r.http_status >= 200 && r.http_status < 300)
    remember_accepted(i->second);
  id_of_.erase(i->second);
  key_of_.erase(i);
}

std::vector<std::string> mailer_front::replace() {
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
