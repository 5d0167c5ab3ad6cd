// The local inference API: the KServe v2 / Open Inference Protocol over HTTP on loopback, so
// Triton, KServe, Seldon and OpenVINO Model Server clients work against the box unchanged.
//
// Routes (every error body is the protocol's {"error": "<message>"}):
//   GET  /v2                                   server metadata
//   GET  /v2/health/live                       200 while the server runs
//   GET  /v2/health/ready                      200 when every configured model has an active
//                                              slot, else 503
//   GET  /v2/models/<name>[/versions/<v>]      model metadata (404 unknown model or version)
//   GET  /v2/models/<name>[/versions/<v>]/ready  200 ready, 503 loaded but not serving, 404
//   POST /v2/models/<name>[/versions/<v>]/infer  JSON tensors (application/json), or raw image
//                                              bytes (image/png, image/jpeg,
//                                              application/octet-stream) preprocessed exactly as
//                                              the serving instance's manifest declares;
//                                              or the binary tensor extension (a JSON header
//                                              of Inference-Header-Content-Length bytes, then
//                                              the raw bytes of inputs that give
//                                              parameters.binary_data_size)
//                                              or inputs read from a registered shared
//                                              memory region (parameters.shared_memory_region,
//                                              shared_memory_byte_size, shared_memory_offset)
//   POST /v2/models/<name>/feedback            {"id": "<request id>", "label": <int>}
//   GET  /v2/systemsharedmemory/status         registered regions (when shared_memory is on)
//   GET  /v2/systemsharedmemory/region/<r>/status
//   POST /v2/systemsharedmemory/region/<r>/register  {"key": "/shm_name", "offset": 0,
//                                              "byte_size": <n>}
//   POST /v2/systemsharedmemory/region/<r>/unregister, /v2/systemsharedmemory/unregister (all)
//   GET  /metrics                              Prometheus text, metric names edgefleet_*
// Statuses: 400 malformed or mistyped (a raw image too: undecodable, or over max_image_bytes to
// decode), 404 unknown model/version/route/request id, 409 feedback already given for that id,
// 413 body over max_body_bytes, 415 unsupported Content-Type, 503 model not serving, 500
// backend failure. Every infer response carries its request id: the
// JSON "id" (from the request: any UTF-8 string of up to 128 bytes without control characters,
// else the X-Request-Id header, else a generated UUID) and the X-Request-Id response header,
// errors included (the header only for an id of printable ASCII without spaces).
//
// An infer takes a snapshot of the instance that serves it (the active slot, or the slot that
// holds the requested version) and finishes on that snapshot, so a slot switch in the middle of
// a request neither fails it nor mixes one version's preprocessing with another's model.
//
// Thread safety: Start/Stop/port may be called from any thread; the server's own worker threads
// (a bounded pool) run the handlers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/image_decode.hpp"
#include "runtime/model_host.hpp"
#include "telemetry/latency_histogram.hpp"

namespace edgefleet::agent {

struct LocalApiOptions {
  std::string host = "127.0.0.1";  // loopback: the API has no authentication
  int port = 0;                    // 0 picks a free port; LocalApi::port() reports it
  int threads = 8;                 // worker threads; each keep-alive connection holds one
  std::size_t queue_limit = 64;    // accepted connections waiting for a worker; beyond it the
                                   // accept loop waits and the kernel backlog absorbs the rest
  std::size_t max_body_bytes = 16u << 20;  // after decoding; larger bodies get 413
  std::size_t max_elements = 4u << 20;     // per input tensor (shape product); larger get 400
  int max_json_depth = 32;                 // deeper JSON is refused before it is parsed
  int read_timeout_s = 5;                  // per socket read (slow clients cannot hold a worker)
  int write_timeout_s = 5;
  int keep_alive_timeout_s = 5;
  std::size_t keep_alive_max_requests = 1000;
  std::size_t feedback_capacity = 10000;  // request ids remembered per model version
  // What decoding one raw image body may cost (pixels, plus libjpeg's coefficient buffer for a
  // progressive JPEG), checked from the image's header before any pixel memory exists; images
  // that would cost more get 400 naming their dimensions and the bytes they need.
  std::size_t max_image_bytes = runtime::kDefaultMaxImageBytes;
  // Inputs from POSIX shared memory (agent/shared_memory.hpp): the /v2/systemsharedmemory routes
  // and the shared_memory_* input parameters. Off: those routes are 404 and such inputs 400.
  bool shared_memory = true;
  std::size_t max_shared_memory_regions = 64;
  // Models the box is configured to serve; readiness waits for each to have an active slot.
  // Empty: every model the host knows, and at least one.
  std::vector<std::string> models;
};

// Counters of one model version since the API started (the watch window reads them).
struct VersionStats {
  std::uint64_t requests = 0;          // infer requests that resolved to this version
  std::uint64_t client_errors = 0;     // 4xx among them
  std::uint64_t server_errors = 0;     // 5xx among them
  telemetry::LatencySnapshot latency;  // successful requests, end to end
  std::uint64_t labeled = 0;           // feedback accepted
  std::uint64_t correct = 0;           // ... whose label was the top-1 class
};

// One model version's traffic in one telemetry window (LocalApi::TakeWindows).
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

class LocalApi final {
 public:
  // Binds `options.host:options.port` and starts serving on a background thread. Fails with
  // kIo when the address cannot be bound, kInvalidArgument on unusable options.
  static Result<std::unique_ptr<LocalApi>> Start(runtime::ModelHost& host, LocalApiOptions options);
  ~LocalApi();  // stops and joins
  LocalApi(const LocalApi&) = delete;
  LocalApi& operator=(const LocalApi&) = delete;

  int port() const;
  // Stops accepting, finishes the requests in progress, joins the threads. Idempotent.
  void Stop();
  // The text GET /metrics returns.
  std::string MetricsText() const;
  // Counters of `model` at `version` so far; all zero when that version never served.
  VersionStats Stats(const std::string& model, const std::string& version) const;
  // Every version's traffic since the previous call (the first call: since Start), so each
  // request, latency sample and feedback belongs to exactly one window; versions that had
  // nothing in the window are included with zeros. Called by one thread (the telemetry thread).
  std::vector<WindowStats> TakeWindows();

  struct Impl;

 private:
  explicit LocalApi(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::agent
