#pragma once

#include <cstdint>
#include <string_view>

namespace chime {

/// The shard a user belongs to: FNV-1a of the id, so every node and every
/// build agrees without coordination.
inline uint32_t shard_of(std::string_view user_id, uint32_t shard_count) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : user_id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<uint32_t>(h % shard_count);
}

} // namespace chime
