// RFC 3339 timestamps as used in every signed document ("2026-11-21T05:00:00Z", UTC only).
//
// Thread safety: free functions without shared state.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "manifests/result.hpp"

namespace edgefleet::manifests {

using Timestamp = std::chrono::sys_seconds;

// Parses "YYYY-MM-DDTHH:MM:SSZ" (UTC, 'Z' suffix, no fractions). Fails with kParse naming the
// expected form and what was found.
Result<Timestamp> ParseTimestamp(std::string_view text);

std::string FormatTimestamp(Timestamp t);

Timestamp Now();

// Unix time in milliseconds (the system clock): the one copy every module stamps its records
// and messages with.
std::int64_t NowMs();

}  // namespace edgefleet::manifests
