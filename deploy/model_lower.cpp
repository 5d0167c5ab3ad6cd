// Lowering a model for a backend and proving the result (see deploy/model_lower.hpp).
#include "deploy/model_lower.hpp"

#include <stdlib.h>

#include <system_error>

#include "deploy/common/files.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::deploy {
namespace fs = std::filesystem;
namespace rt = runtime;

Result<ScratchDir> ScratchDir::Create() {
  std::string pattern = (fs::temp_directory_path() / "edgefleet-lower-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return Fail(ErrorCode::kIo,
                "cannot create a temporary directory under " + fs::temp_directory_path().string());
  }
  return ScratchDir(pattern);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
}

Result<GoldenSet> ReadGoldenDir(const fs::path& dir, const rt::GraphInfo& graph) {
  GoldenSet golden;
  golden.name = dir.filename().string();
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

std::string RunGoldenSets(rt::Backend& backend, const fs::path& file, const rt::GraphInfo& graph,
                          const std::vector<GoldenSet>& golden,
                          const rt::NodeCaseTolerance& tolerance) {
  rt::SessionOptions options;
  options.threads = 1;
  options.parallel_runs = 1;
  const manifests::Variant variant = rt::CaseVariant(graph, file.filename().string());
  auto session = backend.Load(file, variant, options);
  if (!session) return "load failed: " + session.error().message;
  for (const auto& set : golden) {
    const std::string where = "golden set " + manifests::QuoteName(set.name) + ": ";
    auto outputs = (*session)->Run(set.inputs);
    if (!outputs) return where + "run failed: " + outputs.error().message;
    if (outputs->size() != set.outputs.size()) {
      return where + std::to_string(outputs->size()) + " outputs, expected " +
             std::to_string(set.outputs.size());
    }
    for (std::size_t k = 0; k < outputs->size(); ++k) {
      const auto difference = rt::CompareTensors((*outputs)[k], set.outputs[k], tolerance);
      if (!difference.empty()) return where + "output " + std::to_string(k) + ": " + difference;
    }
  }
  return "";
}

Result<rt::Backend*> FindLowerTarget(const std::string& target,
                                     const std::vector<rt::Backend*>& backends) {
  std::string name = target;
  std::string version;
  if (const auto dash = target.rfind('-'); dash != std::string::npos) {
    name = target.substr(0, dash);
    version = target.substr(dash + 1);
  }
  std::string present;
  for (auto* backend : backends) {
    const auto& caps = backend->capabilities();
    const std::string label = caps.name + "-" + std::to_string(caps.version.major) + "." +
                              std::to_string(caps.version.minor);
    present += (present.empty() ? "" : ", ") + label;
    if (caps.name != name) continue;
    if (version.empty() || label == target) return backend;
  }
  return Fail(ErrorCode::kNotFound, "--for " + manifests::QuoteName(target) +
                                        ": no such backend here (loaded: " +
                                        (present.empty() ? std::string("none") : present) + ")");
}

Result<rt::LoweredModel> LowerCheckAndWrite(const fs::path& input, const fs::path& output,
                                            rt::Backend& backend,
                                            const std::vector<GoldenSet>& golden,
                                            const rt::NodeCaseTolerance& tolerance) {
  if (golden.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                input.string() + ": no golden data to check the lowered model against");
  }
  EF_ASSIGN_OR_RETURN(auto bytes, ReadSmallFile(input, rt::kMaxOnnxBytes));
  EF_ASSIGN_OR_RETURN(auto lowered, rt::LowerOnnx(bytes, input.string(), backend.capabilities()));
  EF_ASSIGN_OR_RETURN(auto scratch, ScratchDir::Create());
  const fs::path candidate = scratch.path() / "lowered.onnx";
  EF_RETURN_IF_ERROR(WriteFileAtomically(candidate, lowered.bytes));
  const auto mismatch = RunGoldenSets(backend, candidate, lowered.graph, golden, tolerance);
  if (!mismatch.empty()) {
    return Fail(ErrorCode::kIntegrity,
                input.string() + ": the lowered model (opset " + std::to_string(lowered.to_opset) +
                    ") does not match the golden outputs on " + backend.capabilities().name + ": " +
                    mismatch + "; nothing written");
  }
  EF_RETURN_IF_ERROR(WriteFileAtomically(output, lowered.bytes));
  return lowered;
}

}  // namespace edgefleet::deploy
