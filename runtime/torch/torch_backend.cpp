// The `torch` backend plugin: TorchScript models on libtorch (Debian's 1.13.1), CPU.
//
// A shared library behind the backend plugin ABI (runtime/include/edgefleet/backend_plugin.h),
// built as lib/edgefleet/backends/libedgefleet_backend_torch.so; only this library links
// libtorch. It uses nothing of edgefleet but that header and the header-only
// runtime/plugin_kit.hpp (the C-boundary helpers the in-tree plugins share), and links nothing
// of it, like a vendor's plugin.
//
// The agent checks inputs (names, order, dtypes, shapes) and outputs (dtype, shape, size) before
// and after every call, so this file checks only what is libtorch's own: the number of
// arguments forward() takes and what forward() returns (a Tensor, or a tuple or list of them, in
// the manifest's declared order). Every libtorch call is inside a try block: no c10::Error or
// other exception crosses the C boundary.
//
// Concurrency: one Module per session, shared by every run. TorchScript's forward() may be
// called from several threads at once for inference: the interpreter keeps its frames on the
// calling thread's stack, the graph executor compiles its execution plan under its own mutex,
// and the module's parameters are only read (runs happen under c10::InferenceMode). That is
// what PyTorch's inference servers rely on, and tests/runtime/torch_backend_test.cpp
// (ConcurrentRunsGiveTheSingleRunResult) checks it on ResNet-18. So no pool and no lock: the
// weights are held once, whatever parallel_runs says.
#include <edgefleet/backend_plugin.h>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/plugin_kit.hpp"

namespace {

// Ranks above this are refused (no model of ours comes near; it bounds the shape buffers).
constexpr std::size_t kMaxRank = 32;

// Manifests name an opset for every variant; TorchScript has no opset, so torchscript variants
// say 1 and that is all this backend imports.
constexpr std::int32_t kMinOpset = 1;
constexpr std::int32_t kMaxOpset = 1;

constexpr const char* kFormats[] = {"torchscript"};

// The aten operators proven on this plugin: each is called by a model whose outputs match
// python's (tests/runtime/torch_backend_test.cpp: torchvision MobileNetV2 and ResNet-18, traced
// and frozen; tests/data/torchscript/digits.pt against torch's golden logits). `bundle create`
// lists a TorchScript file's operators from its code (runtime/torchscript_model.hpp), so a model
// calling anything else is refused before download; load checks the graph again (prim::
// operators, the interpreter's own, always run).
constexpr ef_operator kOperators[] = {
    {"aten", "_convolution", kMinOpset, kMaxOpset},
    {"aten", "adaptive_avg_pool2d", kMinOpset, kMaxOpset},
    {"aten", "add", kMinOpset, kMaxOpset},
    {"aten", "add_", kMinOpset, kMaxOpset},
    {"aten", "flatten", kMinOpset, kMaxOpset},
    {"aten", "hardtanh_", kMinOpset, kMaxOpset},
    {"aten", "linear", kMinOpset, kMaxOpset},
    {"aten", "max_pool2d", kMinOpset, kMaxOpset},
    {"aten", "relu", kMinOpset, kMaxOpset},
    {"aten", "relu_", kMinOpset, kMaxOpset},
};
constexpr const char* kDevices[] = {"cpu"};

using edgefleet::runtime::plugin_kit::Check;
using edgefleet::runtime::plugin_kit::CopySpecs;
using edgefleet::runtime::plugin_kit::Declared;
using edgefleet::runtime::plugin_kit::DTypeName;
using edgefleet::runtime::plugin_kit::Failure;

// The scalar type of an ABI dtype; nullopt for one libtorch has no match for.
std::optional<c10::ScalarType> ToScalarType(std::int32_t dtype) {
  switch (dtype) {
    case EF_FLOAT32:
      return c10::kFloat;
    case EF_FLOAT64:
      return c10::kDouble;
    case EF_FLOAT16:
      return c10::kHalf;
    case EF_UINT8:
      return c10::kByte;
    case EF_INT8:
      return c10::kChar;
    case EF_INT16:
      return c10::kShort;
    case EF_INT32:
      return c10::kInt;
    case EF_INT64:
      return c10::kLong;
    case EF_BOOL:
      return c10::kBool;
    default:
      return std::nullopt;
  }
}

std::optional<std::int32_t> ToDType(c10::ScalarType type) {
  switch (type) {
    case c10::kFloat:
      return EF_FLOAT32;
    case c10::kDouble:
      return EF_FLOAT64;
    case c10::kHalf:
      return EF_FLOAT16;
    case c10::kByte:
      return EF_UINT8;
    case c10::kChar:
      return EF_INT8;
    case c10::kShort:
      return EF_INT16;
    case c10::kInt:
      return EF_INT32;
    case c10::kLong:
      return EF_INT64;
    case c10::kBool:
      return EF_BOOL;
    default:
      return std::nullopt;
  }
}

// at::set_num_threads is process-global for libtorch's own pool, and with OpenMP (Debian's
// build) the thread count is also a per-thread OpenMP setting that each calling thread must
// apply itself (at::init_num_threads). So: the count is one process-wide value, the last load
// that asks for another count sets it for all sessions (the agent loads every model with the one
// count from its config, so in practice it is set once), and every run first makes sure its own
// thread applied the current value (a thread-local compare, no call when it already has).
std::atomic<int> g_threads{0};  // 0: never set, libtorch's default

void ApplyThreads(int threads) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (g_threads.load() != threads) {
    at::set_num_threads(threads);
    g_threads.store(threads);
  }
}

void ApplyThreadsOnThisThread() {
  thread_local int applied = 0;
  const int wanted = g_threads.load(std::memory_order_relaxed);
  if (wanted > 0 && applied != wanted) {
    at::set_num_threads(wanted);
    applied = wanted;
  }
}

}  // namespace

struct ef_backend {
  ef_backend_info info{};
  std::string version;  // TORCH_VERSION, "1.13.1"
  std::string engine;
};

// Fixed after load; runs only read it (see the concurrency note at the top).
struct ef_session {
  std::vector<Declared> inputs;
  std::vector<Declared> outputs;
  torch::jit::Module module;
};

namespace {

// Every operator forward() runs (submodule calls inlined) must be in kOperators, or be one of
// the interpreter's own (prim::); the first that is not is named with its node.
Check CheckOperators(const torch::jit::Module& module, const std::string& where) {
  const auto method = module.find_method("forward");
  if (!method) return Failure{EF_UNSUPPORTED, where + ": the module has no forward()"};
  auto graph = method->graph()->copy();
  torch::jit::Inline(*graph);
  std::vector<const torch::jit::Block*> blocks = {graph->block()};
  while (!blocks.empty()) {
    const torch::jit::Block* block = blocks.back();
    blocks.pop_back();
    for (const torch::jit::Node* node : block->nodes()) {
      for (const torch::jit::Block* inner : node->blocks()) blocks.push_back(inner);
      const c10::Symbol kind = node->kind();
      if (kind.is_prim()) continue;
      const std::string ns = kind.ns().toUnqualString();
      const std::string op = kind.toUnqualString();
      const bool claimed =
          std::any_of(std::begin(kOperators), std::end(kOperators),
                      [&](const ef_operator& o) { return ns == o.domain && op == o.op; });
      if (claimed) continue;
      std::ostringstream text;
      text << *node;
      std::string shown = text.str();
      shown = shown.substr(0, std::min(shown.find('\n'), std::size_t{200}));
      return Failure{EF_UNSUPPORTED,
                     where + ": operator " + ns + ":" + op +
                         " is not in the torch backend's measured table (node: " + shown + ")"};
    }
  }
  return std::nullopt;
}

// forward()'s arguments after `self` must be as many as the manifest's inputs.
Check CheckArity(const torch::jit::Module& module, std::size_t inputs, const std::string& where) {
  const auto method = module.find_method("forward");
  if (!method) return Failure{EF_UNSUPPORTED, where + ": the module has no forward()"};
  const auto& args = method->function().getSchema().arguments();
  const std::size_t takes = args.empty() ? 0 : args.size() - 1;
  if (takes != inputs) {
    return Failure{EF_UNSUPPORTED, where + ": forward() takes " + std::to_string(takes) +
                                       " input(s), the manifest declares " +
                                       std::to_string(inputs)};
  }
  return std::nullopt;
}

Check Load(const char* path, const ef_model_spec& spec, const ef_session_options& options,
           std::unique_ptr<ef_session>& session) {
  const std::string where(path);
  if (options.threads < 1 || options.parallel_runs < 1) {
    return Failure{EF_INVALID_ARGUMENT, "threads and parallel_runs must be at least 1"};
  }
  if (spec.format == nullptr || std::string_view(spec.format) != "torchscript") {
    return Failure{EF_UNSUPPORTED, "format \"" + std::string(spec.format ? spec.format : "") +
                                       "\" is not torchscript"};
  }
  session = std::make_unique<ef_session>();
  session->inputs = CopySpecs(spec.inputs, spec.input_count);
  session->outputs = CopySpecs(spec.outputs, spec.output_count);
  if (session->inputs.empty() || session->outputs.empty()) {
    return Failure{EF_INVALID_ARGUMENT, "the model spec has no inputs or no outputs"};
  }
  for (const auto& in : session->inputs) {
    if (!ToScalarType(in.dtype)) {
      return Failure{EF_UNSUPPORTED, "input \"" + in.name + "\": element type " +
                                         DTypeName(in.dtype) + " is not supported"};
    }
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Failure{EF_IO, where + ": " + (ec ? ec.message() : "not a regular file")};
  }
  ApplyThreads(options.threads);
  session->module = torch::jit::load(where, c10::Device(c10::kCPU));
  session->module.eval();
  if (auto failed = CheckOperators(session->module, where)) return failed;
  return CheckArity(session->module, session->inputs.size(), where);
}

// The inputs as tensors over the caller's data (from_blob: no copy). The tensors are only read:
// the run is in inference mode and a traced model does not write its inputs.
Check MakeInputs(const ef_session& session, const ef_tensor* inputs, std::size_t count,
                 std::vector<c10::IValue>& out) {
  if (count != session.inputs.size()) {
    return Failure{EF_INVALID_ARGUMENT, "expected " + std::to_string(session.inputs.size()) +
                                            " input(s), found " + std::to_string(count)};
  }
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const ef_tensor& t = inputs[i];
    const auto type = ToScalarType(t.spec.dtype);
    if (!type) {
      return Failure{EF_INVALID_ARGUMENT,
                     "input \"" + session.inputs[i].name + "\": element type is not supported"};
    }
    const auto options = torch::TensorOptions().dtype(*type).device(c10::kCPU);
    const c10::IntArrayRef sizes(t.spec.shape, t.spec.rank);
    at::Tensor tensor = torch::from_blob(const_cast<void*>(t.data),  // NOLINT: read-only use
                                         sizes, options);
    if (static_cast<std::size_t>(tensor.nbytes()) != t.byte_size) {
      return Failure{EF_INVALID_ARGUMENT,
                     "input \"" + session.inputs[i].name + "\": data size does not fit"};
    }
    out.emplace_back(std::move(tensor));
  }
  return std::nullopt;
}

// forward()'s result as a list of tensors: a Tensor, or a tuple or list of Tensors.
Check Flatten(const c10::IValue& result, std::vector<at::Tensor>& out) {
  auto element = [&](const c10::IValue& v, std::size_t i) -> Check {
    if (!v.isTensor()) {
      return Failure{EF_UNSUPPORTED, "forward() returned a " + v.tagKind() + " at position " +
                                         std::to_string(i) + ", not a Tensor"};
    }
    out.push_back(v.toTensor());
    return std::nullopt;
  };
  if (result.isTensor()) {
    out.push_back(result.toTensor());
    return std::nullopt;
  }
  if (result.isTuple()) {
    const auto& elements = result.toTupleRef().elements();
    for (std::size_t i = 0; i < elements.size(); ++i) {
      if (auto failed = element(elements[i], i)) return failed;
    }
    return std::nullopt;
  }
  if (result.isList()) {
    const auto list = result.toListRef();
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (auto failed = element(list[i], i)) return failed;
    }
    return std::nullopt;
  }
  return Failure{EF_UNSUPPORTED, "forward() returned a " + result.tagKind() +
                                     ", expected a Tensor or a tuple or list of Tensors"};
}

// Writes each output into the buffer the agent allocates for it, in declared order.
Check WriteOutputs(const ef_session& session, std::vector<at::Tensor>& outs,
                   const ef_output_sink& sink) {
  if (outs.size() != session.outputs.size()) {
    return Failure{EF_UNSUPPORTED, "forward() returned " + std::to_string(outs.size()) +
                                       " tensor(s), the manifest declares " +
                                       std::to_string(session.outputs.size())};
  }
  for (std::size_t i = 0; i < outs.size(); ++i) {
    const Declared& declared = session.outputs[i];
    at::Tensor t = outs[i].contiguous();
    const auto dtype = ToDType(t.scalar_type());
    if (!dtype) {
      return Failure{EF_UNSUPPORTED, "output \"" + declared.name + "\": libtorch type " +
                                         std::string(c10::toString(t.scalar_type())) +
                                         " has no edgefleet dtype"};
    }
    if (static_cast<std::size_t>(t.dim()) > kMaxRank) {
      return Failure{EF_UNSUPPORTED, "output \"" + declared.name + "\": rank " +
                                         std::to_string(t.dim()) + " is too large"};
    }
    std::array<std::int64_t, kMaxRank> shape{};
    for (std::int64_t d = 0; d < t.dim(); ++d) shape[static_cast<std::size_t>(d)] = t.size(d);
    const ef_tensor_spec spec{declared.name.c_str(), *dtype, shape.data(),
                              static_cast<std::size_t>(t.dim())};
    const auto bytes = static_cast<std::size_t>(t.nbytes());
    void* buffer = sink.allocate(sink.context, i, &spec, bytes);
    if (buffer == nullptr) {
      return Failure{EF_INTERNAL, "the agent refused output \"" + declared.name + "\" (" +
                                      std::string(c10::toString(t.scalar_type())) + " " +
                                      c10::str(t.sizes()) + ")"};
    }
    if (bytes > 0) std::memcpy(buffer, t.data_ptr(), bytes);
  }
  return std::nullopt;
}

Check Run(ef_session& session, const ef_tensor* inputs, std::size_t count,
          const ef_output_sink& sink) {
  ApplyThreadsOnThisThread();
  c10::InferenceMode inference;
  std::vector<c10::IValue> args;
  if (auto failed = MakeInputs(session, inputs, count, args)) return failed;
  const c10::IValue result = session.module.forward(std::move(args));
  std::vector<at::Tensor> outs;
  if (auto failed = Flatten(result, outs)) return failed;
  return WriteOutputs(session, outs, sink);
}

// A tiny computation through libtorch's operator dispatch: ReLU on four values.
Check SelfTest() {
  c10::InferenceMode inference;
  std::array<float, 4> values = {-1.5F, 0.0F, 2.0F, -3.0F};
  const std::array<float, 4> expected = {0.0F, 0.0F, 2.0F, 0.0F};
  const at::Tensor x = torch::from_blob(values.data(), {4}, torch::kFloat);
  const at::Tensor y = torch::relu(x).contiguous();
  if (y.numel() != 4 || y.scalar_type() != torch::kFloat) {
    return Failure{EF_INTERNAL, "a ReLU of 4 values gave " + std::to_string(y.numel())};
  }
  const float* got = y.data_ptr<float>();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (got[i] != expected[i]) {
      return Failure{EF_INTERNAL, "a ReLU gave " + std::to_string(got[i]) + " at index " +
                                      std::to_string(i) + ", expected " +
                                      std::to_string(expected[i])};
    }
  }
  return std::nullopt;
}

std::string Trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return std::string(s.substr(first, s.find_last_not_of(" \t") - first + 1));
}

// The reason of a libtorch error, reason first. An error raised inside the TorchScript
// interpreter is a page of tracebacks (TorchScript's, then the original python) with the reason
// on the last line; the agent's buffer would cut it off, so it is reported as the reason and the
// serialized code line that raised it.
std::string TorchReason(const std::exception& e) {
  // c10::Error's what() carries a C++ backtrace; the message alone is the reason. (The
  // interpreter's errors arrive as std::runtime_error.)
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = torch_error ? torch_error->what_without_backtrace() : e.what();
  if (text.find("Traceback of TorchScript") == std::string::npos) return text;
  std::string_view rest = text;
  while (!rest.empty() && rest.back() == '\n') rest.remove_suffix(1);
  const std::string reason = Trim(rest.substr(rest.rfind('\n') + 1));
  const auto here = text.find("<--- HERE");
  if (here == std::string::npos) return reason;
  // The code line is the one above the "~~~~ <--- HERE" marker line.
  const auto marker = text.rfind('\n', here);
  const auto code = marker == std::string::npos ? marker : text.rfind('\n', marker - 1);
  if (code == std::string::npos) return reason;
  return reason + " (in TorchScript: " + Trim(text.substr(code + 1, marker - code - 1)) + ")";
}

// Runs `step`, turning every exception into a failure whose message is `prefix` and the reason.
template <typename Step>
std::int32_t Guarded(Step&& step, const std::string& prefix, char* err, std::size_t err_size) {
  return edgefleet::runtime::plugin_kit::Guarded(
      std::forward<Step>(step), prefix, err, err_size,
      [](const std::exception& e) { return TorchReason(e); });
}

}  // namespace

EDGEFLEET_PLUGIN_KIT_COMMON_EXPORTS()

extern "C" {

EF_BACKEND_EXPORT int32_t edgefleet_backend_create(const char* /*options_json*/,
                                                   ef_backend** backend, char* err,
                                                   size_t err_size) {
  return Guarded(
      [&]() -> Check {
        auto made = std::make_unique<ef_backend>();
        made->version = TORCH_VERSION;
        made->engine = "libtorch " + made->version + " (TorchScript, CPU)";
        ef_backend_info& info = made->info;
        info.name = "torch";
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
        *backend = made.release();
        return std::nullopt;
      },
      "create: ", err, err_size);
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_self_test(ef_backend* /*backend*/, char* err,
                                                      size_t err_size) {
  return Guarded(SelfTest, "", err, err_size);
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_load(ef_backend* /*backend*/, const char* model_path,
                                                 const ef_model_spec* spec,
                                                 const ef_session_options* options,
                                                 ef_session** session, char* err, size_t err_size) {
  std::unique_ptr<ef_session> made;
  const std::string prefix = "cannot load " + std::string(model_path) + ": ";
  const std::int32_t status =
      Guarded([&] { return Load(model_path, *spec, *options, made); }, prefix, err, err_size);
  // A deserializer exception is the model's fault, not an engine failure.
  if (status == EF_INTERNAL) return EF_UNSUPPORTED;
  if (status == EF_OK) *session = made.release();
  return status;
}

EF_BACKEND_EXPORT void edgefleet_backend_release_session(ef_session* session) {
  try {
    delete session;
  } catch (...) {  // NOLINT: a destructor of libtorch's must not take the agent down
  }
}

}  // extern "C"
