#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace chime {

/// Every setting of a Chime node. Filled by `load_settings` from defaults, then
/// the config file, then `CHIME_*` environment variables, then flags; the last
/// source to name a key wins. A value object: copied into whoever needs it.
struct settings {
  std::string config_file;
  std::string http_bind = "127.0.0.1";
  uint16_t http_port = 8080;
  std::string database_url = "postgresql://postgres@127.0.0.1:55432/chime";
  std::string amqp_url = "amqp://guest:guest@127.0.0.1:55672/%2F";
  std::string email_url = "http://127.0.0.1:8025";
  std::optional<int64_t> clock_start_ms; ///< virtual clock origin (UTC, ms)
  double clock_rate = 1.0;
  std::string api_token;
  double email_rate_per_s = 0; ///< 0: unlimited
  uint32_t email_burst = 1;
  uint32_t email_timeout_ms = 5000;
  int64_t catch_up_s = 259200;
  std::string node_name = "chime-1";
  uint16_t cluster_port = 0; ///< 0: none, a cluster of one
  std::string cluster_host = "127.0.0.1";
  std::string seed;          ///< HOST:PORT[,HOST:PORT]; empty: found
  std::string cluster_secret;
  int64_t lease_s = 6;
  std::optional<int64_t> clock_anchor_ms; ///< when the virtual clock reads clock_start
  uint32_t shard_count = 256;
  std::string feb29_rule = "feb28"; ///< feb28 | mar1
  std::map<std::string, std::string> send_times; ///< occasion -> "HH:MM"
  int64_t horizon_s = 3600;  ///< users due within this stay resident
  int64_t due_poll_s = 60;   ///< how often shards look for newly close users
  uint32_t delivery_concurrency_max = 1024;
  uint32_t email_connections_max = 64;
  uint32_t delivery_attempts_max = 0; ///< 0: until the catch-up window ends
  uint32_t breaker_failures_max = 10;
  uint32_t breaker_cooldown_ms = 5000;
  uint32_t amqp_prefetch = 1000;
  uint32_t publish_buffer_max = 50000;
  uint32_t delivery_queue_max = 60000;
  // 200,000 resident peaked at 589-609 MiB with 1,000,000 due at once; at
  // 50,000 the peak was 402 MiB, and the burst no slower (2026-12-04).
  uint32_t resident_users_max = 50000;
  int64_t fire_lead_ms = 10000; ///< actors/node_context.hpp says why
  uint32_t amqp_delivery_limit = 20;
  int64_t outbox_grace_s = 10;
  uint32_t backoff_base_ms = 200;
  uint32_t backoff_cap_ms = 60000;
  uint32_t journal_batch_max = 512;
  uint32_t http_threads = 32;
  uint64_t import_lines_max = 1000000; ///< lines of one bulk import at most
  uint32_t restart_max = 5;     ///< supervisor restarts allowed ...
  uint32_t restart_window_s = 10; ///< ... within this many seconds
  uint32_t test_hooks = 0; ///< 1: POST /v1/admin/crash is served
  std::string log_level = "info";
  std::string cpu_policy = "batch"; ///< batch | normal (cluster/node.cpp says why)
};

/// The outcome of loading settings: the settings, or one message naming the
/// offending key and value. `rest` holds the positional words (sub-commands).
struct settings_result {
  settings value;
  std::vector<std::string> rest;
  std::string error;
  bool help = false;
  explicit operator bool() const { return error.empty(); }
};

/// Parses `argv` (after the sub-command), the environment and the config file.
/// `environ_entries` are "NAME=value" strings, normally from `environ`.
settings_result load_settings(const std::vector<std::string>& args,
                              const std::vector<std::string>& environ_entries);

/// Empty when `v` is a list HOST:PORT[,HOST:PORT]; else what is wrong.
std::string check_seeds(const std::string& v);

/// Documentation of every key: flag, environment variable, default, meaning.
std::string settings_help();

/// Parses "2027-03-15T03:14:00Z" (also with fractional seconds or an offset)
/// into milliseconds since the epoch.
std::optional<int64_t> parse_utc_instant(const std::string& text);

} // namespace chime
