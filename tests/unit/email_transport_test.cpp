// The plain HTTP email transport against a scripted service on a loopback
// socket: what a connection the service closed, an answer that does not
// come and a 429 with Retry-After turn into. The service is a thread that
// reads requests and does what the test says for each, in order.

#include "actors/protocol.hpp"
#include "net/plain_http_transport.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace chime {
namespace {

using namespace std::chrono_literals;

/// What the service does with the n-th request it reads.
enum class act { answer_200, answer_429, close_unanswered, hold };

class scripted_service {
public:
  explicit scripted_service(std::vector<act> script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    REQUIRE(::listen(listener_, 16) == 0);
    thread_ = std::thread{[this] { serve(); }};
  }

  ~scripted_service() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
    for (auto& t : served_)
      t.join();
  }

  std::string port() const { return std::to_string(port_); }
  int connections() const { return connections_; }
  int requests() const { return requests_; }

private:
  /// Each connection is served on a thread of its own, the script's steps
  /// taken in the order requests are read.
  void serve() {
    for (;;) {
      int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0)
        return;
      ++connections_;
      served_.emplace_back([this, fd] { serve_connection(fd); });
    }
  }

  /// The next step of the script, if any is left.
  std::optional<act> next_step() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (next_ == script_.size())
      return std::nullopt;
    return script_[next_++];
  }

  void serve_connection(int fd) {
    {
      // Requests on it until it is closed.
      for (std::string in;;) {
        char buf[4096];
        auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
          break;
        in.append(buf, static_cast<size_t>(n));
        auto end = in.find("\r\n\r\n");
        auto body_at = end + 4;
        auto cl = in.find("Content-Length: ");
        if (end == std::string::npos || cl == std::string::npos
            || in.size() < body_at + std::stoul(in.substr(cl + 16)))
          continue;
        in.clear();
        auto step = next_step();
        if (!step)
          break;
        ++requests_;
        auto what = *step;
        if (what == act::close_unanswered)
          break;
        if (what == act::hold) {
          while (::recv(fd, buf, sizeof buf, 0) > 0) {
          } // until the client gives up and closes
          break;
        }
        std::string answer = what == act::answer_200
                               ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
                               : "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3"
                                 "\r\nContent-Length: 2\r\n\r\n{}";
        ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
      }
      ::close(fd);
    }
  }

  std::vector<act> script_;
  std::mutex mtx_;
  size_t next_ = 0;
  std::vector<std::thread> served_; ///< touched by the accepting thread only
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

struct chime_config : caf::actor_system_config {
  chime_config() {
    add_chime_types(*this);
  }
};

struct transport_fixture {
  chime_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor front{sys};

  std::shared_ptr<mail_transport> transport;

  explicit transport_fixture(const std::string& port, uint32_t connections_max = 8)
    : transport(make_plain_http_transport("127.0.0.1", port, "", 8,
                                          connections_max, front->address())) {
  }

  void start(uint64_t id, int64_t timeout_ms) {
    REQUIRE(transport->start(id, "ada@example.com", "Happy birthday",
                             "k" + std::to_string(id), timeout_ms));
  }

  ~transport_fixture() {
    }

  /// Request `id` sent, and its answer.
  send_result send(uint64_t id, int64_t timeout_ms = 5000) {
    start(id, timeout_ms);
    return answer(id);
  }

  /// The answer to request `id`, waited for at most 10 s (answers to
  /// others that come with it are kept for their turn).
  send_result answer(uint64_t id) {
    for (;;) {
      for (auto i = early.begin(); i != early.end(); ++i)
        if (i->id == id) {
          auto r = i->result;
          early.erase(i);
          return r;
        }
      bool told = false;
      front->receive([&](mail_done_atom) { told = true; },
                     caf::after(std::chrono::seconds{10}) >> [] {});
      REQUIRE(told);
      transport->take_answers(early);
    }
  }

  std::vector<mail_answer> early;
};

} // namespace

TEST_CASE("a request whose kept-alive connection the service closed unanswered "
          "is sent once more on a new connection",
          "[unit][email]") {
  scripted_service service{{act::answer_200, act::close_unanswered, act::answer_200}};
  transport_fixture fx{service.port()};
  CHECK(fx.send(1).http_status == 200);
  auto second = fx.send(2);
  CHECK(second.http_status == 200);
  CHECK(second.error.empty());
  CHECK(service.requests() == 3);
  CHECK(service.connections() == 2);
}

TEST_CASE("a request on a new connection that the service closes unanswered is "
          "not sent again: it may have been taken (ambiguous)",
          "[unit][email]") {
  scripted_service service{{act::close_unanswered}};
  transport_fixture fx{service.port()};
  auto r = fx.send(1);
  CHECK(r.http_status == 0);
  CHECK(r.ambiguous);
  CHECK(r.error.find("email service") == 0);
  CHECK(service.requests() == 1);
}

TEST_CASE("a request not answered within its time-out is answered as ambiguous "
          "and its connection closed",
          "[unit][email]") {
  scripted_service service{{act::hold, act::answer_200}};
  transport_fixture fx{service.port()};
  auto r = fx.send(1, 300);
  CHECK(r.http_status == 0);
  CHECK(r.ambiguous);
  CHECK(r.error.find("no answer within 300 ms") != std::string::npos);
  // The held connection was closed (the service went on to the next
  // connection): the next request is answered on a new one.
  CHECK(fx.send(2).http_status == 200);
  CHECK(service.connections() == 2);
}

TEST_CASE("a request handed to an idle transfer thread is sent at once",
          "[unit][email]") {
  // After each answer the thread waits up to a second for work: only the
  // wake-up of the request that finds the inbox empty ends that wait, so a
  // lost wake-up shows as a second's delay for each request after the
  // first.
  scripted_service service{{act::answer_200, act::answer_200, act::answer_200,
                            act::answer_200}};
  transport_fixture fx{service.port()};
  for (uint64_t id = 1; id <= 4; ++id) {
    auto began = std::chrono::steady_clock::now();
    CHECK(fx.send(id).http_status == 200);
    CHECK(std::chrono::steady_clock::now() - began < 500ms);
  }
  CHECK(service.connections() == 1);
}

TEST_CASE("requests beyond the connections allowed wait for one and go out on "
          "it", "[unit][email]") {
  // The service serves one connection at a time and the first stays open
  // (kept alive): a second connection would never be served.
  scripted_service service{{act::answer_200, act::answer_200, act::answer_200}};
  transport_fixture fx{service.port(), 1};
  for (uint64_t id = 1; id <= 3; ++id)
    fx.start(id, 5000);
  for (uint64_t id = 1; id <= 3; ++id)
    CHECK(fx.answer(id).http_status == 200);
  CHECK(service.connections() == 1);
  CHECK(service.requests() == 3);
}

TEST_CASE("a request behind one the service holds goes out on a connection of "
          "its own once that one is slow",
          "[unit][email]") {
  scripted_service service{{act::hold, act::answer_200}};
  transport_fixture fx{service.port(), 1};
  fx.start(1, 3000);
  fx.start(2, 2000);
  auto began = std::chrono::steady_clock::now();
  CHECK(fx.answer(2).http_status == 200);
  CHECK(std::chrono::steady_clock::now() - began < 2000ms);
  CHECK(service.connections() == 2);
  CHECK(fx.answer(1).ambiguous);
}

TEST_CASE("a request still waiting for a connection when its time-out ends is "
          "answered, not ambiguous: it was sent nowhere",
          "[unit][email]") {
  scripted_service service{{act::hold}};
  transport_fixture fx{service.port(), 1};
  fx.start(1, 1500);
  fx.start(2, 200);
  auto waited = fx.answer(2);
  CHECK(waited.http_status == 0);
  CHECK_FALSE(waited.ambiguous);
  CHECK(waited.error.find("no connection free within 200 ms") != std::string::npos);
  auto held = fx.answer(1);
  CHECK(held.ambiguous);
  CHECK(service.requests() == 1);
}

TEST_CASE("a 429's Retry-After reaches the answer", "[unit][email]") {
  scripted_service service{{act::answer_429}};
  transport_fixture fx{service.port()};
  auto r = fx.send(1);
  CHECK(r.http_status == 429);
  CHECK(r.retry_after_ms == 3000);
}

TEST_CASE("no service listening: the request is answered, not ambiguous",
          "[unit][email]") {
  std::string port;
  {
    scripted_service gone{{}};
    port = gone.port();
  }
  transport_fixture fx{port};
  auto r = fx.send(1);
  CHECK(r.http_status == 0);
  CHECK_FALSE(r.ambiguous);
  CHECK(r.error.find("could not connect") != std::string::npos);
}

} // namespace chime
