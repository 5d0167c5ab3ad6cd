// Polls a condition until it holds or a time bound passes; on timeout, a test failure naming
// what was awaited. For end-to-end tests that wait on other processes (files, logs, HTTP).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

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

}  // namespace edgefleet::testing
