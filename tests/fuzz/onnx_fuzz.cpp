// Fuzzes the ONNX graph inspection the agent runs on a bundle's model before loading it:
// runtime::InspectOnnx from bytes (protobuf parse, libonnx's checker, shape inference and the
// node forms, the graph's imports, nodes, inputs and outputs), then CheckGraph against the
// digits manifest's variant and a small backend with a form table, and again with the graph's
// own forms, and the verdict before download from them; runtime::LowerOnnx for that backend
// (constant folding, opset down-conversion, a re-inspection per opset tried); and
// runtime::OnnxNodes with OutputLimitProblems, the backend's own check at load.
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string_view>
#include <vector>

#include "manifests/manifest.hpp"
#include "runtime/backend.hpp"
#include "runtime/compat.hpp"
#include "runtime/onnx_lower.hpp"

namespace runtime = edgefleet::runtime;

namespace {

const runtime::BackendCapabilities& Backend() {
  static const runtime::BackendCapabilities backend = [] {
    runtime::BackendCapabilities b;
    b.name = "fuzz";
    b.version = {4, 6, 0, ""};
    b.formats = {"onnx"};
    b.min_opset = 7;
    b.max_opset = 17;
    // Clip and Unsqueeze only in their older forms, so that lowering has work to do.
    b.operators = {{"", "Conv", 1, 17},
                   {"", "Relu", 6, 17},
                   {"", "Gemm", 7, 13},
                   {"", "Clip", 6, 10},
                   {"", "Unsqueeze", 1, 10}};
    b.output_limits = {{"", "Dropout", 1, "fuzz"}};
    b.forms = {{"", "Gemm", 13, 17, "f32;d2,c2,c1;b;alpha=1,beta=1,transB=1", true, ""},
               {"", "Conv", 11, 17, "f32;d4,c4,d1;b", false, "fuzz"}};
    b.targets = {"cpu"};
    return b;
  }();
  return backend;
}

const edgefleet::manifests::Variant& DigitsVariant() {
  static const edgefleet::manifests::Variant variant = [] {
    edgefleet::manifests::Variant v;
    v.id = "onnx-op13";
    v.file = "model/digits_op13.onnx";
    v.format = "onnx";
    v.opset = 13;
    v.operators = {"Conv", "Relu", "Flatten", "Gemm"};
    v.inputs = {{"input", "float32", {-1, 1, 8, 8}}};
    v.outputs = {{"logits", "float32", {-1, 10}}};
    return v;
  }();
  return variant;
}

}  // namespace

// libonnx's checker writes a warning to std::cerr for every model with experimental operators;
// mutated models have many, and the noise slows the run and buries libFuzzer's own lines.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::cerr.rdbuf(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto graph = runtime::InspectOnnx(bytes, "model.onnx");
  if (graph) {
    (void)runtime::CheckGraph(*graph, DigitsVariant(), Backend(), "digits");
    // The node forms (shape inference ran on the hostile graph) through both verdicts.
    auto variant = DigitsVariant();
    variant.forms = runtime::FormKeys(*graph);
    variant.operators = runtime::OperatorKeys(*graph);
    (void)runtime::CheckGraph(*graph, variant, Backend(), "digits");
    (void)runtime::CompatibilityProblems(variant, Backend());
    (void)runtime::UnmeasuredForms(variant, Backend());
    (void)runtime::LowerOnnx(bytes, "model.onnx", Backend());
  }
  auto nodes = runtime::OnnxNodes(bytes, "model.onnx");
  if (nodes) (void)runtime::OutputLimitProblems(*nodes, Backend().output_limits, "fuzz");
  return 0;
}
