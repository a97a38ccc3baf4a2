#pragma once

#include <cstdint>
#include <string_view>

namespace chime {

/// FNV-1a: a hash every node and every build agrees on.
inline uint64_t fnv1a(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// The shard a user belongs to: FNV-1a of the id, so every node and every
/// build agrees without coordination.
inline uint32_t shard_of(std::string_view user_id, uint32_t shard_count) {
  return static_cast<uint32_t>(fnv1a(user_id) % shard_count);
}

/// The user id inside an idempotency key "{user_id}:{occasion}:{date}".
inline std::string_view user_of_key(std::string_view key) {
  return key.substr(0, key.find(':'));
}

} // namespace chime
