// Single-node cases cut from real models (form_cases.hpp).
#include "runtime/form_cases.hpp"

#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <system_error>

#include "runtime/compat.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/onnx_forms.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

// A computed input bigger than this is not cut (the case would be larger than the model).
constexpr std::int64_t kMaxInputElements = 1 << 22;

constexpr const char* kUnusedInput = "edgefleet_unused_input";

std::string HexHash(std::string_view text) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buffer, 12);
}

Status WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return Fail(ErrorCode::kIo, path.string() + ": write failed");
  return Ok();
}

// The inferred or declared type of every value of the main graph.
std::map<std::string, onnx::TypeProto> ValueTypes(const onnx::GraphProto& graph) {
  std::map<std::string, onnx::TypeProto> types;
  for (const auto& v : graph.input()) types[v.name()] = v.type();
  for (const auto& v : graph.value_info()) types[v.name()] = v.type();
  for (const auto& v : graph.output()) types[v.name()] = v.type();
  return types;
}

// A float tensor type's dimensions: a number, or -1 for a symbolic or unknown one (a batch);
// nullopt for another type, an unknown rank or a tensor over the size cap at dimension 2.
std::optional<std::vector<std::int64_t>> InputShape(const onnx::TypeProto& type) {
  if (!type.has_tensor_type() || type.tensor_type().elem_type() != onnx::TensorProto::FLOAT ||
      !type.tensor_type().has_shape()) {
    return std::nullopt;
  }
  std::vector<std::int64_t> shape;
  std::int64_t elements = 1;
  for (const auto& dim : type.tensor_type().shape().dim()) {
    const std::int64_t d = dim.has_dim_value() ? dim.dim_value() : -1;
    if (d < -1 || d > kMaxInputElements) return std::nullopt;
    elements *= d <= 0 ? 2 : d;
    if (elements > kMaxInputElements) return std::nullopt;
    shape.push_back(d);
  }
  return shape;
}

bool FloatOutputs(const onnx::NodeProto& node,
                  const std::map<std::string, onnx::TypeProto>& types) {
  for (const auto& name : node.output()) {
    if (name.empty()) continue;
    const auto t = types.find(name);
    if (t == types.end() || !t->second.has_tensor_type() ||
        t->second.tensor_type().elem_type() != onnx::TensorProto::FLOAT) {
      return false;
    }
  }
  return true;
}

int DefaultOpset(const onnx::ModelProto& model) {
  for (const auto& i : model.opset_import()) {
    if (i.domain().empty() || i.domain() == "ai.onnx") return static_cast<int>(i.version());
  }
  return 0;
}

struct Cut {
  onnx::ModelProto model;
  // One input list per data set: symbolic dimensions 1 in the first, 2 in the second (an engine
  // may run the degenerate size and fail on the real one: OpenCV 4.6 broadcasts [1,C,H,W] by
  // [1,C,1,1] but not [2,C,H,W] by [2,C,1,1]).
  std::vector<std::vector<Tensor>> data_sets;
  std::string why_not;  // set when the node cannot be cut
};

constexpr std::int64_t kSymbolicSizes[] = {1, 2};

Status AddInput(onnx::GraphProto& graph, const std::string& name,
                const std::vector<std::int64_t>& shape, std::mt19937& rng, Cut& cut) {
  auto* input = graph.add_input();
  input->set_name(name);
  auto* tensor_type = input->mutable_type()->mutable_tensor_type();
  tensor_type->set_elem_type(onnx::TensorProto::FLOAT);
  for (const auto d : shape) {
    auto* dim = tensor_type->mutable_shape()->add_dim();
    if (d < 0) {
      dim->set_dim_param("n");
    } else {
      dim->set_dim_value(d);
    }
  }
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::size_t set = 0; set < std::size(kSymbolicSizes); ++set) {
    std::vector<std::int64_t> concrete = shape;
    std::int64_t count = 1;
    for (auto& d : concrete) {
      if (d < 0) d = kSymbolicSizes[set];
      count *= d;
    }
    std::vector<float> values(static_cast<std::size_t>(count));
    for (auto& v : values) v = normal(rng);
    EF_ASSIGN_OR_RETURN(auto tensor, Tensor::FromFloats(name, concrete, values));
    cut.data_sets[set].push_back(std::move(tensor));
  }
  return Ok();
}

Cut CutNode(const onnx::ModelProto& source, const onnx::NodeProto& node,
            const std::map<std::string, onnx::TypeProto>& types,
            const std::map<std::string, const onnx::TensorProto*>& constants, std::mt19937& rng) {
  Cut cut;
  cut.data_sets.resize(std::size(kSymbolicSizes));
  cut.model.set_ir_version(source.ir_version());
  *cut.model.mutable_opset_import() = source.opset_import();
  auto* graph = cut.model.mutable_graph();
  graph->set_name("form_case");
  const bool carriers = DefaultOpset(source) >= 6;  // Elu's first version
  std::set<std::string> done;
  for (const auto& name : node.input()) {
    if (name.empty() || !done.insert(name).second) continue;
    if (const auto c = constants.find(name); c != constants.end()) {
      auto* init = graph->add_initializer();
      *init = *c->second;
      init->set_name(name);
      continue;
    }
    const auto t = types.find(name);
    const auto shape = t == types.end() ? std::nullopt : InputShape(t->second);
    if (!shape) {
      cut.why_not = "computed input '" + name + "' is not float32 of a known rank";
      return cut;
    }
    // Through a carrier: an engine may treat a node fed straight from a graph input unlike one
    // fed by another layer (OpenCV 4.6 miscomputes a one-input Concat of a graph input, which
    // it runs right inside DenseNet).
    const std::string fed = carriers ? name + "/" + std::string(kCarrierPrefix) : name;
    if (auto added = AddInput(*graph, fed, *shape, rng, cut); !added) {
      cut.why_not = added.error().message;
      return cut;
    }
    if (carriers) {
      auto* carrier = graph->add_node();
      carrier->set_name(std::string(kCarrierPrefix) + std::to_string(graph->node_size()));
      carrier->set_op_type("Elu");
      carrier->add_input(fed);
      carrier->add_output(name);
    }
  }
  *graph->add_node() = node;
  if (cut.data_sets.front().empty()) {
    // A node of constants only (Identity of a weight): a bundle's graph has inputs, so the case
    // gets one that nothing reads.
    if (auto added = AddInput(*graph, kUnusedInput, {1}, rng, cut); !added) {
      cut.why_not = added.error().message;
      return cut;
    }
  }
  for (const auto& name : node.output()) {
    if (name.empty()) continue;
    auto* output = graph->add_output();
    output->set_name(name);
  }
  try {
    onnx::shape_inference::InferShapes(cut.model);
  } catch (const std::exception& e) {
    cut.why_not = std::string("shape inference failed: ") + e.what();
    return cut;
  }
  std::map<std::string, onnx::TypeProto> inferred;
  for (const auto& v : cut.model.graph().value_info()) inferred[v.name()] = v.type();
  for (auto& output : *graph->mutable_output()) {
    if (output.has_type() && output.type().tensor_type().has_shape()) continue;
    const auto found = inferred.find(output.name());
    if (found == inferred.end() || !found->second.tensor_type().has_shape()) {
      cut.why_not = "output '" + output.name() + "' has no inferred shape";
      return cut;
    }
    *output.mutable_type() = found->second;
  }
  graph->clear_value_info();
  return cut;
}

}  // namespace

Result<FormCaseStats> WriteFormCases(const fs::path& model_file, const fs::path& out_root,
                                     Backend& reference, const BackendCapabilities& target,
                                     std::set<std::string>& cut) {
  // Inspect first: the checker runs and the file's size is capped before protobuf sees it.
  EF_RETURN_IF_ERROR(InspectOnnx(model_file));
  onnx::ModelProto model;
  {
    std::ifstream in(model_file, std::ios::binary);
    if (!in || !model.ParseFromIstream(&in)) {
      return Fail(ErrorCode::kParse, model_file.string() + ": not an ONNX model");
    }
  }
  const auto forms = NodeForms(model);
  const auto& graph = model.graph();
  const auto types = ValueTypes(graph);
  std::map<std::string, const onnx::TensorProto*> constants;
  for (const auto& init : graph.initializer()) constants[init.name()] = &init;
  for (const auto& node : graph.node()) {
    if (node.op_type() != "Constant" || node.output_size() != 1) continue;
    for (const auto& a : node.attribute()) {
      if (a.name() == "value" && a.has_t()) constants[node.output(0)] = &a.t();
    }
  }
  std::map<std::string, int> imports;
  for (const auto& i : model.opset_import()) {
    imports[i.domain() == "ai.onnx" ? std::string() : i.domain()] = static_cast<int>(i.version());
  }

  FormCaseStats stats;
  std::mt19937 rng(20261202);
  std::error_code ec;
  for (int i = 0; i < graph.node_size(); ++i) {
    const auto& node = graph.node(i);
    const std::string domain = node.domain() == "ai.onnx" ? std::string() : node.domain();
    const int opset = imports.count(domain) != 0 ? imports.at(domain) : 0;
    // Operators claimed whole are cut too: conformance cases feed every input from the graph,
    // where exporters feed constants, and an engine may take the two apart (OpenCV 4.6 runs
    // Identity of a computed value but fails on Identity of an initializer).
    if (target.Supports(domain, node.op_type(), opset)) ++stats.claimed_whole;
    const std::string key = FormKey(domain, node.op_type(), forms[static_cast<std::size_t>(i)]) +
                            "@" + std::to_string(opset);
    if (cut.count(key) != 0) {
      ++stats.already_cut;
      continue;
    }
    const std::string where = model_file.string() + " node #" + std::to_string(i) + " " + key;
    // Constant nodes, and nodes computing integers (shape arithmetic), are folded by an engine
    // at load: alone in a graph they leave nothing to run, which says nothing about the form.
    if (node.op_type() == "Constant" || !FloatOutputs(node, types)) {
      ++stats.not_cuttable;
      stats.notes.push_back(where + ": not cut: folded at load (a constant or integer result)");
      continue;
    }
    auto piece = CutNode(model, node, types, constants, rng);
    if (!piece.why_not.empty()) {
      ++stats.not_cuttable;
      stats.notes.push_back(where + ": not cut: " + piece.why_not);
      continue;
    }
    const fs::path dir =
        out_root / (node.op_type() + "_op" + std::to_string(opset) + "_" + HexHash(key));
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    if (ec) return Fail(ErrorCode::kIo, dir.string() + ": " + ec.message());
    std::string bytes;
    if (!piece.model.SerializeToString(&bytes)) {
      return Fail(ErrorCode::kInternal, dir.string() + ": cannot serialize the case");
    }
    EF_RETURN_IF_ERROR(WriteFile(dir / "model.onnx", bytes));
    // The reference's outputs complete the case; a case it cannot run is dropped.
    auto fail = [&](const std::string& why) {
      ++stats.reference_failed;
      stats.notes.push_back(where + ": " + reference.capabilities().name + ": " + why);
      fs::remove_all(dir, ec);
    };
    auto case_graph = InspectOnnx(dir / "model.onnx");
    if (!case_graph) {
      fail(case_graph.error().message);
      continue;
    }
    SessionOptions options;
    options.threads = 1;
    options.parallel_runs = 1;
    auto session = reference.Load(dir / "model.onnx", CaseVariant(*case_graph, key), options);
    if (!session) {
      fail(session.error().message);
      continue;
    }
    std::string failed;
    for (std::size_t set = 0; set < piece.data_sets.size() && failed.empty(); ++set) {
      const fs::path set_dir = dir / ("test_data_set_" + std::to_string(set));
      fs::create_directories(set_dir, ec);
      if (ec) return Fail(ErrorCode::kIo, set_dir.string() + ": " + ec.message());
      const auto& inputs = piece.data_sets[set];
      for (std::size_t k = 0; k < inputs.size(); ++k) {
        EF_ASSIGN_OR_RETURN(auto proto, SerializeTensorProto(inputs[k]));
        EF_RETURN_IF_ERROR(WriteFile(set_dir / ("input_" + std::to_string(k) + ".pb"), proto));
      }
      auto outputs = (*session)->Run(inputs);
      if (!outputs) {
        failed = outputs.error().message;
        break;
      }
      for (std::size_t k = 0; k < outputs->size(); ++k) {
        EF_ASSIGN_OR_RETURN(auto proto, SerializeTensorProto((*outputs)[k]));
        EF_RETURN_IF_ERROR(WriteFile(set_dir / ("output_" + std::to_string(k) + ".pb"), proto));
      }
    }
    if (!failed.empty()) {
      fail(failed);
      continue;
    }
    cut.insert(key);
    ++stats.written;
  }
  return stats;
}

}  // namespace edgefleet::runtime
