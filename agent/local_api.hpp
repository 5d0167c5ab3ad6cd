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
// Served by the event-driven HTTP layer (http/server.hpp): no connection holds a thread while it
// is slow or idle, each request has one deadline for its header and body, and a full inference
// queue is answered 503 with Retry-After at once.
//
// Thread safety: Start/Stop/port may be called from any thread; the layer's I/O thread runs the
// cheap handlers and its bounded pool the infer, feedback and registration handlers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/serving_stats.hpp"
#include "manifests/result.hpp"
#include "runtime/image_decode.hpp"
#include "runtime/model_host.hpp"

namespace edgefleet::agent {

struct LocalApiOptions {
  std::string host = "127.0.0.1";  // loopback: the API has no authentication
  int port = 0;                    // 0 picks a free port; LocalApi::port() reports it
  // Also on this Unix socket, with this mode and group (http::ServerOptions).
  std::string unix_socket;
  unsigned unix_socket_mode = 0660;
  std::string unix_socket_group;
  // The HTTP layer (http/server.hpp): infer, feedback and registration run in a pool of
  // `threads` workers with at most `queue_limit` waiting (beyond: 503 with Retry-After); health,
  // metadata and /metrics run on the I/O thread and never wait behind inference.
  int threads = 8;
  std::size_t queue_limit = 64;
  int io_threads = 1;
  std::size_t max_connections = 256;  // one more gets 503 with Retry-After and is closed
  // One deadline for a request's whole header and body (and the idle time before it on a
  // keep-alive connection): slow or idle clients are closed when it passes.
  int request_deadline_ms = 10000;
  int write_deadline_ms = 10000;
  std::size_t max_body_bytes = 16u << 20;  // larger bodies get 413 (a declared length at once)
  std::size_t max_elements = 4u << 20;     // per input tensor (shape product); larger get 400
  int max_json_depth = 32;                 // deeper JSON is refused before it is parsed
  std::size_t keep_alive_max_requests = 1000;
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

class LocalApi final {
 public:
  // Binds `options.host:options.port` and starts serving on a background thread; every infer and
  // feedback is recorded in `stats`, which must outlive the API. Fails with kIo when the address
  // cannot be bound, kInvalidArgument on unusable options.
  static Result<std::unique_ptr<LocalApi>> Start(runtime::ModelHost& host, ServingStats& stats,
                                                 LocalApiOptions options);
  ~LocalApi();  // stops and joins
  LocalApi(const LocalApi&) = delete;
  LocalApi& operator=(const LocalApi&) = delete;

  int port() const;
  // Stops accepting, finishes the requests in progress, joins the threads. Idempotent.
  void Stop();
  // The text GET /metrics returns: the serving stats' families, then the API's own (active
  // slots, HTTP responses by status).
  std::string MetricsText() const;

  struct Impl;

 private:
  explicit LocalApi(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::agent
