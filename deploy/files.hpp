// Small helpers for the operator tools: bounded reads, atomic writes, HOST:PORT flags.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

// Reads a whole file of at most `max_bytes`; kLimit when larger, kIo naming the path otherwise.
Result<std::string> ReadSmallFile(const std::filesystem::path& path, std::size_t max_bytes);
// Writes to a temporary file beside `path`, fsyncs, renames: readers see old or new, never half.
Status WriteFileAtomically(const std::filesystem::path& path, std::string_view contents);

struct HostPort {
  std::string host;
  int port = 0;
};
// "HOST:PORT" or "[IPv6]:PORT" with the port in [min_port, 65535]; kInvalidArgument naming
// `flag` and what was found otherwise.
Result<HostPort> ParseHostPort(std::string_view flag, const std::string& text, int min_port);

}  // namespace edgefleet::deploy
