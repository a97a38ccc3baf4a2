#include "cluster/dev.hpp"

#include "config/settings.hpp"
#include "runtime/signals.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

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

/// Text no one guesses: a generated secret or token.
std::string random_text() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 4; ++i)
    out += std::to_string(rd());
  return out;
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

int run_dev_cluster(const std::string& self, int nodes,
                    const std::vector<std::string>& args, const settings& base,
                    bool demo) {
  auto signals = block_stop_signals();
  auto data = std::getenv("CHIME_DATA_DIR") ? std::string{std::getenv("CHIME_DATA_DIR")}
                                             : std::string{CHIME_SOURCE_DIR "/.data/dev"};
  auto secret = base.cluster_secret.empty() ? random_text() : base.cluster_secret;
  // A cluster always guards its mutating endpoints; the token is kept where
  // the operator's `chime cluster ...` can read it.
  auto token = base.api_token;
  if (token.empty()) {
    token = random_text();
    auto path = data + "/api-token";
    if (auto fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600); fd >= 0) {
      auto ok = write(fd, token.data(), token.size()) == ssize_t(token.size());
      close(fd);
      if (!ok)
        std::cerr << "could not write " << path << "\n";
    }
    std::cout << "api token    in " << path
              << " (export CHIME_API_TOKEN=$(cat " << path << "))\n";
  }
  uint16_t cluster_base = base.cluster_port != 0 ? base.cluster_port : 7100;
  auto anchor = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  std::vector<pid_t> children;
  std::vector<settings> node_settings;
  for (int k = 1; k <= nodes; ++k) {
    auto name = "n" + std::to_string(k);
    auto http_port = std::to_string(base.http_port + k - 1);
    std::vector<std::string> argv{self, "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (auto& extra : std::vector<std::string>{
           "--node-name", name, "--http-port", http_port, "--cluster-port",
           std::to_string(cluster_base + k - 1), "--cluster-secret", secret,
           "--api-token", token,
           "--clock-anchor-ms", std::to_string(anchor)})
      argv.push_back(extra);
    if (k > 1) {
      argv.push_back("--seed");
      argv.push_back(base.cluster_host + ":" + std::to_string(cluster_base));
    }
    auto log_path = data + "/node-" + name + ".log";
    pid_t pid = fork();
    if (pid == 0) {
      sigprocmask(SIG_UNBLOCK, &signals, nullptr);
      if (auto fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
          fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::vector<char*> cargs;
      for (auto& a : argv)
        cargs.push_back(a.data());
      cargs.push_back(nullptr);
      execv(self.c_str(), cargs.data());
      _exit(127);
    }
    children.push_back(pid);
    settings s = base;
    s.api_token = token;
    s.http_port = static_cast<uint16_t>(base.http_port + k - 1);
    node_settings.push_back(s);
    std::cout << "node " << name << "      http://" << base.http_bind << ":"
              << http_port << " (cluster port " << cluster_base + k - 1
              << ", log " << log_path << ")\n";
  }
  std::cout << "cluster      chime cluster status --node http://"
            << base.http_bind << ":" << base.http_port << "\n"
            << std::flush;
  std::unique_ptr<demo_runner> demo_run;
  if (demo)
    demo_run = std::make_unique<demo_runner>(node_settings.front());
  // Runs until a signal, or until every node has exited by itself.
  size_t alive = children.size();
  bool all_ok = true;
  auto reap = [&](bool block) {
    int status = 0;
    pid_t pid;
    while (alive > 0 && (pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
      --alive;
      bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      all_ok = all_ok && ok;
      for (size_t i = 0; i < children.size(); ++i)
        if (children[i] == pid)
          std::cout << "node n" << i + 1 << " exited"
                    << (ok ? "" : " with an error") << "\n"
                    << std::flush;
    }
  };
  timespec poll{0, 200 * 1000 * 1000};
  while (alive > 0) {
    int sig = sigtimedwait(&signals, nullptr, &poll);
    if (sig == SIGTERM || sig == SIGINT) {
      for (auto pid : children)
        kill(pid, SIGTERM);
      reap(true);
      break;
    }
    reap(false);
  }
  return all_ok ? 0 : 1;
}

demo_runner::demo_runner(const settings& cfg)
  : thread_([this, cfg] { run_demo(stop_, cfg); }) {
}

demo_runner::~demo_runner() {
  stop_ = true;
  thread_.join();
}

} // namespace chime
