#include "persistence/pg_deadline.hpp"

#include <pqxx/connection_base>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <sys/socket.h>

namespace chime {

namespace {

using clock = std::chrono::steady_clock;

/// One thread for the whole process: it sleeps until the earliest armed
/// deadline and shuts down the sockets whose calls are past theirs.
class watchdog {
public:
  static watchdog& instance() {
    // Never destroyed: the thread may outlive static destruction.
    static auto* w = new watchdog;
    return *w;
  }

  uint64_t arm(int fd, clock::time_point deadline) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto id = ++next_;
    armed_.emplace(id, entry{fd, deadline});
    cv_.notify_one();
    return id;
  }

  void disarm(uint64_t id) {
    std::lock_guard<std::mutex> guard{mtx_};
    armed_.erase(id);
  }

private:
  struct entry {
    int fd;
    clock::time_point deadline;
  };

  watchdog() {
    std::thread{[this] { run(); }}.detach();
  }

  void run() {
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      auto now = clock::now();
      auto next = clock::time_point::max();
      for (auto i = armed_.begin(); i != armed_.end();) {
        if (i->second.deadline <= now) {
          // Still armed, so the connection and its socket are still open.
          ::shutdown(i->second.fd, SHUT_RDWR);
          i = armed_.erase(i);
        } else {
          next = std::min(next, i->second.deadline);
          ++i;
        }
      }
      if (next == clock::time_point::max())
        cv_.wait(lock);
      else
        cv_.wait_until(lock, next);
    }
  }

  std::mutex mtx_;
  std::condition_variable cv_;
  std::map<uint64_t, entry> armed_;
  uint64_t next_ = 0;
};

} // namespace

pg_deadline::pg_deadline(pqxx::connection_base& conn,
                         std::chrono::milliseconds limit)
  : id_(watchdog::instance().arm(conn.sock(), clock::now() + limit)) {
}

pg_deadline::~pg_deadline() {
  watchdog::instance().disarm(id_);
}

std::string pg_url_with_timeouts(const std::string& url) {
  bool uri = url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
  auto out = url;
  auto add = [&](const std::string& key, const std::string& value) {
    if (out.find(key + "=") != std::string::npos)
      return;
    if (uri)
      out += (out.find('?') == std::string::npos ? "?" : "&") + key + "=" + value;
    else
      out += " " + key + "=" + value;
  };
  add("connect_timeout", "2");
  add("keepalives", "1");
  add("keepalives_idle", "5");
  add("keepalives_interval", "2");
  add("keepalives_count", "2");
  // A call ended by pg_deadline leaves its server session behind, still
  // running the statement or waiting for a lock, with the rows it wrote
  // locked: the next connection's writes wait for it, past their own
  // deadline, and so on (seen in a 100,000 burst: a dozen such sessions,
  // leases lost). The server ends a statement before the client gives up
  // on the call, so an abandoned session ends, releasing its rows.
  auto statement_limit = std::to_string(pg_call_limit.count() * 7 / 8);
  add("options", uri ? "-c%20statement_timeout%3D" + statement_limit
                     : "'-c statement_timeout=" + statement_limit + "'");
  return out;
}

} // namespace chime
