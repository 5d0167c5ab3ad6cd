// The form of an ONNX node: the operator plus the conditions an engine's support depends on.
//
// An engine rarely runs every case of an operator or none: OpenCV 4.6 runs the Gemm that
// PyTorch exports (a dynamic matrix times a constant weight with transB=1) at every opset, but
// not every Gemm of ONNX's conformance cases. Claims therefore name forms, not only operators. A
// form is a short, deterministic text computed from the node and its graph alone:
//
//   <dtype>;<input slots>[;b|;b?][;<attribute>=<value>...]
//
//   dtype   the element type of the first present input (f32, i64, u8, ...; "-" without inputs,
//           "?" when unknown)
//   slots   one per input position, comma-separated: "-" absent, "c<rank>" a constant (an
//           initializer or a Constant node's output), "d<rank>" a value computed at run time;
//           <rank> is "?" when shape inference cannot tell
//   b       the present inputs' shapes differ (broadcasting); "b?" when some shape is unknown
//   attrs   every attribute, sorted by name: integers and floats as numbers, lists in brackets
//           (over 16 items: "[n=<count>]"), strings escaped (over 32 bytes: "s<length>"),
//           tensors as "t:<dtype>r<rank>", graphs as "g"
//
// e.g. "f32;d2,c2,c1;alpha=1,beta=1,transB=1" for a PyTorch Linear layer's Gemm. The key used
// in manifests and claims is "<op key>(<form>)", e.g. "Gemm(f32;d2,c2,c1;...)".
//
// libonnx types appear here, so only runtime's own sources include this header; FormKey() is in
// compat.hpp.
//
// Thread safety: free functions without shared state.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

namespace edgefleet::runtime {

// Longest form text kept whole; a longer one (a hostile attribute list) is cut and marked with
// "~<length>" so that it never matches a claim by accident.
inline constexpr std::size_t kMaxFormBytes = 400;

// One form per main-graph node, in node order. Runs ONNX shape inference on `model` in place
// (adding value_info; a graph it cannot infer gets "?" ranks, never an error), so call it after
// the checker. Never fails.
std::vector<std::string> NodeForms(onnx::ModelProto& model);

// Whether libonnx 1.12's shape inference can run on `graph` without reading out of bounds (its
// convolution and pooling inference trusts ranks and kernel attributes; see onnx_forms.cpp).
// NodeForms and the lowering (runtime/onnx_lower.hpp) infer shapes only when this holds.
bool ShapeInferenceIsSafe(const onnx::ModelProto& model);

}  // namespace edgefleet::runtime
