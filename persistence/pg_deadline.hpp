#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pqxx {
class connection_base;
}

namespace chime {

/// How long any one journal or coordination transaction may take before
/// it is ended: a frozen database must turn into 503s within seconds.
inline constexpr std::chrono::milliseconds pg_call_limit{4000};

/// Ends the PostgreSQL calls made on `conn` while it lives if they run past
/// `limit`, by shutting the connection's socket down: libpq then fails them
/// as a broken connection. libpq has no client-side time-out for a
/// statement, and a frozen server's kernel still acknowledges TCP, so
/// neither statement_timeout nor keepalives would end the wait.
class pg_deadline {
public:
  pg_deadline(pqxx::connection_base& conn, std::chrono::milliseconds limit);
  ~pg_deadline();
  pg_deadline(const pg_deadline&) = delete;
  pg_deadline& operator=(const pg_deadline&) = delete;

private:
  uint64_t id_;
};

/// `url` with the connection settings a node needs unless it names them:
/// a connect time-out (a frozen server accepts TCP and never answers) and
/// TCP keepalives (a vanished one never closes).
std::string pg_url_with_timeouts(const std::string& url);

} // namespace chime
