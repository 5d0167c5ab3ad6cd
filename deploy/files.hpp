// Small-file helpers for the operator tools: bounded reads and atomic writes.
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

}  // namespace edgefleet::deploy
