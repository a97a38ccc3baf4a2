#pragma once

// The fuzz targets' property check: a broken property is a crash, so that
// libFuzzer saves the input that broke it (as it does for a sanitizer report).

#include <cstdio>
#include <cstdlib>

#define CHIME_FUZZ_CHECK(cond)                                                 \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                     \
      std::abort();                                                            \
    }                                                                          \
  } while (false)
