// CHIME_ASSERT is on in every build: a broken invariant ends the process
// (SIGABRT) after logging it, and a kept one costs nothing visible. Each
// case runs the assertion in a forked child and reads how the child ended.

#include "runtime/assert.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

namespace {

/// How a child running `body` ended: the signal that ended it, or 0 after
/// a normal exit.
template <class F>
int ending_signal(F body) {
  auto pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    body();
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

} // namespace

TEST_CASE("a broken invariant aborts the process", "[unit][assert]") {
  CHECK(ending_signal([] {
          int in_flight = 0;
          CHIME_ASSERT(in_flight > 0, "test: nothing in flight");
        })
        == SIGABRT);
}

TEST_CASE("a kept invariant lets the process go on", "[unit][assert]") {
  CHECK(ending_signal([] {
          int in_flight = 1;
          CHIME_ASSERT(in_flight > 0, "test: one in flight");
        })
        == 0);
}
