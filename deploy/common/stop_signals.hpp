// How the long-running operator commands (collect, serve, rollout) stop, and how they log.
//
// StopSignals blocks SIGTERM and SIGINT from its construction, which must come before any thread
// is started: every thread inherits the mask, so the signals reach only Wait(). SIGPIPE is
// ignored (a peer closing a socket must not end the process). The destructor unblocks them.
//
// Thread safety: construct, Wait and destroy on the command's main thread.
#pragma once

#include <signal.h>

#include <chrono>
#include <string>

namespace edgefleet::deploy {

class StopSignals final {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The signal taken within `timeout` (SIGTERM or SIGINT), or 0 when none came.
  int Wait(std::chrono::milliseconds timeout) const;
  // "TERM", "INT" (for logs).
  static const char* Name(int signo);

 private:
  sigset_t set_;
};

// Logs as key=value lines on stderr, each starting `ts=<UTC RFC 3339 with ms> level=<level>`
// (the agent's format), through a default spdlog logger named `name`.
void UseKeyValueLog(const std::string& name);

}  // namespace edgefleet::deploy
