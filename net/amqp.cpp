#include "net/amqp.hpp"

#include "config/amqp_uri.hpp"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include <sys/time.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace chime {

namespace {

constexpr amqp_channel_t channel = 1;

amqp_bytes_t bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

timeval to_timeval(std::chrono::milliseconds t) {
  return timeval{static_cast<time_t>(t.count() / 1000),
                 static_cast<suseconds_t>((t.count() % 1000) * 1000)};
}

/// Why the broker refused the login, in terms of the setting to change:
/// RabbitMQ closes the connection with a reason naming the virtual host or
/// the credentials, which librabbitmq alone reports as a failed login.
std::string login_failure(const amqp_rpc_reply_t& r, const amqp_uri& uri) {
  std::string reason;
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION
      && r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    auto m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
    reason.assign(static_cast<char*>(m->reply_text.bytes), m->reply_text.len);
  } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    reason = amqp_error_string2(r.library_error);
  }
  if (reason.find("vhost") != std::string::npos)
    return "--amqp-url names the virtual host '" + uri.vhost
           + "', which the broker does not have (" + reason
           + "); the default virtual host '/' is written %2F";
  if (reason.find("ACCESS_REFUSED") != std::string::npos
      || r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
    return "the broker refused the user '" + uri.user
           + "' of --amqp-url (" + (reason.empty() ? "login failed" : reason)
           + ")";
  return "login to the broker failed" + (reason.empty() ? "" : ": " + reason);
}

} // namespace

struct amqp_connection::impl {
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_topology topology;
  uint64_t next_publish_tag = 1;

  ~impl() {
    amqp_channel_close(conn, channel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
  }

  void check_rpc(const char* what) {
    auto r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
      return;
    std::string detail;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
      detail = amqp_error_string2(r.library_error);
    else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD
             || r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      auto m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      detail.assign(static_cast<char*>(m->reply_text.bytes),
                    m->reply_text.len);
    } else {
      detail = "server error";
    }
    throw amqp_error{std::string{what} + ": " + detail};
  }

  void check_status(int status, const char* what) {
    if (status != AMQP_STATUS_OK)
      throw amqp_error{std::string{what} + ": " + amqp_error_string2(status)};
  }

  void declare_queue(const std::string& name, amqp_table_t args) {
    amqp_queue_declare(conn, channel, bytes(name), 0, 1, 0, 0, args);
    check_rpc("queue.declare");
  }

  void declare() {
    auto& t = topology;
    amqp_exchange_declare(conn, channel, bytes(t.dead_exchange),
                          amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
                          amqp_empty_table);
    check_rpc("exchange.declare");
    amqp_table_entry_t quorum{amqp_cstring_bytes("x-queue-type"), {}};
    quorum.value.kind = AMQP_FIELD_KIND_UTF8;
    quorum.value.value.bytes = amqp_cstring_bytes("quorum");
    for (auto& dead : {t.dead_queue, t.dead_audit_queue}) {
      declare_queue(dead, amqp_table_t{1, &quorum});
      amqp_queue_bind(conn, channel, bytes(dead), bytes(t.dead_exchange),
                      amqp_empty_bytes, amqp_empty_table);
      check_rpc("queue.bind");
    }
    amqp_table_entry_t entries[3];
    entries[0] = quorum;
    entries[1].key = amqp_cstring_bytes("x-delivery-limit");
    entries[1].value.kind = AMQP_FIELD_KIND_I32;
    entries[1].value.value.i32 = static_cast<int32_t>(t.delivery_limit);
    entries[2].key = amqp_cstring_bytes("x-dead-letter-exchange");
    entries[2].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[2].value.value.bytes = bytes(t.dead_exchange);
    declare_queue(t.queue, amqp_table_t{3, entries});
    for (auto tier : t.retry_tiers())
      declare_retry_queue(tier);
  }

  /// At-least-once dead-lettering (it needs reject-publish on overflow): a
  /// retry must not be dropped on its way back to the main queue.
  void declare_retry_queue(std::chrono::milliseconds tier) {
    auto& t = topology;
    amqp_table_entry_t e[6];
    auto text = [](amqp_table_entry_t& entry, const char* key, const std::string& v) {
      entry.key = amqp_cstring_bytes(key);
      entry.value.kind = AMQP_FIELD_KIND_UTF8;
      entry.value.value.bytes = bytes(v);
    };
    static const std::string quorum = "quorum", none, at_least_once = "at-least-once",
                             reject = "reject-publish";
    text(e[0], "x-queue-type", quorum);
    text(e[1], "x-dead-letter-exchange", none);
    text(e[2], "x-dead-letter-routing-key", t.queue);
    text(e[3], "x-dead-letter-strategy", at_least_once);
    text(e[4], "x-overflow", reject);
    e[5].key = amqp_cstring_bytes("x-message-ttl");
    e[5].value.kind = AMQP_FIELD_KIND_I64;
    e[5].value.value.i64 = tier.count();
    declare_queue(t.retry_queue(tier), amqp_table_t{6, e});
  }
};

amqp_connection::amqp_connection(const std::string& url,
                                 const amqp_topology& topology,
                                 std::chrono::milliseconds timeout)
  : impl_(std::make_unique<impl>()) {
  impl_->topology = topology;
  std::string error;
  auto uri = parse_amqp_uri(url, error);
  if (!uri)
    throw amqp_error{"--amqp-url: " + error};
  auto socket = amqp_tcp_socket_new(impl_->conn);
  if (socket == nullptr)
    throw amqp_error{"cannot create a socket"};
  auto tv = to_timeval(timeout);
  impl_->check_status(amqp_socket_open_noblock(socket, uri->host.c_str(),
                                               uri->port, &tv),
                      "connect");
  impl_->check_status(amqp_set_rpc_timeout(impl_->conn, &tv), "rpc timeout");
  auto login = amqp_login(impl_->conn, uri->vhost.c_str(), 0, 131072, 10,
                          AMQP_SASL_METHOD_PLAIN, uri->user.c_str(),
                          uri->password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL)
    throw amqp_error{login_failure(login, *uri)};
  amqp_channel_open(impl_->conn, channel);
  impl_->check_rpc("channel.open");
  amqp_confirm_select(impl_->conn, channel);
  impl_->check_rpc("confirm.select");
  impl_->declare();
}

amqp_connection::~amqp_connection() = default;

std::vector<std::chrono::milliseconds> amqp_topology::retry_tiers() const {
  std::vector<std::chrono::milliseconds> tiers{std::chrono::milliseconds{250}};
  while (tiers.back() < retry_delay_max)
    tiers.push_back(tiers.back() * 2);
  return tiers;
}

std::string amqp_topology::retry_queue(std::chrono::milliseconds delay) const {
  auto tiers = retry_tiers();
  auto tier = std::lower_bound(tiers.begin(), tiers.end(), delay);
  if (tier == tiers.end())
    --tier;
  return queue + ".retry." + std::to_string(tier->count()) + "ms";
}

bool amqp_connection::publish_confirmed(const std::vector<amqp_outgoing>& messages,
                                        std::chrono::milliseconds timeout) {
  auto& i = *impl_;
  amqp_basic_properties_t props;
  std::memset(&props, 0, sizeof(props));
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
  props.delivery_mode = 2; // persistent
  props.content_type = amqp_cstring_bytes("application/json");
  std::set<uint64_t> unconfirmed;
  for (auto& m : messages) {
    i.check_status(amqp_basic_publish(i.conn, channel, amqp_empty_bytes,
                                      bytes(m.queue), 0, 0, &props,
                                      bytes(m.body)),
                   "basic.publish");
    unconfirmed.insert(i.next_publish_tag++);
  }
  bool all_acked = true;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!unconfirmed.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    auto tv = to_timeval(left);
    amqp_frame_t frame;
    int status = amqp_simple_wait_frame_noblock(i.conn, &frame, &tv);
    if (status == AMQP_STATUS_TIMEOUT)
      return false;
    i.check_status(status, "waiting for confirms");
    if (frame.frame_type != AMQP_FRAME_METHOD)
      continue;
    uint64_t tag = 0;
    bool multiple = false;
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        auto m = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        tag = m->delivery_tag;
        multiple = m->multiple;
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        auto m = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
        tag = m->delivery_tag;
        multiple = m->multiple;
        all_acked = false;
        break;
      }
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD:
        throw amqp_error{"the broker closed the channel"};
      default:
        continue;
    }
    if (multiple)
      unconfirmed.erase(unconfirmed.begin(), unconfirmed.upper_bound(tag));
    else
      unconfirmed.erase(tag);
  }
  amqp_maybe_release_buffers(i.conn);
  return all_acked;
}

void amqp_connection::consume(const std::string& queue, uint16_t prefetch) {
  auto& i = *impl_;
  amqp_basic_qos(i.conn, channel, 0, prefetch, 0);
  i.check_rpc("basic.qos");
  amqp_basic_consume(i.conn, channel, bytes(queue), amqp_empty_bytes, 0, 0, 0,
                     amqp_empty_table);
  i.check_rpc("basic.consume");
}

std::optional<amqp_connection::message>
amqp_connection::next(std::chrono::milliseconds timeout) {
  auto& i = *impl_;
  amqp_maybe_release_buffers(i.conn);
  amqp_envelope_t envelope;
  auto tv = to_timeval(timeout);
  auto r = amqp_consume_message(i.conn, &envelope, &tv, 0);
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
      && r.library_error == AMQP_STATUS_TIMEOUT)
    return std::nullopt;
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
        && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      // A method frame (e.g. a confirm or channel close) instead of a message.
      amqp_frame_t frame;
      i.check_status(amqp_simple_wait_frame(i.conn, &frame), "reading a frame");
      if (frame.frame_type == AMQP_FRAME_METHOD
          && (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD
              || frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD))
        throw amqp_error{"the broker closed the channel"};
      return std::nullopt;
    }
    throw amqp_error{std::string{"consume: "}
                     + (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                          ? amqp_error_string2(r.library_error)
                          : "server error")};
  }
  message m{envelope.delivery_tag,
            std::string{static_cast<char*>(envelope.message.body.bytes),
                        envelope.message.body.len},
            envelope.redelivered != 0};
  amqp_destroy_envelope(&envelope);
  return m;
}

void amqp_connection::ack(uint64_t tag, bool multiple) {
  impl_->check_status(amqp_basic_ack(impl_->conn, channel, tag, multiple ? 1 : 0),
                      "basic.ack");
}

void amqp_connection::nack(uint64_t tag, bool requeue) {
  impl_->check_status(
    amqp_basic_nack(impl_->conn, channel, tag, 0, requeue ? 1 : 0),
    "basic.nack");
}

uint64_t amqp_connection::depth(const std::string& queue) {
  auto& i = *impl_;
  auto ok = amqp_queue_declare(i.conn, channel, bytes(queue), 1, 0, 0, 0,
                               amqp_empty_table);
  i.check_rpc("queue.declare passive");
  return ok ? ok->message_count : 0;
}

} // namespace chime
