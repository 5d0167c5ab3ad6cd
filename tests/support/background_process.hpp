// A long-running child process for end-to-end tests (the agent, the collector): its own process
// group, stdout and stderr appended to a log file, killed with the whole group at teardown.
//
// Thread safety: for the test's main thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace edgefleet::testing {

// A child process in its own process group; stdout and stderr append to `log_path`.
class BackgroundProcess final {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::filesystem::path& log_path);
  ~BackgroundProcess();  // SIGKILL to the whole group, then reaped
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  void Signal(int sig);
  void KillGroup();  // SIGKILL to the process group, then waits
  // Waits for exit; returns the exit code (128+signal when killed), or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace edgefleet::testing
