// Variant requirements from model files (see deploy/variant_inspect.hpp).
#include "deploy/variant_inspect.hpp"

#include <string>
#include <vector>

#include "manifests/join.hpp"
#include "manifests/log_value.hpp"
#include "manifests/manifest.hpp"
#include "runtime/compat.hpp"

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
    const bool onnx = v.contains("format") ? v["format"] == "onnx" : file.ends_with(".onnx");
    if (!onnx || !manifests::IsSafeRelativePath(file)) continue;
    const auto made = generated.find(file);
    EF_ASSIGN_OR_RETURN(auto graph, runtime::InspectOnnx(made == generated.end() ? source_dir / file
                                                                                 : made->second));
    std::vector<std::string> filled;
    auto fill = [&](const char* key, const json& value) -> Status {
      if (!v.contains(key)) {
        v[key] = value;
        filled.emplace_back(key);
        return Ok();
      }
      // A value of another type is left to the manifest parser, which names it with the others.
      const bool same_kind =
          (v[key].is_number() && value.is_number()) || v[key].type() == value.type();
      if (v[key] == value || !same_kind) return Ok();
      return Fail(ErrorCode::kParse, where + ": " + field + "." + key + ": bundle.json says " +
                                         manifests::SafeText(v[key].dump()) + ", " +
                                         manifests::QuoteName(file) + " has " +
                                         manifests::SafeText(value.dump()));
    };
    EF_RETURN_IF_ERROR(fill("format", "onnx"));
    EF_RETURN_IF_ERROR(fill("opset", runtime::DefaultOpset(graph)));
    EF_RETURN_IF_ERROR(fill("operators", runtime::OperatorKeys(graph)));
    EF_RETURN_IF_ERROR(fill("forms", runtime::FormKeys(graph)));
    for (const char* key : {"inputs", "outputs"}) {
      const json found = TensorsJson(key == std::string("inputs") ? graph.inputs : graph.outputs);
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
        << manifests::SafeText(file) << " (opset " << runtime::DefaultOpset(graph) << ", "
        << runtime::OperatorKeys(graph).size() << " operators, " << runtime::FormKeys(graph).size()
        << " forms)\n";
  }
  return Ok();
}

}  // namespace edgefleet::deploy
