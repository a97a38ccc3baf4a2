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
/// over-delivered messages are dead-lettered into a second quorum queue.
struct amqp_topology {
  std::string queue = "chime.deliveries";
  std::string dead_queue = "chime.deliveries.dead";
  std::string dead_exchange = "chime.dlx";
  uint32_t delivery_limit = 20; ///< broker-side redeliveries before dead
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

  /// Publishes persistent messages to the queue with publisher confirms and
  /// waits for all of them. False when the broker nacked any or did not
  /// confirm within the time-out.
  bool publish_confirmed(const std::vector<std::string>& bodies,
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
