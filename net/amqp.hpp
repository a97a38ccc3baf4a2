#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace chime {

/// The broker went away or refused something; the connection is unusable.
struct amqp_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Where deliveries travel: a durable quorum queue whose rejected or
/// over-delivered messages are dead-lettered (a fanout exchange) into the
/// dead-letter queue, which keeps them for operators, and into a copy the
/// node reads to record them as dead in the journal. A retry waits in a
/// retry queue: one per delay tier (each with its own message TTL, so none
/// waits behind a longer one), which dead-letters it back into the main
/// queue when its time is up.
struct amqp_topology {
  std::string queue = "chime.deliveries";
  std::string dead_queue = "chime.deliveries.dead";
  std::string dead_audit_queue = "chime.deliveries.dead.audit";
  std::string dead_exchange = "chime.dlx";
  uint32_t delivery_limit = 20; ///< broker-side redeliveries before dead
  /// Retry tiers: 250 ms doubling up to the first at or past this.
  std::chrono::milliseconds retry_delay_max{60000};

  std::vector<std::chrono::milliseconds> retry_tiers() const;
  /// The retry queue of the shortest tier at least `delay` long (a retry
  /// never comes back before it asked to), or of the longest.
  std::string retry_queue(std::chrono::milliseconds delay) const;
};

/// A message for `queue` (through the default exchange).
struct amqp_outgoing {
  std::string queue;
  std::string body;
};

/// One blocking AMQP 0-9-1 connection with one channel (librabbitmq is not
/// thread-safe: one connection per thread). Owned by one thread at a time;
/// every call may block and throws amqp_error when the connection is lost.
class amqp_connection {
public:
  /// Connects (amqp://user:pass@host:port/vhost), opens the channel and
  /// declares the topology.
  amqp_connection(const std::string& url, const amqp_topology& topology,
                  std::chrono::milliseconds timeout);
  ~amqp_connection();

  /// Publishes persistent messages with publisher confirms and waits for
  /// all of them. False when the broker nacked any or did not confirm
  /// within the time-out.
  bool publish_confirmed(const std::vector<amqp_outgoing>& messages,
                         std::chrono::milliseconds timeout);

  /// Starts consuming `queue` with manual acks and at most `prefetch`
  /// unacknowledged messages.
  void consume(const std::string& queue, uint16_t prefetch);

  struct message {
    uint64_t tag;
    std::string body;
    bool redelivered;
  };

  /// The next consumed message, or nothing within `timeout`.
  std::optional<message> next(std::chrono::milliseconds timeout);

  void ack(uint64_t tag, bool multiple = false);
  void nack(uint64_t tag, bool requeue);

  /// Messages ready in `queue` (not counting unacknowledged ones).
  uint64_t depth(const std::string& queue);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace chime
