// The chime binary: parses the sub-command and settings, then hands over.
#include "cluster/node.hpp"
#include "config/settings.hpp"
#include "sims/fake_email.hpp"

#include <cstdlib>
#include <iostream>
#include <string>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace {

constexpr const char* usage = R"(usage: chime <command> [flags]
commands:
  serve        run a node
  dev          start local PostgreSQL and the fake email service, then serve
  fake-email   run the fake email service
  help         this text and every setting
)";

std::vector<std::string> environment() {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e)
    out.emplace_back(*e);
  return out;
}

int serve(const std::vector<std::string>& args, bool announce) {
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
  return chime::run_node(loaded.value);
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
  if (command == "fake-email")
    return chime::run_fake_email(args);
  if (command == "dev") {
    // The services script starts PostgreSQL and the fake email service (both
    // idempotently), prints their URLs and exports the settings to use.
    std::string script = CHIME_SOURCE_DIR "/scripts/services.sh";
    if (std::system(("bash '" + script + "' start").c_str()) != 0) {
      std::cerr << "chime: dev services did not start\n";
      return 1;
    }
    return serve(args, true);
  }
  std::cerr << "chime: unknown command '" << command << "'\n" << usage;
  return 2;
}
