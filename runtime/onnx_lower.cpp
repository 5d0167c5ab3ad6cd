// Lowering an ONNX export for a backend's tables (see runtime/onnx_lower.hpp).
#include "runtime/onnx_lower.hpp"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "manifests/join.hpp"
#include "manifests/log_value.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/onnx_downgrade.hpp"
#include "runtime/onnx_forms.hpp"

namespace edgefleet::runtime {
namespace {

// The lowest opset tried: below 7, Add/Mul/Gemm broadcast by attribute.
constexpr std::int64_t kLowestOpset = 7;

std::string Where(std::string_view source, const std::string& what) {
  return std::string(source) + ": " + what;
}

// Every tensor in the main graph (initializers and Constant values) holds exactly what its dims
// declare, in this file.
Status CheckTensors(const onnx::GraphProto& graph, std::string_view source) {
  auto check = [&](const onnx::TensorProto& tensor, const std::string& what) -> Status {
    if (tensor.data_location() == onnx::TensorProto::EXTERNAL || tensor.external_data_size() > 0) {
      std::string location;
      for (const auto& entry : tensor.external_data()) {
        if (entry.key() == "location") location = entry.value();
      }
      return Fail(
          ErrorCode::kUnsupported,
          Where(source, what + " keeps its data in an external file (" +
                            manifests::QuoteName(location) + "); external data is not supported"));
    }
    const auto declared = DeclaredElements(tensor);
    if (!declared) {
      return Fail(ErrorCode::kLimit, Where(source, what + " declares impossible dims"));
    }
    if (tensor.data_type() == onnx::TensorProto::STRING) {
      if (static_cast<std::uint64_t>(tensor.string_data_size()) == *declared) return Ok();
    } else if (StoredElements(tensor) == declared) {
      return Ok();
    }
    const auto stored = StoredElements(tensor);
    return Fail(
        ErrorCode::kLimit,
        Where(source, what + " declares " + std::to_string(*declared) + " elements but holds " +
                          (stored ? std::to_string(*stored) : std::string("other data"))));
  };
  for (const auto& init : graph.initializer()) {
    EF_RETURN_IF_ERROR(check(init, "initializer " + manifests::QuoteName(init.name())));
  }
  for (const auto& node : graph.node()) {
    for (const auto& a : node.attribute()) {
      if (a.has_t()) {
        EF_RETURN_IF_ERROR(check(a.t(), "node " + manifests::QuoteName(node.name()) +
                                            " attribute " + manifests::QuoteName(a.name())));
      }
    }
  }
  return Ok();
}

bool DefaultDomain(const onnx::NodeProto& node) {
  return node.domain().empty() || node.domain() == "ai.onnx";
}

std::set<std::string> GraphOutputs(const onnx::GraphProto& graph) {
  std::set<std::string> names;
  for (const auto& output : graph.output()) names.insert(output.name());
  return names;
}

// A Constant node's value as an initializer tensor; nullopt for sparse and string values.
std::optional<onnx::TensorProto> ConstantValue(const onnx::NodeProto& node) {
  if (node.attribute_size() != 1 || node.output_size() != 1) return std::nullopt;
  const auto& a = node.attribute(0);
  onnx::TensorProto tensor;
  if (a.name() == "value" && a.has_t()) {
    tensor = a.t();
  } else if (a.name() == "value_float") {
    tensor.set_data_type(onnx::TensorProto::FLOAT);
    tensor.add_float_data(a.f());
  } else if (a.name() == "value_floats") {
    tensor.set_data_type(onnx::TensorProto::FLOAT);
    tensor.add_dims(a.floats_size());
    for (const auto v : a.floats()) tensor.add_float_data(v);
  } else if (a.name() == "value_int") {
    tensor.set_data_type(onnx::TensorProto::INT64);
    tensor.add_int64_data(a.i());
  } else if (a.name() == "value_ints") {
    tensor.set_data_type(onnx::TensorProto::INT64);
    tensor.add_dims(a.ints_size());
    for (const auto v : a.ints()) tensor.add_int64_data(v);
  } else {
    return std::nullopt;
  }
  if (tensor.data_type() == onnx::TensorProto::STRING) return std::nullopt;
  tensor.set_name(node.output(0));
  return tensor;
}

// Constant nodes to initializers and Identity nodes bypassed; returns the steps taken.
std::vector<std::string> FoldConstantsAndIdentities(onnx::GraphProto& graph) {
  const auto outputs = GraphOutputs(graph);
  std::map<std::string, std::string> renamed;  // an Identity's output -> its input
  int constants = 0;
  int identities = 0;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (auto& node : *graph.mutable_node()) {
    for (auto& input : *node.mutable_input()) {
      if (const auto found = renamed.find(input); found != renamed.end()) input = found->second;
    }
    if (DefaultDomain(node) && node.op_type() == "Constant" && outputs.count(node.output(0)) == 0) {
      if (auto value = ConstantValue(node)) {
        *graph.add_initializer() = std::move(*value);
        ++constants;
        continue;
      }
    }
    if (DefaultDomain(node) && node.op_type() == "Identity" && node.input_size() == 1 &&
        node.output_size() == 1 && outputs.count(node.output(0)) == 0 && !node.input(0).empty()) {
      renamed[node.output(0)] = node.input(0);
      ++identities;
      continue;
    }
    *kept.Add() = std::move(node);
  }
  graph.mutable_node()->Swap(&kept);
  std::vector<std::string> steps;
  if (constants > 0) {
    steps.push_back("folded " + std::to_string(constants) + " Constant node(s) into initializers");
  }
  if (identities > 0)
    steps.push_back("bypassed " + std::to_string(identities) + " Identity node(s)");
  return steps;
}

void DropUnusedInitializers(onnx::GraphProto& graph) {
  std::set<std::string> used = GraphOutputs(graph);
  // An initializer that is also a graph input (before IR 4) is that input's default: keep it.
  for (const auto& input : graph.input()) used.insert(input.name());
  for (const auto& node : graph.node()) used.insert(node.input().begin(), node.input().end());
  auto* initializers = graph.mutable_initializer();
  initializers->erase(
      std::remove_if(initializers->begin(), initializers->end(),
                     [&](const onnx::TensorProto& t) { return used.count(t.name()) == 0; }),
      initializers->end());
}

// Ranks of every value shape inference can tell (on a copy; the model is left as it is).
RankMap InferRanks(const onnx::ModelProto& model) {
  RankMap ranks;
  onnx::ModelProto copy = model;
  try {
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(false, 0, false));
  } catch (const std::exception&) {
    // What it inferred before failing stays.
  }
  auto take = [&](const onnx::ValueInfoProto& value) {
    if (value.type().has_tensor_type() && value.type().tensor_type().has_shape()) {
      ranks[value.name()] = value.type().tensor_type().shape().dim_size();
    }
  };
  for (const auto& v : copy.graph().input()) take(v);
  for (const auto& v : copy.graph().value_info()) take(v);
  for (const auto& v : copy.graph().output()) take(v);
  for (const auto& init : copy.graph().initializer()) ranks[init.name()] = init.dims_size();
  return ranks;
}

// libonnx's strict type inference at the model's opset: "" when it accepts, else its message.
std::string StrictTypeCheck(const onnx::ModelProto& model) {
  onnx::ModelProto copy = model;
  try {
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, false));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

struct Attempt {
  std::int64_t opset = 0;
  std::vector<std::string> problems;  // why it is not usable (conversion or the backend)
  std::optional<LoweredModel> lowered;
};

Attempt TryOpset(const onnx::ModelProto& folded, std::int64_t opset, const RankMap& ranks,
                 bool type_check, const BackendCapabilities& backend, std::string_view source) {
  Attempt attempt;
  attempt.opset = opset;
  onnx::ModelProto model = folded;
  auto converted = DowngradeOpset(model, opset, ranks);
  if (!converted) {
    attempt.problems.push_back(converted.error().message);
    return attempt;
  }
  DropUnusedInitializers(*model.mutable_graph());
  if (const auto type_error = type_check ? StrictTypeCheck(model) : ""; !type_error.empty()) {
    attempt.problems.push_back("ONNX type check at opset " + std::to_string(opset) + ": " +
                               manifests::SafeText(type_error));
    return attempt;
  }
  LoweredModel lowered;
  if (!model.SerializeToString(&lowered.bytes)) {
    attempt.problems.push_back("cannot serialize the lowered model");
    return attempt;
  }
  auto graph = InspectOnnx(lowered.bytes, std::string(source) + " (lowered)");
  if (!graph) {
    attempt.problems.push_back(graph.error().message);
    return attempt;
  }
  manifests::Variant variant = CaseVariant(*graph, "lowered");
  variant.forms = FormKeys(*graph);
  variant.backends.push_back({backend.name, *manifests::VersionRange::Parse("*")});
  attempt.problems = CompatibilityProblems(variant, backend);
  if (!attempt.problems.empty()) {
    // The graph check names the nodes.
    const auto named = CheckGraph(*graph, variant, backend, std::string(source) + " (lowered)");
    if (!named) attempt.problems = {named.error().message};
  }
  lowered.unmeasured = UnmeasuredForms(variant, backend);
  lowered.to_opset = opset;
  lowered.graph = std::move(*graph);
  for (const auto& [step, count] : *converted) {
    lowered.steps.push_back(step + " (" + std::to_string(count) + " node(s))");
  }
  attempt.lowered = std::move(lowered);
  return attempt;
}

}  // namespace

Result<LoweredModel> LowerOnnx(std::string_view model_bytes, std::string_view source,
                               const BackendCapabilities& backend) {
  EF_ASSIGN_OR_RETURN(auto original, InspectOnnx(model_bytes, source));
  onnx::ModelProto model;
  if (!model.ParseFromArray(model_bytes.data(), static_cast<int>(model_bytes.size()))) {
    return Fail(ErrorCode::kParse, Where(source, "not an ONNX model (protobuf parse failed)"));
  }
  EF_RETURN_IF_ERROR(CheckTensors(model.graph(), source));
  const std::int64_t from = DefaultOpset(original);
  if (from < kLowestOpset) {
    return Fail(ErrorCode::kUnsupported,
                Where(source, "opset " + std::to_string(from) + " is below " +
                                  std::to_string(kLowestOpset) + "; there is nothing to lower"));
  }
  const auto folded_steps = FoldConstantsAndIdentities(*model.mutable_graph());
  // Shape inference runs only where it is safe (as for node forms); without it ranks are unknown,
  // and the rewrites that need one (negative axes, Softmax) refuse.
  const bool infer = ShapeInferenceIsSafe(model);
  const RankMap ranks = infer ? InferRanks(model) : RankMap{};
  // The strict type check judges the conversion, so it applies only where the original passes
  // it (an export with a node libonnx cannot infer strictly is not made worse by lowering).
  const bool type_check = infer && StrictTypeCheck(model).empty();

  std::optional<LoweredModel> best;  // highest opset without problems (unmeasured forms allowed)
  std::optional<Attempt> lowest;     // the lowest opset the model converted to
  std::string stopped;               // why it converts to no lower opset
  for (std::int64_t opset = from; opset >= kLowestOpset; --opset) {
    Attempt attempt = TryOpset(model, opset, ranks, type_check, backend, source);
    if (!attempt.lowered) {
      // A node that does not convert to this opset does not convert to any lower one either.
      stopped = Join(attempt.problems, "; ");
      break;
    }
    if (attempt.problems.empty()) {
      if (attempt.lowered->unmeasured.empty()) {
        best = std::move(attempt.lowered);
        break;
      }
      if (!best) best = attempt.lowered;
    }
    lowest = std::move(attempt);
  }
  if (!best) {
    std::string message = "cannot lower for " + backend.name + " " + backend.version.ToString();
    if (lowest) {
      message += ": at opset " + std::to_string(lowest->opset) + " (the lowest it converts to) " +
                 backend.name + " still refuses: " + Join(lowest->problems, "; ");
    }
    if (!stopped.empty()) {
      message += std::string(lowest ? "; it converts to no lower opset: " : ": ") + stopped;
    }
    return Fail(ErrorCode::kUnsupported, Where(source, message));
  }
  best->from_opset = from;
  best->steps.insert(best->steps.begin(), folded_steps.begin(), folded_steps.end());
  if (best->to_opset != from) {
    best->steps.push_back("opset " + std::to_string(from) + " -> " +
                          std::to_string(best->to_opset));
  }
  return std::move(*best);
}

}  // namespace edgefleet::runtime
