// The chime binary: parses the sub-command and settings, then hands over.
#include "cluster/cli.hpp"
#include "cluster/dev.hpp"
#include "cluster/node.hpp"
#include "config/settings.hpp"
#include "sims/fake_email.hpp"

#include <cstdlib>
#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>

// jemalloc's settings (read at its start; ignored when another allocator is
// linked, as under the sanitizers). Freed pages go back to the system a
// minute after use instead of ten seconds: in a burst, returning them
// (madvise, then a TLB flush on every core of this VM) took an eighth of the
// node's CPU. Memory still goes back once a burst is over.
extern "C" {
const char* malloc_conf = "dirty_decay_ms:60000,muzzy_decay_ms:60000";
}
#include <string>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace {

constexpr const char* usage = R"(usage: chime <command> [flags]
commands:
  serve        run a node
  dev          start local PostgreSQL, RabbitMQ and the fake email service,
               then serve; `dev --demo` also creates a user due 90 s after
               start on a virtual clock and shows its message arrive
  cluster      status|leave|join a running node's cluster (--node URL)
  fake-email   run the fake email service
  help         this text and every setting
)";

std::vector<std::string> environment() {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e)
    out.emplace_back(*e);
  return out;
}

int serve(const std::vector<std::string>& args, bool announce,
          bool demo = false) {
  auto loaded = chime::load_settings(args, environment());
  if (loaded.help) {
    std::cout << usage << chime::settings_help();
    return 0;
  }
  if (!loaded) {
    std::cerr << "chime: " << loaded.error << "\n";
    return 2;
  }
  if (!loaded.rest.empty()) {
    std::cerr << "chime: unexpected argument '" << loaded.rest.front() << "'\n";
    return 2;
  }
  if (announce) {
    auto base = "http://" + loaded.value.http_bind + ":"
                + std::to_string(loaded.value.http_port);
    std::cout << "Chime API    " << base << "/v1/users\n"
              << "health       " << base << "/healthz, " << base << "/readyz\n"
              << "metrics      " << base << "/metrics\n"
              << std::flush;
  }
  std::unique_ptr<chime::demo_runner> demo_run;
  if (demo)
    demo_run = std::make_unique<chime::demo_runner>(loaded.value);
  return chime::run_node(loaded.value);
}

/// Removes `--nodes N` from `args`: N (1 when absent), or nothing when N is
/// not a number from 1 to 9.
std::optional<int> take_nodes_flag(std::vector<std::string>& args) {
  auto i = std::find(args.begin(), args.end(), "--nodes");
  if (i == args.end())
    return 1;
  if (i + 1 == args.end())
    return std::nullopt;
  auto text = *(i + 1);
  args.erase(i, i + 2);
  if (text.size() != 1 || text[0] < '1' || text[0] > '9')
    return std::nullopt;
  return text[0] - '0';
}

/// The running binary, for starting more nodes of it.
std::string self_path(const char* argv0) {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string{argv0};
}

/// Removes `--demo` from `args`; true when it was there.
bool take_demo_flag(std::vector<std::string>& args) {
  auto i = std::find(args.begin(), args.end(), "--demo");
  if (i == args.end())
    return false;
  args.erase(i);
  return true;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    std::cout << usage << chime::settings_help();
    return args.empty() ? 2 : 0;
  }
  auto command = args[0];
  args.erase(args.begin());
  if (command == "serve")
    return serve(args, false);
  if (command == "cluster")
    return chime::run_cluster_command(args, environment());
  if (command == "fake-email")
    return chime::run_fake_email(args);
  if (command == "dev") {
    bool demo = take_demo_flag(args);
    if (demo) {
      bool own_clock = std::getenv("CHIME_CLOCK_START") != nullptr
                       || std::any_of(args.begin(), args.end(), [](auto& a) {
                            return a.rfind("--clock-start", 0) == 0;
                          });
      if (own_clock) {
        std::cerr << "chime: --demo sets the clock itself (--clock-start "
                  << chime::demo_clock_start << "); leave out --clock-start\n";
        return 2;
      }
      args.insert(args.begin(), {"--clock-start", chime::demo_clock_start});
    }
    // The services script starts PostgreSQL, RabbitMQ and the fake email
    // service (idempotently) and reports the URLs the node is to use.
    if (!chime::start_dev_services(CHIME_SOURCE_DIR "/scripts/services.sh")) {
      std::cerr << "chime: dev services did not start\n";
      return 1;
    }
    auto nodes = take_nodes_flag(args);
    if (!nodes) {
      std::cerr << "chime: flag --nodes: expected a number from 1 to 9\n";
      return 2;
    }
    if (*nodes > 1) {
      auto loaded = chime::load_settings(args, environment());
      if (!loaded) {
        std::cerr << "chime: " << loaded.error << "\n";
        return 2;
      }
      return chime::run_dev_cluster(self_path(argv[0]), *nodes, args,
                                    loaded.value, demo);
    }
    return serve(args, true, demo);
  }
  std::cerr << "chime: unknown command '" << command << "'\n" << usage;
  return 2;
}
