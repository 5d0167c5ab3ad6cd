// Fuzzes the TFLite model reader that `bundle create` runs on a tflite variant's file:
// runtime::InspectTflite from bytes (the bounds-checked FlatBuffer reader: root, vtables,
// offsets, vectors and strings of Model, OperatorCode, SubGraph, Tensor and Operator), then the
// manifest's operator list from it through the verdict before download against a small tflite
// backend. A file that reads must give what a manifest can hold: names that are valid UTF-8
// within the cap, dimensions of -1 or more, counts within the caps, operators sorted.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "manifests/log_value.hpp"
#include "manifests/manifest.hpp"
#include "runtime/backend.hpp"
#include "runtime/compat.hpp"
#include "runtime/tflite_model.hpp"

namespace runtime = edgefleet::runtime;

namespace {

const runtime::BackendCapabilities& Backend() {
  static const runtime::BackendCapabilities backend = [] {
    runtime::BackendCapabilities b;
    b.name = "tflite";
    b.version = {20, 8, 0, ""};
    b.formats = {"tflite"};
    b.min_opset = 3;
    b.max_opset = 3;
    b.operators = {{"", "CONV_2D", 3, 3}, {"", "RESHAPE", 3, 3}, {"custom", "Fancy", 1, 1}};
    b.targets = {"cpu"};
    return b;
  }();
  return backend;
}

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "a model that reads breaks an invariant: %s\n", what);
  std::abort();
}

bool Fits(const std::string& name) {
  return name.size() <= runtime::kMaxTfliteNameBytes && edgefleet::manifests::IsValidUtf8(name);
}

void CheckTensors(const std::vector<runtime::TensorInfo>& tensors) {
  Require(tensors.size() <= runtime::kMaxTfliteGraphTensors, "too many inputs or outputs");
  for (const auto& t : tensors) {
    Require(Fits(t.name), "a tensor name is not valid UTF-8 or over the cap");
    Require(t.shape.size() <= runtime::kMaxTfliteRank, "a rank over the cap");
    Require(std::all_of(t.shape.begin(), t.shape.end(), [](std::int64_t d) { return d >= -1; }),
            "a dimension below -1");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto model = runtime::InspectTflite(bytes, "model.tflite");
  if (!model) return 0;
  Require(model->schema_version == runtime::kTfliteSchemaVersion, "another schema version");
  Require(model->subgraph_count >= 1, "no subgraph");
  Require(model->operators.size() <= runtime::kMaxTfliteOperatorCodes, "too many operators");
  for (const auto& op : model->operators) {
    Require(!op.name.empty() && Fits(op.name), "an operator name is empty, not UTF-8 or too long");
    Require(op.first_node < model->node_count, "a first node past the nodes");
    Require(op.custom == (op.builtin_code == runtime::kTfliteCustomCode), "custom and code differ");
  }
  CheckTensors(model->inputs);
  CheckTensors(model->outputs);
  edgefleet::manifests::Variant variant;
  variant.id = "tflite";
  variant.format = "tflite";
  variant.opset = static_cast<int>(model->schema_version);
  variant.operators = runtime::TfliteOperatorKeys(*model);
  Require(std::is_sorted(variant.operators.begin(), variant.operators.end()), "keys not sorted");
  (void)runtime::CompatibilityProblems(variant, Backend());
  return 0;
}
