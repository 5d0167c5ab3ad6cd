// edgefleet model check: what every backend of this build (or of a box's backends_dir) says about
// an ONNX file, before download and after, and optionally whether it really runs it.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "deploy/commands.hpp"
#include "deploy/model_lower.hpp"
#include "manifests/log_value.hpp"
#include "runtime/compat.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/plugin_backend.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::deploy {
namespace {

using nlohmann::json;
namespace rt = runtime;

// Golden data for a model given without any: every input float32 with its symbolic dimensions
// at 1, values from a fixed-seed generator in [0, 1), and the outputs `reference` computes from
// the original file.
Result<GoldenSet> ReferenceGolden(rt::Backend& reference, const std::filesystem::path& file,
                                  const rt::GraphInfo& graph) {
  GoldenSet golden;
  golden.name = "random inputs on " + reference.capabilities().name;
  std::uint32_t state = 12345;
  for (const auto& input : graph.inputs) {
    if (input.dtype != rt::DType::kFloat32) {
      return Fail(ErrorCode::kInvalidArgument,
                  file.string() + ": input " + manifests::QuoteName(input.name) + " is " +
                      std::string(rt::ToString(input.dtype)) +
                      "; random reference data is float32 only, give --golden DIR");
    }
    std::vector<std::int64_t> shape;
    std::size_t count = 1;
    for (const auto d : input.shape) {
      shape.push_back(d < 0 ? 1 : d);
      count *= static_cast<std::size_t>(shape.back());
    }
    if (count > (64u << 20)) {
      return Fail(ErrorCode::kLimit, file.string() + ": input " + manifests::QuoteName(input.name) +
                                         " has " + std::to_string(count) + " elements");
    }
    std::vector<float> values(count);
    for (auto& v : values) {
      state = state * 1664525u + 1013904223u;
      v = static_cast<float>(state >> 8) / static_cast<float>(1u << 24);
    }
    EF_ASSIGN_OR_RETURN(auto tensor, rt::Tensor::FromFloats(input.name, shape, values));
    golden.inputs.push_back(std::move(tensor));
  }
  rt::SessionOptions options;
  options.threads = 1;
  options.parallel_runs = 1;
  EF_ASSIGN_OR_RETURN(
      auto session,
      reference.Load(file, rt::CaseVariant(graph, file.filename().string()), options));
  EF_ASSIGN_OR_RETURN(golden.outputs, session->Run(golden.inputs));
  return golden;
}

}  // namespace

Status ModelLower(const ModelLowerOptions& options, std::ostream& out) {
  std::error_code ec;
  if (std::filesystem::equivalent(options.input, options.output, ec)) {
    return Fail(ErrorCode::kInvalidArgument,
                "-o " + manifests::QuoteName(options.output.string()) +
                    " is the input file; write the lowered model beside it");
  }
  const auto dir = options.backends_dir.empty() ? rt::DefaultBackendsDir() : options.backends_dir;
  EF_ASSIGN_OR_RETURN(auto scan, rt::LoadBackendPlugins(dir));
  std::vector<rt::Backend*> backends;
  for (const auto& backend : scan.backends) backends.push_back(backend.get());
  EF_ASSIGN_OR_RETURN(auto* target, FindLowerTarget(options.target, backends));
  EF_ASSIGN_OR_RETURN(auto graph, rt::InspectOnnx(options.input));
  std::vector<GoldenSet> golden;
  if (!options.golden.empty()) {
    auto read = ReadGoldenDir(options.golden, graph);
    if (!read) return read.error().Wrap(options.golden.string());
    golden.push_back(std::move(*read));
  } else {
    rt::Backend* reference = nullptr;
    for (auto* backend : backends) {
      if (backend->capabilities().name == options.reference) reference = backend;
    }
    if (reference == nullptr || reference == target) {
      return Fail(ErrorCode::kNotFound, options.input.string() +
                                            ": no golden data (--golden DIR) and no " +
                                            manifests::QuoteName(options.reference) +
                                            " backend to compute the original's outputs with");
    }
    auto computed = ReferenceGolden(*reference, options.input, graph);
    if (!computed) return computed.error().Wrap("reference outputs");
    golden.push_back(std::move(*computed));
  }
  const auto& caps = target->capabilities();
  out << "model lower: " << manifests::SafeText(options.input.string()) << " for " << caps.name
      << " " << caps.version.ToString() << "\n";
  EF_ASSIGN_OR_RETURN(auto lowered, LowerCheckAndWrite(options.input, options.output, *target,
                                                       golden, options.tolerance));
  for (const auto& step : lowered.steps) out << "  " << manifests::SafeText(step) << "\n";
  for (const auto& form : lowered.unmeasured) {
    out << "  not measured on " << caps.name
        << " (the golden check decided): " << manifests::SafeText(form) << "\n";
  }
  out << "  checked on " << caps.name << " against " << manifests::SafeText(golden[0].name)
      << ": match (atol " << options.tolerance.atol << ", rtol " << options.tolerance.rtol << ")\n";
  out << "model lower: opset " << lowered.from_opset << " -> " << lowered.to_opset << ", "
      << lowered.graph.nodes.size() << " nodes -> " << manifests::SafeText(options.output.string())
      << "\n";
  return Ok();
}

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
    std::optional<GoldenSet> golden;
    if (!options.golden.empty()) {
      auto read = ReadGoldenDir(options.golden, graph);
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
        ran = RunGoldenSets(*backend, file, graph, {*golden}, options.tolerance);
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
