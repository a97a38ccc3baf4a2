#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace chime {

/// Delay before retry number `attempt` (1 = the first retry): exponential
/// backoff with full jitter, uniform in [0, min(cap, base * 2^(attempt-1))],
/// and never shorter than the server's Retry-After when it sent one
/// (`retry_after` < 0: none).
std::chrono::milliseconds backoff_delay(uint32_t attempt,
                                        std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap,
                                        std::chrono::milliseconds retry_after,
                                        std::mt19937_64& rng);

} // namespace chime
