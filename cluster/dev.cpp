#include "cluster/dev.hpp"

#include "config/settings.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace chime {

namespace {

using json = nlohmann::json;
using std::chrono::steady_clock;

/// Output of `command`, or nothing when it failed.
std::optional<std::string> capture(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr)
    return std::nullopt;
  std::string out;
  char buf[512];
  while (auto n = fread(buf, 1, sizeof buf, pipe))
    out.append(buf, n);
  return pclose(pipe) == 0 ? std::optional{out} : std::nullopt;
}

/// Waits for `done` every 250 ms until `deadline` or `stop`.
template <class Predicate>
bool wait_for(const std::atomic<bool>& stop, steady_clock::time_point deadline,
              Predicate done) {
  while (!stop && steady_clock::now() < deadline) {
    if (done())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{250}); // poll period
  }
  return false;
}

void say(const std::string& text) { std::cout << "demo: " << text << std::endl; }

void run_demo(const std::atomic<bool>& stop, const settings& cfg) {
  auto base = "http://" + cfg.http_bind + ":" + std::to_string(cfg.http_port);
  httplib::Client node{base};
  node.set_connection_timeout(2);
  node.set_read_timeout(10);
  httplib::Headers auth;
  if (!cfg.api_token.empty())
    auth.emplace("Authorization", "Bearer " + cfg.api_token);
  if (!wait_for(stop, steady_clock::now() + std::chrono::seconds{60}, [&] {
        auto r = node.Get("/readyz");
        return r && r->status == 200;
      })) {
    if (!stop)
      say("the node did not become ready within 60 s; see its log above");
    return;
  }
  // A fresh address each run: emails are unique among live users, and an
  // earlier demo's Ada may still be in the dev database.
  auto stamp = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  json ada = {{"first_name", "Ada"},         {"last_name", "Lovelace"},
              {"email", "ada+" + stamp + "@example.com"},
              {"birthday", "1990-03-15"}, {"timezone", "Asia/Kathmandu"}};
  auto created = node.Post("/v1/users", auth, ada.dump(), "application/json");
  if (!created || created->status != 201) {
    say("creating the demo user failed: "
        + (created ? std::to_string(created->status) + " " + created->body
                   : std::string{"no answer"}));
    return;
  }
  auto user = json::parse(created->body);
  auto id = user.at("id").get<std::string>();
  auto due = user.at("next_due").at("birthday").get<std::string>();
  auto now = node.Get("/healthz");
  std::string clock_now = now ? json::parse(now->body).value("now", "") : "";
  auto key = id + ":birthday:2027-03-15";
  auto to_real_s = [&](double virtual_s) { return virtual_s / cfg.clock_rate; };
  std::ostringstream text;
  text << "created Ada Lovelace (id " << id << "), born 1990-03-15, living in"
       << " Asia/Kathmandu.\n"
       << "demo: her birthday message is due at 09:00 Kathmandu time = " << due
       << " on the node's clock (now " << clock_now << "), about "
       << static_cast<int>(to_real_s(90)) << " s from now.\n"
       << "demo: watch it arrive:  curl " << cfg.email_url << "/ledger\n"
       << "demo: and its state:    curl " << base << "/v1/users/" << id;
  say(text.str());
  httplib::Client email{cfg.email_url};
  email.set_connection_timeout(2);
  email.set_read_timeout(10);
  std::string arrived;
  auto deadline = steady_clock::now()
                  + std::chrono::seconds{static_cast<int64_t>(to_real_s(90)) + 120};
  wait_for(stop, deadline, [&] {
    auto r = email.Get("/ledger");
    if (!r || r->status != 200)
      return false;
    std::istringstream lines{r->body};
    for (std::string line; std::getline(lines, line);)
      if (line.find(key) != std::string::npos)
        arrived = line;
    return !arrived.empty();
  });
  if (!arrived.empty())
    say("the message arrived at the (fake) email service:\n" + arrived
        + "\ndemo: done. The node keeps running; Ctrl-C stops it.");
  else if (!stop)
    say("the message has not arrived in time; see the node's log above");
}

} // namespace

bool start_dev_services(const std::string& services_script) {
  if (std::system(("bash '" + services_script + "' start").c_str()) != 0)
    return false;
  auto env = capture("bash '" + services_script + "' env");
  if (!env)
    return false;
  std::istringstream words{*env};
  for (std::string word; words >> word;) {
    auto eq = word.find('=');
    if (word.rfind("CHIME_", 0) == 0 && eq != std::string::npos)
      setenv(word.substr(0, eq).c_str(), word.substr(eq + 1).c_str(), 0);
  }
  return true;
}

demo_runner::demo_runner(const settings& cfg)
  : thread_([this, cfg] { run_demo(stop_, cfg); }) {
}

demo_runner::~demo_runner() {
  stop_ = true;
  thread_.join();
}

} // namespace chime
