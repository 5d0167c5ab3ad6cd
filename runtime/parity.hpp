// The parity smoke test: a loaded candidate proves itself on the bundle's golden data (and
// against the active model) before it may serve.
//
// Thread safety: RunParity uses the sessions it is given from the calling thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::runtime {

struct GoldenSetReport {
  std::string name;
  std::size_t samples = 0;          // batch rows compared
  std::size_t values_compared = 0;  // elements of the first output
  double max_abs_diff = 0;
  double max_rel_diff = 0;
  std::size_t values_out_of_tolerance = 0;  // |a-b| > atol + rtol*|b|
  double top1_agreement = 0;                // argmax of candidate == argmax of expected, per sample
  std::optional<std::size_t> labeled;       // with labels: samples that had a label
  std::optional<std::size_t> correct;
  std::optional<double> active_agreement;  // candidate vs active, when one was given
};

struct ParityReport {
  bool pass = false;
  std::vector<std::string> failures;  // one line per broken rule, with the numbers
  manifests::ParityPolicy policy;     // what the numbers were judged against
  std::vector<GoldenSetReport> sets;
  std::size_t samples = 0;         // over all sets
  double top1_agreement = 0;       // over all sets
  std::optional<double> accuracy;  // over all labeled samples
  double latency_median_ms = 0;    // candidate, per golden run
  double latency_p95_ms = 0;
  // Against the active model, when one was given. The agreement is reported, not judged:
  // a retrained model rightly disagrees with its predecessor where that one was wrong (digits
  // v2 vs v1: 0.983), so quality is judged on golden outputs and labels; only the latency
  // factor is judged here.
  std::optional<double> active_agreement;  // top-1 agreement candidate vs active
  std::optional<double> active_latency_median_ms;
  std::optional<double> latency_factor;  // candidate median / active median

  nlohmann::json ToJson() const;
};

struct ParityOptions {
  int latency_runs = 5;  // timed runs of each golden set (after one warm-up)
};

// Runs every golden set of `manifest` (files under `bundle_dir`) through `candidate` and, when
// given, `active`, and judges them by manifest.parity. Returns a report with pass or fail and
// every number behind it. Golden data that cannot be read or does not fit the session (wrong
// shape, dtype, count of tensors) is an error (kIntegrity naming the file, expected and found),
// not a crash and not a "fail" report.
Result<ParityReport> RunParity(Session& candidate, const manifests::Manifest& manifest,
                               const std::filesystem::path& bundle_dir, Session* active = nullptr,
                               const ParityOptions& options = {});

}  // namespace edgefleet::runtime
