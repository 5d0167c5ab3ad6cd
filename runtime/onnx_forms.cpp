// Node forms (onnx_forms.hpp).
#include "runtime/onnx_forms.hpp"

#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <charconv>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string_view>

#include "runtime/compat.hpp"

namespace edgefleet::runtime {
namespace {

constexpr std::size_t kMaxListItems = 16;
constexpr std::size_t kMaxStringBytes = 32;

std::string_view ShortType(std::int32_t elem_type) {
  switch (elem_type) {
    case onnx::TensorProto::FLOAT:
      return "f32";
    case onnx::TensorProto::DOUBLE:
      return "f64";
    case onnx::TensorProto::FLOAT16:
      return "f16";
    case onnx::TensorProto::BFLOAT16:
      return "bf16";
    case onnx::TensorProto::INT8:
      return "i8";
    case onnx::TensorProto::UINT8:
      return "u8";
    case onnx::TensorProto::INT16:
      return "i16";
    case onnx::TensorProto::UINT16:
      return "u16";
    case onnx::TensorProto::INT32:
      return "i32";
    case onnx::TensorProto::UINT32:
      return "u32";
    case onnx::TensorProto::INT64:
      return "i64";
    case onnx::TensorProto::UINT64:
      return "u64";
    case onnx::TensorProto::BOOL:
      return "bool";
    case onnx::TensorProto::STRING:
      return "str";
    default:
      return "?";
  }
}

// A value's type as far as the graph tells: element type and, when known, each dimension
// ("" for a dimension with neither value nor name).
struct ValueType {
  std::int32_t elem_type = 0;
  std::optional<std::vector<std::string>> dims;  // nullopt: rank unknown
};

ValueType FromTypeProto(const onnx::TypeProto& type) {
  ValueType out;
  if (!type.has_tensor_type()) return out;
  out.elem_type = type.tensor_type().elem_type();
  if (!type.tensor_type().has_shape()) return out;
  std::vector<std::string> dims;
  for (const auto& dim : type.tensor_type().shape().dim()) {
    if (dim.has_dim_value()) {
      dims.push_back(std::to_string(dim.dim_value()));
    } else if (dim.has_dim_param() && !dim.dim_param().empty()) {
      dims.push_back("$" + dim.dim_param());
    } else {
      dims.emplace_back();
    }
  }
  out.dims = std::move(dims);
  return out;
}

ValueType FromTensor(const onnx::TensorProto& tensor) {
  ValueType out;
  out.elem_type = tensor.data_type();
  std::vector<std::string> dims;
  for (const auto d : tensor.dims()) dims.push_back(std::to_string(d));
  out.dims = std::move(dims);
  return out;
}

std::string Number(double value) {
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  if (ec != std::errc()) return "?";
  return std::string(buffer, end);
}

// Printable ASCII except the form's own separators stays; everything else becomes %XX.
std::string EscapeChars(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u > 0x20 && u < 0x7f && c != '%' && c != '\'' && c != ',' && c != ';' && c != '(' &&
        c != ')' && c != '[' && c != ']' && c != '=') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

std::string Escape(std::string_view text) {
  if (text.size() > kMaxStringBytes) return "s" + std::to_string(text.size());
  return "'" + EscapeChars(text) + "'";
}

template <typename List, typename Render>
std::string RenderList(const List& items, Render&& render) {
  if (static_cast<std::size_t>(items.size()) > kMaxListItems) {
    return "[n=" + std::to_string(items.size()) + "]";
  }
  std::string out = "[";
  for (int i = 0; i < items.size(); ++i) {
    if (i > 0) out += ",";
    out += render(items.Get(i));
  }
  return out + "]";
}

std::string RenderAttribute(const onnx::AttributeProto& a) {
  switch (a.type()) {
    case onnx::AttributeProto::INT:
      return std::to_string(a.i());
    case onnx::AttributeProto::FLOAT:
      return Number(a.f());
    case onnx::AttributeProto::STRING:
      return Escape(a.s());
    case onnx::AttributeProto::INTS:
      return RenderList(a.ints(), [](std::int64_t v) { return std::to_string(v); });
    case onnx::AttributeProto::FLOATS:
      return RenderList(a.floats(), [](float v) { return Number(v); });
    case onnx::AttributeProto::STRINGS:
      return RenderList(a.strings(), [](const std::string& v) { return Escape(v); });
    case onnx::AttributeProto::TENSOR:
      return "t:" + std::string(ShortType(a.t().data_type())) + "r" +
             std::to_string(a.t().dims_size());
    case onnx::AttributeProto::SPARSE_TENSOR:
      return "st";
    case onnx::AttributeProto::GRAPH:
    case onnx::AttributeProto::GRAPHS:
      return "g";
    default:
      return "?";
  }
}

std::string Rank(const ValueType& type) {
  return type.dims ? std::to_string(type.dims->size()) : std::string("?");
}

// libonnx 1.12's convolution and pooling shape inference reads past its vectors when a kernel's
// rank or a kernel_shape/pads/strides/dilations list disagrees with the input's spatial rank, and
// divides by zero on a zero stride (fuzzed models crashed in convPoolShapeInference1). Shape
// inference therefore runs only when every such node's input rank is known, at least 3, and
// agrees with its kernel and its lists, whose kernels, strides, dilations and group are positive
// and pads not negative; otherwise every rank stays unknown ("?").
//
// The ranks come from libonnx itself, on a stand-in copy of the model in which every
// convolution and pooling node is an Identity of its first input (one per output): their outputs
// have their input's rank, so every rank is what real inference gives, while the code that can
// crash never runs. (Ranks do not depend on dimension values here: data propagation is off.)
const std::set<std::string>& ConvPoolOps() {
  static const std::set<std::string> ops = {
      "Conv",          "ConvTranspose", "ConvInteger", "QLinearConv",       "AveragePool",
      "MaxPool",       "LpPool",        "MaxUnpool",   "MaxRoiPool",        "GlobalAveragePool",
      "GlobalMaxPool", "GlobalLpPool",  "DeformConv",  "QLinearAveragePool"};
  return ops;
}

std::optional<std::map<std::string, int>> StandInRanks(const onnx::ModelProto& model) {
  onnx::ModelProto copy;
  *copy.mutable_opset_import() = model.opset_import();
  copy.set_ir_version(model.ir_version());
  auto* graph = copy.mutable_graph();
  const auto& original = model.graph();
  // Inputs with symbolic dimensions and outputs without shapes: a stand-in's output keeps its
  // input's dimensions where the real node changes them (channels, spatial size), and a value
  // would then disagree with a constant's somewhere downstream; a symbol never does.
  *graph->mutable_input() = original.input();
  int symbol = 0;
  for (auto& input : *graph->mutable_input()) {
    auto* type = input.mutable_type();
    if (!type->has_tensor_type() || !type->tensor_type().has_shape()) continue;
    for (auto& dim : *type->mutable_tensor_type()->mutable_shape()->mutable_dim()) {
      dim.set_dim_param("edgefleet_" + std::to_string(symbol++));
    }
  }
  for (const auto& output : original.output()) {
    auto* o = graph->add_output();
    o->set_name(output.name());
    if (output.type().has_tensor_type()) {
      o->mutable_type()->mutable_tensor_type()->set_elem_type(
          output.type().tensor_type().elem_type());
    }
  }
  for (const auto& init : original.initializer()) {
    // Dims only: inference needs no data, and the copy stays small.
    auto* t = graph->add_initializer();
    t->set_name(init.name());
    t->set_data_type(init.data_type());
    *t->mutable_dims() = init.dims();
  }
  for (const auto& node : original.node()) {
    const bool default_domain = node.domain().empty() || node.domain() == "ai.onnx";
    if (!default_domain || ConvPoolOps().count(node.op_type()) == 0) {
      *graph->add_node() = node;
      continue;
    }
    if (node.input_size() == 0 || node.input(0).empty()) return std::nullopt;
    for (const auto& output : node.output()) {
      if (output.empty()) continue;
      auto* stand_in = graph->add_node();
      stand_in->set_op_type("Identity");
      stand_in->add_input(node.input(0));
      stand_in->add_output(output);
    }
  }
  try {
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(false, 0, false));
  } catch (const std::exception&) {
    // What it inferred before failing stays.
  }
  std::map<std::string, int> ranks;
  auto take = [&](const onnx::ValueInfoProto& value) {
    if (value.type().has_tensor_type() && value.type().tensor_type().has_shape()) {
      ranks[value.name()] = value.type().tensor_type().shape().dim_size();
    }
  };
  for (const auto& v : graph->input()) take(v);
  for (const auto& v : graph->value_info()) take(v);
  for (const auto& v : graph->output()) take(v);
  for (const auto& init : graph->initializer()) ranks[init.name()] = init.dims_size();
  return ranks;
}

bool ConvPoolRanksAgree(const onnx::ModelProto& model) {
  const auto ranks = StandInRanks(model);
  if (!ranks) return false;
  for (const auto& node : model.graph().node()) {
    const std::string& op = node.op_type();
    if (ConvPoolOps().count(op) == 0) continue;
    auto input_rank = [&](int i) {
      if (i >= node.input_size() || node.input(i).empty()) return -1;
      const auto found = ranks->find(node.input(i));
      return found == ranks->end() ? -1 : found->second;
    };
    const int x = input_rank(0);
    if (x < 3) return false;
    const int weight = op == "QLinearConv" ? 3 : (op.rfind("Conv", 0) == 0 ? 1 : -1);
    if (weight >= 0 && input_rank(weight) != x) return false;
    for (const auto& a : node.attribute()) {
      const auto n = static_cast<int>(a.ints_size());
      if ((a.name() == "kernel_shape" || a.name() == "strides" || a.name() == "dilations" ||
           a.name() == "output_padding") &&
          n != x - 2) {
        return false;
      }
      if (a.name() == "pads" && n != 2 * (x - 2)) return false;
      // It also divides by strides and dilations (a zero stride raised SIGFPE) and sizes by
      // kernels and groups.
      const bool positive = a.name() == "kernel_shape" || a.name() == "strides" ||
                            a.name() == "dilations" || a.name() == "group";
      for (const auto v : a.ints()) {
        if ((positive && v < 1) || v < 0) return false;
      }
      if (a.name() == "group" && a.i() < 1) return false;
    }
  }
  return true;
}

}  // namespace

bool ShapeInferenceIsSafe(const onnx::ModelProto& model) { return ConvPoolRanksAgree(model); }

std::string FormKey(const std::string& domain, const std::string& op, const std::string& form) {
  const bool default_domain = domain.empty() || domain == "ai.onnx";
  return (default_domain ? op : domain + ":" + op) + "(" + form + ")";
}

std::vector<std::string> NodeForms(onnx::ModelProto& model) {
  if (ShapeInferenceIsSafe(model)) {
    try {
      // Node-level errors are ignored (error_mode 0): an uninferable node leaves its outputs
      // without a shape, and their consumers get "?" ranks.
      onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                         onnx::ShapeInferenceOptions(false, 0, false));
    } catch (const std::exception&) {
      // Whatever value_info it added before failing stays; the rest is unknown.
    }
  }
  const auto& graph = model.graph();
  std::map<std::string, ValueType> types;
  std::set<std::string> constants;
  for (const auto& value : graph.input()) types[value.name()] = FromTypeProto(value.type());
  for (const auto& value : graph.value_info()) types[value.name()] = FromTypeProto(value.type());
  for (const auto& value : graph.output()) types[value.name()] = FromTypeProto(value.type());
  for (const auto& init : graph.initializer()) {
    types[init.name()] = FromTensor(init);
    constants.insert(init.name());
  }
  for (const auto& node : graph.node()) {
    if (node.op_type() == "Constant" && node.output_size() == 1 &&
        (node.domain().empty() || node.domain() == "ai.onnx")) {
      constants.insert(node.output(0));
    }
  }

  std::vector<std::string> forms;
  forms.reserve(static_cast<std::size_t>(graph.node_size()));
  for (const auto& node : graph.node()) {
    std::string dtype = node.input_size() == 0 ? "-" : "?";
    std::string slots;
    std::vector<const ValueType*> present;
    bool first_present = true;
    for (int i = 0; i < node.input_size(); ++i) {
      if (i > 0) slots += ",";
      const std::string& name = node.input(i);
      if (name.empty()) {
        slots += "-";
        continue;
      }
      const auto found = types.find(name);
      static const ValueType kUnknown;
      const ValueType& type = found == types.end() ? kUnknown : found->second;
      if (first_present) {
        dtype = type.elem_type == 0 ? "?" : std::string(ShortType(type.elem_type));
        first_present = false;
      }
      slots += (constants.count(name) != 0 ? "c" : "d") + Rank(type);
      present.push_back(&type);
    }
    std::string form = dtype + ";" + slots;
    if (present.size() >= 2) {
      const bool all_known = std::all_of(present.begin(), present.end(), [](const ValueType* t) {
        return t->dims && std::none_of(t->dims->begin(), t->dims->end(),
                                       [](const std::string& d) { return d.empty(); });
      });
      if (!all_known) {
        form += ";b?";
      } else if (std::any_of(present.begin(), present.end(),
                             [&](const ValueType* t) { return *t->dims != *present[0]->dims; })) {
        form += ";b";
      }
    }
    std::vector<std::pair<std::string, std::string>> attributes;
    for (const auto& a : node.attribute()) attributes.emplace_back(a.name(), RenderAttribute(a));
    std::sort(attributes.begin(), attributes.end());
    for (std::size_t i = 0; i < attributes.size(); ++i) {
      form += (i == 0 ? ";" : ",") + EscapeChars(attributes[i].first) + "=" + attributes[i].second;
    }
    if (form.size() > kMaxFormBytes) {
      form = form.substr(0, kMaxFormBytes) + "~" + std::to_string(form.size());
    }
    forms.push_back(std::move(form));
  }
  return forms;
}

}  // namespace edgefleet::runtime
