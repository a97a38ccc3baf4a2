#include "sims/fake_email.hpp"

#include "net/http_listen.hpp"
#include "runtime/signals.hpp"

#include <date/date.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

namespace chime {

namespace {

using json = nlohmann::json;

/// Failure knobs; all rates are probabilities in [0, 1].
struct fake_knobs {
  double error_rate = 0;
  double timeout_rate = 0;
  double rate_429 = 0;
  double accept_timeout_rate = 0; ///< accepted, but the answer never comes
  int64_t retry_after_s = 1;
  int64_t latency_ms = 0;
  int64_t timeout_ms = 10000;
  bool outage = false;
};

struct fake_state {
  std::mutex mtx;
  fake_knobs knobs;
  std::mt19937_64 rng;
  std::ofstream ledger;
  std::string ledger_path;
  std::ofstream request_log; ///< every request and its answer, if asked for
  uint64_t accepted = 0;
  uint64_t requests = 0;
};

std::string now_iso() {
  return date::format("%FT%TZ", std::chrono::time_point_cast<
                                  std::chrono::milliseconds>(
                                  std::chrono::system_clock::now()));
}

/// Applies one knob by name; returns an error naming it, or empty.
std::string set_knob(fake_knobs& k, const std::string& name,
                     const std::string& value) {
  auto number = [&](double lo, double hi, double& out) -> std::string {
    char* end = nullptr;
    out = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || out < lo || out > hi)
      return "invalid value '" + value + "' for '" + name + "': expected "
             + std::to_string(lo) + " to " + std::to_string(hi);
    return {};
  };
  double d = 0;
  std::string err;
  if (name == "error-rate")
    err = number(0, 1, k.error_rate);
  else if (name == "timeout-rate")
    err = number(0, 1, k.timeout_rate);
  else if (name == "rate-429")
    err = number(0, 1, k.rate_429);
  else if (name == "accept-timeout-rate")
    err = number(0, 1, k.accept_timeout_rate);
  else if (name == "retry-after-s")
    err = number(0, 86400, d), k.retry_after_s = static_cast<int64_t>(d);
  else if (name == "latency-ms")
    err = number(0, 600000, d), k.latency_ms = static_cast<int64_t>(d);
  else if (name == "timeout-ms")
    err = number(0, 600000, d), k.timeout_ms = static_cast<int64_t>(d);
  else if (name == "outage")
    k.outage = value == "true" || value == "1" || value.empty();
  else
    err = "unknown knob '" + name + "'";
  return err;
}

/// Parses the request body as JSON, or answers 400.
bool parse_body(const httplib::Request& req, httplib::Response& res,
                json& out) {
  try {
    out = json::parse(req.body);
    return true;
  } catch (const json::exception&) {
    res.status = 400;
    res.set_content(R"({"error":"malformed JSON"})", "application/json");
    return false;
  }
}

void answer_send(fake_state& st, const httplib::Request& req,
                 httplib::Response& res, std::string& received) {
  fake_knobs k;
  double roll = 0;
  received = now_iso();
  {
    std::lock_guard<std::mutex> guard{st.mtx};
    ++st.requests;
    k = st.knobs;
    roll = std::uniform_real_distribution<double>{0, 1}(st.rng);
  }
  if (k.latency_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds{k.latency_ms});
  if (k.outage) {
    res.status = 503;
    res.set_content(R"({"error":"outage"})", "application/json");
    return;
  }
  if (roll < k.error_rate) {
    res.status = 500;
    res.set_content(R"({"error":"injected failure"})", "application/json");
    return;
  }
  roll -= k.error_rate;
  if (roll < k.timeout_rate) {
    // Holds the request past the client's time-out and never accepts it.
    std::this_thread::sleep_for(std::chrono::milliseconds{k.timeout_ms});
    res.status = 504;
    return;
  }
  roll -= k.timeout_rate;
  if (roll < k.rate_429) {
    res.status = 429;
    res.set_header("Retry-After", std::to_string(k.retry_after_s));
    res.set_content(R"({"error":"slow down"})", "application/json");
    return;
  }
  roll -= k.rate_429;
  bool answer_lost = roll < k.accept_timeout_rate;
  json body;
  if (!parse_body(req, res, body))
    return;
  if (!body.contains("email") || !body["email"].is_string()
      || !body.contains("message") || !body["message"].is_string()) {
    res.status = 400;
    res.set_content(R"({"error":"email and message are required"})",
                    "application/json");
    return;
  }
  json line{{"received_at", received},
            {"email", body["email"]},
            {"message", body["message"]},
            {"idempotency_key", req.get_header_value("Idempotency-Key")}};
  if (answer_lost)
    line["answer_lost"] = true;
  {
    std::lock_guard<std::mutex> guard{st.mtx};
    st.ledger << line.dump() << '\n';
    st.ledger.flush();
    ++st.accepted;
  }
  if (answer_lost) {
    // Accepted, then held past the client's time-out: a real provider that
    // loses its answer.
    std::this_thread::sleep_for(std::chrono::milliseconds{k.timeout_ms});
    res.status = 504;
    return;
  }
  res.set_content(json{{"status", "sent"}, {"sentTime", received}}.dump(),
                  "application/json");
}

/// Answers one request and, with --request-log, records it whatever the
/// answer, so rate limits can be checked against every request made.
void handle_send(fake_state& st, const httplib::Request& req,
                 httplib::Response& res) {
  std::string received;
  answer_send(st, req, res, received);
  std::lock_guard<std::mutex> guard{st.mtx};
  if (st.request_log.is_open()) {
    st.request_log << json{{"received_at", received},
                           {"status", res.status},
                           {"idempotency_key",
                            req.get_header_value("Idempotency-Key")}}
                        .dump()
                   << '\n';
    st.request_log.flush();
  }
}

} // namespace

int run_fake_email(const std::vector<std::string>& args) {
  fake_state st;
  std::string bind = "127.0.0.1";
  int port = 8025;
  uint64_t seed = std::random_device{}();
  st.ledger_path = "fake-email-ledger.jsonl";
  for (size_t i = 0; i < args.size(); ++i) {
    auto a = args[i];
    if (a.rfind("--", 0) != 0) {
      std::cerr << "fake-email: unexpected argument '" << a << "'\n";
      return 2;
    }
    auto name = a.substr(2);
    std::string value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (name != "outage") {
      if (i + 1 >= args.size()) {
        std::cerr << "fake-email: missing value for '--" << name << "'\n";
        return 2;
      }
      value = args[++i];
    }
    if (name == "port") {
      port = std::atoi(value.c_str());
    } else if (name == "bind") {
      bind = value;
    } else if (name == "ledger") {
      st.ledger_path = value;
    } else if (name == "request-log") {
      st.request_log.open(value, std::ios::app);
      if (!st.request_log) {
        std::cerr << "fake-email: cannot open request log '" << value << "'\n";
        return 2;
      }
    } else if (name == "seed") {
      seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (auto err = set_knob(st.knobs, name, value); !err.empty()) {
      std::cerr << "fake-email: " << err << "\n";
      return 2;
    }
  }
  st.rng.seed(seed);
  st.ledger.open(st.ledger_path, std::ios::app);
  if (!st.ledger) {
    std::cerr << "fake-email: cannot open ledger '" << st.ledger_path << "'\n";
    return 2;
  }
  auto signals = block_stop_signals();

  httplib::Server server;
  // A thread serves one keep-alive connection for as long as it stays open,
  // and a connection beyond the pool waits for a thread, its requests
  // unread: past a sender's time-out, an answer lost and a send made twice.
  // Room for a local cluster of four nodes at their default connection
  // limit (--delivery-concurrency-max 1,024); held (timed-out) requests
  // must not starve the others either.
  server.new_task_queue = [] { return new httplib::ThreadPool(4096); };
  // Small responses written in pieces would otherwise wait for delayed ACKs.
  server.set_tcp_nodelay(true);
  // httplib closes a keep-alive connection after 5 requests by default; a
  // real service keeps it, and reconnecting would dominate a burst.
  server.set_keep_alive_max_count(100000);
  server.Post("/send-email", [&st](const httplib::Request& req,
                                   httplib::Response& res) {
    handle_send(st, req, res);
  });
  server.Post("/control", [&st](const httplib::Request& req,
                                httplib::Response& res) {
    json body;
    if (!parse_body(req, res, body))
      return;
    std::lock_guard<std::mutex> guard{st.mtx};
    auto knobs = st.knobs;
    for (auto& [key, value] : body.items()) {
      auto text = value.is_string() ? value.get<std::string>() : value.dump();
      if (auto err = set_knob(knobs, key, text); !err.empty()) {
        res.status = 400;
        res.set_content(json{{"error", err}}.dump(), "application/json");
        return;
      }
    }
    st.knobs = knobs;
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  server.Get("/ledger", [&st](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> guard{st.mtx};
    std::ifstream in{st.ledger_path};
    std::string all{std::istreambuf_iterator<char>{in}, {}};
    res.set_content(all, "application/x-ndjson");
  });
  server.Get("/stats", [&st](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> guard{st.mtx};
    res.set_content(json{{"requests", st.requests},
                         {"accepted", st.accepted}}
                      .dump(),
                    "application/json");
  });
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  if (auto error = bind_with_backlog(server, bind, port); !error.empty()) {
    std::cerr << "fake-email: " << error << "\n";
    return 2;
  }
  std::thread serving{[&] { server.listen_after_bind(); }};
  std::cerr << "fake-email: listening on http://" << bind << ":" << port
            << ", ledger " << st.ledger_path << "\n";
  int sig = 0;
  sigwait(&signals, &sig);
  server.stop();
  serving.join();
  return 0;
}

} // namespace chime
