#include "agent/local_api.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>

#include "agent/kserve_codec.hpp"
#include "agent/log_value.hpp"
#include "agent/shared_memory.hpp"
#include "http/server.hpp"
#include "runtime/preprocess.hpp"
#include "runtime/tensor.hpp"
#include "telemetry/health.hpp"

#ifndef EDGEFLEET_VERSION
#define EDGEFLEET_VERSION "0.0.0"
#endif

namespace edgefleet::agent {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string MediaType(const http::Request& req) {
  std::string type = req.Header("Content-Type");
  type = type.substr(0, type.find(';'));
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) type.pop_back();
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.front()))) type.erase(0, 1);
  return type;
}

// Inferences in one request: the first input's leading dimension (1 for a scalar input).
std::uint64_t BatchOf(const std::vector<runtime::Tensor>& inputs) {
  if (inputs.empty() || inputs.front().shape.empty() || inputs.front().shape.front() < 0) return 1;
  return static_cast<std::uint64_t>(inputs.front().shape.front());
}

// Maps the runtime's error codes to statuses for errors caused by request content.
int StatusFor(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kParse:
    case ErrorCode::kLimit:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kUnsupported:
      return 415;
    default:
      return 500;
  }
}

}  // namespace

// ---- the server --------------------------------------------------------------------------

struct LocalApi::Impl {
  Impl(runtime::ModelHost& h, ServingStats& st, LocalApiOptions o)
      : host(h),
        stats(st),
        options(std::move(o)),
        shared_memory(options.max_shared_memory_regions) {}

  runtime::ModelHost& host;
  ServingStats& stats;
  const LocalApiOptions options;
  SharedMemoryRegistry shared_memory;
  std::unique_ptr<http::Server> server;
  int port = 0;
  std::once_flag stop_once;
  std::array<std::atomic<std::uint64_t>, 600> responses_by_status{};

  http::Router Routes();
  http::ServerOptions ServerOptions();
  void Reply(http::Response& res, int status, const json& body) const;
  void ReplyError(http::Response& res, int status, std::string_view message) const;
  bool Ready(std::string* why) const;
  bool Known(const std::string& name) const;
  // The instance serving `name` (version empty: the active slot). On failure fills `error`.
  std::shared_ptr<const runtime::ModelInstance> Resolve(const std::string& name,
                                                        const std::string& version,
                                                        HttpError* error) const;
  void HandleMetadata(const http::Request& req, http::Response& res, bool versioned);
  void HandleModelReady(const http::Request& req, http::Response& res, bool versioned);
  void HandleInfer(const http::Request& req, http::Response& res, bool versioned);
  void HandleFeedback(const http::Request& req, http::Response& res);
  void HandleRegister(const http::Request& req, http::Response& res);
  // A request's JSON, after the depth check (the parser recurses once per level).
  std::optional<HttpError> ParseJson(std::string_view text, json* doc) const;
  std::string Metrics() const;
};

void LocalApi::Impl::Reply(http::Response& res, int status, const json& body) const {
  res.status = status;
  // Replace: invalid UTF-8 from a client (echoed in a message) must not throw here.
  res.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  res.content_type = "application/json";
}

void LocalApi::Impl::ReplyError(http::Response& res, int status, std::string_view message) const {
  Reply(res, status, json{{"error", message}});
}

bool LocalApi::Impl::Known(const std::string& name) const {
  for (const auto& m : host.List()) {
    if (m.name == name) return true;
  }
  return false;
}

bool LocalApi::Impl::Ready(std::string* why) const {
  const auto models = host.List();
  if (options.models.empty()) {
    if (models.empty()) {
      *why = "no model is loaded";
      return false;
    }
    for (const auto& m : models) {
      if (!m.active) {
        *why = fmt::format("model '{}' has no active slot", m.name);
        return false;
      }
    }
    return true;
  }
  for (const auto& name : options.models) {
    if (!host.Active(name)) {
      *why = fmt::format("model '{}' has no active slot", name);
      return false;
    }
  }
  return true;
}

std::shared_ptr<const runtime::ModelInstance> LocalApi::Impl::Resolve(const std::string& name,
                                                                      const std::string& version,
                                                                      HttpError* error) const {
  if (version.empty()) {
    if (auto active = host.Active(name)) return active;
    *error = Known(name) ? HttpError{503, fmt::format("model '{}' has no active version", name)}
                         : HttpError{404, fmt::format("unknown model '{}'", name)};
    return nullptr;
  }
  // The active slot first, so that a version in both slots is served by the active one.
  if (auto active = host.Active(name); active && active->version.ToString() == version) {
    return active;
  }
  for (runtime::Slot slot : {runtime::Slot::kA, runtime::Slot::kB}) {
    auto instance = host.InSlot(name, slot);
    if (instance && instance->version.ToString() == version) return instance;
  }
  *error = Known(name)
               ? HttpError{404, fmt::format("model '{}' has no version '{}'", name, version)}
               : HttpError{404, fmt::format("unknown model '{}'", name)};
  return nullptr;
}

void LocalApi::Impl::HandleMetadata(const http::Request& req, http::Response& res, bool versioned) {
  const std::string name = req.matches[1];
  const std::string version = versioned ? std::string(req.matches[2]) : std::string();
  HttpError error;
  auto instance = Resolve(name, version, &error);
  if (!instance && !versioned) {
    // Metadata describes a loaded model even while none of its slots is active.
    for (runtime::Slot slot : {runtime::Slot::kA, runtime::Slot::kB}) {
      if ((instance = host.InSlot(name, slot))) break;
    }
  }
  if (!instance) return ReplyError(res, error.status == 503 ? 404 : error.status, error.message);
  json versions = json::array();
  if (versioned) {
    versions.push_back(instance->version.ToString());
  } else {
    for (const auto& m : host.List()) {
      if (m.name != name) continue;
      for (const auto& s : m.slots) versions.push_back(s.version.ToString());
    }
  }
  json inputs = json::array();
  json outputs = json::array();
  for (const auto& info : instance->session->inputs()) inputs.push_back(TensorInfoToJson(info));
  for (const auto& info : instance->session->outputs()) outputs.push_back(TensorInfoToJson(info));
  Reply(res, 200,
        {{"name", name},
         {"versions", versions},
         // The protocol's "<engine>_<format>", as Triton's "onnxruntime_onnx".
         {"platform", instance->backend + "_" + instance->format},
         {"inputs", inputs},
         {"outputs", outputs}});
}

void LocalApi::Impl::HandleModelReady(const http::Request& req, http::Response& res,
                                      bool versioned) {
  const std::string name = req.matches[1];
  const std::string version = versioned ? std::string(req.matches[2]) : std::string();
  HttpError error;
  auto instance = Resolve(name, version, &error);
  if (!instance) return ReplyError(res, error.status, error.message);
  Reply(res, 200, {{"name", name}, {"version", instance->version.ToString()}, {"ready", true}});
}

std::optional<HttpError> LocalApi::Impl::ParseJson(std::string_view text, json* doc) const {
  return ParseJsonWithin(text, options.max_json_depth, doc);
}

void LocalApi::Impl::HandleInfer(const http::Request& req, http::Response& res, bool versioned) {
  const std::string name = req.matches[1];
  const std::string version = versioned ? std::string(req.matches[2]) : std::string();
  std::string request_id = req.Header("X-Request-Id");
  if (!IsUsableRequestId(request_id)) request_id = NewRequestId();
  std::string served_version;  // known once the request resolved to an instance
  const ServingStats::InFlight in_flight(stats);

  auto fail = [&](int status, std::string_view message) {
    if (IsUsableRequestId(request_id)) res.SetHeader("X-Request-Id", request_id);
    if (!served_version.empty()) stats.RecordFailure(name, served_version, status);
    // Client mistakes at debug: a misbehaving client must not be able to flood the log.
    const auto level = status >= 500 ? spdlog::level::err : spdlog::level::debug;
    spdlog::log(level, "event=infer_failed model={} version={} id={} status={} error={}",
                LogValue(name), LogValue(served_version.empty() ? version : served_version),
                LogValue(request_id), status, LogValue(message));
    ReplyError(res, status, message);
  };

  const std::string media = MediaType(req);
  // KServe/Triton binary tensor extension: a JSON header of Inference-Header-Content-Length
  // bytes, then the raw tensor bytes of the inputs that say "binary_data_size", in order. It
  // spares large tensors the JSON number round trip (a 224x224x3 image is 150k numbers).
  const bool binary_ext = req.HasHeader("Inference-Header-Content-Length");
  const bool is_json = binary_ext || media.empty() || media == "application/json";
  const bool is_image = !binary_ext && (media == "image/png" || media == "image/jpeg" ||
                                        media == "application/octet-stream");
  if (!is_json && !is_image) {
    return fail(415, fmt::format("unsupported Content-Type '{}': send application/json, "
                                 "image/png, image/jpeg or application/octet-stream",
                                 media));
  }
  const std::string& body = req.body;
  // The request's time starts when it reached the front of the queue minus its wait there, so
  // the latency histogram includes queue time (edgefleet_inference_queue_seconds has it alone).
  const auto start = Clock::now() - req.queue_wait;

  HttpError resolve_error;
  auto instance = Resolve(name, version, &resolve_error);
  if (!instance) return fail(resolve_error.status, resolve_error.message);
  served_version = instance->version.ToString();
  const runtime::Session& session = *instance->session;

  std::vector<runtime::Tensor> inputs;
  // Which outputs come back, and which as raw bytes after the JSON header (the binary tensor
  // extension); all, as JSON, for a raw image request.
  InferRequest request;
  if (is_json) {
    const std::string header_length =
        binary_ext ? req.Header("Inference-Header-Content-Length") : std::string();
    if (auto error =
            DecodeInferRequest(body, binary_ext ? &header_length : nullptr, session.inputs(),
                               session.outputs(), options, shared_memory, &request_id, &request)) {
      return fail(error->status, error->message);
    }
    inputs = std::move(request.inputs);
  } else {
    if (!instance->preprocessing) {
      return fail(415, fmt::format("model '{}' version {} declares no preprocessing: send JSON "
                                   "tensors",
                                   name, served_version));
    }
    if (session.inputs().size() != 1) {
      return fail(400, fmt::format("raw image input needs a model with one input; this one "
                                   "takes {}",
                                   session.inputs().size()));
    }
    auto tensor = runtime::PreprocessImage(body, *instance->preprocessing, session.inputs()[0],
                                           runtime::ImageLimits{options.max_image_bytes});
    if (!tensor) return fail(StatusFor(tensor.error()), tensor.error().message);
    inputs.push_back(std::move(tensor).value());
  }
  const double preprocess_ms = MsSince(start + req.queue_wait);

  const auto infer_start = Clock::now();
  auto outputs = instance->session->Run(inputs);
  const double infer_ms = MsSince(infer_start);
  if (!outputs) {
    const int status = outputs.error().code == ErrorCode::kInvalidArgument ? 400 : 500;
    return fail(status, outputs.error().message);
  }

  const auto post_start = Clock::now();
  InferResponse response;
  if (auto error =
          EncodeInferResponse(name, served_version, request_id, runtime::ToString(instance->slot),
                              *outputs, request, &response)) {
    return fail(error->status, error->message);
  }
  if (IsUsableRequestId(request_id)) res.SetHeader("X-Request-Id", request_id);
  if (response.header_length) {
    res.SetHeader("Inference-Header-Content-Length", std::to_string(*response.header_length));
  }
  res.status = 200;
  res.body = std::move(response.body);
  res.content_type = response.content_type;
  const double post_ms = MsSince(post_start);

  const double total_ms = MsSince(start);
  const double queue_ms = std::chrono::duration<double, std::milli>(req.queue_wait).count();
  stats.RecordSuccess(name, served_version, {preprocess_ms, infer_ms, post_ms, total_ms, queue_ms},
                      request_id, response.top1, BatchOf(inputs));
  spdlog::debug("event=infer model={} version={} slot={} id={} ms={:.3f} infer_ms={:.3f}",
                LogValue(name), LogValue(served_version), runtime::ToString(instance->slot),
                LogValue(request_id), total_ms, infer_ms);
}

void LocalApi::Impl::HandleRegister(const http::Request& req, http::Response& res) {
  const std::string name = req.matches[1];
  json doc;
  if (auto error = ParseJson(req.body, &doc)) return ReplyError(res, error->status, error->message);
  auto key = doc.is_object() ? doc.find("key") : doc.end();
  auto size = doc.is_object() ? doc.find("byte_size") : doc.end();
  auto offset = doc.is_object() ? doc.find("offset") : doc.end();
  if (!doc.is_object() || key == doc.end() || !key->is_string() || size == doc.end() ||
      !size->is_number_unsigned() || (offset != doc.end() && !offset->is_number_unsigned())) {
    return ReplyError(res, 400,
                      "register: expected {\"key\": \"/name\", \"byte_size\": <bytes>, "
                      "\"offset\": <bytes, optional>}");
  }
  const std::uint64_t at = offset == doc.end() ? 0 : offset->get<std::uint64_t>();
  auto done = shared_memory.Register(name, key->get<std::string>(), at, size->get<std::uint64_t>());
  if (!done) return ReplyError(res, 400, done.error().message);
  spdlog::debug("event=shm_registered region={} key={} offset={} byte_size={}", LogValue(name),
                LogValue(key->get<std::string>()), at, size->get<std::uint64_t>());
  Reply(res, 200, json::object());
}

void LocalApi::Impl::HandleFeedback(const http::Request& req, http::Response& res) {
  const std::string name = req.matches[1];
  const std::string media = MediaType(req);
  if (!media.empty() && media != "application/json") {
    return ReplyError(res, 415, fmt::format("unsupported Content-Type '{}': send JSON", media));
  }
  json doc;
  if (auto error = ParseJson(req.body, &doc)) return ReplyError(res, error->status, error->message);
  if (!doc.is_object()) {
    return ReplyError(res, 400, "the request must be a JSON object");
  }
  auto id = doc.find("id");
  auto label = doc.find("label");
  if (id == doc.end() || !id->is_string() || !IsUsableJsonId(id->get_ref<const std::string&>())) {
    return ReplyError(res, 400, "\"id\" must be the request id string of an earlier infer");
  }
  if (label == doc.end() || !label->is_number_integer()) {
    return ReplyError(res, 400, "\"label\" must be an integer class");
  }
  if (!Known(name)) return ReplyError(res, 404, fmt::format("unknown model '{}'", name));
  const std::string request_id = id->get<std::string>();
  const std::int64_t truth = label->get<std::int64_t>();
  const FeedbackResult fb = stats.Feedback(name, request_id, truth);
  switch (fb.outcome) {
    case FeedbackResult::Outcome::kCorrect:
    case FeedbackResult::Outcome::kWrong:
      return Reply(res, 200,
                   {{"id", request_id},
                    {"model_name", name},
                    {"model_version", fb.version},
                    {"labeled", fb.accuracy.labeled},
                    {"correct", fb.accuracy.correct},
                    {"accuracy", fb.accuracy.accuracy()}});
    case FeedbackResult::Outcome::kDuplicate:
      return ReplyError(res, 409, fmt::format("request '{}' already has feedback", request_id));
    case FeedbackResult::Outcome::kUnknownId:
      break;
  }
  ReplyError(res, 404,
             fmt::format("request '{}' is unknown (never served by model '{}', or evicted)",
                         request_id, name));
}

std::string LocalApi::Impl::Metrics() const {
  std::string out = stats.PrometheusText();
  auto family = [&](std::string_view metric, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric, help, metric, type);
  };
  auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  family("edgefleet_model_active", "gauge", "1 for the version and slot serving each model.");
  for (const auto& m : host.List()) {
    for (const auto& s : m.slots) {
      out += fmt::format("edgefleet_model_active{{model=\"{}\",version=\"{}\",slot=\"{}\"}} {}\n",
                         PrometheusLabelValue(m.name), PrometheusLabelValue(s.version.ToString()),
                         runtime::ToString(s.slot), m.active == s.slot ? 1 : 0);
    }
  }
  family("edgefleet_process_cpu_seconds_total", "counter",
         "User and system CPU time of the agent process.");
  out += fmt::format("edgefleet_process_cpu_seconds_total {}\n", telemetry::ReadCpuSeconds());
  family("edgefleet_process_resident_memory_bytes", "gauge",
         "Resident memory of the agent process.");
  out += fmt::format("edgefleet_process_resident_memory_bytes {}\n", telemetry::ReadRssBytes());
  family("edgefleet_build_info", "gauge", "1, labelled with the agent's version.");
  out += fmt::format("edgefleet_build_info{{version=\"{}\"}} 1\n",
                     PrometheusLabelValue(EDGEFLEET_VERSION));
  if (server) {
    const http::ServerStats s = server->stats();
    family("edgefleet_inference_queue_waiting", "gauge",
           "Infer, feedback and registration requests waiting for a worker.");
    out += fmt::format("edgefleet_inference_queue_waiting {}\n", s.pool_waiting);
    family("edgefleet_http_connections_open", "gauge", "Open connections to the local API.");
    out += fmt::format("edgefleet_http_connections_open {}\n", s.connections_open);
    family("edgefleet_http_connections_refused_total", "counter",
           "Connections refused with 503 because max_connections were open.");
    out += fmt::format("edgefleet_http_connections_refused_total {}\n", s.connections_refused);
    family("edgefleet_http_deadline_closed_total", "counter",
           "Connections closed because a request did not arrive whole by its deadline.");
    out += fmt::format("edgefleet_http_deadline_closed_total {}\n", s.deadline_closed);
    family("edgefleet_http_queue_full_total", "counter",
           "Requests answered 503 because the worker queue was full.");
    out += fmt::format("edgefleet_http_queue_full_total {}\n", s.queue_full);
  }
  family("edgefleet_http_responses_total", "counter", "HTTP responses of the local API by status.");
  for (std::size_t code = 100; code < responses_by_status.size(); ++code) {
    if (const auto n = load(responses_by_status[code])) {
      out += fmt::format("edgefleet_http_responses_total{{code=\"{}\"}} {}\n", code, n);
    }
  }
  return out;
}

http::Router LocalApi::Impl::Routes() {
  // Inline handlers run on the HTTP layer's I/O thread and never wait behind inference: health,
  // metadata, readiness, shared-memory status and /metrics. Infer, feedback and registration
  // (which parse bodies or open files) run in the bounded pool. Exceptions become 500s in the
  // layer (on_exception logs them).
  using Req = const http::Request&;
  using Res = http::Response&;
  using http::Lane;
  http::Router r;
  r.Get("/v2", Lane::kInline, [this](Req, Res res) {
    // Inputs from shared memory only: outputs always come back in the response, and an output
    // that asks for a region is refused with 400 saying so.
    Reply(res, 200,
          {{"name", "edgefleet"},
           {"version", EDGEFLEET_VERSION},
           {"extensions", options.shared_memory ? json{"binary_tensor_data", "system_shared_memory"}
                                                : json{"binary_tensor_data"}}});
  });
  r.Get("/v2/health/live", Lane::kInline, [this](Req, Res res) {
    Reply(res, 200, {{"live", true}});
  });
  r.Get("/v2/health/ready", Lane::kInline, [this](Req, Res res) {
    std::string why;
    if (Ready(&why)) return Reply(res, 200, {{"ready", true}});
    ReplyError(res, 503, why);
  });
  const std::string model = R"(/v2/models/([^/]+))";
  const std::string version = R"(/versions/([^/]+))";
  r.Get(model, Lane::kInline, [this](Req req, Res res) { HandleMetadata(req, res, false); });
  r.Get(model + version, Lane::kInline,
        [this](Req req, Res res) { HandleMetadata(req, res, true); });
  r.Get(model + "/ready", Lane::kInline,
        [this](Req req, Res res) { HandleModelReady(req, res, false); });
  r.Get(model + version + "/ready", Lane::kInline,
        [this](Req req, Res res) { HandleModelReady(req, res, true); });
  r.Post(model + "/infer", Lane::kPool, [this](Req req, Res res) { HandleInfer(req, res, false); });
  r.Post(model + version + "/infer", Lane::kPool,
         [this](Req req, Res res) { HandleInfer(req, res, true); });
  r.Post(model + "/feedback", Lane::kPool, [this](Req req, Res res) { HandleFeedback(req, res); });
  if (options.shared_memory) {
    // Registrations log at debug, as client mistakes do: a client looping register/unregister
    // must not be able to flood the agent's log.
    const std::string region = R"(/v2/systemsharedmemory/region/([^/]+))";
    auto list = [](const std::vector<SharedMemoryRegionInfo>& regions) {
      json out = json::array();
      for (const auto& info : regions) {
        out.push_back({{"name", info.name},
                       {"key", info.key},
                       {"offset", info.offset},
                       {"byte_size", info.byte_size}});
      }
      return out;
    };
    r.Get("/v2/systemsharedmemory/status", Lane::kInline,
          [this, list](Req, Res res) { Reply(res, 200, list(shared_memory.List())); });
    r.Get(region + "/status", Lane::kInline, [this, list](Req req, Res res) {
      auto found = shared_memory.Find(req.matches[1]);
      if (!found) return ReplyError(res, 404, found.error().message);
      Reply(res, 200, list({*found}));
    });
    r.Post(region + "/register", Lane::kPool,
           [this](Req req, Res res) { HandleRegister(req, res); });
    r.Post(region + "/unregister", Lane::kInline, [this](Req req, Res res) {
      auto done = shared_memory.Unregister(req.matches[1]);
      if (!done) return ReplyError(res, 404, done.error().message);
      spdlog::debug("event=shm_unregistered region={}", LogValue(req.matches[1]));
      Reply(res, 200, json::object());
    });
    r.Post("/v2/systemsharedmemory/unregister", Lane::kInline, [this](Req, Res res) {
      shared_memory.UnregisterAll();
      spdlog::debug("event=shm_unregistered region=all");
      Reply(res, 200, json::object());
    });
  }
  r.Get("/metrics", Lane::kInline, [this](Req, Res res) {
    res.body = Metrics();
    res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  });
  return r;
}

http::ServerOptions LocalApi::Impl::ServerOptions() {
  http::ServerOptions o;
  o.host = options.host;
  o.port = options.port;
  o.unix_socket = options.unix_socket;
  o.unix_socket_mode = options.unix_socket_mode;
  o.unix_socket_group = options.unix_socket_group;
  o.io_threads = options.io_threads;
  o.max_connections = options.max_connections;
  o.request_deadline = std::chrono::milliseconds(options.request_deadline_ms);
  o.write_deadline = std::chrono::milliseconds(options.write_deadline_ms);
  o.max_body_bytes = options.max_body_bytes;
  o.keep_alive_max_requests = options.keep_alive_max_requests;
  o.workers = options.threads;
  o.queue_limit = options.queue_limit;
  // Every infer answer carries a request id, the layer's own refusals (413, 503) included.
  o.on_layer_error = [](const http::Request& req, http::Response& res) {
    if (req.path.size() < 6 || req.path.compare(req.path.size() - 6, 6, "/infer") != 0) return;
    std::string id = req.Header("X-Request-Id");
    if (!IsUsableRequestId(id)) id = NewRequestId();
    res.SetHeader("X-Request-Id", id);
  };
  o.on_exception = [](const http::Request& req, std::string_view what) {
    spdlog::error("event=handler_exception path={} error={}", LogValue(req.path), LogValue(what));
  };
  o.on_response = [this](const http::Request& req, const http::Response& res) {
    if (res.status >= 100 && res.status < static_cast<int>(responses_by_status.size())) {
      responses_by_status[static_cast<std::size_t>(res.status)].fetch_add(
          1, std::memory_order_relaxed);
    }
    if (res.status >= 400) {
      spdlog::debug("event=http_error method={} path={} status={} remote={}", LogValue(req.method),
                    LogValue(req.path), res.status, LogValue(req.remote));
    }
  };
  return o;
}

LocalApi::LocalApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LocalApi::~LocalApi() { Stop(); }

Result<std::unique_ptr<LocalApi>> LocalApi::Start(runtime::ModelHost& host, ServingStats& stats,
                                                  LocalApiOptions options) {
  if (options.threads < 1 || options.threads > 1024) {
    return Fail(ErrorCode::kInvalidArgument, "local API: threads must be in 1..1024");
  }
  if (options.port < 0 || options.port > 65535) {
    return Fail(ErrorCode::kInvalidArgument, "local API: port must be in 0..65535");
  }
  if (options.max_body_bytes == 0 || options.max_json_depth < 2) {
    return Fail(ErrorCode::kInvalidArgument,
                "local API: max_body_bytes must be > 0 and max_json_depth >= 2");
  }
  if (options.max_image_bytes == 0) {
    return Fail(ErrorCode::kInvalidArgument, "local API: max_image_bytes must be > 0");
  }
  auto impl = std::make_unique<Impl>(host, stats, std::move(options));
  auto server = http::Server::Start(impl->Routes(), impl->ServerOptions());
  if (!server) {
    return Fail(server.error().code, fmt::format("local API: {}", server.error().message));
  }
  impl->server = std::move(server).value();
  impl->port = impl->server->port();
  const auto& o = impl->options;
  spdlog::info(
      "event=api_started host={} port={} workers={} queue_limit={} max_connections={} "
      "request_deadline_ms={} max_body_bytes={}",
      LogValue(o.host), impl->port, o.threads, o.queue_limit, o.max_connections,
      o.request_deadline_ms, o.max_body_bytes);
  return std::unique_ptr<LocalApi>(new LocalApi(std::move(impl)));
}

int LocalApi::port() const { return impl_->port; }

void LocalApi::Stop() {
  std::call_once(impl_->stop_once, [this] {
    impl_->server->Stop();
    spdlog::info("event=api_stopped port={}", impl_->port);
  });
}

std::string LocalApi::MetricsText() const { return impl_->Metrics(); }

}  // namespace edgefleet::agent
