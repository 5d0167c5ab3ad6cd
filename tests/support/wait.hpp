// Polls a condition until it holds or a time bound passes; on timeout, a test failure naming
// what was awaited. And a process's port file, the same way. For end-to-end tests that wait on
// other processes (files, logs, HTTP).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/temp_dir.hpp"

namespace edgefleet::testing {

inline bool WaitFor(const std::string& what, std::chrono::milliseconds timeout,
                    const std::function<bool()>& pred,
                    std::chrono::milliseconds poll = std::chrono::milliseconds(200)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(poll);
  }
  if (pred()) return true;
  ADD_FAILURE() << "timed out after " << timeout.count() << " ms waiting for: " << what;
  return false;
}

// The port a process wrote to `port_file` (the CLIs write it atomically once they listen), or 0
// after a test failure when none came within `timeout`.
inline int WaitForPortFile(const std::filesystem::path& port_file,
                           std::chrono::milliseconds timeout) {
  int port = 0;
  WaitFor(port_file.string(), timeout, [&] {
    std::error_code ec;
    if (!std::filesystem::exists(port_file, ec)) return false;
    port = std::stoi(ReadFile(port_file));
    return port > 0;
  });
  return port;
}

}  // namespace edgefleet::testing
