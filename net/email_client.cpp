#include "net/email_client.hpp"

#include "actors/protocol.hpp"

#include <caf/all.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace chime {

namespace {

struct email_request {
  uint64_t id = 0;
  std::string body;
  std::string key;
  int64_t timeout_ms = 0;
};

int64_t retry_after_ms(const char* text) {
  char* end = nullptr;
  auto secs = std::strtod(text, &end);
  if (end == text || secs < 0)
    return -1; // an HTTP-date: fall back to our own backoff
  return static_cast<int64_t>(secs * 1000);
}

size_t discard_body(char*, size_t size, size_t n, void*) {
  return size * n;
}

/// One request on its way, owned by the transfer thread.
struct transfer {
  uint64_t id = 0;
  std::string body;
  curl_slist* headers = nullptr;
  ~transfer() {
    curl_slist_free_all(headers);
  }
};

/// A thread running libcurl's multi loop. The mailer front hands requests
/// in (a bounded inbox, then a wake-up of the loop); the thread answers each
/// with (mail_done_atom, id, send_result) to the front.
class transfer_loop : public mail_transport,
                      public std::enable_shared_from_this<transfer_loop> {
public:
  transfer_loop(std::string url, uint32_t in_flight_max, caf::actor_addr owner)
    : url_(std::move(url)), in_flight_max_(in_flight_max),
      owner_(std::move(owner)), multi_(curl_multi_init()) {
    // Keep a connection per request in flight alive for the next ones.
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS,
                      static_cast<long>(in_flight_max));
  }

  ~transfer_loop() {
    curl_multi_cleanup(multi_);
  }

  void launch() {
    // The thread keeps the loop alive until it has cleaned up; nobody
    // waits for it (stop() never blocks the actor that calls it).
    std::thread{[self = shared_from_this()] { self->run(); }}.detach();
  }

  bool start(uint64_t id, const std::string& email, const std::string& message,
             const std::string& key, int64_t timeout_ms) override {
    // The body is built here, on the front's thread, so that the transfer
    // thread only moves bytes.
    nlohmann::json body{{"email", email}, {"message", message}};
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stopping_ || taken_ >= in_flight_max_)
        return false;
      ++taken_;
      inbox_.push_back({id, body.dump(), key, timeout_ms});
    }
    curl_multi_wakeup(multi_);
    return true;
  }

  /// Aborts every transfer (closing its connection) and ends the thread.
  void stop() override {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
  }

private:
  void run() {
    for (;;) {
      std::deque<email_request> batch;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        if (stopping_)
          break;
        batch.swap(inbox_);
      }
      for (auto& r : batch)
        begin(std::move(r));
      int running = 0;
      curl_multi_perform(multi_, &running);
      int left = 0;
      while (auto* msg = curl_multi_info_read(multi_, &left))
        if (msg->msg == CURLMSG_DONE)
          end(msg->easy_handle, msg->data.result);
      // Wakes for socket activity, a time-out due, or a new request.
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
    for (auto& [easy, t] : live_) {
      curl_multi_remove_handle(multi_, easy);
      curl_easy_cleanup(easy);
    }
    for (auto* easy : idle_)
      curl_easy_cleanup(easy);
  }

  void begin(email_request r) {
    CURL* easy = nullptr;
    if (idle_.empty()) {
      easy = curl_easy_init();
    } else {
      easy = idle_.back();
      idle_.pop_back();
      curl_easy_reset(easy);
    }
    auto t = std::make_unique<transfer>();
    t->id = r.id;
    t->body = std::move(r.body);
    t->headers = curl_slist_append(t->headers, "Content-Type: application/json");
    t->headers = curl_slist_append(t->headers,
                                   ("Idempotency-Key: " + r.key).c_str());
    // No "Expect: 100-continue" round trip before the body.
    t->headers = curl_slist_append(t->headers, "Expect:");
    curl_easy_setopt(easy, CURLOPT_URL, (url_ + "/send-email").c_str());
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->body.size()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout_ms));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(r.timeout_ms));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    live_.emplace(easy, std::move(t));
    curl_multi_add_handle(multi_, easy);
  }

  void end(CURL* easy, CURLcode code) {
    auto i = live_.find(easy);
    auto id = i->second->id;
    send_result r;
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      r.http_status = static_cast<int>(status);
      curl_header* h = nullptr;
      if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h)
          == CURLHE_OK)
        r.retry_after_ms = retry_after_ms(h->value);
    } else {
      r.error = std::string{"email service: "} + curl_easy_strerror(code);
      // Once the request started going out, the service may have taken it
      // and only its answer is missing. (A timed-out transfer's connection
      // is closed by now: the request runs nowhere any more.)
      curl_off_t sending_at = 0;
      curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &sending_at);
      r.ambiguous = sending_at > 0;
    }
    curl_multi_remove_handle(multi_, easy);
    live_.erase(i);
    idle_.push_back(easy);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      --taken_;
    }
    caf::anon_send(caf::actor_cast<caf::actor>(owner_), mail_done_atom::value,
                   id, std::move(r));
  }

  const std::string url_;
  const uint32_t in_flight_max_;
  const caf::actor_addr owner_;
  CURLM* multi_;
  std::mutex mtx_;
  std::deque<email_request> inbox_;
  uint32_t taken_ = 0;
  bool stopping_ = false;
  // The thread's own.
  std::unordered_map<CURL*, std::unique_ptr<transfer>> live_;
  std::vector<CURL*> idle_;
};

} // namespace

std::shared_ptr<mail_transport> make_email_transport(std::string base_url,
                                                     uint32_t in_flight_max,
                                                     const caf::actor_addr& front) {
  // Before any transfer thread exists (its set-up is not thread-safe).
  static std::once_flag curl_ready;
  std::call_once(curl_ready, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto loop = std::make_shared<transfer_loop>(std::move(base_url), in_flight_max,
                                              front);
  loop->launch();
  return loop;
}

} // namespace chime
