// Proves load_settings (config/settings.hpp): defaults; flags in both
// `--key value` and `--key=value` form; CHIME_* environment variables; a config
// file of `key = value` lines with comments; the precedence flags > environment
// > file > defaults; and that bad input (unknown keys, invalid values, bad
// instants) fails with a message naming the key (and the file and line). The
// environment is passed as a vector, so the process environment is never
// touched; config files are written to a fresh temporary directory.

#include "config/settings.hpp"

#include <catch2/catch.hpp>
#include <date/date.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <string>
#include <vector>

namespace {

using args = std::vector<std::string>;

/// A config file in its own temporary directory, removed afterwards.
class temp_config {
public:
  explicit temp_config(const std::string& text) {
    static std::atomic<int> counter{0};
    dir_ = std::filesystem::temp_directory_path()
           / ("chime-config-test-" + std::to_string(::getpid()) + "-"
              + std::to_string(counter++));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "chime.conf").string();
    std::ofstream out{path_};
    out << text;
  }
  ~temp_config() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  temp_config(const temp_config&) = delete;
  temp_config& operator=(const temp_config&) = delete;

  const std::string& path() const {
    return path_;
  }

private:
  std::filesystem::path dir_;
  std::string path_;
};

int64_t epoch_ms(int y, unsigned m, unsigned d, int hh, int mm, int ss = 0) {
  auto t = date::sys_days{date::year{y} / m / d} + std::chrono::hours{hh}
           + std::chrono::minutes{mm} + std::chrono::seconds{ss};
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           t.time_since_epoch())
    .count();
}

} // namespace

TEST_CASE("settings default to the documented values", "[config]") {
  auto r = chime::load_settings({}, {});
  REQUIRE(r);
  CHECK(r.error.empty());
  CHECK(r.value.http_port == 8080);
  CHECK(r.value.catch_up_s == 259200);
  CHECK(r.value.shard_count == 256);
  CHECK(r.value.feb29_rule == "feb28");
  CHECK(r.value.clock_rate == 1.0);
  CHECK_FALSE(r.value.clock_start_ms.has_value());
  CHECK(r.value.restart_max == 5);
  CHECK(r.value.restart_window_s == 10);
  CHECK(r.rest.empty());
  CHECK_FALSE(r.help);
}

TEST_CASE("a flag sets its key as two words or with an equals sign", "[config]") {
  auto spaced = chime::load_settings({"--http-port", "9000"}, {});
  REQUIRE(spaced);
  CHECK(spaced.value.http_port == 9000);
  auto joined = chime::load_settings({"--http-port=9000"}, {});
  REQUIRE(joined);
  CHECK(joined.value.http_port == 9000);
  auto several = chime::load_settings(
    {"--catch-up-s", "60", "--shard-count=16", "--feb29-rule", "mar1"}, {});
  REQUIRE(several);
  CHECK(several.value.catch_up_s == 60);
  CHECK(several.value.shard_count == 16);
  CHECK(several.value.feb29_rule == "mar1");
}

TEST_CASE("positional words are kept for the sub-command", "[config]") {
  auto r = chime::load_settings({"serve", "--http-port", "9000", "extra"}, {});
  REQUIRE(r);
  CHECK(r.rest == args{"serve", "extra"});
  CHECK(r.value.http_port == 9000);
  CHECK(chime::load_settings({"--help"}, {}).help);
}

TEST_CASE("a CHIME_ environment variable sets its key", "[config]") {
  auto r = chime::load_settings(
    {}, {"CHIME_HTTP_PORT=9001", "CHIME_CATCH_UP_S=3600",
         "CHIME_EMAIL_URL=http://mail.test:8025"});
  REQUIRE(r);
  CHECK(r.value.http_port == 9001);
  CHECK(r.value.catch_up_s == 3600);
  CHECK(r.value.email_url == "http://mail.test:8025");
}

TEST_CASE("a flag wins over the environment", "[config]") {
  auto r = chime::load_settings({"--http-port", "9000"}, {"CHIME_HTTP_PORT=9001"});
  REQUIRE(r);
  CHECK(r.value.http_port == 9000);
}

TEST_CASE("environment variables that name no key are ignored", "[config]") {
  auto r = chime::load_settings(
    {}, {"CHIME_DATA_DIR=/tmp/chime-data", "PATH=/usr/bin", "HTTP_PORT=1",
         "CHIME_HTTP_PORT=9001"});
  REQUIRE(r);
  CHECK(r.error.empty());
  CHECK(r.value.http_port == 9001);
}

TEST_CASE("a config file sets keys and skips comments and blank lines",
          "[config]") {
  temp_config file{"# Chime node\n"
                   "\n"
                   "[http]\n"
                   "http-port = 9100   # the API\n"
                   "  # indented comment\n"
                   "api-token = \"s3cret\"\n"
                   "shard-count=64\n"};
  auto r = chime::load_settings({"--config", file.path()}, {});
  REQUIRE(r);
  CHECK(r.value.http_port == 9100);
  CHECK(r.value.api_token == "s3cret");
  CHECK(r.value.shard_count == 64);
  CHECK(r.value.config_file == file.path());
  CHECK(r.value.catch_up_s == 259200); // untouched keys keep their defaults
}

TEST_CASE("the config file may be named by CHIME_CONFIG or --config=FILE",
          "[config]") {
  temp_config file{"http-port = 9100\n"};
  auto by_env = chime::load_settings({}, {"CHIME_CONFIG=" + file.path()});
  REQUIRE(by_env);
  CHECK(by_env.value.http_port == 9100);
  auto by_flag = chime::load_settings({"--config=" + file.path()}, {});
  REQUIRE(by_flag);
  CHECK(by_flag.value.http_port == 9100);
}

TEST_CASE("the environment wins over the config file and flags win over both",
          "[config]") {
  temp_config file{"http-port = 9100\ncatch-up-s = 100\n"};
  auto env_wins = chime::load_settings({"--config", file.path()},
                                       {"CHIME_HTTP_PORT=9001"});
  REQUIRE(env_wins);
  CHECK(env_wins.value.http_port == 9001);
  CHECK(env_wins.value.catch_up_s == 100);

  auto flag_wins = chime::load_settings(
    {"--config", file.path(), "--http-port", "9000"}, {"CHIME_HTTP_PORT=9001"});
  REQUIRE(flag_wins);
  CHECK(flag_wins.value.http_port == 9000);

  // Order on the command line does not matter: flags are applied last.
  auto flag_first = chime::load_settings(
    {"--http-port", "9000", "--config", file.path()}, {});
  REQUIRE(flag_first);
  CHECK(flag_first.value.http_port == 9000);
}

TEST_CASE("an unknown flag is rejected and named", "[config]") {
  auto spaced = chime::load_settings({"--nope", "1"}, {});
  CHECK_FALSE(spaced);
  CHECK_THAT(spaced.error, Catch::Contains("nope"));
  auto joined = chime::load_settings({"--nope=1"}, {});
  CHECK_FALSE(joined);
  CHECK_THAT(joined.error, Catch::Contains("nope"));
}

TEST_CASE("an invalid flag value is rejected naming the key", "[config]") {
  for (auto bad : {"abc", "0", "65536", "-1", "80x", ""}) {
    INFO(bad);
    auto r = chime::load_settings({"--http-port", bad}, {});
    CHECK_FALSE(r);
    CHECK_THAT(r.error, Catch::Contains("http-port"));
  }
  auto missing = chime::load_settings({"--http-port"}, {});
  CHECK_FALSE(missing);
  CHECK_THAT(missing.error, Catch::Contains("http-port"));
}

TEST_CASE("an invalid environment value is rejected naming the variable",
          "[config]") {
  auto r = chime::load_settings({}, {"CHIME_HTTP_PORT=abc"});
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains("CHIME_HTTP_PORT"));
  CHECK_THAT(r.error, Catch::Contains("http-port"));
}

TEST_CASE("the feb29 rule is feb28 or mar1 and nothing else", "[config]") {
  CHECK(chime::load_settings({"--feb29-rule", "mar1"}, {}).value.feb29_rule
        == "mar1");
  auto r = chime::load_settings({"--feb29-rule", "mar2"}, {});
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains("feb29-rule"));
  CHECK_THAT(r.error, Catch::Contains("mar2"));
}

TEST_CASE("the cpu policy is batch unless normal is asked for, and nothing "
          "else",
          "[config]") {
  CHECK(chime::load_settings({}, {}).value.cpu_policy == "batch");
  CHECK(chime::load_settings({}, {"CHIME_CPU_POLICY=normal"}).value.cpu_policy
        == "normal");
  auto r = chime::load_settings({"--cpu-policy", "idle"}, {});
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains("cpu-policy"));
  CHECK_THAT(r.error, Catch::Contains("idle"));
}

TEST_CASE("the virtual clock start is read as a UTC instant", "[config]") {
  auto r = chime::load_settings({"--clock-start", "2027-03-15T03:14:00Z"}, {});
  REQUIRE(r);
  REQUIRE(r.value.clock_start_ms.has_value());
  CHECK(*r.value.clock_start_ms == epoch_ms(2027, 3, 15, 3, 14));
  CHECK(*r.value.clock_start_ms == 1805080440000);
  auto env = chime::load_settings({}, {"CHIME_CLOCK_START=2027-03-15T03:14:00Z"});
  REQUIRE(env);
  CHECK(env.value.clock_start_ms == epoch_ms(2027, 3, 15, 3, 14));
}

TEST_CASE("an invalid clock start is rejected naming the key", "[config]") {
  for (auto bad : {"yesterday", "2027-03-15", "2027-03-15T03:14:00",
                   "2027-03-15 03:14:00Z", "2027-02-30T00:00:00Z",
                   "2027-13-01T00:00:00Z", "2027-03-15T24:00:00Z",
                   "2027-03-15T03:60:00Z", "2027-03-15T03:14:00ZZ"}) {
    INFO(bad);
    auto r = chime::load_settings({"--clock-start", bad}, {});
    CHECK_FALSE(r);
    CHECK_THAT(r.error, Catch::Contains("clock-start"));
  }
}

TEST_CASE("parse_utc_instant reads Z, fractional seconds and offsets",
          "[config]") {
  CHECK(chime::parse_utc_instant("2027-03-15T03:14:00Z")
        == epoch_ms(2027, 3, 15, 3, 14));
  CHECK(chime::parse_utc_instant("1970-01-01T00:00:00Z") == 0);
  CHECK(chime::parse_utc_instant("2027-03-15T03:14:00.250Z")
        == epoch_ms(2027, 3, 15, 3, 14) + 250);
  // 09:00 in Kathmandu is 03:15Z; 08:00 at -04:00 is 12:00Z.
  CHECK(chime::parse_utc_instant("2027-03-15T09:00:00+05:45")
        == epoch_ms(2027, 3, 15, 3, 15));
  CHECK(chime::parse_utc_instant("2027-03-15T08:00:00-04:00")
        == epoch_ms(2027, 3, 15, 12, 0));
  CHECK(chime::parse_utc_instant("2028-02-29T00:00:00Z")
        == epoch_ms(2028, 2, 29, 0, 0));
  CHECK_FALSE(chime::parse_utc_instant("2027-02-29T00:00:00Z").has_value());
  CHECK_FALSE(chime::parse_utc_instant("").has_value());
  CHECK_FALSE(chime::parse_utc_instant("2027-03-15T03:14:00+0545").has_value());
}

TEST_CASE("an unknown key in the config file is rejected with file and line",
          "[config]") {
  temp_config file{"# settings\nhttp-port = 9100\nnickname = Ada\n"};
  auto r = chime::load_settings({"--config", file.path()}, {});
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains(file.path() + ":3"));
  CHECK_THAT(r.error, Catch::Contains("nickname"));
}

TEST_CASE("an invalid value in the config file is rejected with file, line and "
          "key",
          "[config]") {
  temp_config file{"\n\nhttp-port = lots\n"};
  auto r = chime::load_settings({"--config", file.path()}, {});
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains(file.path() + ":3"));
  CHECK_THAT(r.error, Catch::Contains("http-port"));
  CHECK_THAT(r.error, Catch::Contains("lots"));
}

TEST_CASE("a config file line without '=' is rejected with file and line",
          "[config]") {
  temp_config file{"http-port 9100\n"};
  auto r = chime::load_settings({"--config", file.path()}, {});
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains(file.path() + ":1"));
}

TEST_CASE("a missing config file is rejected naming it", "[config]") {
  auto path = (std::filesystem::temp_directory_path()
               / "chime-config-test-does-not-exist.conf")
                .string();
  auto r = chime::load_settings({"--config", path}, {});
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains(path));
}

TEST_CASE("every key is documented in the help text", "[config]") {
  auto help = chime::settings_help();
  for (auto key : {"--config", "--http-port", "CHIME_HTTP_PORT", "--clock-start",
                   "CHIME_CLOCK_START", "--catch-up-s", "--feb29-rule",
                   "--shard-count", "--api-token"}) {
    INFO(key);
    CHECK_THAT(help, Catch::Contains(key));
  }
}

TEST_CASE("a clock start with out-of-range or non-numeric fields is rejected",
          "[config]") {
  for (auto bad : {"2027-03-15T-1:14:00Z", "2027-03-15T03:-5:00Z",
                   "2027-03-15T03:14:nanZ", "2027-03-15T03:14:1e1Z",
                   "2027-03-15T03:14:00+99:99", "2027-03-15T03:14:00+05:4x",
                   "27-03-15T03:14:00Z"}) {
    INFO(bad);
    CHECK_FALSE(chime::parse_utc_instant(bad).has_value());
  }
}

TEST_CASE("a '#' inside a quoted config value is part of the value",
          "[config]") {
  temp_config file{"api-token = \"ab#cd\"  # the token\n"};
  auto r = chime::load_settings({"--config", file.path()}, {});
  REQUIRE(r);
  CHECK(r.value.api_token == "ab#cd");
}

// -- AMQP URIs (RabbitMQ's URI spec) --------------------------------------------

#include "config/amqp_uri.hpp"

TEST_CASE("the default --amqp-url names the default virtual host '/'") {
  auto loaded = chime::load_settings({}, {});
  REQUIRE(loaded);
  std::string error;
  auto uri = chime::parse_amqp_uri(loaded.value.amqp_url, error);
  REQUIRE(uri);
  CHECK(uri->vhost == "/");
  CHECK(uri->host == "127.0.0.1");
  CHECK(uri->port == 55672);
}

TEST_CASE("AMQP URIs are taken apart as RabbitMQ's URI spec says") {
  std::string error;
  auto parse = [&](const std::string& text) {
    error.clear();
    return chime::parse_amqp_uri(text, error);
  };
  auto plain = parse("amqp://h");
  REQUIRE(plain);
  CHECK((plain->user == "guest" && plain->password == "guest"));
  CHECK((plain->host == "h" && plain->port == 5672 && plain->vhost == "/"));
  auto full = parse("amqp://us%40er:p%3Ass@broker.example:5673/%2F");
  REQUIRE(full);
  CHECK(full->user == "us@er");
  CHECK(full->password == "p:ss");
  CHECK(full->host == "broker.example");
  CHECK(full->port == 5673);
  CHECK(full->vhost == "/");
  auto named = parse("amqp://u:p@[::1]:5672/prod%2Feu?heartbeat=10");
  REQUIRE(named);
  CHECK(named->host == "::1");
  CHECK(named->vhost == "prod/eu");
  // The empty path names the vhost "", which no broker has: refused here,
  // with the way to write the default one.
  CHECK_FALSE(parse("amqp://guest:guest@127.0.0.1:55672/"));
  CHECK(error.find("%2F") != std::string::npos);
  CHECK_FALSE(parse("amqp://h/a/b"));
  CHECK_FALSE(parse("amqp://h:0/x"));
  CHECK_FALSE(parse("amqp://h:port/x"));
  CHECK_FALSE(parse("amqp://h/%zz"));
  CHECK_FALSE(parse("http://h/"));
}

TEST_CASE("a bad --amqp-url stops the node with a message naming it") {
  auto loaded = chime::load_settings(
    {"--amqp-url", "amqp://guest:guest@127.0.0.1:5672/"}, {});
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error.find("amqp-url") != std::string::npos);
  CHECK(loaded.error.find("%2F") != std::string::npos);
}

TEST_CASE("a cluster port needs a cluster secret and an API token") {
  auto no_secret = chime::load_settings({"--cluster-port", "7100",
                                         "--api-token", "t"}, {});
  CHECK_FALSE(no_secret);
  CHECK_THAT(no_secret.error, Catch::Contains("cluster-secret"));
  auto no_token = chime::load_settings({"--cluster-port", "7100",
                                        "--cluster-secret", "s"}, {});
  CHECK_FALSE(no_token);
  CHECK_THAT(no_token.error, Catch::Contains("api-token"));
  auto both = chime::load_settings(
    {"--cluster-port", "7100", "--cluster-secret", "s"}, {"CHIME_API_TOKEN=t"});
  CHECK(both);
  auto alone = chime::load_settings({}, {});
  CHECK(alone);
  CHECK(alone.value.api_token.empty());
}
