// The `onnxruntime` backend plugin: ONNX models on ONNX Runtime's CPU execution provider.
//
// A shared library behind the backend plugin ABI (runtime/include/edgefleet/backend_plugin.h),
// built as lib/edgefleet/backends/libedgefleet_backend_onnxruntime.so when ONNX Runtime's headers
// and library are found (runtime/CMakeLists.txt). It links nothing of ORT: the library is
// dlopen()ed at create (runtime/onnxruntime/ort_library.hpp), by default the one it was built
// against (copied to lib/edgefleet/onnxruntime/), or the one `backend_options.onnxruntime.library`
// names, so a box's own ORT install works too. Nothing of ORT crosses the plugin ABI.
//
// Options (the agent config's `backend_options.onnxruntime`; an unknown key is refused):
//   library             path of libonnxruntime.so (create only)
//   intra_op_threads    threads one run may use; default: the agent's runtime.threads (1)
//   graph_optimization  "disable", "basic", "extended" or "all" (default, ORT's own default)
//   memory_arena        true (default) or false: ORT's CPU arena allocator, off for small boxes
//   allow_spinning      true (default, ORT's) or false: idle intra-op threads spin or sleep
//   optimized_model_cache  false (default) or true: keep ORT's optimised graph per model in the
//                       cache directory the agent gives each load, and load that next time
//
// Concurrency: ORT documents OrtApi::Run as safe to call from several threads on one session, so
// a session is one OrtSession run by every request thread at once. With one intra-op thread each
// run executes on its caller's thread, so N request threads run N inferences in parallel with one
// copy of the weights (the opencv plugin needs a pool of nets for that).
#include <edgefleet/backend_plugin.h>
#include <onnxruntime_c_api.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/onnxruntime/ort_library.hpp"
#include "runtime/onnxruntime/tiny_model.hpp"
#include "runtime/plugin_kit.hpp"

namespace {

using edgefleet::runtime::ort::OrtLibrary;
using edgefleet::runtime::plugin_kit::Check;
using edgefleet::runtime::plugin_kit::CopySpecs;
using edgefleet::runtime::plugin_kit::Declared;
using edgefleet::runtime::plugin_kit::DTypeName;
using edgefleet::runtime::plugin_kit::Failure;

// Default-domain opsets claimed: the operator table is measured on libonnx 1.12's conformance
// cases, whose newest opset is 17; nothing above it was measured, so nothing is claimed (the
// engine's own newest opset, probed at create, is reported in `engine`).
constexpr std::int32_t kMinOpset = 7;
constexpr std::int32_t kMaxOpset = 17;
// Highest opset the probe tries; ORT 1.30 imports up to 23 or so.
constexpr std::int64_t kProbeFrom = 30;
constexpr ef_operator kOperators[] = {
#include "runtime/onnxruntime/supported_ops.inc"
};

constexpr const char* kFormats[] = {"onnx"};
constexpr const char* kDevices[] = {"cpu"};

struct Options {
  std::string library;
  int intra_op_threads = 0;  // 0: the agent's
  GraphOptimizationLevel graph_optimization = ORT_ENABLE_ALL;
  bool memory_arena = true;
  bool allow_spinning = true;
  bool optimized_model_cache = false;
  // Per load, from the agent (backend_plugin.h): the slot's cache directory, the model's SHA-256.
  std::string cache_dir;
  std::string model_sha256;
};

const char* LevelName(GraphOptimizationLevel level) {
  switch (level) {
    case ORT_DISABLE_ALL:
      return "disable";
    case ORT_ENABLE_BASIC:
      return "basic";
    case ORT_ENABLE_EXTENDED:
      return "extended";
    default:
      return "all";
  }
}

bool IsSha256(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Check ParseOptions(const std::string& text, bool create, Options& out) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return Failure{EF_INVALID_ARGUMENT, "options are not a JSON object"};
  // At create the agent passes every backend's options, keyed by backend name.
  const nlohmann::json* own = &json;
  if (create) {
    const auto it = json.find("onnxruntime");
    static const nlohmann::json kEmpty = nlohmann::json::object();
    own = it == json.end() ? &kEmpty : &*it;
    if (!own->is_object()) {
      return Failure{EF_INVALID_ARGUMENT, "backend_options.onnxruntime is not an object"};
    }
  }
  for (const auto& [key, value] : own->items()) {
    auto wrong = [&](const char* expected) {
      return Failure{EF_INVALID_ARGUMENT, "backend_options.onnxruntime." + key + ": expected " +
                                              expected + ", found " + value.dump()};
    };
    if (key == "library") {
      if (!value.is_string() || value.get<std::string>().empty()) return wrong("a path");
      out.library = value.get<std::string>();
    } else if (key == "intra_op_threads") {
      if (!value.is_number_integer() || value.get<std::int64_t>() < 1 ||
          value.get<std::int64_t>() > 256) {
        return wrong("an integer 1..256");
      }
      out.intra_op_threads = value.get<int>();
    } else if (key == "graph_optimization") {
      const std::string level = value.is_string() ? value.get<std::string>() : "";
      if (level == "disable") {
        out.graph_optimization = ORT_DISABLE_ALL;
      } else if (level == "basic") {
        out.graph_optimization = ORT_ENABLE_BASIC;
      } else if (level == "extended") {
        out.graph_optimization = ORT_ENABLE_EXTENDED;
      } else if (level == "all") {
        out.graph_optimization = ORT_ENABLE_ALL;
      } else {
        return wrong("\"disable\", \"basic\", \"extended\" or \"all\"");
      }
    } else if (key == "memory_arena" || key == "allow_spinning" || key == "optimized_model_cache") {
      if (!value.is_boolean()) return wrong("true or false");
      (key == "memory_arena"     ? out.memory_arena
       : key == "allow_spinning" ? out.allow_spinning
                                 : out.optimized_model_cache) = value.get<bool>();
    } else if (!create && key == "edgefleet_cache_dir" && value.is_string()) {
      out.cache_dir = value.get<std::string>();
    } else if (!create && key == "edgefleet_model_sha256" && value.is_string()) {
      out.model_sha256 = value.get<std::string>();
    } else {
      return Failure{EF_INVALID_ARGUMENT,
                     "backend_options.onnxruntime: unknown option \"" + key +
                         "\" (known: library, intra_op_threads, graph_optimization, "
                         "memory_arena, allow_spinning, optimized_model_cache)"};
    }
  }
  return std::nullopt;
}

// An OrtStatus as a failure (and released); nullopt for success.
Check Ort(const OrtApi* api, OrtStatus* status, std::int32_t code, const std::string& prefix) {
  if (status == nullptr) return std::nullopt;
  std::string message = prefix + api->GetErrorMessage(status);
  api->ReleaseStatus(status);
  return Failure{code, std::move(message)};
}

// Owns one ORT object; Release is the api's release function for it.
template <typename T>
struct Owned {
  const OrtApi* api = nullptr;
  T* ptr = nullptr;
  void (*release)(T*) = nullptr;
  Owned() = default;
  Owned(const OrtApi* a, void (*r)(T*)) : api(a), release(r) {}
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  Owned(Owned&& o) noexcept : api(o.api), ptr(std::exchange(o.ptr, nullptr)), release(o.release) {}
  Owned& operator=(Owned&& o) noexcept {
    if (this != &o) {
      if (ptr != nullptr) release(ptr);
      api = o.api;
      ptr = std::exchange(o.ptr, nullptr);
      release = o.release;
    }
    return *this;
  }
  ~Owned() {
    if (ptr != nullptr) release(ptr);
  }
};

}  // namespace

struct ef_backend {
  ef_backend_info info{};
  OrtLibrary lib;
  Owned<OrtEnv> env;
  Options options;
  std::string version;
  std::string engine;
};

struct ef_session {
  const OrtApi* api = nullptr;
  Owned<OrtSession> session;
  Owned<OrtMemoryInfo> cpu;
  std::vector<Declared> inputs;
  std::vector<Declared> outputs;
  std::vector<const char*> input_names;   // into inputs[i].name
  std::vector<const char*> output_names;  // into outputs[i].name
};

namespace {

// `save_to`: where ORT writes the optimised graph (empty: nowhere).
Check MakeSession(ef_backend& backend, const std::string& bytes, const Options& options,
                  int threads, const std::string& where, Owned<OrtSession>& out,
                  const std::string& save_to = "") {
  const OrtApi* api = backend.lib.api;
  Owned<OrtSessionOptions> so(api, api->ReleaseSessionOptions);
  if (auto f = Ort(api, api->CreateSessionOptions(&so.ptr), EF_INTERNAL, "")) return f;
  const int intra = options.intra_op_threads > 0 ? options.intra_op_threads : threads;
  if (auto f = Ort(api, api->SetIntraOpNumThreads(so.ptr, intra), EF_INVALID_ARGUMENT, ""))
    return f;
  if (auto f = Ort(api, api->SetInterOpNumThreads(so.ptr, 1), EF_INTERNAL, "")) return f;
  if (auto f = Ort(api, api->SetSessionExecutionMode(so.ptr, ORT_SEQUENTIAL), EF_INTERNAL, "")) {
    return f;
  }
  if (auto f = Ort(api, api->SetSessionGraphOptimizationLevel(so.ptr, options.graph_optimization),
                   EF_INTERNAL, "")) {
    return f;
  }
  if (!options.memory_arena) {
    if (auto f = Ort(api, api->DisableCpuMemArena(so.ptr), EF_INTERNAL, "")) return f;
  }
  if (auto f = Ort(api,
                   api->AddSessionConfigEntry(so.ptr, "session.intra_op.allow_spinning",
                                              options.allow_spinning ? "1" : "0"),
                   EF_INTERNAL, "")) {
    return f;
  }
  if (!save_to.empty()) {
    if (auto f =
            Ort(api, api->SetOptimizedModelFilePath(so.ptr, save_to.c_str()), EF_INTERNAL, "")) {
      return f;
    }
  }
  out = Owned<OrtSession>(api, api->ReleaseSession);
  return Ort(
      api,
      api->CreateSessionFromArray(backend.env.ptr, bytes.data(), bytes.size(), so.ptr, &out.ptr),
      EF_UNSUPPORTED, "cannot load " + where + ": ");
}

// The names a session's graph has (inputs or outputs), in ORT's order.
Check GraphNames(const OrtApi* api, const OrtSession* session, bool inputs,
                 std::vector<std::string>& out) {
  OrtAllocator* allocator = nullptr;
  if (auto f = Ort(api, api->GetAllocatorWithDefaultOptions(&allocator), EF_INTERNAL, "")) return f;
  std::size_t count = 0;
  if (auto f = Ort(api,
                   inputs ? api->SessionGetInputCount(session, &count)
                          : api->SessionGetOutputCount(session, &count),
                   EF_INTERNAL, "")) {
    return f;
  }
  for (std::size_t i = 0; i < count; ++i) {
    char* name = nullptr;
    if (auto f = Ort(api,
                     inputs ? api->SessionGetInputName(session, i, allocator, &name)
                            : api->SessionGetOutputName(session, i, allocator, &name),
                     EF_INTERNAL, "")) {
      return f;
    }
    out.emplace_back(name);
    if (OrtStatus* status = api->AllocatorFree(allocator, name)) api->ReleaseStatus(status);
  }
  return std::nullopt;
}

// Every graph input must be declared (ORT needs them all fed), and every declared tensor must be
// in the graph, so a wrong manifest fails at load, not on each request.
Check CheckNames(const ef_session& s, const std::string& where) {
  std::vector<std::string> graph_inputs;
  std::vector<std::string> graph_outputs;
  if (auto f = GraphNames(s.api, s.session.ptr, true, graph_inputs)) return f;
  if (auto f = GraphNames(s.api, s.session.ptr, false, graph_outputs)) return f;
  auto declared = [](const std::vector<Declared>& list, const std::string& name) {
    return std::any_of(list.begin(), list.end(), [&](const Declared& d) { return d.name == name; });
  };
  for (const auto& name : graph_inputs) {
    if (!declared(s.inputs, name)) {
      return Failure{EF_UNSUPPORTED,
                     where + ": the graph input \"" + name + "\" is not in the model spec"};
    }
  }
  for (const auto& d : s.inputs) {
    if (std::find(graph_inputs.begin(), graph_inputs.end(), d.name) == graph_inputs.end()) {
      return Failure{EF_UNSUPPORTED, where + ": the graph has no input \"" + d.name + "\""};
    }
  }
  for (const auto& d : s.outputs) {
    if (std::find(graph_outputs.begin(), graph_outputs.end(), d.name) == graph_outputs.end()) {
      return Failure{EF_UNSUPPORTED, where + ": the graph has no output \"" + d.name + "\""};
    }
  }
  return std::nullopt;
}

Check Load(ef_backend& backend, const char* path, const ef_model_spec& spec,
           const ef_session_options& options, std::unique_ptr<ef_session>& session) {
  const std::string where(path);
  if (options.threads < 1 || options.parallel_runs < 1) {
    return Failure{EF_INVALID_ARGUMENT, "threads and parallel_runs must be at least 1"};
  }
  if (spec.format == nullptr || std::string_view(spec.format) != "onnx") {
    return Failure{EF_UNSUPPORTED,
                   "format \"" + std::string(spec.format ? spec.format : "") + "\" is not onnx"};
  }
  Options own = backend.options;  // create's, then this load's member on top
  if (options.options_json != nullptr) {
    own.library.clear();
    if (auto f = ParseOptions(options.options_json, false, own)) return f;
    if (!own.library.empty() && own.library != backend.lib.path) {
      return Failure{EF_INVALID_ARGUMENT,
                     "the ONNX Runtime library is chosen at create, not per "
                     "model"};
    }
  }
  const OrtApi* api = backend.lib.api;
  session = std::make_unique<ef_session>();
  session->api = api;
  session->inputs = CopySpecs(spec.inputs, spec.input_count);
  session->outputs = CopySpecs(spec.outputs, spec.output_count);
  if (session->inputs.empty() || session->outputs.empty()) {
    return Failure{EF_INVALID_ARGUMENT, "the model spec has no inputs or no outputs"};
  }
  for (const auto& d : session->inputs) session->input_names.push_back(d.name.c_str());
  for (const auto& d : session->outputs) session->output_names.push_back(d.name.c_str());
  // The optimised-model cache: ORT saves the graph it optimised for this box the first time, and
  // later loads of the same model (same SHA-256, ORT version and level) read that instead and
  // skip optimising (startup time, not inference time).
  std::string cached;
  if (own.optimized_model_cache && !own.cache_dir.empty() && IsSha256(own.model_sha256)) {
    std::error_code ec;
    std::filesystem::create_directories(own.cache_dir, ec);
    if (!ec) {
      cached = (std::filesystem::path(own.cache_dir) /
                ("optimized-" + backend.version + "-" + LevelName(own.graph_optimization) + "-" +
                 own.model_sha256 + ".onnx"))
                   .string();
    }
  }
  std::string bytes;
  std::error_code ec;
  // A cache entry ORT cannot load (damaged, or written by another build) is dropped and the
  // model is loaded from its own file: the cache may only ever save time, never fail a load.
  bool from_cache = false;
  if (!cached.empty() && std::filesystem::is_regular_file(cached, ec)) {
    Options no_optimisation = own;
    no_optimisation.graph_optimization = ORT_DISABLE_ALL;  // already optimised
    from_cache =
        !edgefleet::runtime::plugin_kit::ReadModelFile(cached.c_str(), bytes) &&
        !MakeSession(backend, bytes, no_optimisation, options.threads, cached, session->session);
    if (!from_cache) std::filesystem::remove(cached, ec);
  }
  if (!from_cache) {
    if (auto f = edgefleet::runtime::plugin_kit::ReadModelFile(path, bytes)) return f;
    const std::string partial = cached.empty() ? "" : cached + ".partial";
    if (auto f =
            MakeSession(backend, bytes, own, options.threads, where, session->session, partial)) {
      if (!partial.empty()) std::filesystem::remove(partial, ec);
      return f;
    }
    // Renamed only once the session exists: a crash leaves a .partial, never a bad cache entry.
    if (!partial.empty()) std::filesystem::rename(partial, cached, ec);
  }
  session->cpu = Owned<OrtMemoryInfo>(api, api->ReleaseMemoryInfo);
  if (auto f = Ort(
          api, api->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &session->cpu.ptr),
          EF_INTERNAL, "")) {
    return f;
  }
  return CheckNames(*session, where);
}

// The OrtValues of one run, released together.
struct Values {
  const OrtApi* api;
  std::vector<OrtValue*> v;
  ~Values() {
    for (OrtValue* x : v) {
      if (x != nullptr) api->ReleaseValue(x);
    }
  }
};

Check WriteOutput(const ef_session& s, std::size_t i, OrtValue* value, const ef_output_sink& sink) {
  const OrtApi* api = s.api;
  const Declared& declared = s.outputs[i];
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (auto f = Ort(api, api->GetTensorTypeAndShape(value, &info), EF_INTERNAL,
                   "output \"" + declared.name + "\": ")) {
    return f;
  }
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::size_t rank = 0;
  std::vector<std::int64_t> shape;
  OrtStatus* status = api->GetTensorElementType(info, &type);
  if (status == nullptr) status = api->GetDimensionsCount(info, &rank);
  if (status == nullptr) {
    shape.resize(rank);
    status = api->GetDimensions(info, shape.data(), rank);
  }
  api->ReleaseTensorTypeAndShapeInfo(info);
  if (auto f = Ort(api, status, EF_INTERNAL, "output \"" + declared.name + "\": ")) return f;
  // ef_dtype values are ONNX's TensorProto numbers, as are ORT's element types.
  if (static_cast<std::int32_t>(type) != declared.dtype) {
    return Failure{EF_INTERNAL, "output \"" + declared.name + "\": the graph gives " +
                                    DTypeName(static_cast<std::int32_t>(type)) +
                                    ", the model spec declares " + DTypeName(declared.dtype)};
  }
  std::size_t bytes = 0;
  if (auto f = Ort(api, api->GetTensorSizeInBytes(value, &bytes), EF_INTERNAL,
                   "output \"" + declared.name + "\": ")) {
    return f;
  }
  void* data = nullptr;
  if (auto f = Ort(api, api->GetTensorMutableData(value, &data), EF_INTERNAL, "")) return f;
  const ef_tensor_spec spec{declared.name.c_str(), declared.dtype, shape.data(), shape.size()};
  void* buffer = sink.allocate(sink.context, i, &spec, bytes);
  if (buffer == nullptr) {
    return Failure{EF_INTERNAL, "the agent refused output \"" + declared.name + "\""};
  }
  if (bytes > 0) std::memcpy(buffer, data, bytes);
  return std::nullopt;
}

Check Run(ef_session& s, const ef_tensor* inputs, std::size_t count, const ef_output_sink& sink) {
  if (count != s.inputs.size()) {
    return Failure{EF_INVALID_ARGUMENT, "expected " + std::to_string(s.inputs.size()) +
                                            " input(s), found " + std::to_string(count)};
  }
  const OrtApi* api = s.api;
  Values in{api, std::vector<OrtValue*>(count, nullptr)};
  static char empty = 0;  // ORT wants a data pointer even for zero elements
  for (std::size_t i = 0; i < count; ++i) {
    const ef_tensor& t = inputs[i];
    // ORT only reads inputs; the API takes a non-const pointer for tensors it may also write.
    void* data = t.data != nullptr ? const_cast<void*>(t.data) : &empty;  // NOLINT
    if (auto f = Ort(api,
                     api->CreateTensorWithDataAsOrtValue(
                         s.cpu.ptr, data, t.byte_size, t.spec.shape, t.spec.rank,
                         static_cast<ONNXTensorElementDataType>(t.spec.dtype), &in.v[i]),
                     EF_INVALID_ARGUMENT, "input \"" + s.inputs[i].name + "\": ")) {
      return f;
    }
  }
  Values out{api, std::vector<OrtValue*>(s.outputs.size(), nullptr)};
  if (auto f = Ort(api,
                   api->Run(s.session.ptr, nullptr, s.input_names.data(), in.v.data(), count,
                            s.output_names.data(), out.v.size(), out.v.data()),
                   EF_INTERNAL, "")) {
    return f;
  }
  for (std::size_t i = 0; i < out.v.size(); ++i) {
    if (auto f = WriteOutput(s, i, out.v[i], sink)) return f;
  }
  return std::nullopt;
}

// Runs the tiny Relu model and compares.
Check SelfTest(ef_backend& backend) {
  const OrtApi* api = backend.lib.api;
  Owned<OrtSession> session;
  if (auto f = MakeSession(backend, edgefleet::runtime::ort::TinyReluModel(13), Options{}, 1,
                           "the self-test model", session)) {
    return f;
  }
  Owned<OrtMemoryInfo> cpu(api, api->ReleaseMemoryInfo);
  if (auto f = Ort(api, api->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &cpu.ptr),
                   EF_INTERNAL, "")) {
    return f;
  }
  float values[] = {-1.5F, 0.0F, 2.0F, -3.0F};
  const float expected[] = {0.0F, 0.0F, 2.0F, 0.0F};
  const std::int64_t shape[] = {1, 4};
  Values in{api, {nullptr}};
  Values out{api, {nullptr}};
  if (auto f =
          Ort(api,
              api->CreateTensorWithDataAsOrtValue(cpu.ptr, values, sizeof(values), shape, 2,
                                                  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in.v[0]),
              EF_INTERNAL, "")) {
    return f;
  }
  const char* in_names[] = {"x"};
  const char* out_names[] = {"y"};
  if (auto f = Ort(
          api, api->Run(session.ptr, nullptr, in_names, in.v.data(), 1, out_names, 1, out.v.data()),
          EF_INTERNAL, "a Relu of 4 values failed: ")) {
    return f;
  }
  void* data = nullptr;
  if (auto f = Ort(api, api->GetTensorMutableData(out.v[0], &data), EF_INTERNAL, "")) return f;
  const auto* y = static_cast<const float*>(data);
  for (std::size_t i = 0; i < 4; ++i) {
    if (y[i] != expected[i]) {
      return Failure{EF_INTERNAL, "a Relu gave " + std::to_string(y[i]) + " at index " +
                                      std::to_string(i) + ", expected " +
                                      std::to_string(expected[i])};
    }
  }
  return std::nullopt;
}

// The newest default-domain opset the library imports: the tiny model at descending opsets.
std::int64_t ProbeMaxOpset(ef_backend& backend) {
  for (std::int64_t opset = kProbeFrom; opset > kMaxOpset; --opset) {
    Owned<OrtSession> session;
    if (!MakeSession(backend, edgefleet::runtime::ort::TinyReluModel(opset), Options{}, 1, "probe",
                     session)) {
      return opset;
    }
  }
  return kMaxOpset;
}

std::string Providers(const OrtApi* api) {
  char** list = nullptr;
  int n = 0;
  if (OrtStatus* status = api->GetAvailableProviders(&list, &n)) {
    api->ReleaseStatus(status);
    return "?";
  }
  std::string joined;
  for (int i = 0; i < n; ++i) joined += (i ? ", " : "") + std::string(list[i]);
  if (OrtStatus* status = api->ReleaseAvailableProviders(list, n)) api->ReleaseStatus(status);
  return joined;
}

Check Create(const char* options_json, std::unique_ptr<ef_backend>& made) {
  made = std::make_unique<ef_backend>();
  if (auto f = ParseOptions(options_json ? options_json : "{}", true, made->options)) return f;
  const std::string path = made->options.library.empty()
                               ? edgefleet::runtime::ort::DefaultLibraryPath()
                               : made->options.library;
  if (auto f = edgefleet::runtime::ort::OpenOrtLibrary(path, made->lib)) return f;
  const OrtApi* api = made->lib.api;
  made->env = Owned<OrtEnv>(api, api->ReleaseEnv);
  if (auto f = Ort(api, api->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "edgefleet", &made->env.ptr),
                   EF_INTERNAL, "")) {
    return f;
  }
  made->version = made->lib.version;
  // At most 256 bytes (the agent's limit on a description string): the path is in the log line
  // the agent writes for the library, not here.
  std::string providers = Providers(api);
  if (providers.size() > 120) providers = providers.substr(0, 117) + "...";
  made->engine = "ONNX Runtime " + made->lib.version + " (CPU; library offers " + providers +
                 "; imports opsets to " + std::to_string(ProbeMaxOpset(*made)) + ")";
  ef_backend_info& info = made->info;
  info.name = "onnxruntime";
  info.version = made->version.c_str();
  info.engine = made->engine.c_str();
  info.formats = kFormats;
  info.format_count = std::size(kFormats);
  info.devices = kDevices;
  info.device_count = std::size(kDevices);
  info.min_opset = kMinOpset;
  info.max_opset = kMaxOpset;
  info.operators = kOperators;
  info.operator_count = std::size(kOperators);
  return std::nullopt;
}

template <typename Step>
std::int32_t Guarded(Step&& step, const std::string& prefix, char* err, std::size_t err_size) {
  return edgefleet::runtime::plugin_kit::Guarded(std::forward<Step>(step), prefix, err, err_size,
                                                 [](const std::exception& e) { return e.what(); });
}

}  // namespace

EDGEFLEET_PLUGIN_KIT_COMMON_EXPORTS()
EDGEFLEET_PLUGIN_KIT_CREATE_EXPORTS()

extern "C" {

EF_BACKEND_EXPORT int32_t edgefleet_backend_load(ef_backend* backend, const char* model_path,
                                                 const ef_model_spec* spec,
                                                 const ef_session_options* options,
                                                 ef_session** session, char* err, size_t err_size) {
  std::unique_ptr<ef_session> made;
  const std::int32_t status =
      Guarded([&] { return Load(*backend, model_path, *spec, *options, made); }, "", err, err_size);
  if (status == EF_OK) *session = made.release();
  return status;
}

EF_BACKEND_EXPORT void edgefleet_backend_release_session(ef_session* session) { delete session; }

}  // extern "C"
