#pragma once

// The statuses a delivery goes through, defined once. Records carry the
// enum; the journal's column and the API's field carry its name, which
// these helpers read and write.

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace chime {

enum class delivery_status : uint8_t {
  scheduled,  ///< recorded, its broker hand-off not yet confirmed
  handed_off, ///< in the broker
  failed,     ///< an attempt failed; a retry is owed
  sent,
  dead,      ///< given up (permanent error, or attempts exhausted)
  expired,   ///< due longer ago than the catch-up window
  cancelled, ///< the user was deleted, or the occasion removed or moved
};

inline constexpr std::array<delivery_status, 7> all_delivery_statuses = {
  delivery_status::scheduled, delivery_status::handed_off,
  delivery_status::sent,      delivery_status::failed,
  delivery_status::dead,      delivery_status::expired,
  delivery_status::cancelled};

constexpr std::string_view to_string(delivery_status s) {
  switch (s) {
    case delivery_status::scheduled: return "scheduled";
    case delivery_status::handed_off: return "handed_off";
    case delivery_status::failed: return "failed";
    case delivery_status::sent: return "sent";
    case delivery_status::dead: return "dead";
    case delivery_status::expired: return "expired";
    case delivery_status::cancelled: return "cancelled";
  }
  return "unknown";
}

constexpr std::optional<delivery_status> parse_delivery_status(std::string_view name) {
  for (auto s : all_delivery_statuses)
    if (to_string(s) == name)
      return s;
  return std::nullopt;
}

/// The name as a string of its own (for SQL arrays, JSON, metric labels).
inline std::string status_name(delivery_status s) {
  return std::string{to_string(s)};
}

/// The status a journal wrote by name (its column holds only these, so an
/// unknown name is a broken store, not bad input).
inline delivery_status status_named(std::string_view name) {
  if (auto s = parse_delivery_status(name))
    return *s;
  throw std::invalid_argument("unknown delivery status '" + std::string{name} + "'");
}

/// Still owed: an attempt may come.
constexpr bool is_open(delivery_status s) {
  return s == delivery_status::scheduled || s == delivery_status::handed_off
         || s == delivery_status::failed;
}

/// The open statuses as an SQL list, "('scheduled', ...)".
inline std::string open_statuses_sql() {
  std::string out = "(";
  for (auto s : all_delivery_statuses)
    if (is_open(s))
      out.append(out.size() > 1 ? ", '" : "'").append(to_string(s)).append("'");
  return out + ")";
}

} // namespace chime
