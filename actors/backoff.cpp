#include "actors/backoff.hpp"

#include <algorithm>

namespace chime {

std::chrono::milliseconds backoff_delay(uint32_t attempt,
                                        std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap,
                                        std::chrono::milliseconds retry_after,
                                        std::mt19937_64& rng) {
  auto exponent = std::min<uint32_t>(attempt == 0 ? 0 : attempt - 1, 40);
  auto ceiling = std::min<int64_t>(cap.count(),
                                   base.count() * (int64_t{1} << std::min<uint32_t>(exponent, 30)));
  std::uniform_int_distribution<int64_t> jitter{0, std::max<int64_t>(ceiling, 0)};
  auto delay = std::chrono::milliseconds{jitter(rng)};
  return std::max(delay, retry_after);
}

} // namespace chime
