#include "runtime/assert.hpp"

#include "runtime/log.hpp"

#include <cstdlib>

namespace chime {

void assertion_failed(const char* expression, const char* why,
                      const char* file, int line) {
  log(log_level::error, "assert", why,
      {{"expression", std::string{expression}},
       {"file", std::string{file}},
       {"line", int64_t{line}}});
  std::abort();
}

} // namespace chime
