#include "cluster/cli.hpp"

#include "config/settings.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <map>

namespace chime {

namespace {

using json = nlohmann::json;

constexpr const char* usage = R"(usage: chime cluster status|leave|join [flags]
  --node URL          the node to ask (default http://127.0.0.1:8080)
  --seed HOST:PORT    join: the cluster port of a member to join through
  --api-token T       bearer token (default: CHIME_API_TOKEN)
  --json              status: print the API's JSON as it is
)";

struct cli_args {
  std::string command;
  std::string node = "http://127.0.0.1:8080";
  std::string seed;
  std::string token;
  bool as_json = false;
};

int fail(const std::string& why) {
  std::cerr << "chime cluster: " << why << "\n";
  return 2;
}

void print_status(const json& c) {
  std::cout << "self  " << c.value("self", "") << "\n\n";
  std::cout << std::left << std::setw(16) << "member" << std::setw(10)
            << "state" << std::setw(8) << "shards" << std::setw(28) << "http"
            << "cluster address\n";
  for (auto& m : c.at("members"))
    std::cout << std::setw(16) << m.value("name", "") << std::setw(10)
              << m.value("state", "") << std::setw(8)
              << m.value("shards", 0) << std::setw(28)
              << m.value("http_url", "")
              << (m["cluster_address"].is_string()
                    ? m["cluster_address"].get<std::string>()
                    : std::string{"-"})
              << "\n";
  size_t unowned = 0;
  uint64_t max_epoch = 0;
  for (auto& s : c.at("shards")) {
    unowned += s["owner"].is_null() ? 1 : 0;
    max_epoch = std::max(max_epoch, s.value("epoch", uint64_t{0}));
  }
  std::cout << "\nshards " << c.at("shards").size() << ", without an owner "
            << unowned << ", highest epoch " << max_epoch << "\n";
}

} // namespace

int run_cluster_command(const std::vector<std::string>& args,
                        const std::vector<std::string>& environ_entries) {
  cli_args a;
  for (auto& e : environ_entries)
    if (e.rfind("CHIME_API_TOKEN=", 0) == 0)
      a.token = e.substr(16);
  for (size_t i = 0; i < args.size(); ++i) {
    auto& arg = args[i];
    if (arg == "--json") {
      a.as_json = true;
      continue;
    }
    auto* target = arg == "--node"        ? &a.node
                   : arg == "--seed"      ? &a.seed
                   : arg == "--api-token" ? &a.token
                                          : nullptr;
    if (target != nullptr) {
      if (i + 1 >= args.size())
        return fail("flag " + arg + ": missing value\n" + usage);
      *target = args[++i];
    } else if (a.command.empty() && arg.rfind("--", 0) != 0) {
      a.command = arg;
    } else {
      return fail("unexpected argument '" + arg + "'\n" + usage);
    }
  }
  if (a.command != "status" && a.command != "leave" && a.command != "join")
    return fail(std::string{"expected status, leave or join\n"} + usage);
  if (a.command == "join" && (a.seed.empty() || !check_seeds(a.seed).empty()))
    return fail("flag --seed: expected HOST:PORT of a member's cluster port");
  httplib::Client node{a.node};
  if (!node.is_valid())
    return fail("flag --node: expected a URL like http://127.0.0.1:8080");
  node.set_connection_timeout(5);
  node.set_read_timeout(30);
  httplib::Headers headers;
  if (!a.token.empty())
    headers.emplace("Authorization", "Bearer " + a.token);
  httplib::Result res =
    a.command == "status"
      ? node.Get("/v1/cluster", headers)
      : a.command == "leave"
          ? node.Post("/v1/cluster:leave", headers, "", "application/json")
          : node.Post("/v1/cluster:join", headers,
                      json{{"seed", a.seed}}.dump(), "application/json");
  if (!res) {
    std::cerr << "chime cluster: cannot reach " << a.node << ": "
              << httplib::to_string(res.error()) << "\n";
    return 1;
  }
  if (res->status >= 300) {
    std::cerr << "chime cluster: " << a.node << " answered " << res->status
              << ": " << res->body << "\n";
    return 1;
  }
  if (a.command != "status") {
    std::cout << a.node << ": " << res->body << "\n";
    return 0;
  }
  if (a.as_json) {
    std::cout << res->body << "\n";
    return 0;
  }
  try {
    print_status(json::parse(res->body));
  } catch (const json::exception& e) {
    std::cerr << "chime cluster: unreadable answer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

} // namespace chime
