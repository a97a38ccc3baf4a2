#include "net/email_client.hpp"

#include "actors/protocol.hpp"
#include "net/email_request.hpp"
#include "net/plain_http_transport.hpp"
#include "runtime/json_text.hpp"

#include <caf/all.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <regex>
#include <thread>
#include <unordered_map>

namespace chime {

namespace {

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

/// A thread running libcurl's multi loop. The delivery actor hands requests
/// in (a bounded inbox, then a wake-up of the loop); the thread answers each
/// with (mail_done_atom, id, send_result) to the delivery actor driving it.
class transfer_loop : public email_inbox,
                      public std::enable_shared_from_this<transfer_loop> {
public:
  transfer_loop(std::string url, uint32_t in_flight_max, caf::actor_addr owner)
    : email_inbox(in_flight_max, std::move(owner)), url_(std::move(url)),
      multi_(curl_multi_init()) {
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

private:
  void wake() override {
    curl_multi_wakeup(multi_);
  }

  void run() {
    for (;;) {
      std::deque<email_request> batch;
      if (!take(batch))
        break;
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
    answer(id, std::move(r));
  }

  const std::string url_;
  CURLM* multi_;
  // The thread's own.
  std::unordered_map<CURL*, std::unique_ptr<transfer>> live_;
  std::vector<CURL*> idle_;
};

} // namespace

std::string email_body(const std::string& email, const std::string& message) {
  return json_object_text{}.field("email", email).field("message", message).take();
}

bool email_inbox::start(uint64_t id, const std::string& email,
                        const std::string& message, const std::string& key,
                        int64_t timeout_ms) {
  auto body = email_body(email, message);
  bool was_empty = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_ || taken_ >= in_flight_max_)
      return false;
    ++taken_;
    was_empty = inbox_.empty();
    inbox_.push_back({id, std::move(body), key, timeout_ms});
  }
  // The thread takes the whole inbox at once, so the request that found it
  // empty has woken it for those behind: a wake-up each was a system call
  // each (about 60 % of them found the inbox already waiting).
  if (was_empty)
    wake();
  return true;
}

void email_inbox::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  wake();
}

bool email_inbox::take(std::deque<email_request>& batch) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (stopping_)
    return false;
  batch.swap(inbox_);
  return true;
}

void email_inbox::answer(uint64_t id, send_result r) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    --taken_;
  }
  hand_back(id, std::move(r));
}

std::shared_ptr<mail_transport> make_email_transport(std::string base_url,
                                                     uint32_t in_flight_max,
                                                     uint32_t connections_max,
                                                     const caf::actor_addr& driver) {
  // http://host[:port][/path]: the lighter client; anything else (https)
  // goes through libcurl.
  static const std::regex plain{R"(^http://([^/:\[\]]+)(?::([0-9]+))?(/.*)?$)",
                                std::regex::icase};
  if (std::smatch m; std::regex_match(base_url, m, plain)) {
    auto path = m[3].str();
    while (!path.empty() && path.back() == '/')
      path.pop_back();
    return make_plain_http_transport(m[1].str(), m[2].matched ? m[2].str() : "80",
                                     path, in_flight_max, connections_max,
                                     driver);
  }
  // Before any transfer thread exists (its set-up is not thread-safe).
  static std::once_flag curl_ready;
  std::call_once(curl_ready, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  // No connection bound here: libcurl's (CURLMOPT_MAX_HOST_CONNECTIONS)
  // would count a hung request for its whole time-out, and hung requests
  // would then hold up the rest.
  auto loop = std::make_shared<transfer_loop>(std::move(base_url), in_flight_max,
                                              driver);
  loop->launch();
  return loop;
}

} // namespace chime
