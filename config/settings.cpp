#include "config/settings.hpp"

#include "config/amqp_uri.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <limits>
#include <regex>
#include <sstream>

namespace chime {

namespace {

using setter = std::function<std::string(settings&, const std::string&)>;

/// One documented key. The flag is `--<name>`, the environment variable is
/// `CHIME_<NAME>` with dashes as underscores, the config file key is `<name>`.
struct key_def {
  std::string name;
  std::string default_text;
  std::string meaning;
  setter set;
};

template <class Int>
setter int_setter(Int settings::*field, int64_t lo, int64_t hi) {
  return [=](settings& s, const std::string& v) -> std::string {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size())
      return "expected a whole number";
    if (n < lo || n > hi)
      return "expected a number from " + std::to_string(lo) + " to "
             + std::to_string(hi);
    s.*field = static_cast<Int>(n);
    return {};
  };
}

setter double_setter(double settings::*field, double lo, double hi) {
  return [=](settings& s, const std::string& v) -> std::string {
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(d))
      return "expected a number";
    if (d < lo || d > hi)
      return "expected a number from " + std::to_string(lo) + " to "
             + std::to_string(hi);
    s.*field = d;
    return {};
  };
}

setter string_setter(std::string settings::*field,
                     std::function<std::string(const std::string&)> check
                     = nullptr) {
  return [=](settings& s, const std::string& v) -> std::string {
    if (check) {
      if (auto err = check(v); !err.empty())
        return err;
    }
    s.*field = v;
    return {};
  };
}

/// A check that takes only one of `names`, and otherwise says which.
std::function<std::string(const std::string&)>
one_of(std::vector<std::string> names) {
  return [names = std::move(names)](const std::string& v) {
    if (std::find(names.begin(), names.end(), v) != names.end())
      return std::string{};
    std::string out = "expected ";
    for (size_t i = 0; i < names.size(); ++i)
      out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    return out;
  };
}

std::string check_url(const std::string& v, std::initializer_list<const char*>
                                                schemes) {
  for (auto scheme : schemes)
    if (v.rfind(scheme, 0) == 0 && v.size() > std::string{scheme}.size())
      return {};
  std::string list;
  for (auto scheme : schemes)
    list += (list.empty() ? "" : " or ") + std::string{scheme};
  return "expected a URL starting with " + list;
}

std::string check_send_time(const std::string& v) {
  int h = -1, m = -1;
  char tail = 0;
  if (v.size() != 5 || std::sscanf(v.c_str(), "%2d:%2d%c", &h, &m, &tail) != 2
      || h < 0 || h > 23 || m < 0 || m > 59)
    return "expected a local time HH:MM";
  return {};
}

const std::vector<key_def>& key_defs() {
  static const std::vector<key_def> defs = {
    {"config", "", "config file (key = value lines, # comments)",
     string_setter(&settings::config_file)},
    {"http-bind", "127.0.0.1", "address the HTTP API listens on",
     string_setter(&settings::http_bind)},
    {"http-port", "8080", "HTTP API and dashboard port",
     int_setter(&settings::http_port, 1, 65535)},
    {"database-url", "postgresql://postgres@127.0.0.1:55432/chime",
     "PostgreSQL connection URI",
     string_setter(&settings::database_url,
                   [](const std::string& v) {
                     return check_url(v, {"postgresql://", "postgres://"});
                   })},
    {"amqp-url", "amqp://guest:guest@127.0.0.1:55672/%2F",
     "RabbitMQ URI (amqp://user:pass@host:port/vhost)",
     string_setter(&settings::amqp_url,
                   [](const std::string& v) {
                     std::string error;
                     parse_amqp_uri(v, error);
                     return error;
                   })},
    {"email-url", "http://127.0.0.1:8025",
     "email service base; Chime POSTs to {URL}/send-email",
     string_setter(&settings::email_url,
                   [](const std::string& v) {
                     return check_url(v, {"http://"});
                   })},
    {"clock-start", "(wall clock)",
     "run on a virtual clock starting at this UTC instant",
     [](settings& s, const std::string& v) -> std::string {
       auto ms = parse_utc_instant(v);
       if (!ms)
         return "expected an ISO-8601 UTC instant like 2027-03-15T03:14:00Z";
       s.clock_start_ms = *ms;
       return {};
     }},
    {"clock-rate", "1", "virtual seconds per real second",
     double_setter(&settings::clock_rate, 0.001, 1e7)},
    {"api-token", "", "bearer token for mutating and admin endpoints",
     string_setter(&settings::api_token)},
    {"email-rate-per-s", "0",
     "email requests per second, whole cluster (0: unlimited)",
     double_setter(&settings::email_rate_per_s, 0, 1e7)},
    {"email-burst", "1",
     "token-bucket burst size (above about 1 % of the rate, the first second"
     " after a quiet spell can exceed the per-second limit)",
     int_setter(&settings::email_burst, 1, 1000000)},
    {"email-timeout-ms", "5000",
     "longest per-request time-out of the email client (below it, four times the"
     " answers' 99.9th percentile, at least 2 s)",
     int_setter(&settings::email_timeout_ms, 1, 600000)},
    {"email-connections-max", "64",
     "most connections to an http:// email service per node, besides those whose"
     " request is out over 250 ms; requests beyond them wait for one, within"
     " their time-out",
     int_setter(&settings::email_connections_max, 1, 4096)},
    {"catch-up-s", "259200",
     "how late a message may still be sent; older ones are expired",
     int_setter(&settings::catch_up_s, 0, int64_t{10} * 365 * 86400)},
    {"node-name", "chime-1", "this node's name in the cluster",
     string_setter(&settings::node_name,
                   [](const std::string& v) {
                     return v.empty() ? std::string{"expected a non-empty name"}
                                      : std::string{};
                   })},
    {"cluster-port", "(none)",
     "node-to-node port (CAF middleman); without it the node is a cluster"
     " of one",
     int_setter(&settings::cluster_port, 1, 65535)},
    {"cluster-host", "127.0.0.1",
     "address the cluster port listens on and peers reach this node at",
     string_setter(&settings::cluster_host)},
    {"seed", "",
     "HOST:PORT[,HOST:PORT] of existing members to join; none: found a"
     " cluster",
     string_setter(&settings::seed,
                   [](const std::string& v) { return check_seeds(v); })},
    {"cluster-secret", "",
     "shared secret a node must prove (HMAC challenge) to be admitted;"
     " required with --cluster-port",
     string_setter(&settings::cluster_secret)},
    {"lease-s", "6",
     "shard lease length in seconds; a dead node's shards are taken over"
     " within about lease + 1 s",
     int_setter(&settings::lease_s, 2, 3600)},
    {"clock-anchor-ms", "(the node's start)",
     "Unix time (ms) at which the virtual clock reads --clock-start, so"
     " several nodes share one virtual clock",
     int_setter(&settings::clock_anchor_ms, 0,
                std::numeric_limits<int64_t>::max())},
    {"shard-count", "256", "fixed number of shards (all nodes must agree)",
     int_setter(&settings::shard_count, 1, 65536)},
    {"feb29-rule", "feb28",
     "where a Feb 29 date falls in non-leap years: feb28 or mar1",
     string_setter(&settings::feb29_rule, one_of({"feb28", "mar1"}))},
    {"birthday-send-time", "09:00", "local send time of birthday messages",
     [](settings& s, const std::string& v) {
       auto err = check_send_time(v);
       if (err.empty())
         s.send_times["birthday"] = v;
       return err;
     }},
    {"anniversary-send-time", "09:00",
     "local send time of anniversary messages",
     [](settings& s, const std::string& v) {
       auto err = check_send_time(v);
       if (err.empty())
         s.send_times["anniversary"] = v;
       return err;
     }},
    {"horizon-s", "3600",
     "users due within this many seconds are kept resident as actors",
     int_setter(&settings::horizon_s, 1, 86400 * 30)},
    {"due-poll-s", "60", "how often (virtual seconds) shards read the due index",
     int_setter(&settings::due_poll_s, 1, 86400)},
    {"delivery-concurrency-max", "1024",
     "most email requests in flight per node (below it, the limit adapts to"
     " the service's latency)",
     int_setter(&settings::delivery_concurrency_max, 1, 4096)},
    {"delivery-attempts-max", "0",
     "attempts before a delivery is dead (0: retry until the catch-up window"
     " ends)",
     int_setter(&settings::delivery_attempts_max, 0, 1000000)},
    {"breaker-failures-max", "10",
     "consecutive email failures that open the circuit breaker",
     int_setter(&settings::breaker_failures_max, 1, 1000000)},
    {"breaker-cooldown-ms", "5000",
     "how long an open circuit breaker waits before a probe",
     int_setter(&settings::breaker_cooldown_ms, 1, 3600000)},
    {"amqp-prefetch", "1000", "unsettled deliveries per consumer at most (a broker message bundles up to 200)",
     int_setter(&settings::amqp_prefetch, 1, 65535)},
    {"fire-lead-ms", "10000",
     "an occasion is recorded and handed to the broker this long before its"
     " instant, and sent at the instant",
     int_setter(&settings::fire_lead_ms, 0, 10000)},
    {"resident-users-max", "50000",
     "users resident at most; past it, users due later wait in the due"
     " index",
     int_setter(&settings::resident_users_max, 1, 100000000)},
    {"publish-buffer-max", "50000",
     "hand-offs held while the broker is away; beyond, they wait in the journal"
     " for the outbox sweeper",
     int_setter(&settings::publish_buffer_max, 1, 10000000)},
    {"delivery-queue-max", "60000",
     "deliveries waiting in the node for a send at most; beyond, they wait"
     " in the broker's retry queue",
     int_setter(&settings::delivery_queue_max, 1, 10000000)},
    {"amqp-delivery-limit", "20",
     "broker redeliveries of one message before it is dead-lettered",
     int_setter(&settings::amqp_delivery_limit, 1, 1000000)},
    {"outbox-grace-s", "10",
     "a delivery not handed off after this long (Chime time) is republished",
     int_setter(&settings::outbox_grace_s, 1, 86400)},
    {"backoff-base-ms", "200", "first retry delay (full jitter)",
     int_setter(&settings::backoff_base_ms, 1, 3600000)},
    {"backoff-cap-ms", "60000", "largest retry delay",
     int_setter(&settings::backoff_cap_ms, 1, 3600000)},
    {"journal-batch-max", "512", "journal writes committed together at most",
     int_setter(&settings::journal_batch_max, 1, 100000)},
    // A create waits for its group commit on its thread: 32 threads let 32
    // clients' creates share one commit (8 held it to 1,190 creates/s, 32
    // to 2,550).
    {"http-threads", "32", "HTTP worker threads",
     int_setter(&settings::http_threads, 1, 1024)},
    {"import-lines-max", "1000000",
     "lines one bulk import (POST /v1/users:import) reads at most; past them"
     " it answers 413",
     int_setter(&settings::import_lines_max, 1, 100000000)},
    {"restart-max", "5", "supervisor restarts allowed within restart-window-s",
     int_setter(&settings::restart_max, 0, 1000)},
    {"restart-window-s", "10", "supervisor restart-intensity window",
     int_setter(&settings::restart_window_s, 1, 86400)},
    {"test-hooks", "0",
     "1 enables POST /v1/admin/crash, which makes a named actor fail (for"
     " crash tests; never in production)",
     int_setter(&settings::test_hooks, 0, 1)},
    {"cpu-policy", "batch",
     "how the node's threads share the CPU: batch (Linux SCHED_BATCH: a"
     " woken thread waits for the running one's turn to end instead of"
     " preempting it; more messages a CPU second under load, a few ms later"
     " a wake-up) or normal",
     string_setter(&settings::cpu_policy, one_of({"batch", "normal"}))},
    {"log-level", "info", "debug, info, warn or error",
     string_setter(&settings::log_level,
                   one_of({"debug", "info", "warn", "error"}))},
  };
  return defs;
}

std::string env_name(const std::string& key) {
  std::string out = "CHIME_";
  for (char c : key)
    out += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

const key_def* find_key(const std::string& name) {
  for (auto& def : key_defs())
    if (def.name == name)
      return &def;
  return nullptr;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

/// Applies one key from `source`; returns an error naming both on failure.
std::string apply(settings& s, const std::string& source,
                  const std::string& key, const std::string& value) {
  auto def = find_key(key);
  if (def == nullptr)
    return source + ": unknown key '" + key + "'";
  if (auto err = def->set(s, value); !err.empty())
    return source + ": invalid value '" + value + "' for key '" + key + "': "
           + err;
  return {};
}

/// The line without its comment: a '#' outside double quotes starts one.
std::string strip_comment(const std::string& line) {
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '"')
      quoted = !quoted;
    else if (line[i] == '#' && !quoted)
      return line.substr(0, i);
  }
  return line;
}

std::string apply_file(settings& s, const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return "config file '" + path + "' cannot be read";
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    auto text = trim(strip_comment(line));
    if (text.empty() || text.front() == '[')
      continue; // INI section headers only group keys for the reader
    auto eq = text.find('=');
    auto where = path + ":" + std::to_string(line_no);
    if (eq == std::string::npos)
      return where + ": expected 'key = value'";
    auto value = trim(text.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    if (auto err = apply(s, where, trim(text.substr(0, eq)), value);
        !err.empty())
      return err;
  }
  return {};
}

} // namespace

std::optional<int64_t> parse_utc_instant(const std::string& text) {
  static const std::regex pattern{
    R"(^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?)"
    R"((Z|z|([+-])(\d{2}):(\d{2}))$)"};
  std::smatch m;
  if (!std::regex_match(text, m, pattern))
    return std::nullopt;
  auto num = [&](int i) { return std::stoi(m[i].str()); };
  int y = num(1), mo = num(2), d = num(3), h = num(4), mi = num(5), s = num(6);
  if (mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59)
    return std::nullopt;
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap ? 1 : 0))
    return std::nullopt;
  int64_t offset_s = 0;
  if (m[9].matched) {
    int oh = num(10), om = num(11);
    if (oh > 23 || om > 59)
      return std::nullopt;
    offset_s = (m[9].str() == "-" ? -1 : 1) * (oh * 3600 + om * 60);
  }
  int64_t frac_ms = 0;
  if (m[7].matched) {
    auto digits = m[7].str().substr(1) + "00";
    frac_ms = std::stoi(digits.substr(0, 3));
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  int64_t secs = static_cast<int64_t>(timegm(&tm));
  return (secs - offset_s) * 1000 + frac_ms;
}

settings_result load_settings(const std::vector<std::string>& args,
                              const std::vector<std::string>& environ_entries) {
  settings_result r;
  // Flags are read first only to find --config; they are applied last so that
  // they win over the environment and the file.
  std::vector<std::pair<std::string, std::string>> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--help" || a == "-h") {
      r.help = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) {
      r.rest.push_back(a);
      continue;
    }
    auto body = a.substr(2);
    auto eq = body.find('=');
    if (eq != std::string::npos) {
      flags.emplace_back(body.substr(0, eq), body.substr(eq + 1));
    } else if (find_key(body) == nullptr) {
      r.error = "flag --" + body + ": unknown key '" + body + "'";
      return r;
    } else if (i + 1 >= args.size()) {
      r.error = "flag --" + body + ": missing value for key '" + body + "'";
      return r;
    } else {
      flags.emplace_back(body, args[++i]);
    }
  }
  std::vector<std::pair<std::string, std::string>> env;
  for (auto& entry : environ_entries) {
    if (entry.rfind("CHIME_", 0) != 0)
      continue;
    auto eq = entry.find('=');
    if (eq == std::string::npos)
      continue;
    env.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  auto env_key = [](const std::string& var) -> std::string {
    for (auto& def : key_defs())
      if (env_name(def.name) == var)
        return def.name;
    return {};
  };
  // The config file's own location may come from the environment or a flag.
  std::string file;
  for (auto& [var, value] : env)
    if (var == "CHIME_CONFIG")
      file = value;
  for (auto& [key, value] : flags)
    if (key == "config")
      file = value;
  if (!file.empty()) {
    if (auto err = apply_file(r.value, file); !err.empty()) {
      r.error = err;
      return r;
    }
  }
  for (auto& [var, value] : env) {
    // Scripts use the prefix for their own variables (CHIME_DATA_DIR, ...):
    // only variables that name a key are settings.
    auto key = env_key(var);
    if (key.empty())
      continue;
    if (auto err = apply(r.value, "environment " + var, key, value);
        !err.empty()) {
      r.error = err;
      return r;
    }
  }
  for (auto& [key, value] : flags) {
    if (auto err = apply(r.value, "flag --" + key, key, value); !err.empty()) {
      r.error = err;
      return r;
    }
  }
  // Keys that only make sense together.
  if (r.value.cluster_port != 0 && r.value.cluster_secret.empty())
    r.error = "key 'cluster-secret': required with --cluster-port (nodes prove"
              " it before they are admitted)";
  else if (r.value.cluster_port != 0 && r.value.api_token.empty())
    r.error = "key 'api-token': required with --cluster-port (in a cluster,"
              " any node can make every node change or leave)";
  else if (!r.value.seed.empty() && r.value.cluster_port == 0)
    r.error = "key 'seed': joining a cluster needs --cluster-port";
  return r;
}

std::string check_seeds(const std::string& v) {
  std::stringstream list{v};
  for (std::string seed; std::getline(list, seed, ',');) {
    auto colon = seed.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0
        || std::sscanf(seed.c_str() + colon + 1, "%d", &port) != 1 || port < 1
        || port > 65535
        || seed.find_first_not_of("0123456789", colon + 1) != std::string::npos)
      return "expected HOST:PORT[,HOST:PORT], e.g. 127.0.0.1:7100";
  }
  return {};
}

std::string settings_help() {
  std::ostringstream out;
  out << "Settings (flag / environment variable / config-file key, default):\n";
  for (auto& def : key_defs())
    out << "  --" << def.name << "  " << env_name(def.name) << "  ["
        << def.default_text << "]\n      " << def.meaning << "\n";
  return out.str();
}

} // namespace chime
