// Variant requirements from model files (see deploy/variant_inspect.hpp).
#include "deploy/variant_inspect.hpp"

#include <string>
#include <utility>
#include <vector>

#include "manifests/join.hpp"
#include "manifests/log_value.hpp"
#include "manifests/manifest.hpp"
#include "runtime/compat.hpp"
#include "runtime/tflite_model.hpp"
#include "runtime/torchscript_model.hpp"

namespace edgefleet::deploy {
namespace {

using nlohmann::json;

json TensorsJson(const std::vector<runtime::TensorInfo>& tensors) {
  json out = json::array();
  for (const auto& t : tensors) {
    out.push_back(
        {{"name", t.name}, {"dtype", std::string(runtime::ToString(t.dtype))}, {"shape", t.shape}});
  }
  return out;
}

// Declared tensors agree with the graph's: same names in the same order and dtypes; a shape may
// narrow a dynamic dimension but not contradict a fixed one.
std::optional<std::string> Disagreement(const json& declared, const json& found) {
  if (!declared.is_array() || declared.size() != found.size()) {
    return "declares " + std::to_string(declared.is_array() ? declared.size() : 0) +
           " tensor(s), the file has " + std::to_string(found.size());
  }
  for (std::size_t i = 0; i < found.size(); ++i) {
    const json& d = declared[i];
    const json& f = found[i];
    if (!d.is_object() || d.value("name", json()) != f["name"] ||
        d.value("dtype", json()) != f["dtype"]) {
      return "[" + std::to_string(i) + "] is " + d.dump() + ", the file has " + f.dump();
    }
    const json& shape = d.value("shape", json());
    if (f["shape"].empty()) continue;  // the graph says nothing about the shape
    bool agrees = shape.is_array() && shape.size() == f["shape"].size();
    for (std::size_t k = 0; agrees && k < shape.size(); ++k) {
      const json& a = shape[k];
      const auto b = f["shape"][k].get<std::int64_t>();
      agrees = a.is_number_integer() && (a.get<std::int64_t>() < 0 || b < 0 || a == b);
    }
    if (!agrees)
      return "[" + std::to_string(i) + "] shape " + shape.dump() + ", the file has " +
             f["shape"].dump();
  }
  return std::nullopt;
}

// What a model file says about its variant: the fields to fill or check, in the order they are
// filled, the inputs and outputs, and a summary for the line `bundle create` prints.
struct FileFacts {
  std::vector<std::pair<const char*, json>> fields;
  std::vector<runtime::TensorInfo> inputs;
  std::vector<runtime::TensorInfo> outputs;
  bool has_tensors = true;  // false: the file does not say (TorchScript); bundle.json must
  std::string summary;
};

Result<FileFacts> OnnxFacts(const std::filesystem::path& path) {
  EF_ASSIGN_OR_RETURN(auto graph, runtime::InspectOnnx(path));
  const auto operators = runtime::OperatorKeys(graph);
  const auto forms = runtime::FormKeys(graph);
  const auto opset = runtime::DefaultOpset(graph);
  FileFacts facts;
  facts.fields = {{"format", "onnx"}, {"opset", opset}, {"operators", operators}, {"forms", forms}};
  facts.inputs = std::move(graph.inputs);
  facts.outputs = std::move(graph.outputs);
  facts.summary = "opset " + std::to_string(opset) + ", " + std::to_string(operators.size()) +
                  " operators, " + std::to_string(forms.size()) + " forms";
  return facts;
}

// A TFLite file's opset is its schema version; custom operators are "custom:<name>".
Result<FileFacts> TfliteFacts(const std::filesystem::path& path) {
  EF_ASSIGN_OR_RETURN(auto model, runtime::InspectTflite(path));
  const auto operators = runtime::TfliteOperatorKeys(model);
  FileFacts facts;
  facts.fields = {{"format", "tflite"}, {"opset", model.schema_version}, {"operators", operators}};
  facts.inputs = std::move(model.inputs);
  facts.outputs = std::move(model.outputs);
  facts.summary = "schema " + std::to_string(model.schema_version) + ", " +
                  std::to_string(operators.size()) + " operators, " +
                  std::to_string(model.node_count) + " nodes";
  return facts;
}

// A TorchScript file's operators from its serialized code ("aten:<op>"); it carries no tensor
// names or shapes, so inputs and outputs stay as bundle.json gives them. Its opset is 1.
Result<FileFacts> TorchScriptFacts(const std::filesystem::path& path) {
  EF_ASSIGN_OR_RETURN(auto model, runtime::InspectTorchScript(path));
  const auto operators = runtime::TorchScriptOperatorKeys(model);
  FileFacts facts;
  facts.fields = {{"format", "torchscript"}, {"opset", 1}, {"operators", operators}};
  facts.has_tensors = false;
  facts.summary = std::to_string(operators.size()) + " operators in " +
                  std::to_string(model.code_files) + " code file(s)";
  return facts;
}

// The format a variant's file is read as: its "format", or else the file's extension; empty for
// one this build does not read.
std::string ReadableFormat(const json& variant, const std::string& file) {
  for (const auto& [format, extension] :
       {std::pair{"onnx", ".onnx"}, std::pair{"tflite", ".tflite"},
        std::pair{"torchscript", ".pt"}}) {
    const bool named =
        variant.contains("format") ? variant["format"] == format : file.ends_with(extension);
    if (named) return format;
  }
  return "";
}

}  // namespace

Status FillVariantsFromFiles(json& spec, const std::filesystem::path& source_dir,
                             const std::filesystem::path& spec_path, std::ostream& out,
                             const std::map<std::string, std::filesystem::path>& generated) {
  json* variants = spec.contains("variants") ? &spec["variants"] : nullptr;
  if (variants == nullptr || !variants->is_array()) return Ok();  // the parser names it
  const std::string where = spec_path.string();
  for (std::size_t i = 0; i < variants->size(); ++i) {
    json& v = (*variants)[i];
    if (!v.is_object() || !v.contains("file") || !v["file"].is_string()) continue;
    const std::string file = v["file"].get<std::string>();
    const std::string field = "variants[" + std::to_string(i) + "]";
    const std::string format = ReadableFormat(v, file);
    if (format.empty() || !manifests::IsSafeRelativePath(file)) continue;
    const auto made = generated.find(file);
    const auto path = made == generated.end() ? source_dir / file : made->second;
    EF_ASSIGN_OR_RETURN(auto facts, format == "onnx"     ? OnnxFacts(path)
                                    : format == "tflite" ? TfliteFacts(path)
                                                         : TorchScriptFacts(path));
    std::vector<std::string> filled;
    for (const auto& [key, value] : facts.fields) {
      if (!v.contains(key)) {
        v[key] = value;
        filled.emplace_back(key);
        continue;
      }
      // A value of another type is left to the manifest parser, which names it with the others.
      const bool same_kind =
          (v[key].is_number() && value.is_number()) || v[key].type() == value.type();
      if (v[key] == value || !same_kind) continue;
      return Fail(ErrorCode::kParse, where + ": " + field + "." + key + ": bundle.json says " +
                                         manifests::SafeText(v[key].dump()) + ", " +
                                         manifests::QuoteName(file) + " has " +
                                         manifests::SafeText(value.dump()));
    }
    for (const char* key : {"inputs", "outputs"}) {
      if (!facts.has_tensors) break;
      const json found = TensorsJson(key == std::string("inputs") ? facts.inputs : facts.outputs);
      if (!v.contains(key)) {
        v[key] = found;
        filled.emplace_back(key);
      } else if (auto why = Disagreement(v[key], found)) {
        return Fail(ErrorCode::kParse, where + ": " + field + "." + key + ": " +
                                           manifests::SafeText(*why) + " (" +
                                           manifests::QuoteName(file) + ")");
      }
    }
    out << "  " << field << " " << manifests::SafeText(v.value("id", "")) << ": "
        << (filled.empty() ? "checked against " : "filled " + Join(filled, ", ") + " from ")
        << manifests::SafeText(file) << " (" << facts.summary << ")\n";
  }
  return Ok();
}

}  // namespace edgefleet::deploy
