// Opset down-conversion with edgefleet's own adapters (see runtime/onnx_downgrade.hpp).
#include "runtime/onnx_downgrade.hpp"

#include <onnx/defs/schema.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <utility>

#include "manifests/log_value.hpp"

namespace edgefleet::runtime {
namespace {

// What an adapter says about one node at one boundary: empty `refusal` when converted; `step`
// names a rewrite ("" when the change does not touch this node).
struct Outcome {
  std::string refusal;
  std::string step;
};

struct Context {
  std::map<std::string, const onnx::TensorProto*> constants;  // initializers, not graph inputs
  const RankMap& ranks;
};

using Adapter = std::function<Outcome(onnx::NodeProto&, const Context&)>;

Outcome Converted(std::string step = "") { return {"", std::move(step)}; }
Outcome Refused(std::string why) { return {std::move(why), ""}; }

const onnx::AttributeProto* FindAttribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

void RemoveAttribute(onnx::NodeProto& node, const std::string& name) {
  auto* attributes = node.mutable_attribute();
  attributes->erase(std::remove_if(attributes->begin(), attributes->end(),
                                   [&](const onnx::AttributeProto& a) { return a.name() == name; }),
                    attributes->end());
}

onnx::AttributeProto& SetAttribute(onnx::NodeProto& node, const std::string& name,
                                   onnx::AttributeProto::AttributeType type) {
  RemoveAttribute(node, name);
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(type);
  return *a;
}

void SetInts(onnx::NodeProto& node, const std::string& name,
             const std::vector<std::int64_t>& values) {
  auto& a = SetAttribute(node, name, onnx::AttributeProto::INTS);
  for (const auto v : values) a.add_ints(v);
}

std::int64_t IntAttribute(const onnx::NodeProto& node, const std::string& name,
                          std::int64_t fallback) {
  const auto* a = FindAttribute(node, name);
  return a == nullptr ? fallback : a->i();
}

bool HasInput(const onnx::NodeProto& node, int index) {
  return index < node.input_size() && !node.input(index).empty();
}

void DropInputsFrom(onnx::NodeProto& node, int first) {
  while (node.input_size() > first) node.mutable_input()->RemoveLast();
}

int RankOf(const Context& ctx, const std::string& name) {
  const auto found = ctx.ranks.find(name);
  return found == ctx.ranks.end() ? -1 : found->second;
}

const onnx::TensorProto* ConstantInput(const onnx::NodeProto& node, int index, const Context& ctx) {
  if (!HasInput(node, index)) return nullptr;
  const auto found = ctx.constants.find(node.input(index));
  return found == ctx.constants.end() ? nullptr : found->second;
}

std::string InputRole(const onnx::NodeProto& node, int index, const char* role) {
  return std::string(role) + " (input " + std::to_string(index) + ", " +
         manifests::QuoteName(node.input(index)) + ")";
}

// An optional constant input made an integer-list attribute.
Outcome IntsInputToAttribute(onnx::NodeProto& node, const Context& ctx, int index,
                             const char* attribute) {
  if (!HasInput(node, index)) return Converted();
  const auto* tensor = ConstantInput(node, index, ctx);
  if (tensor == nullptr) {
    return Refused(InputRole(node, index, attribute) +
                   " is computed at run time; the older version needs it constant");
  }
  const auto values = ConstantInts(*tensor, 64);
  if (!values) {
    return Refused(InputRole(node, index, attribute) + " is not a list of at most 64 integers");
  }
  SetInts(node, attribute, *values);
  DropInputsFrom(node, index);
  return Converted(node.op_type() + ": " + attribute + " input to attribute");
}

// Negative axes made positive from `rank` (the rank they index): the versions before 11 have no
// negative axes.
Outcome PositiveAxes(onnx::NodeProto& node, const std::string& attribute, int rank) {
  const auto* a = FindAttribute(node, attribute);
  if (a == nullptr) return Converted();
  const bool single = a->type() == onnx::AttributeProto::INT;
  std::vector<std::int64_t> values;
  if (single) {
    values.push_back(a->i());
  } else {
    values.assign(a->ints().begin(), a->ints().end());
  }
  if (std::none_of(values.begin(), values.end(), [](std::int64_t v) { return v < 0; })) {
    return Converted();
  }
  if (rank < 0) {
    return Refused(attribute +
                   " is negative and the input's rank is unknown; the versions "
                   "before 11 take no negative " +
                   attribute);
  }
  for (auto& v : values) {
    if (v < 0) v += rank;
    if (v < 0) return Refused(attribute + " is out of range for rank " + std::to_string(rank));
  }
  if (single) {
    SetAttribute(node, attribute, onnx::AttributeProto::INT).set_i(values[0]);
  } else {
    SetInts(node, attribute, values);
  }
  return Converted(node.op_type() + ": negative " + attribute + " to positive");
}

Outcome AxisOfInput(onnx::NodeProto& node, const Context& ctx, const std::string& attribute) {
  return PositiveAxes(node, attribute, node.input_size() > 0 ? RankOf(ctx, node.input(0)) : -1);
}

Outcome ClipInputsToAttributes(onnx::NodeProto& node, const Context& ctx) {
  const char* names[] = {"", "min", "max"};
  std::vector<std::pair<std::string, float>> values;
  for (int i = 1; i <= 2; ++i) {
    if (!HasInput(node, i)) continue;
    const auto* tensor = ConstantInput(node, i, ctx);
    if (tensor == nullptr) {
      return Refused(InputRole(node, i, names[i]) +
                     " is computed at run time; Clip before opset 11 needs a constant");
    }
    const auto value = ConstantFloatScalar(*tensor);
    if (!value) return Refused(InputRole(node, i, names[i]) + " is not a float32 scalar");
    values.emplace_back(names[i], *value);
  }
  DropInputsFrom(node, 1);
  for (const auto& [name, value] : values) {
    SetAttribute(node, name, onnx::AttributeProto::FLOAT).set_f(value);
  }
  return Converted("Clip: min/max inputs to attributes");
}

Outcome PadInputsToAttributes(onnx::NodeProto& node, const Context& ctx) {
  const auto* pads = ConstantInput(node, 1, ctx);
  if (pads == nullptr) {
    return Refused(
        "pads (input 1) is absent or computed at run time; Pad before opset 11 "
        "needs constant pads");
  }
  const auto values = ConstantInts(*pads, 64);
  if (!values) return Refused(InputRole(node, 1, "pads") + " is not a list of integers");
  float value = 0;
  if (HasInput(node, 2)) {
    const auto* constant = ConstantInput(node, 2, ctx);
    const auto scalar = constant == nullptr ? std::nullopt : ConstantFloatScalar(*constant);
    if (!scalar) {
      return Refused(InputRole(node, 2, "constant_value") + " is not a constant float32 scalar");
    }
    value = *scalar;
  }
  DropInputsFrom(node, 1);
  SetInts(node, "pads", *values);
  SetAttribute(node, "value", onnx::AttributeProto::FLOAT).set_f(value);
  return Converted("Pad: pads/constant_value inputs to attributes");
}

// Softmax, LogSoftmax and Hardmax before 13 flatten the input to 2-D at `axis`; from 13 they
// work along `axis` alone. The two agree only for the last axis.
Outcome SoftmaxLastAxis(onnx::NodeProto& node, const Context& ctx) {
  const int rank = node.input_size() > 0 ? RankOf(ctx, node.input(0)) : -1;
  if (rank < 1) return Refused("the input's rank is unknown, so the axis cannot be checked");
  auto axis = IntAttribute(node, "axis", -1);
  if (axis < 0) axis += rank;
  if (axis != rank - 1) {
    return Refused("axis " + std::to_string(axis) + " of a rank-" + std::to_string(rank) +
                   " input means another thing before opset 13 (only the last axis converts)");
  }
  SetAttribute(node, "axis", onnx::AttributeProto::INT).set_i(rank - 1);
  return Converted(node.op_type() + ": last axis made explicit");
}

Outcome GatherNonNegative(onnx::NodeProto& node, const Context& ctx) {
  Outcome axis = AxisOfInput(node, ctx, "axis");
  if (!axis.refusal.empty()) return axis;
  const auto* indices = ConstantInput(node, 1, ctx);
  const auto values = indices == nullptr ? std::nullopt : ConstantInts(*indices, 4096);
  if (!values || std::any_of(values->begin(), values->end(), [](auto v) { return v < 0; })) {
    return Refused(
        "indices are not constant and non-negative; Gather before opset 11 takes no "
        "negative index");
  }
  return axis;
}

// An attribute the older version lacks must have its default.
Adapter DefaultOnly(std::string attribute, std::int64_t default_value) {
  return [attribute, default_value](onnx::NodeProto& node, const Context&) {
    if (IntAttribute(node, attribute, default_value) != default_value) {
      return Refused(attribute + " is " + std::to_string(IntAttribute(node, attribute, 0)) +
                     "; the older version has only " + std::to_string(default_value));
    }
    RemoveAttribute(node, attribute);
    return Converted();
  };
}

Outcome Compatible(onnx::NodeProto&, const Context&) { return Converted(); }

// (operator, since_version of the newer schema) -> adapter down across that boundary.
const std::map<std::pair<std::string, int>, Adapter>& Adapters() {
  static const auto* adapters = [] {
    auto* table = new std::map<std::pair<std::string, int>, Adapter>();
    auto add = [&](const std::string& op, int boundary, Adapter adapter) {
      (*table)[{op, boundary}] = std::move(adapter);
    };
    // Element types added (bfloat16 at 13, integers at 12/14, ...): checked by the caller's
    // strict type inference at the target opset.
    for (const char* op : {"Add", "Sub", "Mul", "Div", "Relu"}) {
      add(op, 13, Compatible);
      add(op, 14, Compatible);
    }
    for (const char* op : {"Sigmoid",
                           "Tanh",
                           "Exp",
                           "Log",
                           "Sqrt",
                           "Neg",
                           "Abs",
                           "Floor",
                           "Ceil",
                           "Reciprocal",
                           "Erf",
                           "Transpose",
                           "Cast",
                           "Reshape",
                           "Gather",
                           "Slice",
                           "Pad",
                           "Shape",
                           "Sum",
                           "Mean",
                           "Max",
                           "Min",
                           "Flatten",
                           "Concat",
                           "Gemm",
                           "MatMul",
                           "Clip",
                           "Tile",
                           "Expand",
                           "LRN",
                           "Pow",
                           "Constant",
                           "ReduceMean",
                           "ReduceMax",
                           "ReduceMin",
                           "ReduceProd",
                           "ReduceL1",
                           "ReduceL2",
                           "ReduceLogSum",
                           "ReduceLogSumExp",
                           "ReduceSumSquare"}) {
      add(op, 13, Compatible);
    }
    for (const char* op : {"Identity"}) {
      for (int v : {13, 14, 16}) add(op, v, Compatible);
    }
    for (const char* op : {"Clip", "Max", "Min", "Pow", "MaxPool", "ReduceMax", "ReduceMin"}) {
      add(op, 12, Compatible);
    }
    add("Pow", 15, Compatible);
    add("BatchNormalization", 15, Compatible);
    add("LeakyRelu", 16, Compatible);
    add("PRelu", 16, Compatible);
    add("PRelu", 9, Compatible);
    add("Gemm", 9, Compatible);
    add("MatMul", 9, Compatible);
    add("Flatten", 9, Compatible);
    add("Cast", 9, Compatible);
    // libonnx's own 11->10 adapters call these compatible.
    for (const char* op : {"Conv", "ConvTranspose", "MaxPool", "AveragePool"}) {
      add(op, 11, Compatible);
    }
    // Constant inputs back into attributes.
    add("Clip", 11, ClipInputsToAttributes);
    add("Pad", 11, PadInputsToAttributes);
    for (const char* op : {"Squeeze", "Unsqueeze"}) {
      add(op, 13, [](onnx::NodeProto& node, const Context& ctx) {
        return IntsInputToAttribute(node, ctx, 1, "axes");
      });
    }
    add("ReduceSum", 13, [](onnx::NodeProto& node, const Context& ctx) {
      if (IntAttribute(node, "noop_with_empty_axes", 0) != 0 && !HasInput(node, 1)) {
        return Refused("noop_with_empty_axes=1 without axes has no older form");
      }
      RemoveAttribute(node, "noop_with_empty_axes");
      return IntsInputToAttribute(node, ctx, 1, "axes");
    });
    add("Split", 13, [](onnx::NodeProto& node, const Context& ctx) {
      return IntsInputToAttribute(node, ctx, 1, "split");
    });
    // Negative axes (allowed from 11) to positive ones.
    for (const char* op : {"Concat", "Flatten", "Split", "Softmax", "LogSoftmax", "Hardmax"}) {
      add(op, 11,
          [](onnx::NodeProto& node, const Context& ctx) { return AxisOfInput(node, ctx, "axis"); });
    }
    for (const char* op :
         {"Squeeze", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceL1",
          "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}) {
      add(op, 11,
          [](onnx::NodeProto& node, const Context& ctx) { return AxisOfInput(node, ctx, "axes"); });
    }
    add("Unsqueeze", 11, [](onnx::NodeProto& node, const Context& ctx) {
      // Unsqueeze's axes index its output.
      return PositiveAxes(node, "axes", node.output_size() > 0 ? RankOf(ctx, node.output(0)) : -1);
    });
    add("Gather", 11, GatherNonNegative);
    add("Slice", 11, [](onnx::NodeProto& node, const Context& ctx) {
      if (!HasInput(node, 3)) return Converted();
      const auto* axes = ConstantInput(node, 3, ctx);
      const auto values = axes == nullptr ? std::nullopt : ConstantInts(*axes, 64);
      if (!values || std::any_of(values->begin(), values->end(), [](auto v) { return v < 0; })) {
        return Refused("axes are not constant and non-negative");
      }
      return Converted();
    });
    for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"}) add(op, 13, SoftmaxLastAxis);
    // Attributes the older version lacks, at their defaults.
    add("Reshape", 14, DefaultOnly("allowzero", 0));
    add("BatchNormalization", 14, [](onnx::NodeProto& node, const Context& ctx) {
      if (node.output_size() > 1) return Refused("running mean/var outputs have no older form");
      return DefaultOnly("training_mode", 0)(node, ctx);
    });
    add("MaxPool", 10, [](onnx::NodeProto& node, const Context& ctx) {
      const auto* dilations = FindAttribute(node, "dilations");
      if (dilations != nullptr && std::any_of(dilations->ints().begin(), dilations->ints().end(),
                                              [](auto d) { return d != 1; })) {
        return Refused("dilations other than 1 have no older form");
      }
      RemoveAttribute(node, "dilations");
      return DefaultOnly("ceil_mode", 0)(node, ctx);
    });
    add("AveragePool", 10, DefaultOnly("ceil_mode", 0));
    add("Gemm", 11, [](onnx::NodeProto& node, const Context&) {
      if (!HasInput(node, 2)) return Refused("C is absent; Gemm before opset 11 needs it");
      return Converted();
    });
    add("Shape", 15, [](onnx::NodeProto& node, const Context&) {
      if (FindAttribute(node, "start") != nullptr || FindAttribute(node, "end") != nullptr) {
        return Refused("start/end have no older form");
      }
      return Converted();
    });
    return table;
  }();
  return *adapters;
}

std::string DescribeProtoNode(const onnx::NodeProto& node, int index) {
  if (node.name().empty()) return "node #" + std::to_string(index);
  return "node " + manifests::QuoteName(node.name()) + " (#" + std::to_string(index) + ")";
}

std::size_t ElementBytes(int type) {
  switch (type) {
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::UINT32:
      return 4;
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::BOOL:
      return 1;
    case onnx::TensorProto::UINT16:
    case onnx::TensorProto::INT16:
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16:
      return 2;
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::UINT64:
    case onnx::TensorProto::DOUBLE:
    case onnx::TensorProto::COMPLEX64:
      return 8;
    case onnx::TensorProto::COMPLEX128:
      return 16;
    default:
      return 0;
  }
}

}  // namespace

std::optional<std::uint64_t> DeclaredElements(const onnx::TensorProto& tensor) {
  std::uint64_t count = 1;
  for (const auto d : tensor.dims()) {
    if (d < 0) return std::nullopt;
    const auto dim = static_cast<std::uint64_t>(d);
    if (dim != 0 && count > std::numeric_limits<std::uint64_t>::max() / dim) return std::nullopt;
    count *= dim;
  }
  return count;
}

std::optional<std::uint64_t> StoredElements(const onnx::TensorProto& tensor) {
  const auto type = tensor.data_type();
  const std::size_t bytes = ElementBytes(type);
  if (bytes == 0) return std::nullopt;
  if (tensor.has_raw_data()) {
    if (tensor.raw_data().size() % bytes != 0) return std::nullopt;
    return tensor.raw_data().size() / bytes;
  }
  switch (type) {
    case onnx::TensorProto::FLOAT:
      return tensor.float_data_size();
    case onnx::TensorProto::COMPLEX64:
      return tensor.float_data_size() / 2;
    case onnx::TensorProto::DOUBLE:
      return tensor.double_data_size();
    case onnx::TensorProto::COMPLEX128:
      return tensor.double_data_size() / 2;
    case onnx::TensorProto::INT64:
      return tensor.int64_data_size();
    case onnx::TensorProto::UINT32:
    case onnx::TensorProto::UINT64:
      return tensor.uint64_data_size();
    default:
      return tensor.int32_data_size();
  }
}

std::optional<std::vector<std::int64_t>> ConstantInts(const onnx::TensorProto& tensor,
                                                      std::size_t max_count) {
  const auto type = tensor.data_type();
  if (type != onnx::TensorProto::INT64 && type != onnx::TensorProto::INT32) return std::nullopt;
  if (tensor.dims_size() > 1) return std::nullopt;
  const auto declared = DeclaredElements(tensor);
  if (!declared || *declared > max_count || StoredElements(tensor) != declared) {
    return std::nullopt;
  }
  std::vector<std::int64_t> values;
  if (tensor.has_raw_data()) {
    const std::string& raw = tensor.raw_data();
    for (std::size_t i = 0; i < *declared; ++i) {
      if (type == onnx::TensorProto::INT64) {
        std::int64_t v = 0;
        std::memcpy(&v, raw.data() + i * 8, 8);  // little-endian on every supported target
        values.push_back(v);
      } else {
        std::int32_t v = 0;
        std::memcpy(&v, raw.data() + i * 4, 4);
        values.push_back(v);
      }
    }
  } else if (type == onnx::TensorProto::INT64) {
    values.assign(tensor.int64_data().begin(), tensor.int64_data().end());
  } else {
    values.assign(tensor.int32_data().begin(), tensor.int32_data().end());
  }
  return values;
}

std::optional<float> ConstantFloatScalar(const onnx::TensorProto& tensor) {
  if (tensor.data_type() != onnx::TensorProto::FLOAT) return std::nullopt;
  if (DeclaredElements(tensor) != 1u || StoredElements(tensor) != 1u) return std::nullopt;
  if (tensor.has_raw_data()) {
    float v = 0;
    std::memcpy(&v, tensor.raw_data().data(), 4);
    return v;
  }
  return tensor.float_data(0);
}

Result<DowngradeSteps> DowngradeOpset(onnx::ModelProto& model, std::int64_t target,
                                      const RankMap& ranks) {
  onnx::OperatorSetIdProto* import = nullptr;
  for (auto& entry : *model.mutable_opset_import()) {
    if (entry.domain().empty() || entry.domain() == "ai.onnx") import = &entry;
  }
  if (import == nullptr) return Fail(ErrorCode::kUnsupported, "the model imports no ONNX opset");
  const std::int64_t from = import->version();
  if (target > from) {
    return Fail(ErrorCode::kInvalidArgument, "target opset " + std::to_string(target) +
                                                 " is above the model's " + std::to_string(from));
  }
  Context ctx{{}, ranks};
  std::set<std::string> graph_inputs;
  for (const auto& input : model.graph().input()) graph_inputs.insert(input.name());
  for (const auto& init : model.graph().initializer()) {
    if (graph_inputs.count(init.name()) == 0) ctx.constants[init.name()] = &init;
  }
  const auto max_version = static_cast<int>(std::min<std::int64_t>(from, 1000));
  DowngradeSteps steps;
  auto* nodes = model.mutable_graph()->mutable_node();
  for (int index = 0; index < nodes->size(); ++index) {
    onnx::NodeProto& node = (*nodes)[index];
    if (!node.domain().empty() && node.domain() != "ai.onnx") continue;
    const std::string& op = node.op_type();
    const auto* newer = onnx::OpSchemaRegistry::Schema(op, max_version, "");
    const auto* older = onnx::OpSchemaRegistry::Schema(op, static_cast<int>(target), "");
    auto refuse = [&](const std::string& why) {
      return Fail(ErrorCode::kUnsupported,
                  DescribeProtoNode(node, index) + ": " + manifests::QuoteName(op) + " " + why);
    };
    if (newer == nullptr) return refuse("is not an operator of opset " + std::to_string(from));
    if (older == nullptr) {
      return refuse("has no version at opset " + std::to_string(target) + " (it exists from " +
                    std::to_string(newer->since_version()) + ")");
    }
    // Every since_version above the older schema's, newest first.
    for (int boundary = newer->since_version(); boundary > older->since_version();) {
      const auto found = Adapters().find({op, boundary});
      if (found == Adapters().end()) {
        return refuse("across opset " + std::to_string(boundary) +
                      ": no down-conversion is known to keep its meaning");
      }
      Outcome outcome = found->second(node, ctx);
      if (!outcome.refusal.empty()) {
        return refuse("across opset " + std::to_string(boundary) + ": " + outcome.refusal);
      }
      if (!outcome.step.empty()) ++steps[outcome.step];
      const auto* previous = onnx::OpSchemaRegistry::Schema(op, boundary - 1, "");
      if (previous == nullptr) break;  // cannot happen: older exists below
      boundary = previous->since_version();
    }
  }
  import->set_version(target);
  return steps;
}

}  // namespace edgefleet::runtime
