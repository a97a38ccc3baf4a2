#pragma once

#include <csignal>

namespace chime {

/// Blocks SIGTERM and SIGINT in the calling thread and returns their set, so
/// that the caller takes them synchronously (sigwait, sigtimedwait). Call it
/// before starting any thread: threads inherit the blocked mask.
inline sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

} // namespace chime
