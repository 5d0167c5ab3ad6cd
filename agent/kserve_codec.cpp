// The KServe v2 / Open Inference Protocol codec of the local API: request ids, datatypes, JSON
// tensors, the binary tensor extension, as pure functions (agent/kserve_codec.hpp).
#include "agent/kserve_codec.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <utility>

#include "agent/log_value.hpp"

namespace edgefleet::agent {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxRequestIdBytes = 128;
constexpr std::size_t kMaxRank = 8;
constexpr std::size_t kMaxInputs = 64;

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

}  // namespace

// A random (version 4) UUID: request ids only need to be unique, not secret.
std::string NewRequestId() {
  thread_local std::mt19937_64 rng{
      std::random_device{}() ^
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
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

json TensorInfoToJson(const runtime::TensorInfo& info) {
  return {{"name", info.name}, {"datatype", DatatypeName(info.dtype)}, {"shape", info.shape}};
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

std::optional<HttpError> EncodeInferResponse(const std::string& model, const std::string& version,
                                             const std::string& request_id, std::string_view slot,
                                             const std::vector<runtime::Tensor>& outputs,
                                             const InferRequest& request, InferResponse* out) {
  json response = {{"model_name", model}, {"model_version", version}, {"id", request_id}};
  json outs = json::array();
  std::string binary;  // the raw bytes of binary outputs, in the order of "outputs"
  bool any_binary = false;
  for (const runtime::Tensor& t : outputs) {
    if (!request.wanted_outputs.empty() &&
        std::find(request.wanted_outputs.begin(), request.wanted_outputs.end(), t.name) ==
            request.wanted_outputs.end()) {
      continue;
    }
    if (request.Binary(t.name)) {
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
      return HttpError{500, fmt::format("output '{}' has datatype {} which JSON cannot carry",
                                        t.name, DatatypeName(t.dtype))};
    }
    outs.push_back({{"name", t.name},
                    {"shape", t.shape},
                    {"datatype", DatatypeName(t.dtype)},
                    {"data", std::move(*data)}});
  }
  response["outputs"] = std::move(outs);
  // A classifier's answer for one sample: top-1 over the first output's single row. It feeds
  // online accuracy (feedback is scored against it) and the confidence drift statistics.
  json parameters = {{"slot", slot}};
  out->top1.reset();
  if (!outputs.empty()) {
    const runtime::Tensor& first = outputs.front();
    auto logits = first.As<float>();
    if (!logits.empty() && !first.shape.empty() &&
        static_cast<std::int64_t>(logits.size()) == first.shape.back()) {
      const telemetry::Top1 top = telemetry::ComputeTop1(logits);
      if (top.label >= 0) {
        parameters["top1_class"] = top.label;
        parameters["top1_confidence"] = top.confidence;
        out->top1 = top;
      }
    }
  }
  response["parameters"] = std::move(parameters);
  // Replace: invalid UTF-8 (a client's id is checked, but names come from the model) must not
  // throw here.
  out->body = response.dump(-1, ' ', false, json::error_handler_t::replace);
  if (any_binary) {
    out->header_length = out->body.size();
    out->body += binary;
    out->content_type = "application/octet-stream";
  } else {
    out->header_length.reset();
    out->content_type = "application/json";
  }
  return std::nullopt;
}

}  // namespace edgefleet::agent
