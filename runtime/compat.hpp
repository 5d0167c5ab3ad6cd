// Can this box run that model? Answered twice: before download from the signed requirements
// alone, and after download from the real ONNX graph.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::runtime {

// The largest ONNX file edgefleet reads. Protobuf cannot parse a message of 2 GiB or more, and a
// model that large would not fit an edge box's memory beside the running one anyway; refusing it
// before reading costs nothing.
inline constexpr std::uintmax_t kMaxOnnxBytes = 1ull << 30;

// Every reason `variant` cannot run on `backend` (empty when it can): format, the backend's name
// and version against the variant's backend requirements, opset range, each operator not
// claimed at the variant's opset, or, for a variant that lists its forms, each form the backend
// measured to fail or whose operator it runs in no form (BackendCapabilities::Judge).
std::vector<std::string> CompatibilityProblems(const manifests::Variant& variant,
                                               const BackendCapabilities& backend);

// The forms `variant` lists that `backend` has not measured although it runs other forms of
// their operator at the variant's opset: no reason to refuse before download, but what loading
// the model and its parity check decide after it.
std::vector<std::string> UnmeasuredForms(const manifests::Variant& variant,
                                         const BackendCapabilities& backend);

struct VariantChoice {
  std::size_t variant_index = 0;
  const Backend* backend = nullptr;
};

// Picks the first variant (in manifest order) that the most preferred backend can run, then
// tries the next backend, and so on (`backends` is in the configured preference order). Fails
// with kUnsupported listing, per variant and backend, every reason.
Result<VariantChoice> ChooseVariant(const std::vector<manifests::Variant>& variants,
                                    const std::vector<const Backend*>& backends);

// Every (variant, backend) pair that can run, in order of preference: by backend (in `backends`
// order), then manifest order. A variant two backends can run (an ONNX file on opencv and on
// onnxruntime) appears once per backend, so the box can measure both. Fails like ChooseVariant
// when there is none.
Result<std::vector<VariantChoice>> RunnableVariants(const std::vector<manifests::Variant>& variants,
                                                    const std::vector<const Backend*>& backends);

struct GraphNode {
  std::string name;    // may be empty in the file; messages then use "#<index>"
  std::string domain;  // "" for ai.onnx
  std::string op_type;
  std::size_t input_count = 0;
  std::size_t output_count = 0;  // non-empty outputs
  std::string form;              // runtime/onnx_forms.hpp; set by InspectOnnx, not OnnxNodes
};

// The main graph's nodes of an ONNX model in memory, without the checker (which InspectOnnx runs):
// for a backend's own checks at load. kParse when the bytes are not a ModelProto.
Result<std::vector<GraphNode>> OnnxNodes(std::string_view model_bytes, std::string_view source);

// The nodes of `graph` that break one of `limits`, one message each ("node 'd' (#0): Dropout with
// 2 outputs ..."), for CheckGraph and for backends that check at load.
std::vector<std::string> OutputLimitProblems(const std::vector<GraphNode>& nodes,
                                             const std::vector<OutputLimit>& limits,
                                             std::string_view backend_label);

struct GraphInfo {
  std::int64_t ir_version = 0;
  std::map<std::string, std::int64_t> opset_imports;  // domain ("" default) -> version
  std::vector<GraphNode> nodes;                       // main graph, in order
  std::vector<TensorInfo> inputs;                     // graph inputs that are not initializers
  std::vector<TensorInfo> outputs;
};

// Parses and checks an ONNX model with libonnx (onnx::checker), then lists what it imports and
// uses. Fails with kParse / kUnsupported naming the file and the checker's message.
Result<GraphInfo> InspectOnnx(const std::filesystem::path& model_file);
// The same for a model already in memory (`source` names it in messages); kLimit over the cap.
Result<GraphInfo> InspectOnnx(std::string_view model_bytes, std::string_view source);

// The operators the main graph uses, as a manifest lists them ("Conv" for ai.onnx,
// "<domain>:<op>" otherwise), sorted and without repeats; and the default domain's opset (0 when
// the graph imports none). What `bundle create` writes into a variant from its file.
std::vector<std::string> OperatorKeys(const GraphInfo& graph);
// "<op key>(<form>)", what manifests list: "Gemm(f32;d2,c2,c1)", "com.example:Fancy(-;)".
std::string FormKey(const std::string& domain, const std::string& op, const std::string& form);
// The node forms, as a manifest lists them ("Gemm(f32;d2,c2,c1;alpha=1,beta=1,transB=1)";
// runtime/onnx_forms.hpp), sorted and without repeats; also written by `bundle create`.
std::vector<std::string> FormKeys(const GraphInfo& graph);
std::int64_t DefaultOpset(const GraphInfo& graph);

// The model as it really is, against its manifest variant and the backend: opset imports equal
// the declared opset, the node operators equal the declared operator list, inputs/outputs names
// and dtypes as declared, the node forms equal the declared forms (when the manifest lists
// them), and every node's op claimed by the backend at that opset or its form not refused
// (a form the backend has not measured passes here; load and parity decide). Fails with
// kUnsupported naming the node ("node 'Clip_12' (#12): Clip at opset 13 is not supported by
// opencv 4.6.0 ...") or kIntegrity for a graph that disagrees with its manifest.
Status CheckGraph(const GraphInfo& graph, const manifests::Variant& variant,
                  const BackendCapabilities& backend, std::string_view model_name);

}  // namespace edgefleet::runtime
