// Whether a device can run a bundle at all, judged before a rollout publishes anything: from the
// backends the device reports in its status (name, version, formats) against the variants of
// the signed manifest (format, backend name and version range). Operators are not compared (a
// device does not publish its operator tables); the agent still checks them before download.
//
// Thread safety: free functions on plain values.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "manifests/manifest.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {

// Why a device with `backends` can run none of `variants` ("reports no backends",
// "reports no backend formats (an agent older than the backend plugins)", or per variant what
// is missing); nullopt when some variant fits one of its backends.
std::optional<std::string> NoVariantReason(const std::vector<manifests::Variant>& variants,
                                           const std::vector<telemetry::BackendInfo>& backends);

}  // namespace edgefleet::deploy
