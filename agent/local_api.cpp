#include "agent/local_api.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string_view>
#include <thread>
#include <utility>

#include "agent/infer_request.hpp"
#include "agent/log_value.hpp"
#include "agent/shared_memory.hpp"
#include "runtime/preprocess.hpp"
#include "runtime/tensor.hpp"
#include "telemetry/accuracy_tracker.hpp"
#include "telemetry/latency_histogram.hpp"

#ifndef EDGEFLEET_VERSION
#define EDGEFLEET_VERSION "0.0.0"
#endif

namespace edgefleet::agent {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxRequestIdBytes = 128;
constexpr std::size_t kMaxRank = 8;
constexpr std::size_t kMaxInputs = 64;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A random (version 4) UUID: request ids only need to be unique, not secret.
std::string NewRequestId() {
  thread_local std::mt19937_64 rng{
      std::random_device{}() ^ static_cast<std::uint64_t>(Clock::now().time_since_epoch().count())};
  std::uint64_t hi = rng();
  std::uint64_t lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
}

// An X-Request-Id header (ours, from the client or echoed back): printable ASCII without spaces,
// bounded, so it can neither inject header lines nor grow memory without bound.
bool IsUsableRequestId(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

// A request's JSON "id": the protocol allows any string and echoes it. Bounded, valid UTF-8 and
// without control characters (logs escape it, the feedback table keys on it); it is echoed in
// the X-Request-Id header only when it is also usable there.
bool IsUsableJsonId(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdBytes || !manifests::IsValidUtf8(id)) return false;
  return std::none_of(id.begin(), id.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

std::string_view DatatypeName(runtime::DType dtype) {
  switch (dtype) {
    case runtime::DType::kFloat32:
      return "FP32";
    case runtime::DType::kFloat64:
      return "FP64";
    case runtime::DType::kFloat16:
      return "FP16";
    case runtime::DType::kInt8:
      return "INT8";
    case runtime::DType::kUInt8:
      return "UINT8";
    case runtime::DType::kInt16:
      return "INT16";
    case runtime::DType::kInt32:
      return "INT32";
    case runtime::DType::kInt64:
      return "INT64";
    case runtime::DType::kBool:
      return "BOOL";
  }
  return "UNKNOWN";
}

std::optional<runtime::DType> ParseDatatype(std::string_view name) {
  static constexpr std::array kAll = {
      runtime::DType::kFloat32, runtime::DType::kFloat64, runtime::DType::kFloat16,
      runtime::DType::kInt8,    runtime::DType::kUInt8,   runtime::DType::kInt16,
      runtime::DType::kInt32,   runtime::DType::kInt64,   runtime::DType::kBool};
  for (runtime::DType d : kAll) {
    if (DatatypeName(d) == name) return d;
  }
  return std::nullopt;
}

// nlohmann's parser and the json destructor recurse per nesting level; a 16 MiB body of '['
// would overflow the stack. This scan refuses deep documents before any parsing.
bool JsonDepthWithin(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string MediaType(const httplib::Request& req) {
  std::string type = req.get_header_value("Content-Type");
  type = type.substr(0, type.find(';'));
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) type.pop_back();
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.front()))) type.erase(0, 1);
  return type;
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

// ---- metrics -----------------------------------------------------------------------------

struct VersionMetrics {
  VersionMetrics(std::string m, std::string v, std::size_t feedback_capacity)
      : model(std::move(m)), version(std::move(v)), accuracy(feedback_capacity) {}
  const std::string model;
  const std::string version;
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> client_errors{0};
  std::atomic<std::uint64_t> server_errors{0};
  std::atomic<std::uint64_t> preprocess_ns{0};
  std::atomic<std::uint64_t> infer_ns{0};
  std::atomic<std::uint64_t> postprocess_ns{0};
  telemetry::LatencyHistogram latency;         // since start (/metrics, watch window)
  telemetry::LatencyHistogram window_latency;  // since the last TakeWindows
  telemetry::AccuracyTracker accuracy;
  // Cumulative counters at the last TakeWindows; only the telemetry thread touches them.
  struct Mark {
    std::uint64_t requests = 0, client_errors = 0, server_errors = 0;
    std::uint64_t preprocess_ns = 0, infer_ns = 0, postprocess_ns = 0;
    telemetry::AccuracySnapshot accuracy;
  } mark;
};

void AddMs(std::atomic<std::uint64_t>& counter, double ms) {
  counter.fetch_add(static_cast<std::uint64_t>(std::max(0.0, ms) * 1e6), std::memory_order_relaxed);
}

// One entry per model version ever served; entries live as long as the API (a handful of
// versions over an agent's life), so handlers keep plain pointers to them.
class MetricsRegistry {
 public:
  explicit MetricsRegistry(std::size_t feedback_capacity) : feedback_capacity_(feedback_capacity) {}

  VersionMetrics& Get(const std::string& model, const std::string& version) {
    {
      std::shared_lock lock(mu_);
      auto it = by_key_.find({model, version});
      if (it != by_key_.end()) return *it->second;
    }
    std::unique_lock lock(mu_);
    auto& slot = by_key_[{model, version}];
    if (!slot) slot = std::make_unique<VersionMetrics>(model, version, feedback_capacity_);
    return *slot;
  }

  std::vector<VersionMetrics*> All() const {
    std::shared_lock lock(mu_);
    std::vector<VersionMetrics*> out;
    for (const auto& [key, metrics] : by_key_) out.push_back(metrics.get());
    return out;
  }

  std::vector<VersionMetrics*> ForModel(const std::string& model) const {
    std::shared_lock lock(mu_);
    std::vector<VersionMetrics*> out;
    for (auto it = by_key_.lower_bound({model, ""});
         it != by_key_.end() && it->first.first == model; ++it) {
      out.push_back(it->second.get());
    }
    return out;
  }

 private:
  const std::size_t feedback_capacity_;
  mutable std::shared_mutex mu_;
  // guarded by mu_; sorted so /metrics lists versions in a stable order
  std::map<std::pair<std::string, std::string>, std::unique_ptr<VersionMetrics>> by_key_;
};

// ---- thread pool -------------------------------------------------------------------------

// httplib's own ThreadPool queues accepted connections without limit. This one holds at most
// `limit` waiting connections; when full, enqueue (called by the accept loop) waits, so a flood
// of connections backs up into the kernel's listen backlog instead of into our memory.
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(std::size_t threads, std::size_t limit)
      : limit_(std::max<std::size_t>(limit, 1)) {
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~BoundedTaskQueue() override {
    if (!workers_.empty()) shutdown();
  }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    space_.wait(lock, [this] { return jobs_.size() < limit_ || stopping_; });
    jobs_.push_back(std::move(fn));
    work_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    work_.notify_all();
    space_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        work_.wait(lock, [this] { return !jobs_.empty() || stopping_; });
        // Jobs own accepted sockets: run every one, even while stopping, so each gets closed.
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      space_.notify_one();
      fn();
    }
  }

  const std::size_t limit_;
  std::mutex mu_;
  std::condition_variable work_;
  std::condition_variable space_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::vector<std::thread> workers_;
};

// ---- tensors <-> JSON --------------------------------------------------------------------

// Calls `emit` for every leaf of `data` in row-major order; "data" may be flat or nested (both
// are allowed by the protocol). Stops at the first failure or after `limit` + 1 leaves.
template <typename Emit>
bool ForEachLeaf(const json& data, std::size_t limit, std::size_t& count, Emit&& emit) {
  if (data.is_array()) {
    for (const json& item : data) {
      if (!ForEachLeaf(item, limit, count, emit)) return false;
    }
    return true;
  }
  if (++count > limit) return false;
  return emit(data);
}

template <typename T>
bool JsonToElement(const json& value, T& out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!value.is_boolean()) return false;
    out = value.get<bool>();
    return true;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!value.is_number()) return false;
    const double v = value.get<double>();
    if (std::is_same_v<T, float> && std::isfinite(v) &&
        std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
      return false;
    }
    out = static_cast<T>(v);
    return true;
  } else {
    if (value.is_number_unsigned()) {
      const auto v = value.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(v);
      return true;
    }
    if (value.is_number_integer()) {
      const auto v = value.get<std::int64_t>();
      if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          (v > 0 && static_cast<std::uint64_t>(v) >
                        static_cast<std::uint64_t>(std::numeric_limits<T>::max()))) {
        return false;
      }
      out = static_cast<T>(v);
      return true;
    }
    return false;
  }
}

template <typename T>
std::optional<HttpError> FillTyped(const json& data, std::size_t expected, runtime::Tensor& t,
                                   std::string_view datatype) {
  std::vector<T> values;
  values.reserve(expected);
  std::size_t count = 0;
  bool type_error = false;
  const bool ok = ForEachLeaf(data, expected, count, [&](const json& leaf) {
    T v{};
    if (!JsonToElement(leaf, v)) {
      type_error = true;
      return false;
    }
    values.push_back(v);
    return true;
  });
  if (type_error) {
    return HttpError{400, fmt::format("input '{}': element {} is not a valid {} value", t.name,
                                      count - 1, datatype)};
  }
  if (!ok || count != expected) {
    return HttpError{400, fmt::format("input '{}': data holds {} elements but shape {} needs {}",
                                      t.name, ok ? std::to_string(count) : "more",
                                      runtime::ShapeToString(t.shape), expected)};
  }
  t.data.resize(expected * sizeof(T));
  if constexpr (std::is_same_v<T, bool>) {
    for (std::size_t i = 0; i < expected; ++i) {
      t.data[i] = static_cast<std::byte>(values[i] ? 1 : 0);
    }
  } else {
    if (expected > 0) std::memcpy(t.data.data(), values.data(), t.data.size());
  }
  return std::nullopt;
}

std::optional<HttpError> FillTensor(const json& data, std::size_t expected, runtime::Tensor& t) {
  const std::string_view name = DatatypeName(t.dtype);
  switch (t.dtype) {
    case runtime::DType::kFloat32:
      return FillTyped<float>(data, expected, t, name);
    case runtime::DType::kFloat64:
      return FillTyped<double>(data, expected, t, name);
    case runtime::DType::kInt8:
      return FillTyped<std::int8_t>(data, expected, t, name);
    case runtime::DType::kUInt8:
      return FillTyped<std::uint8_t>(data, expected, t, name);
    case runtime::DType::kInt16:
      return FillTyped<std::int16_t>(data, expected, t, name);
    case runtime::DType::kInt32:
      return FillTyped<std::int32_t>(data, expected, t, name);
    case runtime::DType::kInt64:
      return FillTyped<std::int64_t>(data, expected, t, name);
    case runtime::DType::kBool:
      return FillTyped<bool>(data, expected, t, name);
    case runtime::DType::kFloat16:
      break;
  }
  return HttpError{400,
                   fmt::format("input '{}': datatype {} is not supported in JSON", t.name, name)};
}

template <typename T>
json ElementsToJson(const runtime::Tensor& t) {
  json out = json::array();
  auto& array = out.get_ref<json::array_t&>();
  const std::size_t n = t.data.size() / sizeof(T);
  array.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, t.data.data() + i * sizeof(T), sizeof(T));
    array.emplace_back(v);
  }
  return out;
}

std::optional<json> TensorDataToJson(const runtime::Tensor& t) {
  switch (t.dtype) {
    case runtime::DType::kFloat32:
      return ElementsToJson<float>(t);
    case runtime::DType::kFloat64:
      return ElementsToJson<double>(t);
    case runtime::DType::kInt8:
      return ElementsToJson<std::int8_t>(t);
    case runtime::DType::kUInt8:
      return ElementsToJson<std::uint8_t>(t);
    case runtime::DType::kInt16:
      return ElementsToJson<std::int16_t>(t);
    case runtime::DType::kInt32:
      return ElementsToJson<std::int32_t>(t);
    case runtime::DType::kInt64:
      return ElementsToJson<std::int64_t>(t);
    case runtime::DType::kBool: {
      json out = json::array();
      for (std::byte b : t.data) out.push_back(b != std::byte{0});
      return out;
    }
    case runtime::DType::kFloat16:
      break;
  }
  return std::nullopt;
}

json TensorInfoToJson(const runtime::TensorInfo& info) {
  return {{"name", info.name}, {"datatype", DatatypeName(info.dtype)}, {"shape", info.shape}};
}

// Prometheus label values escape backslash, double quote and newline.
std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// ---- JSON infer requests --------------------------------------------------------------

std::optional<HttpError> ParseJsonWithin(std::string_view text, int max_depth, json* doc) {
  if (!JsonDepthWithin(text, max_depth)) {
    return HttpError{400, fmt::format("JSON nested deeper than {} levels", max_depth)};
  }
  *doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc->is_discarded()) return HttpError{400, "malformed JSON"};
  return std::nullopt;
}

}  // namespace

std::optional<HttpError> DecodeInferRequest(
    std::string_view body, const std::string* header_length,
    const std::vector<runtime::TensorInfo>& declared,
    const std::vector<runtime::TensorInfo>& declared_outputs, const LocalApiOptions& options,
    const SharedMemoryRegistry& shared_memory, std::string* request_id, InferRequest* out) {
  const auto fail = [](int status, std::string message) {
    return HttpError{status, std::move(message)};
  };
  std::string_view json_text = body;
  std::string_view binary;  // the bytes after the JSON header (binary extension)
  std::size_t binary_used = 0;
  if (header_length != nullptr) {
    const std::string& header = *header_length;
    std::size_t length = 0;
    auto [end, ec] = std::from_chars(header.data(), header.data() + header.size(), length);
    if (ec != std::errc() || end != header.data() + header.size() || length > body.size()) {
      return fail(400, fmt::format("Inference-Header-Content-Length: expected a byte count of "
                                   "at most the body's {} bytes, found {}",
                                   body.size(), LogValue(header)));
    }
    json_text = std::string_view(body).substr(0, length);
    binary = std::string_view(body).substr(length);
  }
  json doc;
  if (auto error = ParseJsonWithin(json_text, options.max_json_depth, &doc)) return error;
  if (!doc.is_object()) return fail(400, "the request must be a JSON object");
  if (auto it = doc.find("id"); it != doc.end()) {
    if (!it->is_string() || !IsUsableJsonId(it->get_ref<const std::string&>())) {
      return fail(400, fmt::format("\"id\" must be a string of 1 to {} bytes of UTF-8 without "
                                   "control characters",
                                   kMaxRequestIdBytes));
    }
    *request_id = it->get<std::string>();
  }
  if (auto rp = doc.find("parameters"); rp != doc.end()) {
    if (!rp->is_object()) return fail(400, "\"parameters\" must be an object");
    if (auto b = rp->find("binary_data_output"); b != rp->end()) {
      if (!b->is_boolean()) return fail(400, "\"binary_data_output\" must be true or false");
      out->all_binary = b->get<bool>();
    }
  }
  auto in = doc.find("inputs");
  if (in == doc.end() || !in->is_array() || in->empty()) {
    return fail(400, "\"inputs\" must be a non-empty array");
  }
  if (in->size() > kMaxInputs) return fail(400, "too many inputs");
  for (const json& item : *in) {
    if (!item.is_object()) return fail(400, "each input must be an object");
    auto n = item.find("name");
    auto s = item.find("shape");
    auto d = item.find("datatype");
    auto v = item.find("data");
    if (n == item.end() || !n->is_string()) return fail(400, "input without a string \"name\"");
    const std::string input_name = n->get<std::string>();
    if (s == item.end() || !s->is_array() || s->size() > kMaxRank) {
      return fail(400, fmt::format("input '{}': \"shape\" must be an array of at most {} "
                                   "non-negative integers",
                                   input_name, kMaxRank));
    }
    if (d == item.end() || !d->is_string()) {
      return fail(400, fmt::format("input '{}': missing \"datatype\"", input_name));
    }
    std::optional<std::uint64_t> binary_size;
    std::optional<std::string> shm_region;
    std::optional<std::uint64_t> shm_size;
    std::uint64_t shm_offset = 0;
    if (auto p = item.find("parameters"); p != item.end() && p->is_object()) {
      auto unsigned_param = [&](const char* key, std::optional<std::uint64_t>* into) {
        auto b = p->find(key);
        if (b == p->end()) return true;
        if (!b->is_number_unsigned()) return false;
        *into = b->get<std::uint64_t>();
        return true;
      };
      std::optional<std::uint64_t> offset;
      const std::pair<const char*, std::optional<std::uint64_t>*> sizes[] = {
          {"binary_data_size", &binary_size},
          {"shared_memory_byte_size", &shm_size},
          {"shared_memory_offset", &offset}};
      for (const auto& [key, into] : sizes) {
        if (!unsigned_param(key, into)) {
          return fail(400, fmt::format("input '{}': \"{}\" must be a non-negative integer",
                                       input_name, key));
        }
      }
      shm_offset = offset.value_or(0);
      if (auto r = p->find("shared_memory_region"); r != p->end()) {
        if (!r->is_string()) {
          return fail(400, fmt::format("input '{}': \"shared_memory_region\" must be a "
                                       "string",
                                       input_name));
        }
        shm_region = r->get<std::string>();
      }
    }
    if (shm_region) {
      if (!options.shared_memory) {
        return fail(400, fmt::format("input '{}': shared memory inputs are off in this "
                                     "agent's config (api.shared_memory)",
                                     input_name));
      }
      if (!shm_size || binary_size || v != item.end()) {
        return fail(400, fmt::format("input '{}': a shared memory input needs "
                                     "\"shared_memory_byte_size\" and neither \"data\" nor "
                                     "\"binary_data_size\"",
                                     input_name));
      }
    }
    if (binary_size && header_length == nullptr) {
      return fail(400, fmt::format("input '{}': binary_data_size needs the "
                                   "Inference-Header-Content-Length header",
                                   input_name));
    }
    if (v == item.end() && !binary_size && !shm_region) {
      return fail(400, fmt::format("input '{}': missing \"data\"", input_name));
    }
    auto info = std::find_if(declared.begin(), declared.end(),
                             [&](const runtime::TensorInfo& i) { return i.name == input_name; });
    if (info == declared.end()) {
      std::string names;
      for (const auto& i : declared) names += (names.empty() ? "" : ", ") + i.name;
      return fail(400, fmt::format("unknown input '{}' (the model takes: {})", input_name, names));
    }
    if (std::any_of(out->inputs.begin(), out->inputs.end(),
                    [&](const runtime::Tensor& t) { return t.name == input_name; })) {
      return fail(400, fmt::format("input '{}' given twice", input_name));
    }
    auto dtype = ParseDatatype(d->get<std::string>());
    if (!dtype) {
      return fail(400, fmt::format("input '{}': unknown datatype {}", input_name,
                                   LogValue(d->get<std::string>())));
    }
    if (*dtype != info->dtype) {
      return fail(400, fmt::format("input '{}': datatype {} but the model takes {}", input_name,
                                   DatatypeName(*dtype), DatatypeName(info->dtype)));
    }
    runtime::Tensor t;
    t.name = input_name;
    t.dtype = *dtype;
    for (const json& dim : *s) {
      if (!dim.is_number_integer() || dim.get<std::int64_t>() < 0) {
        return fail(
            400, fmt::format("input '{}': \"shape\" must hold non-negative integers", input_name));
      }
      t.shape.push_back(dim.get<std::int64_t>());
    }
    auto count = runtime::ElementCount(t.shape);
    if (!count || *count > options.max_elements) {
      return fail(400,
                  fmt::format("input '{}': shape {} exceeds the limit of {} elements", input_name,
                              runtime::ShapeToString(t.shape), options.max_elements));
    }
    if (!runtime::ShapeMatches(t.shape, info->shape)) {
      return fail(
          400, fmt::format("input '{}': shape {} but the model takes {}", input_name,
                           runtime::ShapeToString(t.shape), runtime::ShapeToString(info->shape)));
    }
    if (shm_region) {
      const std::uint64_t need = *count * runtime::ElementSize(t.dtype);
      if (*shm_size != need) {
        return fail(400, fmt::format("input '{}': shared_memory_byte_size {} but shape {} of "
                                     "{} needs {} bytes",
                                     input_name, *shm_size, runtime::ShapeToString(t.shape),
                                     DatatypeName(t.dtype), need));
      }
      if (auto read = shared_memory.Read(*shm_region, shm_offset, need, &t.data); !read) {
        return fail(400, fmt::format("input '{}': {}", input_name, read.error().message));
      }
    } else if (binary_size) {
      const std::uint64_t need = *count * runtime::ElementSize(t.dtype);
      if (*binary_size != need || binary.size() - binary_used < need) {
        return fail(400, fmt::format("input '{}': binary_data_size {} but shape {} of {} "
                                     "needs {} bytes ({} binary bytes left in the body)",
                                     input_name, *binary_size, runtime::ShapeToString(t.shape),
                                     DatatypeName(t.dtype), need, binary.size() - binary_used));
      }
      const auto* first = reinterpret_cast<const std::byte*>(binary.data() + binary_used);
      t.data.assign(first, first + need);
      binary_used += need;
    } else if (auto error = FillTensor(*v, *count, t)) {
      return fail(error->status, error->message);
    }
    out->inputs.push_back(std::move(t));
  }
  if (binary_used != binary.size()) {
    return fail(400, fmt::format("{} binary bytes after the JSON header belong to no input",
                                 binary.size() - binary_used));
  }
  if (out->inputs.size() != declared.size()) {
    return fail(400, fmt::format("the model takes {} inputs, the request gave {}", declared.size(),
                                 out->inputs.size()));
  }
  if (auto outs = doc.find("outputs"); outs != doc.end()) {
    if (!outs->is_array()) return fail(400, "\"outputs\" must be an array");
    for (const json& o : *outs) {
      auto on = o.is_object() ? o.find("name") : o.end();
      if (!o.is_object() || on == o.end() || !on->is_string()) {
        return fail(400, "each requested output must be an object with a string \"name\"");
      }
      const std::string output_name = on->get<std::string>();
      if (auto p = o.find("parameters"); p != o.end() && p->is_object()) {
        if (p->contains("shared_memory_region")) {
          return fail(400, fmt::format("output '{}': output to shared memory is not "
                                       "supported; outputs come back in the response",
                                       output_name));
        }
        if (auto b = p->find("binary_data"); b != p->end()) {
          if (!b->is_boolean()) {
            return fail(400, fmt::format("output '{}': \"binary_data\" must be true or false",
                                         output_name));
          }
          (b->get<bool>() ? out->binary_outputs : out->json_outputs).push_back(output_name);
        }
      }
      if (std::none_of(declared_outputs.begin(), declared_outputs.end(),
                       [&](const runtime::TensorInfo& i) { return i.name == output_name; })) {
        return fail(400, fmt::format("unknown output '{}'", output_name));
      }
      out->wanted_outputs.push_back(output_name);
    }
  }
  return std::nullopt;
}

// ---- the server --------------------------------------------------------------------------

struct LocalApi::Impl {
  Impl(runtime::ModelHost& h, LocalApiOptions o)
      : host(h),
        options(std::move(o)),
        metrics(options.feedback_capacity),
        shared_memory(options.max_shared_memory_regions) {}

  runtime::ModelHost& host;
  const LocalApiOptions options;
  MetricsRegistry metrics;
  SharedMemoryRegistry shared_memory;
  httplib::Server server;
  std::thread listener;
  int port = 0;
  std::once_flag stop_once;
  std::array<std::atomic<std::uint64_t>, 600> responses_by_status{};
  std::atomic<std::uint64_t> feedback_unknown{0};

  void Install();
  void Reply(httplib::Response& res, int status, const json& body) const;
  void ReplyError(httplib::Response& res, int status, std::string_view message) const;
  bool Ready(std::string* why) const;
  bool Known(const std::string& name) const;
  // The instance serving `name` (version empty: the active slot). On failure fills `error`.
  std::shared_ptr<const runtime::ModelInstance> Resolve(const std::string& name,
                                                        const std::string& version,
                                                        HttpError* error) const;
  void HandleMetadata(const httplib::Request& req, httplib::Response& res, bool versioned);
  void HandleModelReady(const httplib::Request& req, httplib::Response& res, bool versioned);
  void HandleInfer(const httplib::Request& req, httplib::Response& res,
                   const httplib::ContentReader& reader, bool versioned);
  void HandleFeedback(const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader);
  void HandleRegister(const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader);
  // A request's JSON, after the depth check (the parser recurses once per level).
  std::optional<HttpError> ParseJson(std::string_view text, json* doc) const;
  std::optional<HttpError> ReadBody(const httplib::Request& req, httplib::Response& res,
                                    const httplib::ContentReader& reader, std::string* body) const;
  std::string Metrics() const;
};

void LocalApi::Impl::Reply(httplib::Response& res, int status, const json& body) const {
  res.status = status;
  // Replace: invalid UTF-8 from a client (echoed in a message) must not throw here.
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void LocalApi::Impl::ReplyError(httplib::Response& res, int status,
                                std::string_view message) const {
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

void LocalApi::Impl::HandleMetadata(const httplib::Request& req, httplib::Response& res,
                                    bool versioned) {
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

void LocalApi::Impl::HandleModelReady(const httplib::Request& req, httplib::Response& res,
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

std::optional<HttpError> LocalApi::Impl::ReadBody(const httplib::Request& req,
                                                  httplib::Response& res,
                                                  const httplib::ContentReader& reader,
                                                  std::string* body) const {
  // One allocation for a declared length (httplib already refused one over the cap) instead of
  // doubling from 4 KiB: a 588 KiB tensor body was copied about 1 MiB over in regrowth.
  const std::uint64_t declared = req.get_header_value<std::uint64_t>("Content-Length");
  body->reserve(
      static_cast<std::size_t>(std::min<std::uint64_t>(declared, options.max_body_bytes)));
  bool too_large = false;
  // The receiver sees bytes after any Content-Encoding was undone, so the cap also bounds
  // what a small compressed body inflates to.
  const bool ok = reader([&](const char* data, std::size_t n) {
    if (n > options.max_body_bytes - body->size()) {
      too_large = true;
      return false;
    }
    body->append(data, n);
    return true;
  });
  if (too_large || res.status == 413) {
    // The rest of the body is still on the socket: this connection cannot carry another request.
    res.set_header("Connection", "close");
    return HttpError{413, fmt::format("request body exceeds {} bytes", options.max_body_bytes)};
  }
  if (!ok) return HttpError{400, "could not read the request body"};
  return std::nullopt;
}

void LocalApi::Impl::HandleInfer(const httplib::Request& req, httplib::Response& res,
                                 const httplib::ContentReader& reader, bool versioned) {
  const std::string name = req.matches[1];
  const std::string version = versioned ? std::string(req.matches[2]) : std::string();
  std::string request_id = req.get_header_value("X-Request-Id");
  if (!IsUsableRequestId(request_id)) request_id = NewRequestId();
  VersionMetrics* vm = nullptr;

  auto fail = [&](int status, std::string_view message) {
    if (IsUsableRequestId(request_id)) res.set_header("X-Request-Id", request_id);
    if (vm) {
      vm->requests.fetch_add(1, std::memory_order_relaxed);
      (status >= 500 ? vm->server_errors : vm->client_errors)
          .fetch_add(1, std::memory_order_relaxed);
    }
    // Client mistakes at debug: a misbehaving client must not be able to flood the log.
    const auto level = status >= 500 ? spdlog::level::err : spdlog::level::debug;
    spdlog::log(level, "event=infer_failed model={} version={} id={} status={} error={}",
                LogValue(name), LogValue(vm ? vm->version : version), LogValue(request_id), status,
                LogValue(message));
    ReplyError(res, status, message);
  };

  // The media type is checked before the body is read: httplib's reader cannot take a multipart
  // body through a plain receiver, and there is no point in buffering what will be refused.
  const std::string media = MediaType(req);
  // KServe/Triton binary tensor extension: a JSON header of Inference-Header-Content-Length
  // bytes, then the raw tensor bytes of the inputs that say "binary_data_size", in order. It
  // spares large tensors the JSON number round trip (a 224x224x3 image is 150k numbers).
  const bool binary_ext = req.has_header("Inference-Header-Content-Length");
  const bool is_json = binary_ext || media.empty() || media == "application/json";
  const bool is_image = !binary_ext && (media == "image/png" || media == "image/jpeg" ||
                                        media == "application/octet-stream");
  if (!is_json && !is_image) {
    res.set_header("Connection", "close");  // the unread body is still on the socket
    return fail(415, fmt::format("unsupported Content-Type '{}': send application/json, "
                                 "image/png, image/jpeg or application/octet-stream",
                                 media));
  }
  std::string body;
  if (auto error = ReadBody(req, res, reader, &body)) return fail(error->status, error->message);
  const auto start = Clock::now();

  HttpError resolve_error;
  auto instance = Resolve(name, version, &resolve_error);
  if (!instance) return fail(resolve_error.status, resolve_error.message);
  const std::string served_version = instance->version.ToString();
  vm = &metrics.Get(name, served_version);
  const runtime::Session& session = *instance->session;

  std::vector<runtime::Tensor> inputs;
  std::vector<std::string> wanted_outputs;  // empty: all
  // Binary tensor extension, output side: which outputs come back as raw bytes after the JSON
  // header (InferRequest::Binary); none for a raw image request.
  InferRequest binary_choice;
  if (is_json) {
    const std::string header_length =
        binary_ext ? req.get_header_value("Inference-Header-Content-Length") : std::string();
    InferRequest request;
    if (auto error =
            DecodeInferRequest(body, binary_ext ? &header_length : nullptr, session.inputs(),
                               session.outputs(), options, shared_memory, &request_id, &request)) {
      return fail(error->status, error->message);
    }
    inputs = std::move(request.inputs);
    wanted_outputs = std::move(request.wanted_outputs);
    binary_choice.binary_outputs = std::move(request.binary_outputs);
    binary_choice.json_outputs = std::move(request.json_outputs);
    binary_choice.all_binary = request.all_binary;
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
  const double preprocess_ms = MsSince(start);

  const auto infer_start = Clock::now();
  auto outputs = instance->session->Run(inputs);
  const double infer_ms = MsSince(infer_start);
  if (!outputs) {
    const int status = outputs.error().code == ErrorCode::kInvalidArgument ? 400 : 500;
    return fail(status, outputs.error().message);
  }

  const auto post_start = Clock::now();
  json response = {{"model_name", name}, {"model_version", served_version}, {"id", request_id}};
  json outs = json::array();
  std::string binary;  // the raw bytes of binary outputs, in the order of "outputs"
  bool any_binary = false;
  for (const runtime::Tensor& t : *outputs) {
    if (!wanted_outputs.empty() &&
        std::find(wanted_outputs.begin(), wanted_outputs.end(), t.name) == wanted_outputs.end()) {
      continue;
    }
    if (binary_choice.Binary(t.name)) {
      any_binary = true;
      outs.push_back({{"name", t.name},
                      {"shape", t.shape},
                      {"datatype", DatatypeName(t.dtype)},
                      {"parameters", {{"binary_data_size", t.data.size()}}}});
      binary.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
      continue;
    }
    auto data = TensorDataToJson(t);
    if (!data) {
      return fail(500, fmt::format("output '{}' has datatype {} which JSON cannot carry", t.name,
                                   DatatypeName(t.dtype)));
    }
    outs.push_back({{"name", t.name},
                    {"shape", t.shape},
                    {"datatype", DatatypeName(t.dtype)},
                    {"data", std::move(*data)}});
  }
  response["outputs"] = std::move(outs);
  // A classifier's answer for one sample: top-1 over the first output's single row. It feeds
  // online accuracy (feedback is scored against it) and the confidence drift statistics.
  json parameters = {{"slot", runtime::ToString(instance->slot)}};
  if (!outputs->empty()) {
    const runtime::Tensor& first = outputs->front();
    auto logits = first.As<float>();
    if (!logits.empty() && !first.shape.empty() &&
        static_cast<std::int64_t>(logits.size()) == first.shape.back()) {
      const telemetry::Top1 top = telemetry::ComputeTop1(logits);
      if (top.label >= 0) {
        parameters["top1_class"] = top.label;
        parameters["top1_confidence"] = top.confidence;
        vm->accuracy.RecordPrediction(request_id, top);
      }
    }
  }
  response["parameters"] = std::move(parameters);
  if (IsUsableRequestId(request_id)) res.set_header("X-Request-Id", request_id);
  if (any_binary) {
    std::string text = response.dump(-1, ' ', false, json::error_handler_t::replace);
    res.set_header("Inference-Header-Content-Length", std::to_string(text.size()));
    text += binary;
    res.status = 200;
    res.set_content(std::move(text), "application/octet-stream");
  } else {
    Reply(res, 200, response);
  }
  const double post_ms = MsSince(post_start);

  vm->requests.fetch_add(1, std::memory_order_relaxed);
  AddMs(vm->preprocess_ns, preprocess_ms);
  AddMs(vm->infer_ns, infer_ms);
  AddMs(vm->postprocess_ns, post_ms);
  const double total_ms = MsSince(start);
  vm->latency.Record(total_ms);
  vm->window_latency.Record(total_ms);
  spdlog::debug("event=infer model={} version={} slot={} id={} ms={:.3f} infer_ms={:.3f}",
                LogValue(name), LogValue(served_version), runtime::ToString(instance->slot),
                LogValue(request_id), total_ms, infer_ms);
}

void LocalApi::Impl::HandleRegister(const httplib::Request& req, httplib::Response& res,
                                    const httplib::ContentReader& reader) {
  const std::string name = req.matches[1];
  std::string body;
  if (auto error = ReadBody(req, res, reader, &body)) {
    return ReplyError(res, error->status, error->message);
  }
  json doc;
  if (auto error = ParseJson(body, &doc)) return ReplyError(res, error->status, error->message);
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

void LocalApi::Impl::HandleFeedback(const httplib::Request& req, httplib::Response& res,
                                    const httplib::ContentReader& reader) {
  const std::string name = req.matches[1];
  const std::string media = MediaType(req);
  if (!media.empty() && media != "application/json") {
    res.set_header("Connection", "close");  // the unread body is still on the socket
    return ReplyError(res, 415, fmt::format("unsupported Content-Type '{}': send JSON", media));
  }
  std::string body;
  if (auto error = ReadBody(req, res, reader, &body)) {
    return ReplyError(res, error->status, error->message);
  }
  json doc;
  if (auto error = ParseJson(body, &doc)) return ReplyError(res, error->status, error->message);
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
  // The prediction lives with the version that served it; try each version of the model.
  for (VersionMetrics* vm : metrics.ForModel(name)) {
    if (!vm->accuracy.Knows(request_id)) continue;
    switch (vm->accuracy.Feedback(request_id, truth)) {
      case telemetry::FeedbackOutcome::kCorrect:
      case telemetry::FeedbackOutcome::kWrong: {
        auto s = vm->accuracy.Snapshot();
        return Reply(res, 200,
                     {{"id", request_id},
                      {"model_name", name},
                      {"model_version", vm->version},
                      {"labeled", s.labeled},
                      {"correct", s.correct},
                      {"accuracy", s.accuracy()}});
      }
      case telemetry::FeedbackOutcome::kDuplicate:
        return ReplyError(res, 409, fmt::format("request '{}' already has feedback", request_id));
      case telemetry::FeedbackOutcome::kUnknownId:
        break;  // evicted since Knows(); unknown below
    }
  }
  feedback_unknown.fetch_add(1, std::memory_order_relaxed);
  ReplyError(res, 404,
             fmt::format("request '{}' is unknown (never served by model '{}', or evicted)",
                         request_id, name));
}

std::string LocalApi::Impl::Metrics() const {
  const auto all = metrics.All();
  std::string out;
  auto family = [&](std::string_view metric, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric, help, metric, type);
  };
  auto labels = [](const VersionMetrics& vm) {
    return fmt::format("model=\"{}\",version=\"{}\"", LabelValue(vm.model), LabelValue(vm.version));
  };
  auto counter = [&](std::string_view metric, std::string_view help, auto&& value) {
    family(metric, "counter", help);
    for (const VersionMetrics* vm : all) {
      out += fmt::format("{}{{{}}} {}\n", metric, labels(*vm), value(*vm));
    }
  };
  auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };

  counter("edgefleet_inference_requests_total",
          "Inference requests answered per model version, any outcome.",
          [&](const VersionMetrics& vm) { return load(vm.requests); });
  family("edgefleet_inference_errors_total", "counter",
         "Failed inference requests per model version; class client is 4xx, server is 5xx.");
  for (const VersionMetrics* vm : all) {
    out += fmt::format("edgefleet_inference_errors_total{{{},class=\"client\"}} {}\n", labels(*vm),
                       load(vm->client_errors));
    out += fmt::format("edgefleet_inference_errors_total{{{},class=\"server\"}} {}\n", labels(*vm),
                       load(vm->server_errors));
  }
  family("edgefleet_inference_latency_seconds", "histogram",
         "Time from a read request body to the response, successful inferences only.");
  std::vector<std::pair<const VersionMetrics*, telemetry::AccuracySnapshot>> accuracy;
  for (const VersionMetrics* vm : all) {
    const telemetry::LatencySnapshot s = vm->latency.Snapshot();
    const std::string l = labels(*vm);
    for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
      const std::string le = i < telemetry::kLatencyBoundsMs.size()
                                 ? fmt::format("{:g}", telemetry::kLatencyBoundsMs[i] / 1000.0)
                                 : std::string("+Inf");
      out += fmt::format("edgefleet_inference_latency_seconds_bucket{{{},le=\"{}\"}} {}\n", l, le,
                         s.buckets[i]);
    }
    out += fmt::format("edgefleet_inference_latency_seconds_sum{{{}}} {}\n", l, s.sum_ms / 1000.0);
    out += fmt::format("edgefleet_inference_latency_seconds_count{{{}}} {}\n", l, s.count);
    accuracy.emplace_back(vm, vm->accuracy.Snapshot());
  }
  family("edgefleet_inference_stage_seconds_total", "counter",
         "Time spent per stage (preprocess, infer, postprocess) per model version.");
  for (const VersionMetrics* vm : all) {
    const std::pair<const char*, const std::atomic<std::uint64_t>*> stages[] = {
        {"preprocess", &vm->preprocess_ns},
        {"infer", &vm->infer_ns},
        {"postprocess", &vm->postprocess_ns}};
    for (const auto& [stage, ns] : stages) {
      out += fmt::format("edgefleet_inference_stage_seconds_total{{{},stage=\"{}\"}} {}\n",
                         labels(*vm), stage, static_cast<double>(load(*ns)) / 1e9);
    }
  }
  auto accuracy_metric = [&](std::string_view metric, std::string_view type, std::string_view help,
                             auto&& value) {
    family(metric, type, help);
    for (const auto& [vm, s] : accuracy) {
      out += fmt::format("{}{{{}}} {}\n", metric, labels(*vm), value(s));
    }
  };
  using Acc = telemetry::AccuracySnapshot;
  accuracy_metric("edgefleet_predictions_total", "counter",
                  "Top-1 predictions remembered for feedback.",
                  [](const Acc& s) { return s.predictions; });
  accuracy_metric("edgefleet_feedback_labeled_total", "counter",
                  "Predictions that received their true label.",
                  [](const Acc& s) { return s.labeled; });
  accuracy_metric("edgefleet_feedback_correct_total", "counter",
                  "Labeled predictions whose top-1 class was right.",
                  [](const Acc& s) { return s.correct; });
  accuracy_metric("edgefleet_feedback_duplicate_total", "counter",
                  "Feedback refused because the request already had its label.",
                  [](const Acc& s) { return s.duplicate_feedback; });
  accuracy_metric("edgefleet_feedback_evicted_total", "counter",
                  "Predictions forgotten unlabeled because the id table was full.",
                  [](const Acc& s) { return s.evicted; });
  accuracy_metric("edgefleet_top1_confidence_mean", "gauge",
                  "Mean softmax confidence of the top-1 class (a drift proxy).",
                  [](const Acc& s) { return s.confidence_mean; });
  accuracy_metric("edgefleet_top1_confidence_stddev", "gauge",
                  "Standard deviation of the top-1 softmax confidence.",
                  [](const Acc& s) { return s.confidence_std; });
  family("edgefleet_feedback_unknown_total", "counter",
         "Feedback for request ids that no served version remembers.");
  out += fmt::format("edgefleet_feedback_unknown_total {}\n", load(feedback_unknown));

  family("edgefleet_model_active", "gauge", "1 for the version and slot serving each model.");
  for (const auto& m : host.List()) {
    for (const auto& s : m.slots) {
      out += fmt::format("edgefleet_model_active{{model=\"{}\",version=\"{}\",slot=\"{}\"}} {}\n",
                         LabelValue(m.name), LabelValue(s.version.ToString()),
                         runtime::ToString(s.slot), m.active == s.slot ? 1 : 0);
    }
  }
  family("edgefleet_http_responses_total", "counter", "HTTP responses of the local API by status.");
  for (std::size_t code = 100; code < responses_by_status.size(); ++code) {
    if (const auto n = load(responses_by_status[code])) {
      out += fmt::format("edgefleet_http_responses_total{{code=\"{}\"}} {}\n", code, n);
    }
  }
  return out;
}

void LocalApi::Impl::Install() {
  // Every handler is the module edge for nlohmann and httplib: nothing may escape as an exception
  // into httplib's worker (it would answer 500 without our error shape), so the handler
  // wrappers catch everything.
  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  using Reader = const httplib::ContentReader&;
  auto on_exception = [this](Req req, Res res, const char* what) {
    spdlog::error("event=handler_exception path={} error={}", LogValue(req.path), LogValue(what));
    ReplyError(res, 500, "internal error");
  };
  auto guard = [on_exception](auto body) {
    return [on_exception, body](Req req, Res res) {
      try {
        body(req, res);
      } catch (const std::exception& e) {
        on_exception(req, res, e.what());
      } catch (...) {
        on_exception(req, res, "unknown exception");
      }
    };
  };
  auto guard_reader = [on_exception](auto body) {
    return [on_exception, body](Req req, Res res, Reader reader) {
      try {
        body(req, res, reader);
      } catch (const std::exception& e) {
        on_exception(req, res, e.what());
      } catch (...) {
        on_exception(req, res, "unknown exception");
      }
    };
  };

  server.Get("/v2", guard([this](Req, Res res) {
               Reply(res, 200,
                     {{"name", "edgefleet"},
                      {"version", EDGEFLEET_VERSION},
                      {"extensions", options.shared_memory
                                         ? json{"binary_tensor_data", "system_shared_memory"}
                                         : json{"binary_tensor_data"}}});
             }));
  server.Get("/v2/health/live", guard([this](Req, Res res) { Reply(res, 200, {{"live", true}}); }));
  server.Get("/v2/health/ready", guard([this](Req, Res res) {
               std::string why;
               if (Ready(&why)) return Reply(res, 200, {{"ready", true}});
               ReplyError(res, 503, why);
             }));
  const std::string model = R"(/v2/models/([^/]+))";
  const std::string version = R"(/versions/([^/]+))";
  server.Get(model, guard([this](Req req, Res res) { HandleMetadata(req, res, false); }));
  server.Get(model + version, guard([this](Req req, Res res) { HandleMetadata(req, res, true); }));
  server.Get(model + "/ready",
             guard([this](Req req, Res res) { HandleModelReady(req, res, false); }));
  server.Get(model + version + "/ready",
             guard([this](Req req, Res res) { HandleModelReady(req, res, true); }));
  server.Post(model + "/infer", guard_reader([this](Req req, Res res, Reader reader) {
                HandleInfer(req, res, reader, false);
              }));
  server.Post(model + version + "/infer", guard_reader([this](Req req, Res res, Reader reader) {
                HandleInfer(req, res, reader, true);
              }));
  server.Post(model + "/feedback", guard_reader([this](Req req, Res res, Reader reader) {
                HandleFeedback(req, res, reader);
              }));
  if (options.shared_memory) {
    // Registrations log at debug, as client mistakes do: a client looping register/unregister
    // must not be able to flood the agent's log.
    const std::string region = R"(/v2/systemsharedmemory/region/([^/]+))";
    auto list = [](const std::vector<SharedMemoryRegionInfo>& regions) {
      json out = json::array();
      for (const auto& r : regions) {
        out.push_back(
            {{"name", r.name}, {"key", r.key}, {"offset", r.offset}, {"byte_size", r.byte_size}});
      }
      return out;
    };
    server.Get("/v2/systemsharedmemory/status",
               guard([this, list](Req, Res res) { Reply(res, 200, list(shared_memory.List())); }));
    server.Get(region + "/status", guard([this, list](Req req, Res res) {
                 auto found = shared_memory.Find(req.matches[1]);
                 if (!found) return ReplyError(res, 404, found.error().message);
                 Reply(res, 200, list({*found}));
               }));
    server.Post(region + "/register", guard_reader([this](Req req, Res res, Reader reader) {
                  HandleRegister(req, res, reader);
                }));
    server.Post(region + "/unregister", guard([this](Req req, Res res) {
                  auto done = shared_memory.Unregister(req.matches[1]);
                  if (!done) return ReplyError(res, 404, done.error().message);
                  spdlog::debug("event=shm_unregistered region={}",
                                LogValue(std::string(req.matches[1])));
                  Reply(res, 200, json::object());
                }));
    server.Post("/v2/systemsharedmemory/unregister", guard([this](Req, Res res) {
                  shared_memory.UnregisterAll();
                  spdlog::debug("event=shm_unregistered region=all");
                  Reply(res, 200, json::object());
                }));
  }
  server.Get("/metrics", guard([this](Req, Res res) {
               res.status = 200;
               res.set_content(Metrics(), "text/plain; version=0.0.4; charset=utf-8");
             }));

  // Responses httplib makes itself (no route, 413 on a declared length over the cap, 400 on an
  // unparsable request line, 414) get the protocol's error shape too.
  server.set_error_handler(httplib::Server::HandlerWithResponse([this](Req req, Res res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    switch (res.status) {
      case 404:
        message = fmt::format("no route for {} {}", req.method, req.path);
        break;
      case 413:
        message = fmt::format("request body exceeds {} bytes", options.max_body_bytes);
        break;
      case 414:
        message = "request URI too long";
        break;
      default:
        message = fmt::format("bad request (HTTP {})", res.status);
        break;
    }
    ReplyError(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));
  server.set_exception_handler(
      [this](Req, Res res, std::exception_ptr) { ReplyError(res, 500, "internal error"); });
  server.set_logger([this](Req req, const httplib::Response& res) {
    if (res.status >= 100 && res.status < static_cast<int>(responses_by_status.size())) {
      responses_by_status[static_cast<std::size_t>(res.status)].fetch_add(
          1, std::memory_order_relaxed);
    }
    if (res.status >= 400) {
      spdlog::debug("event=http_error method={} path={} status={} remote={}", LogValue(req.method),
                    LogValue(req.path), res.status, LogValue(req.remote_addr));
    }
  });
  // A declared Content-Length over the cap is refused before its bytes are buffered.
  server.set_payload_max_length(options.max_body_bytes);
  server.set_read_timeout(options.read_timeout_s, 0);
  server.set_write_timeout(options.write_timeout_s, 0);
  server.set_keep_alive_timeout(options.keep_alive_timeout_s);
  server.set_keep_alive_max_count(options.keep_alive_max_requests);
  // httplib's default sets SO_REUSEPORT, which would let a second agent bind the same port and
  // silently share its connections; SO_REUSEADDR alone still allows a quick restart.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_tcp_nodelay(true);  // small JSON responses must not wait for Nagle
  const auto threads = static_cast<std::size_t>(options.threads);
  const std::size_t limit = options.queue_limit;
  server.new_task_queue = [threads, limit] { return new BoundedTaskQueue(threads, limit); };
}

LocalApi::LocalApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LocalApi::~LocalApi() { Stop(); }

Result<std::unique_ptr<LocalApi>> LocalApi::Start(runtime::ModelHost& host,
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
  auto impl = std::make_unique<Impl>(host, std::move(options));
  try {
    impl->Install();
    const auto& o = impl->options;
    int port = o.port;
    if (port == 0) {
      port = impl->server.bind_to_any_port(o.host);
    } else if (!impl->server.bind_to_port(o.host, port)) {
      port = -1;
    }
    if (port <= 0) {
      return Fail(ErrorCode::kIo, fmt::format("local API: cannot bind {}:{}: {}", o.host, o.port,
                                              std::strerror(errno)));
    }
    impl->port = port;
    Impl* raw = impl.get();
    auto finished = std::make_shared<std::atomic<bool>>(false);
    impl->listener = std::thread([raw, finished] {
      if (!raw->server.listen_after_bind()) {
        spdlog::error("event=api_listen_failed port={}", raw->port);
      }
      finished->store(true);
    });
    // httplib's stop() does nothing until the accept loop runs; waiting here makes Stop() (and
    // the destructor) safe right after Start returns.
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!impl->server.is_running() && !finished->load() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!impl->server.is_running()) {
      impl->server.stop();
      if (finished->load())
        impl->listener.join();
      else
        impl->listener.detach();  // never observed: httplib did not start in 10 s
      return Fail(ErrorCode::kInternal, "local API: the accept loop did not start");
    }
    spdlog::info("event=api_started host={} port={} threads={} max_body_bytes={}", LogValue(o.host),
                 port, o.threads, o.max_body_bytes);
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kInternal, fmt::format("local API: {}", e.what()));
  }
  return std::unique_ptr<LocalApi>(new LocalApi(std::move(impl)));
}

int LocalApi::port() const { return impl_->port; }

void LocalApi::Stop() {
  std::call_once(impl_->stop_once, [this] {
    impl_->server.stop();
    if (impl_->listener.joinable()) impl_->listener.join();
    spdlog::info("event=api_stopped port={}", impl_->port);
  });
}

std::string LocalApi::MetricsText() const { return impl_->Metrics(); }

VersionStats LocalApi::Stats(const std::string& model, const std::string& version) const {
  VersionStats stats;
  for (const VersionMetrics* vm : impl_->metrics.ForModel(model)) {
    if (vm->version != version) continue;
    stats.requests = vm->requests.load(std::memory_order_relaxed);
    stats.client_errors = vm->client_errors.load(std::memory_order_relaxed);
    stats.server_errors = vm->server_errors.load(std::memory_order_relaxed);
    stats.latency = vm->latency.Snapshot();
    const telemetry::AccuracySnapshot acc = vm->accuracy.Snapshot();
    stats.labeled = acc.labeled;
    stats.correct = acc.correct;
  }
  return stats;
}

std::vector<WindowStats> LocalApi::TakeWindows() {
  std::vector<WindowStats> out;
  for (VersionMetrics* vm : impl_->metrics.All()) {
    auto take = [](const std::atomic<std::uint64_t>& counter, std::uint64_t& mark) {
      const std::uint64_t now = counter.load(std::memory_order_relaxed);
      const std::uint64_t delta = now - mark;
      mark = now;
      return delta;
    };
    VersionMetrics::Mark& m = vm->mark;
    WindowStats w;
    w.model = vm->model;
    w.version = vm->version;
    w.latency = vm->window_latency.SnapshotAndReset();
    w.requests = take(vm->requests, m.requests);
    w.client_errors = take(vm->client_errors, m.client_errors);
    w.server_errors = take(vm->server_errors, m.server_errors);
    w.preprocess_ms = static_cast<double>(take(vm->preprocess_ns, m.preprocess_ns)) / 1e6;
    w.infer_ms = static_cast<double>(take(vm->infer_ns, m.infer_ns)) / 1e6;
    w.postprocess_ms = static_cast<double>(take(vm->postprocess_ns, m.postprocess_ns)) / 1e6;
    // The tracker keeps running moments since start; the window's mean and variance are the
    // difference of the two running sums (n*mean and sum of squares = n*(var + mean^2)).
    const telemetry::AccuracySnapshot now = vm->accuracy.Snapshot();
    const telemetry::AccuracySnapshot& before = m.accuracy;
    w.labeled = now.labeled - before.labeled;
    w.correct = now.correct - before.correct;
    w.predictions = now.predictions - before.predictions;
    if (w.predictions > 0) {
      auto sums = [](const telemetry::AccuracySnapshot& s) {
        const double n = static_cast<double>(s.predictions);
        const double mean = s.confidence_mean;
        const double var = s.confidence_std * s.confidence_std;
        return std::pair{n * mean, n * (var + mean * mean)};
      };
      const auto [sum_now, sq_now] = sums(now);
      const auto [sum_before, sq_before] = sums(before);
      const double n = static_cast<double>(w.predictions);
      w.confidence_mean = (sum_now - sum_before) / n;
      const double var = (sq_now - sq_before) / n - w.confidence_mean * w.confidence_mean;
      w.confidence_std = std::sqrt(std::max(0.0, var));
    }
    m.accuracy = now;
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace edgefleet::agent
