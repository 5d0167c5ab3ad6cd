// Which variant of a bundle a box serves: every variant some backend of the box can run is
// checked (the ONNX graph against its manifest and the backend's table), loaded and proven on
// the bundle's golden data (runtime/parity.hpp); the fastest that passes is served. Latency is
// the parity report's median over the golden runs on this box. Within kTieFraction of the
// fastest, the earlier in preference order wins: the configured backend order, then manifest
// order (runtime::RunnableVariants), so a box does not flip between engines on noise.
//
// Thread safety: MeasureVariants runs on the caller's thread and uses the sessions it loads and
// the active session it is given from that thread only.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "runtime/backend.hpp"
#include "runtime/compat.hpp"
#include "runtime/parity.hpp"

namespace edgefleet::agent {

inline constexpr double kTieFraction = 0.05;

struct VariantTrial {
  runtime::VariantChoice choice;
  std::optional<runtime::ParityReport> report;  // when it loaded and its golden data fit
  std::optional<Error> error;                   // why it did not get that far
  bool pass() const { return report && report->pass; }
};

struct VariantMeasurement {
  std::vector<VariantTrial> trials;           // in preference order
  std::optional<std::size_t> chosen;          // index into trials
  std::shared_ptr<runtime::Session> session;  // the chosen trial's, loaded
  // The chosen report (or, when none passed, every failure) plus "variant", "backend" and
  // "variants": one entry per trial with backend, format, latency, pass and reasons.
  nlohmann::json ReportJson(const manifests::Manifest& manifest) const;
  // Why no variant can serve: the one trial's own error or "parity: ..." when there was one
  // trial, else every trial's reason. Its code is the first trial's.
  Error Failure(const manifests::Manifest& manifest) const;
};

struct MeasureRequest {
  const manifests::Manifest* manifest = nullptr;
  std::filesystem::path slot_dir;      // the unpacked bundle
  std::string model;                   // for messages
  runtime::Session* active = nullptr;  // the serving model, for the latency factor
  std::function<runtime::SessionOptions(const runtime::Backend&, const manifests::Variant&)>
      options;
};

// Why the box serves what it serves, for the deployment's `loaded` transition (status shows it):
// "variant <id> on <backend>, fastest of N measured: <id> on <backend> <median> ms; <id> on
// <backend> failed: <reason>; ..." (each failure cut to 100 bytes).
std::string ChoiceReason(const manifests::Manifest& manifest, const VariantMeasurement& measured);

// Tries every runnable variant (RunnableVariants' order). Fails only when there is nothing to
// try; a trial that fails is recorded in the measurement.
Result<VariantMeasurement> MeasureVariants(const std::vector<runtime::VariantChoice>& runnable,
                                           const MeasureRequest& request);

}  // namespace edgefleet::agent
