#pragma once

// CHIME_ASSERT(condition, why): the invariants the design rests on, checked
// in every build. A broken one is logged (the expression, the reason, where)
// and the process aborts: going on would break a guarantee (a message twice,
// or lost), while a restart recovers from the journal.

namespace chime {

[[noreturn]] void assertion_failed(const char* expression, const char* why,
                                   const char* file, int line);

} // namespace chime

#define CHIME_ASSERT(condition, why)                                           \
  ((condition) ? static_cast<void>(0)                                          \
               : ::chime::assertion_failed(#condition, why, __FILE__, __LINE__))
