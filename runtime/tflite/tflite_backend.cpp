// The `tflite` backend plugin: TensorFlow Lite flatbuffers on Arm NN (Debian's 20.08, library
// version 22), CPU.
//
// A shared library behind the backend plugin ABI (runtime/include/edgefleet/backend_plugin.h),
// built as lib/edgefleet/backends/libedgefleet_backend_tflite.so; only this library links Arm NN.
// Like the other in-tree plugins it uses nothing of edgefleet but that header and the
// header-only runtime/plugin_kit.hpp.
//
// Arm NN's TfLiteParser turns the flatbuffer into an Arm NN network, which is optimized for the
// first compute backend of Arm NN's that is present: `CpuAcc` (NEON, Arm Compute Library; Debian's
// libarmnn-cpuacc-backend22 on arm64 boxes), else `CpuRef` (the portable reference
// implementation, libarmnn-cpuref-backend22). Arm NN finds both as dynamic backends in one
// directory (Debian: /usr/lib/<triplet>/armnn22, found by the build; the option
// `dynamic_backends_path` of backend_options.tflite names another). describe's devices say which
// one runs ("cpu" plus "armnn:CpuRef" or "armnn:CpuAcc").
//
// Shapes. Arm NN 20.08 runs static shapes only, and TFLite files carry batch 1 in a tensor's
// shape (a dynamic batch only in `shape_signature`, which this Arm NN ignores). A request with N
// rows is therefore run as N batch-1 runs when the network's batch is 1, and the rows of each
// output are put back together; any other shape difference is refused naming the tensor.
//
// Concurrency: one loaded network per session; Arm NN's LoadedNetwork keeps one working memory
// per network, so runs of one session are serialized by the session's mutex (a box that needs
// parallel runs of one TFLite model loads it once per slot; the agent's pool still overlaps
// I/O and decoding with the run).
#include <edgefleet/backend_plugin.h>

#include <armnn/ArmNN.hpp>
#include <armnn/BackendRegistry.hpp>
#include <armnn/Utils.hpp>
#include <armnn/Version.hpp>
#include <armnnTfLiteParser/ITfLiteParser.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/plugin_kit.hpp"
#include "runtime/tflite/fp16_fold.hpp"

#ifndef EDGEFLEET_ARMNN_BACKENDS_DIR
#error "the build defines EDGEFLEET_ARMNN_BACKENDS_DIR (where Arm_CpuRef_backend.so is)"
#endif

namespace {

// TFLite's schema version: the `opset` of a tflite variant.
constexpr std::int32_t kSchemaVersion = 3;

constexpr const char* kFormats[] = {"tflite"};

// Operators proven on Arm NN here: each appears in a model that loads and matches a reference
// other than Arm NN (tests/runtime/: the digits CNN against torch's logits; MediaPipe's face
// detector by finding the face OpenCV's Haar cascade finds, and none where it finds none;
// bench/make_tflite_mobilenet.py's MobileNetV2 against torch's logits, in the side-by-side).
// DEQUANTIZE is claimed as those models use it: float16 constant weights, which the plugin folds
// to float32 before parsing (tflite/fp16_fold.hpp). Builtin operators have the default domain; a
// custom operator is never claimed, so the agent refuses it before download.
constexpr ef_operator kOperators[] = {
    {"", "ADD", kSchemaVersion, kSchemaVersion},
    {"", "AVERAGE_POOL_2D", kSchemaVersion, kSchemaVersion},
    {"", "CONCATENATION", kSchemaVersion, kSchemaVersion},
    {"", "CONV_2D", kSchemaVersion, kSchemaVersion},
    {"", "DEPTHWISE_CONV_2D", kSchemaVersion, kSchemaVersion},
    {"", "DEQUANTIZE", kSchemaVersion, kSchemaVersion},
    {"", "FULLY_CONNECTED", kSchemaVersion, kSchemaVersion},
    {"", "MAX_POOL_2D", kSchemaVersion, kSchemaVersion},
    {"", "PAD", kSchemaVersion, kSchemaVersion},
    {"", "RELU", kSchemaVersion, kSchemaVersion},
    {"", "RESHAPE", kSchemaVersion, kSchemaVersion},
};

constexpr std::size_t kMaxRank = 8;

using edgefleet::runtime::plugin_kit::Check;
using edgefleet::runtime::plugin_kit::CopySpecs;
using edgefleet::runtime::plugin_kit::Declared;
using edgefleet::runtime::plugin_kit::DTypeName;
using edgefleet::runtime::plugin_kit::Failure;

std::optional<armnn::DataType> ToArmnn(std::int32_t dtype) {
  switch (dtype) {
    case EF_FLOAT32:
      return armnn::DataType::Float32;
    case EF_FLOAT16:
      return armnn::DataType::Float16;
    case EF_UINT8:
      return armnn::DataType::QAsymmU8;
    case EF_INT8:
      return armnn::DataType::QAsymmS8;
    case EF_INT16:
      return armnn::DataType::QSymmS16;
    case EF_INT32:
      return armnn::DataType::Signed32;
    case EF_BOOL:
      return armnn::DataType::Boolean;
    default:
      return std::nullopt;
  }
}

// The ABI dtype of an Arm NN tensor; both signed 8-bit quantizations are int8 bytes.
std::optional<std::int32_t> ToDType(armnn::DataType type) {
  switch (type) {
    case armnn::DataType::Float32:
      return EF_FLOAT32;
    case armnn::DataType::Float16:
      return EF_FLOAT16;
    case armnn::DataType::QAsymmU8:
      return EF_UINT8;
    case armnn::DataType::QAsymmS8:
    case armnn::DataType::QSymmS8:
      return EF_INT8;
    case armnn::DataType::QSymmS16:
      return EF_INT16;
    case armnn::DataType::Signed32:
      return EF_INT32;
    case armnn::DataType::Boolean:
      return EF_BOOL;
    default:
      return std::nullopt;
  }
}

std::vector<std::int64_t> Dims(const armnn::TensorShape& shape) {
  std::vector<std::int64_t> out;
  for (unsigned i = 0; i < shape.GetNumDimensions(); ++i) out.push_back(shape[i]);
  return out;
}

std::string ShapeText(const std::vector<std::int64_t>& dims) {
  std::string out = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) out += (i ? "," : "") + std::to_string(dims[i]);
  return out + "]";
}

}  // namespace

struct ef_backend {
  ef_backend_info info{};
  std::string version;  // ARMNN_VERSION, the library's: "22.0.0" for Debian's Arm NN 20.08
  std::string engine;
  std::vector<const char*> devices;
  std::string device;                  // "armnn:CpuRef" or "armnn:CpuAcc"
  armnn::BackendId compute{"CpuRef"};  // the Arm NN backend networks are optimized for
  armnn::IRuntimePtr runtime{nullptr, &armnn::IRuntime::Destroy};
};

struct Binding {
  Declared declared;
  armnn::BindingPointInfo info;  // layer id and the network's tensor info (batch 1 or N)
};

struct ef_session {
  armnn::IRuntime* runtime = nullptr;
  armnn::NetworkId network = 0;
  std::vector<Binding> inputs;
  std::vector<Binding> outputs;
  std::mutex mu;  // one run at a time on the network (see the note at the top)
  ~ef_session() {
    if (runtime != nullptr) runtime->UnloadNetwork(network);
  }
};

namespace {

// Binds each declared tensor to the parser's by name; the dtype must be the declared one and
// every dimension but the batch must match (a declared -1 matches any).
template <typename Lookup>
Check Bind(const std::vector<Declared>& declared, const std::vector<std::string>& names,
           const char* kind, Lookup&& lookup, std::vector<Binding>& out) {
  for (const auto& d : declared) {
    if (std::find(names.begin(), names.end(), d.name) == names.end()) {
      std::string have;
      for (const auto& n : names) have += (have.empty() ? "" : ", ") + n;
      return Failure{EF_UNSUPPORTED, std::string(kind) + " \"" + d.name +
                                         "\" is not in the model, whose " + kind +
                                         "s are: " + have};
    }
    armnn::BindingPointInfo info = lookup(d.name);
    const auto type = ToArmnn(d.dtype);
    const auto model_type = ToDType(info.second.GetDataType());
    if (!type || !model_type || *model_type != d.dtype) {
      return Failure{EF_UNSUPPORTED, std::string(kind) + " \"" + d.name + "\": the manifest says " +
                                         DTypeName(d.dtype) + ", the model has Arm NN type " +
                                         armnn::GetDataTypeName(info.second.GetDataType())};
    }
    const auto dims = Dims(info.second.GetShape());
    bool fits = dims.size() == d.shape.size();
    for (std::size_t i = 1; fits && i < dims.size(); ++i) {
      fits = d.shape[i] == -1 || d.shape[i] == dims[i];
    }
    if (!fits) {
      return Failure{EF_UNSUPPORTED, std::string(kind) + " \"" + d.name +
                                         "\": the manifest's shape " + ShapeText(d.shape) +
                                         " does not fit the model's " + ShapeText(dims)};
    }
    out.push_back({d, info});
  }
  if (out.size() != names.size()) {
    return Failure{EF_UNSUPPORTED, "the model has " + std::to_string(names.size()) + " " + kind +
                                       "(s), the manifest declares " + std::to_string(out.size())};
  }
  return std::nullopt;
}

Check Load(ef_backend& backend, const char* path, const ef_model_spec& spec,
           const ef_session_options& options, std::unique_ptr<ef_session>& session) {
  const std::string where(path);
  if (options.threads < 1 || options.parallel_runs < 1) {
    return Failure{EF_INVALID_ARGUMENT, "threads and parallel_runs must be at least 1"};
  }
  if (spec.format == nullptr || std::string_view(spec.format) != "tflite") {
    return Failure{EF_UNSUPPORTED,
                   "format \"" + std::string(spec.format ? spec.format : "") + "\" is not tflite"};
  }
  std::vector<std::uint8_t> content;
  if (auto failed = edgefleet::runtime::plugin_kit::ReadModelFile(path, content)) return failed;
  edgefleet::runtime::tflite::FoldFloat16Weights(content);  // Arm NN 20.08 wants float32 weights
  auto parser = armnnTfLiteParser::ITfLiteParser::Create();
  armnn::INetworkPtr network = parser->CreateNetworkFromBinary(content);
  if (parser->GetSubgraphCount() != 1) {
    return Failure{EF_UNSUPPORTED, where + ": " + std::to_string(parser->GetSubgraphCount()) +
                                       " subgraphs; only models with one are run"};
  }
  session = std::make_unique<ef_session>();
  const auto declared_in = CopySpecs(spec.inputs, spec.input_count);
  const auto declared_out = CopySpecs(spec.outputs, spec.output_count);
  if (auto failed = Bind(
          declared_in, parser->GetSubgraphInputTensorNames(0), "input",
          [&](const std::string& n) { return parser->GetNetworkInputBindingInfo(0, n); },
          session->inputs)) {
    return failed;
  }
  if (auto failed = Bind(
          declared_out, parser->GetSubgraphOutputTensorNames(0), "output",
          [&](const std::string& n) { return parser->GetNetworkOutputBindingInfo(0, n); },
          session->outputs)) {
    return failed;
  }
  std::vector<std::string> messages;
  armnn::IOptimizedNetworkPtr optimized = armnn::Optimize(
      *network, {backend.compute}, backend.runtime->GetDeviceSpec(), armnn::OptimizerOptions(),
      armnn::Optional<std::vector<std::string>&>(messages));
  if (!optimized) {
    std::string why;
    for (const auto& m : messages) why += (why.empty() ? "" : "; ") + m;
    return Failure{EF_UNSUPPORTED, where + ": Arm NN cannot run it on " +
                                       std::string(backend.compute.Get()) + ": " + why};
  }
  std::string error;
  armnn::NetworkId id = 0;
  if (backend.runtime->LoadNetwork(id, std::move(optimized), error, armnn::INetworkProperties()) !=
      armnn::Status::Success) {
    return Failure{EF_UNSUPPORTED, where + ": Arm NN did not load the network: " + error};
  }
  session->runtime = backend.runtime.get();
  session->network = id;
  return std::nullopt;
}

// The number of batch-1 runs a request needs: 1 when every input has the network's shape, N
// when the network's batch is 1 and every input has N rows of the network's row shape.
Check Rows(const ef_session& session, const ef_tensor* inputs, std::size_t count,
           std::size_t& runs) {
  if (count != session.inputs.size()) {
    return Failure{EF_INVALID_ARGUMENT, "expected " + std::to_string(session.inputs.size()) +
                                            " input(s), found " + std::to_string(count)};
  }
  std::optional<std::int64_t> rows;
  bool exact = true;
  for (std::size_t i = 0; i < count; ++i) {
    const auto want = Dims(session.inputs[i].info.second.GetShape());
    const std::vector<std::int64_t> got(inputs[i].spec.shape,
                                        inputs[i].spec.shape + inputs[i].spec.rank);
    const auto& name = session.inputs[i].declared.name;
    const bool same_rows =
        got.size() == want.size() && std::equal(got.begin() + (got.empty() ? 0 : 1), got.end(),
                                                want.begin() + (want.empty() ? 0 : 1));
    if (!same_rows || got.empty() || (got[0] != want[0] && want[0] != 1)) {
      return Failure{EF_INVALID_ARGUMENT, "input \"" + name + "\": shape " + ShapeText(got) +
                                              " does not fit the model's " + ShapeText(want)};
    }
    if (rows && *rows != got[0]) {
      return Failure{EF_INVALID_ARGUMENT, "input \"" + name + "\" has " + std::to_string(got[0]) +
                                              " rows, another input " + std::to_string(*rows)};
    }
    rows = got[0];
    exact = exact && got[0] == want[0];
    if (inputs[i].byte_size != session.inputs[i].info.second.GetNumBytes() *
                                   static_cast<std::size_t>(exact ? 1 : got[0])) {
      return Failure{EF_INVALID_ARGUMENT, "input \"" + name + "\": data size does not fit"};
    }
  }
  runs = exact ? 1 : static_cast<std::size_t>(rows.value_or(1));
  return std::nullopt;
}

Check Run(ef_session& session, const ef_tensor* inputs, std::size_t count,
          const ef_output_sink& sink) {
  std::size_t runs = 1;
  if (auto failed = Rows(session, inputs, count, runs)) return failed;
  // Each output's buffer, for all runs: the network's shape with the batch set to the rows.
  std::vector<std::uint8_t*> out_data;
  for (std::size_t o = 0; o < session.outputs.size(); ++o) {
    const auto& binding = session.outputs[o];
    auto dims = Dims(binding.info.second.GetShape());
    if (dims.empty() || dims.size() > kMaxRank) {
      return Failure{EF_UNSUPPORTED, "output \"" + binding.declared.name + "\": rank " +
                                         std::to_string(dims.size()) + " is not supported"};
    }
    if (runs > 1) dims[0] = static_cast<std::int64_t>(runs);
    const ef_tensor_spec spec{binding.declared.name.c_str(), binding.declared.dtype, dims.data(),
                              dims.size()};
    const std::size_t bytes = binding.info.second.GetNumBytes() * runs;
    void* buffer = sink.allocate(sink.context, o, &spec, bytes);
    if (buffer == nullptr) {
      return Failure{EF_INTERNAL, "the agent refused output \"" + binding.declared.name + "\" " +
                                      ShapeText(dims)};
    }
    out_data.push_back(static_cast<std::uint8_t*>(buffer));
  }
  std::lock_guard<std::mutex> lock(session.mu);
  for (std::size_t r = 0; r < runs; ++r) {
    armnn::InputTensors in;
    for (std::size_t i = 0; i < count; ++i) {
      const auto& info = session.inputs[i].info;
      const auto* base = static_cast<const std::uint8_t*>(inputs[i].data);
      in.emplace_back(info.first,
                      armnn::ConstTensor(info.second, base + r * info.second.GetNumBytes()));
    }
    armnn::OutputTensors out;
    for (std::size_t o = 0; o < session.outputs.size(); ++o) {
      const auto& info = session.outputs[o].info;
      out.emplace_back(info.first,
                       armnn::Tensor(info.second, out_data[o] + r * info.second.GetNumBytes()));
    }
    if (session.runtime->EnqueueWorkload(session.network, in, out) != armnn::Status::Success) {
      return Failure{EF_INTERNAL, "Arm NN's EnqueueWorkload failed on row " + std::to_string(r)};
    }
  }
  return std::nullopt;
}

// A tiny network through the chosen compute backend: ReLU on four values.
Check SelfTest(ef_backend& backend) {
  armnn::INetworkPtr net = armnn::INetwork::Create();
  const armnn::TensorInfo info(armnn::TensorShape({4}), armnn::DataType::Float32);
  armnn::IConnectableLayer* input = net->AddInputLayer(0);
  armnn::IConnectableLayer* relu =
      net->AddActivationLayer(armnn::ActivationDescriptor(armnn::ActivationFunction::ReLu));
  armnn::IConnectableLayer* output = net->AddOutputLayer(0);
  input->GetOutputSlot(0).Connect(relu->GetInputSlot(0));
  relu->GetOutputSlot(0).Connect(output->GetInputSlot(0));
  input->GetOutputSlot(0).SetTensorInfo(info);
  relu->GetOutputSlot(0).SetTensorInfo(info);
  armnn::IOptimizedNetworkPtr optimized =
      armnn::Optimize(*net, {backend.compute}, backend.runtime->GetDeviceSpec());
  if (!optimized) return Failure{EF_INTERNAL, "Arm NN cannot optimize a ReLU network"};
  armnn::NetworkId id = 0;
  if (backend.runtime->LoadNetwork(id, std::move(optimized)) != armnn::Status::Success) {
    return Failure{EF_INTERNAL, "Arm NN cannot load a ReLU network"};
  }
  std::array<float, 4> values = {-1.5F, 0.0F, 2.0F, -3.0F};
  std::array<float, 4> got{};
  const std::array<float, 4> expected = {0.0F, 0.0F, 2.0F, 0.0F};
  const armnn::InputTensors in{{0, armnn::ConstTensor(info, values.data())}};
  const armnn::OutputTensors out{{0, armnn::Tensor(info, got.data())}};
  const auto status = backend.runtime->EnqueueWorkload(id, in, out);
  backend.runtime->UnloadNetwork(id);
  if (status != armnn::Status::Success) return Failure{EF_INTERNAL, "a ReLU run failed"};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (got[i] != expected[i]) {
      return Failure{EF_INTERNAL, "a ReLU gave " + std::to_string(got[i]) + " at index " +
                                      std::to_string(i) + ", expected " +
                                      std::to_string(expected[i])};
    }
  }
  return std::nullopt;
}

Check Create(const char* options_json, std::unique_ptr<ef_backend>& made) {
  armnn::ConfigureLogging(false, false, armnn::LogSeverity::Fatal);
  std::string backends_path = EDGEFLEET_ARMNN_BACKENDS_DIR;
  if (options_json != nullptr && *options_json != '\0') {
    const auto options = nlohmann::json::parse(options_json, nullptr, false);
    if (!options.is_object()) return Failure{EF_INVALID_ARGUMENT, "options are not a JSON object"};
    if (options.contains("dynamic_backends_path")) {
      if (!options["dynamic_backends_path"].is_string()) {
        return Failure{EF_INVALID_ARGUMENT, "dynamic_backends_path: expected a string"};
      }
      backends_path = options["dynamic_backends_path"].get<std::string>();
    }
  }
  made = std::make_unique<ef_backend>();
  armnn::IRuntime::CreationOptions creation;
  creation.m_DynamicBackendsPath = backends_path;
  made->runtime = armnn::IRuntime::Create(creation);
  const auto ids = armnn::BackendRegistryInstance().GetBackendIds();
  if (ids.count("CpuAcc") != 0) {
    made->compute = armnn::BackendId("CpuAcc");
  } else if (ids.count("CpuRef") == 0) {
    return Failure{EF_UNSUPPORTED, "Arm NN found neither CpuAcc nor CpuRef in " + backends_path +
                                       " (install libarmnn-cpuref-backend22)"};
  }
  made->version = ARMNN_VERSION;
  made->device = "armnn:" + std::string(made->compute.Get());
  made->engine =
      "Arm NN " + made->version + " (TfLiteParser, " + std::string(made->compute.Get()) + ")";
  made->devices = {"cpu", made->device.c_str()};
  ef_backend_info& info = made->info;
  info.name = "tflite";
  info.version = made->version.c_str();
  info.engine = made->engine.c_str();
  info.formats = kFormats;
  info.format_count = std::size(kFormats);
  info.devices = made->devices.data();
  info.device_count = made->devices.size();
  info.min_opset = kSchemaVersion;
  info.max_opset = kSchemaVersion;
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
  const std::string prefix = "cannot load " + std::string(model_path) + ": ";
  const std::int32_t status = Guarded(
      [&] { return Load(*backend, model_path, *spec, *options, made); }, prefix, err, err_size);
  // A parser exception (an unsupported or malformed operator) is the model's fault.
  if (status == EF_INTERNAL) return EF_UNSUPPORTED;
  if (status == EF_OK) *session = made.release();
  return status;
}

EF_BACKEND_EXPORT void edgefleet_backend_release_session(ef_session* session) {
  try {
    delete session;
  } catch (...) {  // NOLINT: an engine's destructor must not take the agent down
  }
}

}  // extern "C"
