#include "net/plain_http_transport.hpp"

#include "actors/protocol.hpp"
#include "net/email_request.hpp"

#include <caf/all.hpp>
#include <http_parser.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace chime {

namespace {

using steady = std::chrono::steady_clock;

/// An idle connection is closed after this long unused: shorter than the
/// keep-alive time-outs services use (5 s is common), so that a request
/// rarely meets a connection the service is closing.
constexpr auto idle_max = std::chrono::seconds{4};

/// A request out longer than this no longer counts against the connections
/// allowed: a slow or hanging service gets a connection per request in
/// flight (as many as the in-flight limit lets out), so that hung requests
/// do not hold up the rest (the limit is for a fast service's CPU).
constexpr auto slow_after = std::chrono::milliseconds{250};

/// A request handed in, and when its time runs out: waiting for a
/// connection counts.
struct timed_request {
  email_request req;
  steady::time_point deadline;
};

/// One connection to the service, and the request it carries (if any).
struct connection {
  int fd = -1;
  bool connected = false; ///< the connect finished
  bool reused = false;    ///< it carried an answered request before
  bool want_out = false;  ///< waiting to write (connect, or a full buffer)
  steady::time_point idle_since;
  // The request on it.
  bool busy = false;
  bool retried = false; ///< sent again after a closed reused connection
  email_request req;
  std::string out;
  size_t written = 0;
  steady::time_point started;
  steady::time_point deadline;
  // Its answer.
  http_parser parser;
  bool got_bytes = false;
  bool complete = false;
  bool in_value = false;
  std::string field, value;
  int64_t retry_after = -1;
};

void header_done(connection& c) {
  if (strcasecmp(c.field.c_str(), "Retry-After") == 0)
    c.retry_after = retry_after_ms(c.value.c_str());
  c.field.clear();
  c.value.clear();
  c.in_value = false;
}

int on_header_field(http_parser* p, const char* at, size_t n) {
  auto& c = *static_cast<connection*>(p->data);
  if (c.in_value)
    header_done(c);
  c.field.append(at, n);
  return 0;
}

int on_header_value(http_parser* p, const char* at, size_t n) {
  auto& c = *static_cast<connection*>(p->data);
  c.in_value = true;
  c.value.append(at, n);
  return 0;
}

int on_headers_complete(http_parser* p) {
  auto& c = *static_cast<connection*>(p->data);
  if (c.in_value)
    header_done(c);
  return 0;
}

int on_message_complete(http_parser* p) {
  static_cast<connection*>(p->data)->complete = true;
  return 0;
}

const http_parser_settings& parser_settings() {
  static const http_parser_settings s = [] {
    http_parser_settings x;
    http_parser_settings_init(&x);
    x.on_header_field = on_header_field;
    x.on_header_value = on_header_value;
    x.on_headers_complete = on_headers_complete;
    x.on_message_complete = on_message_complete;
    return x;
  }();
  return s;
}

class plain_http_loop : public email_inbox,
                        public std::enable_shared_from_this<plain_http_loop> {
public:
  plain_http_loop(std::string host, std::string port, std::string path,
                  uint32_t in_flight_max, uint32_t connections_max,
                  caf::actor_addr owner)
    : email_inbox(in_flight_max, std::move(owner)),
      connections_max_(std::max(connections_max, 1u)), host_(std::move(host)),
      port_(std::move(port)),
      head_("POST " + path + "/send-email HTTP/1.1\r\nHost: " + host_ + ":" + port_
            + "\r\nContent-Type: application/json\r\nIdempotency-Key: "),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      wake_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.ptr = nullptr; // the wake-up
    epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &e);
  }

  ~plain_http_loop() {
    ::close(wake_);
    ::close(epoll_);
  }

  void launch() {
    // As the libcurl loop: nobody waits for the thread; it holds the loop.
    std::thread{[self = shared_from_this()] { self->run(); }}.detach();
  }

private:
  void wake() override {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_, &one, sizeof one);
  }

  void run() {
    std::vector<epoll_event> events(256);
    for (;;) {
      std::deque<email_request> batch;
      if (!take(batch))
        break;
      auto now = steady::now();
      for (auto& r : batch) {
        auto deadline = now + std::chrono::milliseconds{r.timeout_ms};
        begin({std::move(r), deadline}, false);
      }
      // Time-outs are checked every 10 ms while a request is out.
      auto n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                          busy_ > 0 ? 10 : 1000);
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<connection*>(events[i].data.ptr);
        if (c == nullptr) {
          uint64_t count = 0;
          [[maybe_unused]] auto r = ::read(wake_, &count, sizeof count);
        } else if (conns_.count(c) > 0) { // not closed by an earlier event
          on_event(c, events[i].events);
        }
      }
      // Time-outs and idle connections are looked for every 10 ms, not at
      // every wake-up (thousands a second in a burst, each a scan of every
      // connection): no time-out needs finer than that.
      if (auto now = steady::now(); now >= next_expiry_scan_) {
        expire(now);
        next_expiry_scan_ = now + std::chrono::milliseconds{10};
      }
    }
    // Stopped: every request is dropped unanswered, its connection closed.
    for (auto& [c, owned] : conns_)
      ::close(c->fd);
    conns_.clear();
  }

  /// Sends `t` on an idle connection or a new one; with every connection
  /// allowed busy, it waits for the first to come free (the service spends
  /// more a request with each connection it serves: 24,500 requests/s over
  /// 1,000 connections against 36,000 over 50, under wrk, 2026-12-06).
  void begin(timed_request t, bool retried) {
    connection* c = nullptr;
    if (!retried && !idle_.empty()) {
      c = idle_.back();
      idle_.pop_back();
    } else if (!retried && !room_for_connection()) {
      waiting_.push_back(std::move(t));
      return;
    } else if (auto err = open(c); !err.empty()) {
      answer_error(std::move(t.req), "email service: " + err, false);
      return;
    }
    auto& r = t.req;
    c->busy = true;
    ++busy_;
    c->retried = retried;
    c->started = steady::now();
    c->deadline = t.deadline;
    c->out.clear();
    c->out.append(head_).append(r.key).append("\r\nContent-Length: ")
      .append(std::to_string(r.body.size())).append("\r\n\r\n").append(r.body);
    c->written = 0;
    c->req = std::move(r);
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->got_bytes = c->complete = c->in_value = false;
    c->field.clear();
    c->value.clear();
    c->retry_after = -1;
    if (c->connected)
      write_some(c);
  }

  /// A new connection, connecting; an error text when none could be made.
  std::string open(connection*& out) {
    if (!resolved_) {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      if (int rc = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found); rc != 0)
        return "could not resolve " + host_ + ": " + gai_strerror(rc);
      std::memcpy(&addr_, found->ai_addr, found->ai_addrlen);
      addr_len_ = found->ai_addrlen;
      family_ = found->ai_family;
      freeaddrinfo(found);
      resolved_ = true;
    }
    int fd = ::socket(family_, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return std::string{"socket: "} + std::strerror(errno);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    bool connected = true;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr_), addr_len_) != 0) {
      if (errno != EINPROGRESS) {
        auto err = std::string{"could not connect: "} + std::strerror(errno);
        ::close(fd);
        resolved_ = false; // the address may have moved
        return err;
      }
      connected = false;
    }
    auto owned = std::make_unique<connection>();
    auto* c = owned.get();
    c->fd = fd;
    c->connected = connected;
    c->want_out = !connected;
    epoll_event e{};
    e.events = EPOLLIN | EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0u);
    e.data.ptr = c;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e);
    conns_.emplace(c, std::move(owned));
    out = c;
    return {};
  }

  void want_out(connection* c, bool want) {
    if (c->want_out == want)
      return;
    c->want_out = want;
    epoll_event e{};
    e.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u);
    e.data.ptr = c;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &e);
  }

  void on_event(connection* c, uint32_t events) {
    if (!c->connected) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        resolved_ = false;
        fail(c, std::string{"could not connect: "} + std::strerror(err));
        return;
      }
      if ((events & EPOLLOUT) == 0)
        return;
      c->connected = true;
    }
    if (c->busy && c->written < c->out.size() && (events & EPOLLOUT) != 0) {
      write_some(c);
      if (conns_.count(c) == 0)
        return;
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0)
      read_some(c);
  }

  void write_some(connection* c) {
    while (c->written < c->out.size()) {
      auto n = ::send(c->fd, c->out.data() + c->written, c->out.size() - c->written,
                      MSG_NOSIGNAL);
      if (n > 0) {
        c->written += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        want_out(c, true);
        return;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        fail(c, std::string{"connection lost: "} + std::strerror(errno));
        return;
      }
    }
    want_out(c, false);
  }

  void read_some(connection* c) {
    char buf[16384];
    for (;;) {
      auto n = ::recv(c->fd, buf, sizeof buf, 0);
      if (n > 0) {
        if (!c->busy) { // an idle connection has nothing to say
          close(c);
          return;
        }
        c->got_bytes = true;
        auto used = http_parser_execute(&c->parser, &parser_settings(), buf,
                                        static_cast<size_t>(n));
        if (c->parser.http_errno != HPE_OK || used != static_cast<size_t>(n)) {
          fail(c, std::string{"bad answer: "}
                    + http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
          return;
        }
        if (c->complete) {
          finish(c);
          return;
        }
      } else if (n == 0) {
        // An answer without a length ends with its connection.
        if (c->busy && c->got_bytes) {
          http_parser_execute(&c->parser, &parser_settings(), nullptr, 0);
          if (c->complete) {
            finish(c);
            return;
          }
        }
        fail(c, "connection closed");
        return;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      } else {
        fail(c, std::string{"connection lost: "} + std::strerror(errno));
        return;
      }
    }
  }

  /// The answer came whole.
  void finish(connection* c) {
    send_result r;
    r.http_status = static_cast<int>(c->parser.status_code);
    r.retry_after_ms = c->retry_after;
    auto id = c->req.id;
    release(c);
    if (http_should_keep_alive(&c->parser) != 0) {
      c->reused = true;
      c->idle_since = steady::now();
      idle_.push_back(c);
    } else {
      close(c);
    }
    answer(id, std::move(r));
    begin_waiting();
  }

  /// Waiting requests take the connections that came free, or room for
  /// new ones.
  void begin_waiting() {
    while (!waiting_.empty() && (!idle_.empty() || room_for_connection())) {
      auto t = std::move(waiting_.front());
      waiting_.pop_front();
      begin(std::move(t), false);
    }
  }

  bool room_for_connection() const {
    return conns_.size() < connections_max_ + slow_;
  }

  /// The connection broke (or was closed by the service) under `c`.
  void fail(connection* c, const std::string& why) {
    if (!c->busy) {
      close(c);
      return;
    }
    bool stale = c->reused && !c->got_bytes && !c->retried;
    timed_request t{std::move(c->req), c->deadline};
    bool sent_some = c->written > 0;
    release(c);
    close(c);
    if (stale) {
      begin(std::move(t), true);
      return;
    }
    // Once the request started going out, the service may have taken it
    // and only its answer is missing.
    answer_error(std::move(t.req), "email service: " + why, sent_some);
    begin_waiting();
  }

  void expire(steady::time_point now) {
    std::vector<connection*> late;
    slow_ = 0;
    for (auto& [c, owned] : conns_) {
      if (c->busy ? now >= c->deadline : now - c->idle_since >= idle_max)
        late.push_back(c);
      else if (c->busy && now - c->started >= slow_after)
        ++slow_;
    }
    for (auto* c : late) {
      if (!c->busy) {
        close(c);
        continue;
      }
      auto req = std::move(c->req);
      bool sent_some = c->written > 0;
      auto why = "email service: no answer within "
                 + std::to_string(req.timeout_ms) + " ms";
      release(c);
      // Closed: a timed-out request runs nowhere any more.
      close(c);
      answer_error(std::move(req), std::move(why), sent_some);
    }
    // Sent nowhere yet: not ambiguous.
    std::erase_if(waiting_, [&](timed_request& t) {
      if (now < t.deadline)
        return false;
      answer_error(std::move(t.req),
                   "email service: no connection free within "
                     + std::to_string(t.req.timeout_ms) + " ms",
                   false);
      return true;
    });
    begin_waiting();
  }

  void release(connection* c) {
    c->busy = false;
    --busy_;
  }

  void close(connection* c) {
    if (!c->busy)
      std::erase(idle_, c);
    ::close(c->fd); // also leaves the epoll set
    conns_.erase(c);
  }

  void answer_error(email_request r, std::string error, bool ambiguous) {
    send_result s;
    s.error = std::move(error);
    s.ambiguous = ambiguous;
    answer(r.id, std::move(s));
  }

  const size_t connections_max_;
  const std::string host_;
  const std::string port_;
  const std::string head_; ///< the request up to the key
  const int epoll_;
  const int wake_;
  // The thread's own.
  std::unordered_map<connection*, std::unique_ptr<connection>> conns_;
  std::vector<connection*> idle_;
  /// Requests for which no connection was free, oldest first; at most
  /// in_flight_max (the inbox's bound).
  std::deque<timed_request> waiting_;
  /// Connections whose request is out longer than slow_after, as of the
  /// last time-out scan.
  size_t slow_ = 0;
  size_t busy_ = 0;
  steady::time_point next_expiry_scan_{};
  bool resolved_ = false;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  int family_ = AF_INET;
};

} // namespace

std::shared_ptr<mail_transport> make_plain_http_transport(
  std::string host, std::string port, std::string path, uint32_t in_flight_max,
  uint32_t connections_max, const caf::actor_addr& driver) {
  auto loop = std::make_shared<plain_http_loop>(std::move(host), std::move(port),
                                                std::move(path), in_flight_max,
                                                connections_max, driver);
  loop->launch();
  return loop;
}

} // namespace chime
