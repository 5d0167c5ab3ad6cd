#include "deploy/common/stop_signals.hpp"

#include <pthread.h>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace edgefleet::deploy {

StopSignals::StopSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

StopSignals::~StopSignals() { pthread_sigmask(SIG_UNBLOCK, &set_, nullptr); }

int StopSignals::Wait(std::chrono::milliseconds timeout) const {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const timespec t{static_cast<time_t>(s.count()),
                   static_cast<long>((timeout - s).count()) * 1'000'000L};
  const int signo = sigtimedwait(&set_, nullptr, &t);
  return signo > 0 ? signo : 0;
}

const char* StopSignals::Name(int signo) {
  switch (signo) {
    case SIGTERM:
      return "TERM";
    case SIGINT:
      return "INT";
    default:
      return "OTHER";
  }
}

void UseKeyValueLog(const std::string& name) {
  auto logger = spdlog::stderr_logger_mt(name);
  logger->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace edgefleet::deploy
