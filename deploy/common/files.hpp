// Small helpers for the operator tools: HOST:PORT and duration flags, and the file helpers they
// share.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "manifests/files.hpp"
#include "manifests/result.hpp"

namespace edgefleet::deploy {

// Bounded reads and atomic writes are manifests/files.hpp's (one copy for every module).
using manifests::ReadSmallFile;
using manifests::WriteFileAtomically;

struct HostPort {
  std::string host;
  int port = 0;
};
// "HOST:PORT" or "[IPv6]:PORT" with the port in [min_port, 65535]; kInvalidArgument naming
// `flag` and what was found otherwise.
Result<HostPort> ParseHostPort(std::string_view flag, const std::string& text, int min_port);

// A positive duration "90d", "12h", "30m" or "45s" (at most 100 years); kInvalidArgument naming
// the text otherwise.
Result<std::chrono::seconds> ParseDuration(std::string_view text);

}  // namespace edgefleet::deploy
