// Lowering a model for a backend and proving the result (edgefleet model lower, bundle create
// --lower): runtime::LowerOnnx rewrites the file, then the lowered model runs on the target
// backend against golden outputs (given, or the original's outputs on a reference backend), and
// only a lowered model that matches within the tolerance is written, atomically.
//
// Thread safety: free functions; backends are used as Backend's contract allows.
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"
#include "runtime/compat.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/onnx_lower.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::deploy {

// A private directory under the system's temp dir, removed with everything in it when the object
// goes.
class ScratchDir {
 public:
  static Result<ScratchDir> Create();
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit ScratchDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// One golden set: the model's inputs and the outputs they must give.
struct GoldenSet {
  std::string name;
  std::vector<runtime::Tensor> inputs;
  std::vector<runtime::Tensor> outputs;
};

// input_K.pb / output_K.pb of `dir`, K from 0 for every input and output of `graph`; inputs
// renamed to the graph's input names.
Result<GoldenSet> ReadGoldenDir(const std::filesystem::path& dir, const runtime::GraphInfo& graph);

// Loads `file` on `backend` and runs every golden set: "" when every output matched within
// `tolerance`, else what went wrong ("golden set 'x': output 0: element 3: ...").
std::string RunGoldenSets(runtime::Backend& backend, const std::filesystem::path& file,
                          const runtime::GraphInfo& graph, const std::vector<GoldenSet>& golden,
                          const runtime::NodeCaseTolerance& tolerance);

// A lowering target "<backend>-<major>.<minor>" ("opencv-4.6") or "<backend>": the backend of
// `backends` with that name (and version). kNotFound naming what this build or box has.
Result<runtime::Backend*> FindLowerTarget(const std::string& target,
                                          const std::vector<runtime::Backend*>& backends);

// Lowers `input` for `backend`, checks the lowered model on it against `golden`, and writes it to
// `output` atomically. Nothing is written when any step fails; the error names the file, the
// node or the golden output.
Result<runtime::LoweredModel> LowerCheckAndWrite(const std::filesystem::path& input,
                                                 const std::filesystem::path& output,
                                                 runtime::Backend& backend,
                                                 const std::vector<GoldenSet>& golden,
                                                 const runtime::NodeCaseTolerance& tolerance);

}  // namespace edgefleet::deploy
