// Assertion helpers for the manifests tests.
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "manifests/result.hpp"

namespace edgefleet::manifests::testing {

inline std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Succeeds when `result` failed with `code` and one line of its message equals `line` exactly.
template <typename R>
::testing::AssertionResult FailsWithLine(const R& result, ErrorCode code, std::string_view line) {
  if (result.has_value()) return ::testing::AssertionFailure() << "succeeded unexpectedly";
  if (result.error().code != code) {
    return ::testing::AssertionFailure() << "code " << ToString(result.error().code)
                                         << ", expected " << ToString(code) << "; message:\n"
                                         << result.error().message;
  }
  for (const auto& l : Lines(result.error().message)) {
    if (l == line) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no line\n  " << line << "\nin message:\n"
                                       << result.error().message;
}

template <typename R>
::testing::AssertionResult ParseFailsWith(const R& result, std::string_view line) {
  return FailsWithLine(result, ErrorCode::kParse, line);
}

}  // namespace edgefleet::manifests::testing
