// Inference backends: what a backend can run, and loading a model artifact into a Session.
//
// The interface is small and free of any framework type so that more backends (TorchScript,
// TFLite, vendor plugins) fit beside runtime/opencv/ later. A backend describes itself with
// BackendCapabilities; the compatibility checks (compat.hpp) decide from them alone whether a
// variant can run, before and after download.
//
// Thread safety: Backend methods are thread-safe. Session::Run may be called from many threads
// at once; each implementation documents how it achieves that (pool or lock).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "manifests/semver.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::runtime {

// One operator the backend runs, for a range of the model's opset of that domain. Only what
// was measured to load and match the reference (tests/runtime: onnx conformance) is claimed.
struct OperatorSupport {
  std::string domain;  // "" for the default ONNX domain ("ai.onnx")
  std::string op;
  int min_opset = 1;
  int max_opset = 1;
};

// A backend's measured verdict on one form of an operator (runtime/onnx_forms.hpp): forms that
// run, of operators its OperatorSupport table does not claim whole at an opset, and forms that
// fail, of any operator.
struct FormClaim {
  std::string domain;  // "" for the default ONNX domain
  std::string op;
  int min_opset = 1;
  int max_opset = 1;
  std::string form;  // the form text, without the operator
  bool runs = false;
  std::string why;  // when !runs: what failed
};

// How a backend stands on a node, from the operator table and then the form table.
// The form table is read first (a form measured to fail is refused even where the operator is
// claimed whole), then the operator table.
enum class FormVerdict {
  kRuns,     // claimed: this form of the operator, or the operator at that opset
  kFails,    // this form was measured and fails
  kUnknown,  // not measured, but some form of the operator runs at that opset: the real check
             // (load and parity after download) decides
  kRefused,  // the backend runs no form of the operator at that opset
};

// A node shape the backend cannot run safely although it runs the operator: at most
// `max_outputs` non-empty outputs for `op` (e.g. OpenCV 4.6's Dropout with its mask output).
struct OutputLimit {
  std::string domain;  // "" for ai.onnx
  std::string op;
  std::size_t max_outputs = 1;
  std::string why;
};

struct BackendCapabilities {
  std::string name;                  // "opencv"
  manifests::SemVer version;         // of the engine, e.g. 4.6.0
  std::string engine;                // for logs and status, e.g. "OpenCV DNN 4.6.0"
  std::vector<std::string> formats;  // "onnx"
  int min_opset = 1;                 // default-domain opsets the backend imports
  int max_opset = 1;
  std::vector<OperatorSupport> operators;
  std::vector<FormClaim> forms;            // empty for a backend without a form table
  std::vector<OutputLimit> output_limits;  // checked per node by CheckGraph and at load
  std::vector<std::string> targets;        // devices it runs on: "cpu", "gpu", "npu"

  // True when `op` of `domain` is claimed at `opset`.
  bool Supports(std::string_view domain, std::string_view op, int opset) const;
  // The verdict on a node of `op` in form `form` at `opset`; `claim` (when not null) receives the
  // form table's row that decided it (for its reason).
  FormVerdict Judge(std::string_view domain, std::string_view op, int opset, std::string_view form,
                    const FormClaim** claim = nullptr) const;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;  // -1 for dynamic
};

struct SessionOptions {
  int threads = 1;        // intra-op threads the backend may use for one run
  int parallel_runs = 2;  // how many Run calls may execute at once (e.g. pool size)
  std::string backend_options_json = "{}";  // the agent config's backend_options, as JSON
};

class Session {
 public:
  virtual ~Session() = default;
  virtual const std::vector<TensorInfo>& inputs() const = 0;
  virtual const std::vector<TensorInfo>& outputs() const = 0;
  // Runs one inference. Inputs are matched by name (or by position when a name is empty) and
  // checked against inputs() (dtype, shape with -1 wildcards): a mismatch fails with
  // kInvalidArgument naming the input, expected and found. Backend failures come back as
  // kInternal with the backend's message; nothing throws.
  virtual Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const BackendCapabilities& capabilities() const = 0;
  // Loads `model_file` (the artifact of `variant`, already verified). The session's inputs and
  // outputs come from the variant (checked against the graph by compat.hpp beforehand). Fails
  // with kUnsupported when the backend cannot import the model, naming the backend's reason.
  virtual Result<std::unique_ptr<Session>> Load(const std::filesystem::path& model_file,
                                                const manifests::Variant& variant,
                                                const SessionOptions& options) = 0;
};

}  // namespace edgefleet::runtime
