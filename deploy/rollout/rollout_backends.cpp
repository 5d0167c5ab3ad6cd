// Can a device run a bundle (see deploy/rollout/rollout_backends.hpp).
#include "deploy/rollout/rollout_backends.hpp"

#include <algorithm>

#include "manifests/join.hpp"
#include "manifests/log_value.hpp"
#include "manifests/semver.hpp"

namespace edgefleet::deploy {
namespace {

// Why `backend` cannot run `variant`, or nullopt when it can.
std::optional<std::string> Mismatch(const manifests::Variant& variant,
                                    const telemetry::BackendInfo& backend) {
  const std::string shown = manifests::QuoteName(backend.name, '"');
  const auto required =
      std::find_if(variant.backends.begin(), variant.backends.end(),
                   [&](const manifests::BackendRequirement& r) { return r.name == backend.name; });
  if (required == variant.backends.end()) return shown + " is not a backend the variant names";
  if (std::find(backend.formats.begin(), backend.formats.end(), variant.format) ==
      backend.formats.end()) {
    return shown + " does not load " + manifests::QuoteName(variant.format, '"');
  }
  auto version = manifests::SemVer::Parse(backend.version);
  if (!version) return shown + " reports version " + manifests::QuoteName(backend.version, '"');
  for (const auto& r : variant.backends) {
    if (r.name == backend.name && r.version.Contains(*version)) return std::nullopt;
  }
  return shown + " " + version->ToString() + " is outside " + required->version.text();
}

}  // namespace

std::optional<std::string> NoVariantReason(const std::vector<manifests::Variant>& variants,
                                           const std::vector<telemetry::BackendInfo>& backends) {
  if (backends.empty()) return "reports no backends";
  const bool any_formats = std::any_of(backends.begin(), backends.end(),
                                       [](const auto& b) { return !b.formats.empty(); });
  if (!any_formats) {
    return "reports no backend formats (an agent older than the backend plugins)";
  }
  std::vector<std::string> reasons;
  for (const auto& variant : variants) {
    std::vector<std::string> why;
    for (const auto& backend : backends) {
      auto mismatch = Mismatch(variant, backend);
      if (!mismatch) return std::nullopt;
      why.push_back(*mismatch);
    }
    reasons.push_back("variant " + manifests::QuoteName(variant.id, '"') + " (" +
                      manifests::QuoteName(variant.format, '"') + "): " + Join(why, ", "));
  }
  return Join(reasons, "; ");
}

}  // namespace edgefleet::deploy
