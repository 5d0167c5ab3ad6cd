// Compatibility checks (compat.hpp): from signed requirements before download, and from the real
// ONNX graph after. libonnx and protobuf stay inside this file; their exceptions end here.
#include "runtime/compat.hpp"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <exception>
#include <fstream>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "manifests/join.hpp"
#include "runtime/onnx_forms.hpp"

namespace edgefleet::runtime {
namespace {

// Messages name at most this many offending nodes per operator: a MobileNetV2 has 35 Clip nodes,
// and 35 identical lines hide the other reasons.
constexpr std::size_t kMaxNodesNamedPerOp = 5;

// The default domain has two spellings in ONNX files: "" and "ai.onnx".
std::string_view NormalizeDomain(std::string_view domain) {
  return domain == "ai.onnx" ? std::string_view() : domain;
}

// The manifest's spelling of an operator: "Conv" in the default domain, "<domain>:<op>" otherwise.
std::string OperatorKey(std::string_view domain, std::string_view op) {
  domain = NormalizeDomain(domain);
  if (domain.empty()) return std::string(op);
  return std::string(domain) + ":" + std::string(op);
}

std::pair<std::string, std::string> SplitOperatorKey(std::string_view key) {
  const auto colon = key.rfind(':');
  if (colon == std::string_view::npos) return {"", std::string(key)};
  return {std::string(NormalizeDomain(key.substr(0, colon))), std::string(key.substr(colon + 1))};
}

std::string BackendLabel(const BackendCapabilities& backend) {
  return backend.name + " " + backend.version.ToString();
}

// "opsets 1-10", "opsets 1-5, 7-10", "opset 11", or "not claimed at any opset".
std::string ClaimedOpsets(const BackendCapabilities& backend, std::string_view domain,
                          std::string_view op) {
  std::vector<std::pair<int, int>> ranges;
  for (const auto& entry : backend.operators) {
    if (NormalizeDomain(entry.domain) == NormalizeDomain(domain) && entry.op == op) {
      ranges.emplace_back(entry.min_opset, entry.max_opset);
    }
  }
  if (ranges.empty()) return "not claimed at any opset";
  std::sort(ranges.begin(), ranges.end());
  std::string text;
  for (const auto& [lo, hi] : ranges) {
    if (!text.empty()) text += ", ";
    text += lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
  }
  const bool plural = ranges.size() > 1 || ranges[0].first != ranges[0].second;
  return std::string("claimed: ") + (plural ? "opsets " : "opset ") + text;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  return edgefleet::Join(lines, "\n");
}

// The forms a variant lists for operator `key`, without the operator ("Gemm(f32;...)" ->
// "f32;...").
std::vector<std::string> FormsOf(const manifests::Variant& variant, std::string_view key) {
  std::vector<std::string> forms;
  for (const auto& entry : variant.forms) {
    if (entry.size() > key.size() + 1 && entry.starts_with(key) && entry[key.size()] == '(' &&
        entry.back() == ')') {
      forms.push_back(entry.substr(key.size() + 1, entry.size() - key.size() - 2));
    }
  }
  return forms;
}

bool AnyFormRuns(const BackendCapabilities& backend, std::string_view domain, std::string_view op,
                 int opset) {
  return std::any_of(backend.forms.begin(), backend.forms.end(), [&](const FormClaim& row) {
    return row.runs && NormalizeDomain(row.domain) == NormalizeDomain(domain) && row.op == op &&
           row.min_opset <= opset && opset <= row.max_opset;
  });
}

// Why a node of `op` in `form` cannot run (nullopt when it runs or is left to the real check).
std::optional<std::string> FormProblem(const BackendCapabilities& backend, std::string_view domain,
                                       std::string_view op, int opset, const std::string& form) {
  const FormClaim* claim = nullptr;
  const auto verdict = backend.Judge(domain, op, opset, form, &claim);
  const std::string what = OperatorKey(domain, op) + " at opset " + std::to_string(opset);
  if (verdict == FormVerdict::kFails) {
    return what + " in form (" + form + ") fails on " + BackendLabel(backend) + ": " +
           (claim != nullptr ? claim->why : std::string("measured to fail"));
  }
  if (verdict == FormVerdict::kRefused) {
    return what + " is not supported by " + BackendLabel(backend) + " in any measured form (" +
           ClaimedOpsets(backend, domain, op) + ")";
  }
  return std::nullopt;
}

std::string DescribeNode(const GraphNode& node, std::size_t index) {
  if (node.name.empty()) return "node #" + std::to_string(index);
  return "node '" + node.name + "' (#" + std::to_string(index) + ")";
}

std::string DescribeShape(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ",";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// Element types an edgefleet Tensor can hold; everything else (strings, complex, bfloat16, ...)
// cannot cross the Session interface, so such a graph cannot be served whatever the backend.
std::optional<DType> FromOnnxElementType(std::int32_t elem_type) {
  switch (elem_type) {
    case onnx::TensorProto::FLOAT:
      return DType::kFloat32;
    case onnx::TensorProto::DOUBLE:
      return DType::kFloat64;
    case onnx::TensorProto::FLOAT16:
      return DType::kFloat16;
    case onnx::TensorProto::INT8:
      return DType::kInt8;
    case onnx::TensorProto::UINT8:
      return DType::kUInt8;
    case onnx::TensorProto::INT16:
      return DType::kInt16;
    case onnx::TensorProto::INT32:
      return DType::kInt32;
    case onnx::TensorProto::INT64:
      return DType::kInt64;
    case onnx::TensorProto::BOOL:
      return DType::kBool;
    default:
      return std::nullopt;
  }
}

Result<TensorInfo> ToTensorInfo(const onnx::ValueInfoProto& value, std::string_view role) {
  const std::string what = std::string(role) + " '" + value.name() + "'";
  if (!value.type().has_tensor_type()) {
    return Fail(ErrorCode::kUnsupported, what + " is not a tensor (sequence, map or optional)");
  }
  const auto& tensor_type = value.type().tensor_type();
  const auto dtype = FromOnnxElementType(tensor_type.elem_type());
  if (!dtype) {
    return Fail(ErrorCode::kUnsupported,
                what + " has element type " +
                    onnx::TensorProto::DataType_Name(
                        static_cast<onnx::TensorProto::DataType>(tensor_type.elem_type())) +
                    ", which edgefleet tensors cannot hold");
  }
  TensorInfo info;
  info.name = value.name();
  info.dtype = *dtype;
  // A graph without shape information (legal in ONNX) gets an empty shape here; a symbolic or
  // unknown dimension becomes -1, the manifest's spelling of "dynamic".
  if (tensor_type.has_shape()) {
    for (const auto& dim : tensor_type.shape().dim()) {
      info.shape.push_back(dim.has_dim_value() ? dim.dim_value() : -1);
    }
  }
  return info;
}

// Checks libonnx does not do for us, and that it would report with a less useful message: an IR
// or opset newer than this build's libonnx knows is "unsupported" (upgrade the agent), not a
// malformed file.
std::optional<std::string> NewerThanLibonnx(const onnx::ModelProto& model) {
  if (model.ir_version() > onnx::IR_VERSION) {
    return "ir_version " + std::to_string(model.ir_version()) +
           " is newer than this build's ONNX library understands (" +
           std::to_string(onnx::IR_VERSION) + ")";
  }
  const auto& ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  for (const auto& import : model.opset_import()) {
    const auto found = ranges.find(std::string(NormalizeDomain(import.domain())));
    if (found != ranges.end() && import.version() > found->second.second) {
      return "opset " + std::to_string(import.version()) + " of domain '" +
             (import.domain().empty() ? std::string("ai.onnx") : import.domain()) +
             "' is newer than this build's ONNX library understands (" +
             std::to_string(found->second.second) + ")";
    }
  }
  return std::nullopt;
}

GraphNode ToGraphNode(const onnx::NodeProto& node) {
  GraphNode out;
  out.name = node.name();
  out.domain = std::string(NormalizeDomain(node.domain()));
  out.op_type = node.op_type();
  // An empty input or output name is ONNX's way of leaving out an optional one; it is not there.
  auto present = [](const auto& names) {
    return static_cast<std::size_t>(
        std::count_if(names.begin(), names.end(), [](const auto& name) { return !name.empty(); }));
  };
  out.input_count = present(node.input());
  out.output_count = present(node.output());
  return out;
}

}  // namespace

Result<std::vector<GraphNode>> OnnxNodes(std::string_view model_bytes, std::string_view source) {
  if (model_bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    return Fail(ErrorCode::kLimit, std::string(source) + ": over protobuf's 2 GiB limit");
  }
  onnx::ModelProto model;
  if (!model.ParseFromArray(model_bytes.data(), static_cast<int>(model_bytes.size()))) {
    return Fail(ErrorCode::kParse, std::string(source) + ": not an ONNX model (bad protobuf)");
  }
  std::vector<GraphNode> nodes;
  for (const auto& node : model.graph().node()) nodes.push_back(ToGraphNode(node));
  return nodes;
}

std::vector<std::string> OutputLimitProblems(const std::vector<GraphNode>& nodes,
                                             const std::vector<OutputLimit>& limits,
                                             std::string_view backend_label) {
  std::vector<std::string> problems;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    for (const auto& limit : limits) {
      const GraphNode& node = nodes[i];
      if (node.domain != limit.domain || node.op_type != limit.op ||
          node.output_count <= limit.max_outputs) {
        continue;
      }
      problems.push_back(DescribeNode(node, i) + ": " + OperatorKey(node.domain, node.op_type) +
                         " with " + std::to_string(node.output_count) +
                         " outputs is not supported by " + std::string(backend_label) +
                         " (at most " + std::to_string(limit.max_outputs) + ": " + limit.why + ")");
    }
  }
  return problems;
}

namespace {

Result<GraphInfo> Describe(const onnx::ModelProto& model, const std::string& file) {
  GraphInfo info;
  info.ir_version = model.ir_version();
  for (const auto& import : model.opset_import()) {
    info.opset_imports[std::string(NormalizeDomain(import.domain()))] = import.version();
  }
  const auto& graph = model.graph();
  for (const auto& node : graph.node()) info.nodes.push_back(ToGraphNode(node));
  std::set<std::string> initializers;
  for (const auto& init : graph.initializer()) initializers.insert(init.name());
  for (const auto& input : graph.input()) {
    if (initializers.count(input.name()) != 0) continue;
    auto tensor = ToTensorInfo(input, "input");
    if (!tensor) return tensor.error().Wrap(file);
    info.inputs.push_back(std::move(*tensor));
  }
  for (const auto& output : graph.output()) {
    auto tensor = ToTensorInfo(output, "output");
    if (!tensor) return tensor.error().Wrap(file);
    info.outputs.push_back(std::move(*tensor));
  }
  return info;
}

void CheckTensors(const std::vector<TensorInfo>& actual,
                  const std::vector<manifests::TensorSpec>& declared, std::string_view role,
                  std::vector<std::string>& problems) {
  for (const auto& spec : declared) {
    const auto found = std::find_if(actual.begin(), actual.end(),
                                    [&](const TensorInfo& t) { return t.name == spec.name; });
    if (found == actual.end()) {
      problems.push_back("the manifest declares " + std::string(role) + " '" + spec.name +
                         "' but the graph has no such " + std::string(role));
      continue;
    }
    const auto dtype = ParseDType(spec.dtype);
    if (!dtype || *dtype != found->dtype) {
      problems.push_back(std::string(role) + " '" + spec.name + "': the manifest declares dtype " +
                         spec.dtype + ", the graph has " + std::string(ToString(found->dtype)));
    }
    // Shapes are compared only where both sides fix a dimension: the manifest may narrow a
    // dynamic graph dimension, but never contradict a fixed one. A graph without shape
    // information (empty) says nothing.
    if (found->shape.empty()) continue;
    bool agrees = found->shape.size() == spec.shape.size();
    for (std::size_t i = 0; agrees && i < spec.shape.size(); ++i) {
      agrees = spec.shape[i] < 0 || found->shape[i] < 0 || spec.shape[i] == found->shape[i];
    }
    if (!agrees) {
      problems.push_back(std::string(role) + " '" + spec.name + "': the manifest declares shape " +
                         DescribeShape(spec.shape) + ", the graph has " +
                         DescribeShape(found->shape));
    }
  }
  for (const auto& tensor : actual) {
    const bool declared_too =
        std::any_of(declared.begin(), declared.end(),
                    [&](const manifests::TensorSpec& spec) { return spec.name == tensor.name; });
    if (!declared_too) {
      problems.push_back("the graph has " + std::string(role) + " '" + tensor.name +
                         "' that the manifest does not declare");
    }
  }
}

}  // namespace

bool BackendCapabilities::Supports(std::string_view domain, std::string_view op, int opset) const {
  domain = NormalizeDomain(domain);
  return std::any_of(operators.begin(), operators.end(), [&](const OperatorSupport& entry) {
    return NormalizeDomain(entry.domain) == domain && entry.op == op && entry.min_opset <= opset &&
           opset <= entry.max_opset;
  });
}

FormVerdict BackendCapabilities::Judge(std::string_view domain, std::string_view op, int opset,
                                       std::string_view form, const FormClaim** claim) const {
  if (claim != nullptr) *claim = nullptr;
  // A form row first: an operator claimed whole (on conformance cases) may still fail in a form
  // exporters emit, and the form table says so.
  const auto nd = NormalizeDomain(domain);
  bool some_form_runs = false;
  for (const auto& row : forms) {
    if (NormalizeDomain(row.domain) != nd || row.op != op || opset < row.min_opset ||
        opset > row.max_opset) {
      continue;
    }
    if (row.form == form) {
      if (claim != nullptr) *claim = &row;
      return row.runs ? FormVerdict::kRuns : FormVerdict::kFails;
    }
    some_form_runs = some_form_runs || row.runs;
  }
  if (Supports(domain, op, opset)) return FormVerdict::kRuns;
  return some_form_runs ? FormVerdict::kUnknown : FormVerdict::kRefused;
}

std::vector<std::string> CompatibilityProblems(const manifests::Variant& variant,
                                               const BackendCapabilities& backend) {
  std::vector<std::string> problems;
  const std::string label = BackendLabel(backend);

  if (std::find(backend.formats.begin(), backend.formats.end(), variant.format) ==
      backend.formats.end()) {
    std::string formats;
    for (const auto& f : backend.formats) formats += (formats.empty() ? "" : ", ") + f;
    problems.push_back("format '" + variant.format + "' is not one " + label + " reads (" +
                       formats + ")");
  }

  // Any one requirement naming this backend suffices; the variant may name several backends.
  std::vector<const manifests::BackendRequirement*> named;
  for (const auto& requirement : variant.backends) {
    if (requirement.name == backend.name) named.push_back(&requirement);
  }
  if (named.empty()) {
    std::string names;
    for (const auto& r : variant.backends) names += (names.empty() ? "" : ", ") + r.name;
    problems.push_back("the variant does not name backend '" + backend.name +
                       "' (it names: " + (names.empty() ? std::string("none") : names) + ")");
  } else if (std::none_of(named.begin(), named.end(), [&](const auto* requirement) {
               return requirement->version.Contains(backend.version);
             })) {
    std::string ranges;
    for (const auto* r : named)
      ranges += (ranges.empty() ? "'" : " or '") + r->version.text() + "'";
    problems.push_back(label + " is outside the required version range " + ranges);
  }

  if (variant.opset < backend.min_opset || variant.opset > backend.max_opset) {
    problems.push_back("opset " + std::to_string(variant.opset) + " is outside the opsets " +
                       label + " imports (" + std::to_string(backend.min_opset) + "-" +
                       std::to_string(backend.max_opset) + ")");
  }

  for (const auto& key : variant.operators) {
    const auto [domain, op] = SplitOperatorKey(key);
    if (domain.empty()) {
      const auto forms = FormsOf(variant, key);
      std::vector<std::string> form_problems;
      for (const auto& form : forms) {
        if (backend.Judge(domain, op, variant.opset, form) != FormVerdict::kFails) continue;
        form_problems.push_back(*FormProblem(backend, domain, op, variant.opset, form));
      }
      const bool whole = backend.Supports(domain, op, variant.opset);
      // Without forms, or with no form of the operator running: one line for the operator.
      if (!whole && (forms.empty() || !AnyFormRuns(backend, domain, op, variant.opset))) {
        problems.push_back("operator " + op + " at opset " + std::to_string(variant.opset) +
                           " is not supported by " + label + " (" +
                           ClaimedOpsets(backend, domain, op) + ")");
        continue;
      }
      for (auto& problem : form_problems) problems.push_back(std::move(problem));
      continue;
    }
    // The manifest carries only the default domain's opset; another domain's version is known
    // only from the graph (CheckGraph). Before download, an operator the backend claims at no
    // version of its domain is certainly unsupported; anything else waits for the graph.
    // (Copies of the bindings: clang 14 cannot capture structured bindings.)
    const bool claimed_somewhere =
        std::any_of(backend.operators.begin(), backend.operators.end(),
                    [domain = domain, op = op](const auto& entry) {
                      return NormalizeDomain(entry.domain) == domain && entry.op == op;
                    });
    if (!claimed_somewhere) {
      problems.push_back("operator " + key + " is not supported by " + label +
                         " (not claimed at any opset)");
    }
  }
  return problems;
}

std::vector<std::string> UnmeasuredForms(const manifests::Variant& variant,
                                         const BackendCapabilities& backend) {
  std::vector<std::string> unknown;
  for (const auto& key : variant.operators) {
    const auto [domain, op] = SplitOperatorKey(key);
    if (!domain.empty()) continue;  // other domains' opsets are known only from the graph
    for (const auto& form : FormsOf(variant, key)) {
      if (backend.Judge(domain, op, variant.opset, form) == FormVerdict::kUnknown) {
        unknown.push_back(FormKey(domain, op, form));
      }
    }
  }
  return unknown;
}

Result<std::vector<VariantChoice>> RunnableVariants(const std::vector<manifests::Variant>& variants,
                                                    const std::vector<const Backend*>& backends) {
  if (variants.empty()) return Fail(ErrorCode::kInvalidArgument, "the manifest has no variants");
  if (backends.empty()) return Fail(ErrorCode::kUnsupported, "this box has no backends configured");
  std::vector<std::string> reasons;
  std::vector<VariantChoice> choices;
  for (const Backend* backend : backends) {
    if (backend == nullptr)
      return Fail(ErrorCode::kInvalidArgument, "null backend in preference list");
    const auto& capabilities = backend->capabilities();
    for (std::size_t i = 0; i < variants.size(); ++i) {
      const auto problems = CompatibilityProblems(variants[i], capabilities);
      if (problems.empty()) {
        choices.push_back(VariantChoice{i, backend});
        continue;
      }
      for (const auto& problem : problems) {
        reasons.push_back("variant '" + variants[i].id + "' on " + BackendLabel(capabilities) +
                          ": " + problem);
      }
    }
  }
  if (choices.empty()) {
    // What would help: a backend a variant names that this box does not have (or does not use).
    for (const auto& variant : variants) {
      for (const auto& requirement : variant.backends) {
        const bool here = std::any_of(backends.begin(), backends.end(), [&](const Backend* b) {
          return b->capabilities().name == requirement.name;
        });
        if (!here) {
          reasons.push_back("variant '" + variant.id + "' could run on backend '" +
                            requirement.name + "' " + requirement.version.text() +
                            ", which this box does not have");
        }
      }
    }
    return Fail(ErrorCode::kUnsupported, "no variant can run on this box:\n" + JoinLines(reasons));
  }
  return choices;
}

Result<VariantChoice> ChooseVariant(const std::vector<manifests::Variant>& variants,
                                    const std::vector<const Backend*>& backends) {
  EF_ASSIGN_OR_RETURN(auto choices, RunnableVariants(variants, backends));
  return choices.front();
}

namespace {

// Runs `parse` (which fills a ModelProto and returns an error or nothing), then the version check
// and libonnx's checker, and describes the model; every exception becomes an error naming `file`.
template <typename Parse>
Result<GraphInfo> ParseAndInspect(const std::string& file, Parse&& parse) {
  try {
    onnx::ModelProto model;
    if (auto failed = parse(model)) return std::move(*failed);
    if (const auto newer = NewerThanLibonnx(model)) {
      return Fail(ErrorCode::kUnsupported, file + ": " + *newer);
    }
    onnx::checker::check_model(model);
    auto forms = NodeForms(model);
    auto info = Describe(model, file);
    if (info) {
      for (std::size_t i = 0; i < info->nodes.size() && i < forms.size(); ++i) {
        info->nodes[i].form = std::move(forms[i]);
      }
    }
    return info;
  } catch (const onnx::checker::ValidationError& e) {
    return Fail(ErrorCode::kParse, file + ": ONNX checker: " + e.what());
  } catch (const std::bad_alloc&) {
    return Fail(ErrorCode::kLimit, file + ": out of memory while parsing the model");
  } catch (const std::exception& e) {
    // Protobuf (FATAL checks compiled as exceptions) and the checker's helpers.
    return Fail(ErrorCode::kParse, file + ": " + e.what());
  }
}

Error OverCap(const std::string& file, std::uint64_t size) {
  return Error{ErrorCode::kLimit, file + ": " + std::to_string(size) +
                                      " bytes is over the ONNX model cap of " +
                                      std::to_string(kMaxOnnxBytes) + " bytes"};
}

}  // namespace

Result<GraphInfo> InspectOnnx(const std::filesystem::path& model_file) {
  const std::string file = model_file.string();
  std::error_code ec;
  const auto size = std::filesystem::file_size(model_file, ec);
  if (ec) {
    const auto code =
        ec == std::errc::no_such_file_or_directory ? ErrorCode::kNotFound : ErrorCode::kIo;
    return Fail(code, file + ": " + ec.message());
  }
  if (size > kMaxOnnxBytes) return OverCap(file, size);
  std::ifstream in(model_file, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, file + ": cannot open for reading");
  return ParseAndInspect(file, [&](onnx::ModelProto& model) -> std::optional<Error> {
    // ParseFromIstream reads straight into the message, so the file's bytes are not held twice.
    if (model.ParseFromIstream(&in)) return std::nullopt;
    if (in.bad()) return Error{ErrorCode::kIo, file + ": read failed"};
    return Error{ErrorCode::kParse, file + ": not an ONNX model (protobuf parse failed)"};
  });
}

Result<GraphInfo> InspectOnnx(std::string_view model_bytes, std::string_view source) {
  const std::string file(source);
  if (model_bytes.size() > kMaxOnnxBytes) return OverCap(file, model_bytes.size());
  return ParseAndInspect(file, [&](onnx::ModelProto& model) -> std::optional<Error> {
    if (model.ParseFromArray(model_bytes.data(), static_cast<int>(model_bytes.size()))) {
      return std::nullopt;
    }
    return Error{ErrorCode::kParse, file + ": not an ONNX model (protobuf parse failed)"};
  });
}

std::vector<std::string> OperatorKeys(const GraphInfo& graph) {
  std::set<std::string> keys;
  for (const auto& node : graph.nodes) keys.insert(OperatorKey(node.domain, node.op_type));
  return {keys.begin(), keys.end()};
}

std::vector<std::string> FormKeys(const GraphInfo& graph) {
  std::set<std::string> keys;
  for (const auto& node : graph.nodes) keys.insert(FormKey(node.domain, node.op_type, node.form));
  return {keys.begin(), keys.end()};
}

std::int64_t DefaultOpset(const GraphInfo& graph) {
  const auto found = graph.opset_imports.find("");
  return found == graph.opset_imports.end() ? 0 : found->second;
}

Status CheckGraph(const GraphInfo& graph, const manifests::Variant& variant,
                  const BackendCapabilities& backend, std::string_view model_name) {
  // Disagreements with the signed manifest mean the artifact is not what was signed for; they
  // are reported as integrity failures even when the backend could run the graph.
  std::vector<std::string> integrity;
  std::vector<std::string> unsupported;
  const std::string label = BackendLabel(backend);

  if (variant.format != "onnx") {
    integrity.push_back("the manifest declares format '" + variant.format +
                        "' but the file is an ONNX model");
  }
  const auto default_import = graph.opset_imports.find("");
  if (default_import == graph.opset_imports.end()) {
    integrity.push_back("the graph imports no ai.onnx opset, the manifest declares opset " +
                        std::to_string(variant.opset));
  } else if (default_import->second != variant.opset) {
    integrity.push_back("the graph imports ai.onnx opset " +
                        std::to_string(default_import->second) + ", the manifest declares opset " +
                        std::to_string(variant.opset));
  }

  std::map<std::string, std::size_t> first_use;  // operator key -> first node index using it
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    first_use.emplace(OperatorKey(graph.nodes[i].domain, graph.nodes[i].op_type), i);
  }
  const std::set<std::string> declared(variant.operators.begin(), variant.operators.end());
  for (const auto& [key, index] : first_use) {
    if (declared.count(key) == 0) {
      integrity.push_back(DescribeNode(graph.nodes[index], index) + " uses operator " + key +
                          ", which the manifest's operator list does not declare");
    }
  }
  for (const auto& key : declared) {
    if (first_use.count(key) == 0) {
      integrity.push_back("the manifest declares operator " + key + " but no node uses it");
    }
  }

  if (!variant.forms.empty()) {
    const std::set<std::string> declared_forms(variant.forms.begin(), variant.forms.end());
    std::set<std::string> seen;
    for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
      const auto& node = graph.nodes[i];
      std::string form_key = FormKey(node.domain, node.op_type, node.form);
      if (declared_forms.count(form_key) == 0 && seen.count(form_key) == 0) {
        integrity.push_back(DescribeNode(node, i) + " has form " + form_key +
                            ", which the manifest's form list does not declare");
      }
      seen.insert(std::move(form_key));
    }
    for (const auto& form : declared_forms) {
      if (seen.count(form) == 0) {
        integrity.push_back("the manifest declares form " + form + " but no node has it");
      }
    }
  }

  CheckTensors(graph.inputs, variant.inputs, "input", integrity);
  CheckTensors(graph.outputs, variant.outputs, "output", integrity);

  if (std::find(backend.formats.begin(), backend.formats.end(), "onnx") == backend.formats.end()) {
    unsupported.push_back(label + " does not read ONNX models");
  }
  if (default_import != graph.opset_imports.end() &&
      (default_import->second < backend.min_opset || default_import->second > backend.max_opset)) {
    unsupported.push_back("ai.onnx opset " + std::to_string(default_import->second) +
                          " is outside the opsets " + label + " imports (" +
                          std::to_string(backend.min_opset) + "-" +
                          std::to_string(backend.max_opset) + ")");
  }
  std::map<std::string, std::size_t> refused_per_op;
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    const auto& node = graph.nodes[i];
    const std::string key = OperatorKey(node.domain, node.op_type);
    const auto import = graph.opset_imports.find(node.domain);
    if (import == graph.opset_imports.end()) {
      integrity.push_back(DescribeNode(node, i) + ": " + key + " is in domain '" + node.domain +
                          "', which the graph does not import");
      continue;
    }
    const int opset = static_cast<int>(import->second);
    std::optional<std::string> problem;
    if (backend.forms.empty()) {
      if (backend.Supports(node.domain, node.op_type, opset)) continue;
      problem = key + " at opset " + std::to_string(opset) + " is not supported by " + label +
                " (" + ClaimedOpsets(backend, node.domain, node.op_type) + ")";
    } else {
      // kUnknown passes here: loading the model and its parity check decide.
      problem = FormProblem(backend, node.domain, node.op_type, opset, node.form);
    }
    if (!problem || ++refused_per_op[key] > kMaxNodesNamedPerOp) continue;
    unsupported.push_back(DescribeNode(node, i) + ": " + *problem);
  }
  for (auto& problem : OutputLimitProblems(graph.nodes, backend.output_limits, label)) {
    unsupported.push_back(std::move(problem));
  }
  for (const auto& [key, count] : refused_per_op) {
    if (count > kMaxNodesNamedPerOp) {
      unsupported.push_back("... and " + std::to_string(count - kMaxNodesNamedPerOp) + " more " +
                            key + " nodes");
    }
  }

  if (integrity.empty() && unsupported.empty()) return Ok();
  const ErrorCode code = integrity.empty() ? ErrorCode::kUnsupported : ErrorCode::kIntegrity;
  integrity.insert(integrity.end(), unsupported.begin(), unsupported.end());
  return Error{code, JoinLines(integrity)}.Wrap(model_name);
}

}  // namespace edgefleet::runtime
