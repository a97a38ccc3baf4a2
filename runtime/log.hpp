#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace chime {

enum class log_level : uint8_t { debug = 1, info, warn, error };

using log_value = std::variant<int64_t, double, bool, std::string>;
using log_field = std::pair<std::string_view, log_value>;

/// Writes one JSON line to stderr: ts, level, component, msg, then fields.
/// Thread-safe. Personal data (names, emails) never goes into info-level
/// fields: log user ids only.
void log(log_level level, std::string_view component, std::string_view msg,
         std::initializer_list<log_field> fields = {});

/// Lines below this level are dropped.
void set_log_level(log_level level);

/// Whether a line of `level` is written: a hot path asks before it builds
/// the fields of a debug line.
bool log_enabled(log_level level);
log_level parse_log_level(std::string_view name);

/// How many error-level lines were written (simulations fail on any).
uint64_t error_log_count();

} // namespace chime
