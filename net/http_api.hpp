#pragma once

#include "actors/node_context.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace chime {

struct http_api_options {
  std::string bind = "127.0.0.1";
  uint16_t port = 8080;
  uint32_t threads = 8;
  std::string api_token; ///< empty: no auth on mutating endpoints
  size_t body_size_max = 64 * 1024; ///< of a request, and of an import's line
  /// Lines one POST /v1/users:import reads at most: past them it stops
  /// and answers 413 (its lines before are imported), so that one import
  /// holds an HTTP thread and the import journal for a bounded time.
  uint64_t import_lines_max = 1000000;
  /// Requests one keep-alive connection serves before the server closes
  /// it: httplib's default of 5 has a busy client reconnect all the time.
  size_t keep_alive_requests_max = 1000;
  /// Users an import writes in one journal transaction at most.
  size_t import_batch_size_max = 2000;
  /// Dashboard event streams open at once at most (each holds an HTTP
  /// thread), and the time between their events.
  size_t dashboard_streams_max = 4;
  std::chrono::milliseconds dashboard_interval{1000};
  /// Serves POST /v1/admin/crash (--test-hooks).
  bool test_hooks = false;
};

/// The HTTP API as a supervised actor: it serves while the actor lives, and
/// its port is free again once the actor is gone (a successor can bind it).
/// Fails at start when the port cannot be bound.
caf::actor spawn_http_server(caf::actor_system& sys, context_ptr ctx,
                             http_api_options opts);

/// The node's HTTP API (SPEC.md section 2) on cpp-httplib's own thread pool,
/// so handlers may block on actor requests without touching CAF's scheduler
/// threads. Owned by the node; `stop` (or destruction) ends it.
class http_api {
public:
  http_api(caf::actor_system& sys, context_ptr ctx, http_api_options opts);
  ~http_api();

  /// Binds and starts serving in a background thread; false if the port
  /// cannot be bound.
  bool start();
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace chime
