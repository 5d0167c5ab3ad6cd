// edgefleet model check: what every backend of this build (or of a box's backends_dir) says about
// an ONNX file, before download and after, and optionally whether it really runs it.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "deploy/commands.hpp"
#include "manifests/log_value.hpp"
#include "runtime/compat.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/plugin_backend.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::deploy {
namespace {

using nlohmann::json;
namespace rt = runtime;

struct Golden {
  std::vector<rt::Tensor> inputs;
  std::vector<rt::Tensor> outputs;
};

Result<Golden> ReadGolden(const std::filesystem::path& dir, const rt::GraphInfo& graph) {
  Golden golden;
  for (std::size_t k = 0; k < graph.inputs.size(); ++k) {
    EF_ASSIGN_OR_RETURN(auto t, rt::ReadTensorProto(dir / ("input_" + std::to_string(k) + ".pb")));
    t.name = graph.inputs[k].name;
    golden.inputs.push_back(std::move(t));
  }
  for (std::size_t k = 0; k < graph.outputs.size(); ++k) {
    EF_ASSIGN_OR_RETURN(auto t, rt::ReadTensorProto(dir / ("output_" + std::to_string(k) + ".pb")));
    golden.outputs.push_back(std::move(t));
  }
  return golden;
}

// Loads and runs the model on `backend`, compares with the golden outputs: "" when it matched,
// else why not.
std::string RunGolden(rt::Backend& backend, const std::filesystem::path& file,
                      const manifests::Variant& variant, const Golden& golden,
                      const rt::NodeCaseTolerance& tolerance) {
  rt::SessionOptions options;
  options.threads = 1;
  options.parallel_runs = 1;
  auto session = backend.Load(file, variant, options);
  if (!session) return "load failed: " + session.error().message;
  auto outputs = (*session)->Run(golden.inputs);
  if (!outputs) return "run failed: " + outputs.error().message;
  if (outputs->size() != golden.outputs.size()) return "wrong number of outputs";
  for (std::size_t k = 0; k < outputs->size(); ++k) {
    const auto difference = rt::CompareTensors((*outputs)[k], golden.outputs[k], tolerance);
    if (!difference.empty()) return "output " + std::to_string(k) + ": " + difference;
  }
  return "";
}

}  // namespace

Status ModelCheck(const ModelCheckOptions& options, std::ostream& out) {
  const auto dir = options.backends_dir.empty() ? rt::DefaultBackendsDir() : options.backends_dir;
  EF_ASSIGN_OR_RETURN(auto scan, rt::LoadBackendPlugins(dir));
  if (scan.backends.empty()) {
    return Fail(ErrorCode::kNotFound,
                "no backend library loaded from " + manifests::QuoteName(dir.string()));
  }
  // Every backend is named with any version: the check is of the file, not of a manifest's range.
  EF_ASSIGN_OR_RETURN(const auto any, manifests::VersionRange::Parse("*"));
  json report = json::array();
  bool all_served = true;
  for (const auto& file : options.models) {
    EF_ASSIGN_OR_RETURN(auto graph, rt::InspectOnnx(file));
    std::optional<Golden> golden;
    if (!options.golden.empty()) {
      auto read = ReadGolden(options.golden, graph);
      if (!read) return read.error().Wrap(options.golden.string());
      golden = std::move(*read);
    }
    manifests::Variant variant = rt::CaseVariant(graph, file.filename().string());
    variant.forms = rt::FormKeys(graph);
    for (const auto& backend : scan.backends) {
      variant.backends.push_back({backend->capabilities().name, any});
    }
    json entry = {{"model", file.string()},        {"opset", variant.opset},
                  {"nodes", graph.nodes.size()},   {"operators", variant.operators.size()},
                  {"forms", variant.forms.size()}, {"backends", json::array()}};
    if (!options.json) {
      out << manifests::SafeText(file.string()) << ": opset " << variant.opset << ", "
          << graph.nodes.size() << " nodes, " << variant.operators.size() << " operators, "
          << variant.forms.size() << " forms\n";
    }
    bool served = false;
    for (const auto& backend : scan.backends) {
      const auto& caps = backend->capabilities();
      const std::string label = caps.name + " " + caps.version.ToString();
      json verdict = {{"backend", caps.name}, {"version", caps.version.ToString()}};
      std::vector<std::string> lines;
      const auto problems = rt::CompatibilityProblems(variant, caps);
      const auto unknown = rt::UnmeasuredForms(variant, caps);
      std::string before = problems.empty() ? (unknown.empty() ? "runs" : "unknown") : "refused";
      verdict["before_download"] = before;
      verdict["reasons"] = problems;
      verdict["unmeasured_forms"] = unknown;
      std::string after = "not checked";
      if (problems.empty()) {
        const auto checked = rt::CheckGraph(graph, variant, caps, file.string());
        after = checked ? "accepted" : "refused";
        if (!checked) verdict["after_download_reason"] = checked.error().message;
      }
      verdict["after_download"] = after;
      std::string ran;
      if (golden && (after == "accepted" || options.run_refused)) {
        ran = RunGolden(*backend, file, variant, *golden, options.tolerance);
        verdict["golden"] = ran.empty() ? "match" : ran;
      }
      const bool this_serves = after == "accepted" && (!golden || ran.empty());
      verdict["serves"] = this_serves;
      served = served || this_serves;
      entry["backends"].push_back(verdict);
      if (options.json) continue;
      out << "  " << label << ": before download " << before;
      if (!unknown.empty()) out << " (" << unknown.size() << " forms not measured)";
      out << "; after download " << after;
      if (verdict.contains("golden")) {
        out << "; golden " << (ran.empty() ? "match" : manifests::SafeText(ran));
      }
      out << "\n";
      for (const auto& p : problems) out << "    " << manifests::SafeText(p) << "\n";
      for (const auto& u : unknown) out << "    not measured: " << manifests::SafeText(u) << "\n";
      if (verdict.contains("after_download_reason")) {
        out << "    " << manifests::SafeText(verdict["after_download_reason"].get<std::string>())
            << "\n";
      }
    }
    entry["served"] = served;
    all_served = all_served && served;
    report.push_back(std::move(entry));
  }
  if (options.json) out << report.dump(2) << "\n";
  if (!all_served) {
    return Fail(ErrorCode::kUnsupported, "no backend serves every model given");
  }
  return Ok();
}

}  // namespace edgefleet::deploy
