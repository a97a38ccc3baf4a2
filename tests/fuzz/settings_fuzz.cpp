// Fuzzes the config parser (config/settings.hpp) with the input as a config
// file's text, as argv split on NUL bytes, and as environment entries split
// likewise (passed as a vector: the process environment is never touched),
// and the value parsers on their own: instants, seed lists, AMQP URIs.
// Properties: loading is deterministic, settings that load keep the
// cross-key rules, and an instant that parses reads back from its own
// canonical form.

#include "config/amqp_uri.hpp"
#include "config/settings.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace {

using namespace chime;
using strings = std::vector<std::string>;

/// The config file: an in-memory file, rewritten for every input, that the
/// parser opens by its /proc path like any other.
class config_file {
public:
  config_file() : fd_(memfd_create("chime-fuzz-config", 0)) {
    CHIME_FUZZ_CHECK(fd_ >= 0);
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& write(const std::string& text) {
    CHIME_FUZZ_CHECK(ftruncate(fd_, 0) == 0);
    CHIME_FUZZ_CHECK(pwrite(fd_, text.data(), text.size(), 0)
                     == static_cast<ssize_t>(text.size()));
    return path_;
  }

private:
  int fd_;
  std::string path_;
};

strings split_on_nul(const std::string& text) {
  strings out;
  size_t from = 0;
  for (size_t at; (at = text.find('\0', from)) != std::string::npos;
       from = at + 1)
    out.push_back(text.substr(from, at - from));
  out.push_back(text.substr(from));
  return out;
}

/// True when `words` would name a config file: the harness passes its own,
/// and an arbitrary path (a FIFO, /dev/zero) is the operator's to choose.
bool names_config_file(const strings& words) {
  for (auto& w : words)
    if (w == "--config" || w.rfind("--config=", 0) == 0
        || w.rfind("CHIME_CONFIG=", 0) == 0)
      return true;
  return false;
}

void check_loaded(const strings& args, const strings& env) {
  auto r = load_settings(args, env);
  auto again = load_settings(args, env);
  CHIME_FUZZ_CHECK(r.error == again.error && r.rest == again.rest);
  if (!r)
    return;
  auto& s = r.value;
  CHIME_FUZZ_CHECK(s.cluster_port == 0 || !s.cluster_secret.empty());
  CHIME_FUZZ_CHECK(s.seed.empty() || s.cluster_port != 0);
}

/// "YYYY-MM-DDTHH:MM:SS.mmmZ", or empty outside years 0000-9999.
std::string canonical_instant(int64_t ms) {
  auto s = static_cast<time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  auto frac = static_cast<int>(ms - static_cast<int64_t>(s) * 1000);
  std::tm tm{};
  if (gmtime_r(&s, &tm) == nullptr || tm.tm_year + 1900 < 0
      || tm.tm_year + 1900 > 9999)
    return {};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, frac);
  return buf;
}

void check_values(const std::string& text) {
  if (auto ms = parse_utc_instant(text)) {
    if (auto canonical = canonical_instant(*ms); !canonical.empty())
      CHIME_FUZZ_CHECK(parse_utc_instant(canonical) == ms);
  }
  (void) check_seeds(text);
  std::string error;
  auto uri = parse_amqp_uri(text, error);
  CHIME_FUZZ_CHECK(uri.has_value() == error.empty());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static config_file file;
  std::string text(reinterpret_cast<const char*>(data), size);
  check_loaded({"--config=" + file.write(text)}, {});
  if (auto words = split_on_nul(text); !names_config_file(words)) {
    check_loaded(words, {});
    check_loaded({}, words);
  }
  check_values(text);
  return 0;
}
