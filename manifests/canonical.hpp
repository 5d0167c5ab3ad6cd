// Canonical JSON: the bytes that signatures cover.
//
// Canonical form = nlohmann::json::dump() of the value: object keys sorted, no whitespace,
// UTF-8. Floating point numbers are refused inside signed bodies' integer fields by the parsers,
// and documents are produced by our own code, so the dump is reproducible.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace edgefleet::manifests {

std::string Canonical(const nlohmann::json& value);

}  // namespace edgefleet::manifests
