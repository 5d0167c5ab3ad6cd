// bundle create --lower (see deploy/bundle_lower.hpp).
#include "deploy/bundle_lower.hpp"

#include <vector>

#include "manifests/log_value.hpp"
#include "manifests/manifest.hpp"
#include "runtime/plugin_backend.hpp"

namespace edgefleet::deploy {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
namespace rt = runtime;

Result<std::vector<rt::Tensor>> ReadTensorList(const json& paths, const fs::path& source_dir,
                                               const std::string& field) {
  if (!paths.is_array()) {
    return Fail(ErrorCode::kParse, field + ": expected an array of file paths");
  }
  std::vector<rt::Tensor> tensors;
  for (std::size_t k = 0; k < paths.size(); ++k) {
    const std::string where = field + "[" + std::to_string(k) + "]";
    if (!paths[k].is_string() || !manifests::IsSafeRelativePath(paths[k].get<std::string>())) {
      return Fail(ErrorCode::kParse, where + ": expected a relative path inside the bundle");
    }
    auto tensor = rt::ReadTensorProto(source_dir / paths[k].get<std::string>());
    if (!tensor) return tensor.error().Wrap(where);
    tensors.push_back(std::move(*tensor));
  }
  return tensors;
}

// The bundle's golden sets as bundle.json names them.
Result<std::vector<GoldenSet>> ReadSpecGolden(const json& spec, const fs::path& source_dir,
                                              const std::string& where) {
  std::vector<GoldenSet> sets;
  const json empty = json::array();
  const json& golden = spec.contains("golden") ? spec["golden"] : empty;
  if (!golden.is_array() || golden.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                where + ": golden: --lower needs golden sets to check the lowered model against");
  }
  for (std::size_t i = 0; i < golden.size(); ++i) {
    const std::string field = where + ": golden[" + std::to_string(i) + "]";
    if (!golden[i].is_object()) return Fail(ErrorCode::kParse, field + ": expected an object");
    GoldenSet set;
    set.name = golden[i].value("name", std::to_string(i));
    EF_ASSIGN_OR_RETURN(set.inputs, ReadTensorList(golden[i].value("inputs", json()), source_dir,
                                                   field + ".inputs"));
    EF_ASSIGN_OR_RETURN(set.outputs, ReadTensorList(golden[i].value("outputs", json()), source_dir,
                                                    field + ".outputs"));
    sets.push_back(std::move(set));
  }
  return sets;
}

rt::NodeCaseTolerance SpecTolerance(const json& spec) {
  const manifests::ParityPolicy defaults;
  rt::NodeCaseTolerance tolerance{defaults.rtol, defaults.atol};
  if (spec.contains("parity") && spec["parity"].is_object()) {
    const json& parity = spec["parity"];
    if (parity.contains("atol") && parity["atol"].is_number()) {
      tolerance.atol = parity["atol"].get<double>();
    }
    if (parity.contains("rtol") && parity["rtol"].is_number()) {
      tolerance.rtol = parity["rtol"].get<double>();
    }
  }
  return tolerance;
}

bool RunsAsExported(const rt::GraphInfo& graph, const rt::BackendCapabilities& caps) {
  manifests::Variant variant = rt::CaseVariant(graph, "exported");
  variant.forms = rt::FormKeys(graph);
  variant.backends.push_back({caps.name, *manifests::VersionRange::Parse("*")});
  return rt::CompatibilityProblems(variant, caps).empty() &&
         rt::UnmeasuredForms(variant, caps).empty();
}

}  // namespace

Status AddLoweredVariants(json& spec, const fs::path& source_dir, const fs::path& spec_path,
                          const std::string& target, const fs::path& backends_dir,
                          const ScratchDir& scratch, std::map<std::string, fs::path>& generated,
                          std::ostream& out) {
  const std::string where = spec_path.string();
  if (!spec.contains("variants") || !spec["variants"].is_array()) return Ok();  // parser names it
  EF_ASSIGN_OR_RETURN(
      auto scan,
      rt::LoadBackendPlugins(backends_dir.empty() ? rt::DefaultBackendsDir() : backends_dir));
  std::vector<rt::Backend*> backends;
  for (const auto& backend : scan.backends) backends.push_back(backend.get());
  auto found = FindLowerTarget(target, backends);
  if (!found) return found.error().Wrap("--lower");
  rt::Backend& backend = **found;
  const auto& caps = backend.capabilities();
  EF_ASSIGN_OR_RETURN(auto golden, ReadSpecGolden(spec, source_dir, where));
  const auto tolerance = SpecTolerance(spec);

  json variants = json::array();
  for (std::size_t i = 0; i < spec["variants"].size(); ++i) {
    const json original = spec["variants"][i];
    variants.push_back(original);
    if (!original.is_object() || !original.contains("file") || !original["file"].is_string()) {
      continue;
    }
    const std::string file = original["file"].get<std::string>();
    const bool onnx =
        original.contains("format") ? original["format"] == "onnx" : file.ends_with(".onnx");
    if (!onnx || !manifests::IsSafeRelativePath(file)) continue;
    const std::string field = "variants[" + std::to_string(i) + "]";
    const fs::path path = source_dir / file;
    EF_ASSIGN_OR_RETURN(auto graph, rt::InspectOnnx(path));
    if (RunsAsExported(graph, caps)) {
      out << "  " << field << " " << manifests::SafeText(file) << ": " << caps.name << " "
          << caps.version.ToString() << " runs it as exported; not lowered\n";
      continue;
    }
    for (auto& set : golden) {
      if (set.inputs.size() != graph.inputs.size()) {
        return Fail(ErrorCode::kParse, where + ": golden set " + manifests::QuoteName(set.name) +
                                           " has " + std::to_string(set.inputs.size()) +
                                           " inputs, " + manifests::QuoteName(file) + " takes " +
                                           std::to_string(graph.inputs.size()));
      }
      for (std::size_t k = 0; k < set.inputs.size(); ++k) set.inputs[k].name = graph.inputs[k].name;
    }
    const fs::path relative(file);
    const std::string member =
        (relative.parent_path() / (relative.stem().string() + "." + target + ".onnx")).string();
    const fs::path lowered_path = scratch.path() / std::to_string(i) / "model.onnx";
    std::error_code ec;
    fs::create_directories(lowered_path.parent_path(), ec);
    if (ec) return Fail(ErrorCode::kIo, lowered_path.parent_path().string() + ": " + ec.message());
    auto lowered = LowerCheckAndWrite(path, lowered_path, backend, golden, tolerance);
    if (!lowered) return lowered.error().Wrap(where + ": " + field + " --lower " + target);
    json variant = original;
    for (const char* filled : {"opset", "operators", "forms"}) variant.erase(filled);
    variant["id"] = original.value("id", std::string("variant")) + "-" + target;
    variant["file"] = member;
    variant["format"] = "onnx";
    variant["backends"] =
        json::array({{{"name", caps.name},
                      {"version", ">=" + std::to_string(caps.version.major) + "." +
                                      std::to_string(caps.version.minor) + ".0 <" +
                                      std::to_string(caps.version.major) + "." +
                                      std::to_string(caps.version.minor + 1) + ".0"}}});
    variants.push_back(std::move(variant));
    generated[member] = lowered_path;
    out << "  " << field << " " << manifests::SafeText(file) << ": lowered for " << caps.name << " "
        << caps.version.ToString() << " (opset " << lowered->from_opset << " -> "
        << lowered->to_opset << "; " << lowered->steps.size() << " step(s)), matches "
        << golden.size() << " golden set(s) -> " << manifests::SafeText(member) << "\n";
  }
  spec["variants"] = std::move(variants);
  return Ok();
}

}  // namespace edgefleet::deploy
