// Runs a real child process for end-to-end tests: arguments, optional stdin, a time bound, and
// captured stdout/stderr. The child is killed (SIGKILL, whole process group) when the bound passes.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace edgefleet::testing {

struct ProcessResult {
  int exit_code = -1;  // exit status, or 128+signal when killed
  bool timed_out = false;
  std::string out;
  std::string err;
};

ProcessResult RunProcess(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60),
                         const std::string& stdin_data = {});

}  // namespace edgefleet::testing
