#include "runtime/log.hpp"

#include <date/date.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

namespace chime {

namespace {

std::atomic<log_level> min_level{log_level::info};
std::atomic<uint64_t> errors{0};
std::mutex out_mtx;

const char* level_name(log_level l) {
  switch (l) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    default:
      return "error";
  }
}

} // namespace

bool log_enabled(log_level level) {
  return level >= min_level.load(std::memory_order_relaxed);
}

void set_log_level(log_level level) {
  min_level = level;
}

log_level parse_log_level(std::string_view name) {
  if (name == "debug")
    return log_level::debug;
  if (name == "warn")
    return log_level::warn;
  if (name == "error")
    return log_level::error;
  return log_level::info;
}

uint64_t error_log_count() {
  return errors.load();
}

void log(log_level level, std::string_view component, std::string_view msg,
         std::initializer_list<log_field> fields) {
  if (level == log_level::error)
    ++errors;
  if (level < min_level.load())
    return;
  nlohmann::json line;
  line["ts"] = date::format("%FT%TZ", std::chrono::time_point_cast<
                                        std::chrono::milliseconds>(
                                        std::chrono::system_clock::now()));
  line["level"] = level_name(level);
  line["component"] = component;
  line["msg"] = msg;
  for (auto& [key, value] : fields)
    std::visit([&, k = std::string{key}](auto& v) { line[k] = v; }, value);
  auto text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard<std::mutex> guard{out_mtx};
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
}

} // namespace chime
