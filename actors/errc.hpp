#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace chime {

/// Why a journal request failed, where callers react differently.
enum class journal_errc : uint8_t {
  not_found = 1, ///< no such user or delivery (404)
  conflict,      ///< email already used by a live user (409)
  unavailable,   ///< the database cannot be reached; retry later (503)
  fenced,        ///< written for a shard whose lease this node lost
  refused,       ///< the database refused this write's data (400)
  stale,         ///< an update read deliveries that have changed since
};

std::string to_string(journal_errc x);

inline caf::error make_error(journal_errc x) {
  return caf::error{static_cast<uint8_t>(x), caf::atom("journal")};
}

inline bool is(const caf::error& err, journal_errc x) {
  return err.category() == caf::atom("journal")
         && err.code() == static_cast<uint8_t>(x);
}

} // namespace chime
