// The one home of the agent's serving numbers. Per model version: requests and their client (4xx)
// and server (5xx) failures, the end-to-end latency of successful requests (since start, for
// /metrics and the watch window; and per telemetry window), the time spent per stage, and the
// top-1 predictions that feedback labels. `main` owns one ServingStats and hands it to the local
// API (which records), the update machine's watch (Stats) and the fleet link (TakeWindows); none
// of them reads another's numbers through the HTTP server.
//
// Entries are made on first use and live as long as the object (a handful of versions over an
// agent's life).
//
// Thread safety: every method may be called from any thread, except TakeWindows, which one
// thread at a time calls (the telemetry thread). Counters are relaxed atomics: a reader sees each
// counter exactly, but not all counters of one request at the same instant.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telemetry/accuracy_tracker.hpp"
#include "telemetry/latency_histogram.hpp"
#include "telemetry/prometheus_text.hpp"

namespace edgefleet::agent {

// Counters of one model version since the stats began (the watch window reads them).
struct VersionStats {
  std::uint64_t requests = 0;          // infer requests that resolved to this version
  std::uint64_t client_errors = 0;     // 4xx among them
  std::uint64_t server_errors = 0;     // 5xx among them
  telemetry::LatencySnapshot latency;  // successful requests, end to end
  std::uint64_t labeled = 0;           // feedback accepted
  std::uint64_t correct = 0;           // ... whose label was the top-1 class
};

// One model version's traffic in one telemetry window (ServingStats::TakeWindows).
struct WindowStats {
  std::string model;
  std::string version;
  std::uint64_t requests = 0;  // infer requests answered, any outcome
  std::uint64_t client_errors = 0;
  std::uint64_t server_errors = 0;
  telemetry::LatencySnapshot latency;  // successful requests, end to end
  double preprocess_ms = 0;            // sums over successful requests
  double infer_ms = 0;
  double postprocess_ms = 0;
  std::uint64_t labeled = 0;  // feedback accepted in the window
  std::uint64_t correct = 0;
  std::uint64_t predictions = 0;  // top-1 predictions remembered in the window
  double confidence_mean = 0;     // of their top-1 confidence
  double confidence_std = 0;
};

// Where the time of one successful request went.
struct InferTiming {
  double preprocess_ms = 0;
  double infer_ms = 0;
  double postprocess_ms = 0;
  double total_ms = 0;  // from the read body to the response, the wait for a worker included
  double queue_ms = 0;  // the wait for a worker alone
};

// What feedback for one request id did.
struct FeedbackResult {
  enum class Outcome { kCorrect, kWrong, kDuplicate, kUnknownId };
  Outcome outcome = Outcome::kUnknownId;
  std::string version;                   // the version that served the request (known ids)
  telemetry::AccuracySnapshot accuracy;  // that version's, after this feedback
};

using telemetry::PrometheusLabelValue;

class ServingStats final {
 public:
  // `feedback_capacity`: request ids remembered per model version for feedback.
  explicit ServingStats(std::size_t feedback_capacity = 10000);
  ~ServingStats();
  ServingStats(const ServingStats&) = delete;
  ServingStats& operator=(const ServingStats&) = delete;

  // An infer request that resolved to `model` at `version` and failed with HTTP `status`
  // (>= 500 counts as a server error, anything else as a client error).
  void RecordFailure(const std::string& model, const std::string& version, int status);
  // A successful infer of `samples` inferences (the batch size). With `top1`, its prediction is
  // remembered under `request_id` for feedback.
  void RecordSuccess(const std::string& model, const std::string& version,
                     const InferTiming& timing, const std::string& request_id,
                     const std::optional<telemetry::Top1>& top1, std::uint64_t samples = 1);

  // Infer requests in progress (edgefleet_inference_in_flight): held by the local API while a
  // worker handles the request, until its response is set. (Requests still waiting for a worker
  // are the HTTP layer's edgefleet_inference_queue_waiting.)
  class InFlight {
   public:
    explicit InFlight(ServingStats& stats) : stats_(stats) {
      stats_.in_flight_.fetch_add(1, std::memory_order_relaxed);
    }
    ~InFlight() { stats_.in_flight_.fetch_sub(1, std::memory_order_relaxed); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    ServingStats& stats_;
  };
  // The true label of an earlier request of `model`, looked up in every version of it.
  FeedbackResult Feedback(const std::string& model, const std::string& request_id,
                          std::int64_t label);

  // Counters of `model` at `version` so far; all zero when that version never served.
  VersionStats Stats(const std::string& model, const std::string& version) const;
  // Every version's traffic since the previous call (the first call: since construction), so
  // each request, latency sample and feedback belongs to exactly one window; versions that had
  // nothing in the window are included with zeros.
  std::vector<WindowStats> TakeWindows();
  // The Prometheus text of the per-version families (edgefleet_inference_*, predictions,
  // feedback) and the in-flight gauge, each with its HELP and TYPE lines.
  std::string PrometheusText() const;

 private:
  struct VersionMetrics;
  class Registry;
  std::unique_ptr<Registry> registry_;
  std::atomic<std::uint64_t> feedback_unknown_{0};
  std::atomic<std::int64_t> in_flight_{0};
};

}  // namespace edgefleet::agent
