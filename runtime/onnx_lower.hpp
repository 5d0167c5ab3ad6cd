// Lowering an ONNX export into forms a backend runs by its own tables (edgefleet model lower,
// bundle create --lower).
//
// PyTorch's exporter writes opset 17 by default, and at opset 11 and later some operators take
// their constant arguments as inputs (Clip's min and max, Squeeze's axes, Pad's pads); OpenCV
// 4.6's importer reads those arguments only as attributes. Lowering rewrites the file:
//   1. Constant nodes become initializers; Identity nodes whose output is not a graph output
//      are bypassed.
//   2. The default-domain opset goes down (runtime/onnx_downgrade.hpp) to the highest opset at
//      which every node converts, libonnx's checker and strict type inference accept the
//      result, and the backend's tables refuse no form (BackendCapabilities::Judge); among
//      those, the highest without any unmeasured form wins. Initializers nothing reads any more
//      are dropped.
// What it cannot lower is refused, naming the node: an operator without a down-conversion, a
// constant argument computed at run time, a form the backend still refuses at every opset
// reached. The caller checks the result on the engine against the original's golden outputs
// before it writes a file (deploy/model_lower.cpp).
//
// Hostile input: the model goes through InspectOnnx first (size cap, protobuf, checker,
// guarded shape inference); external data, and tensors whose data disagree with their declared
// dims, are refused before anything reads them.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"
#include "runtime/compat.hpp"

namespace edgefleet::runtime {

struct LoweredModel {
  std::string bytes;  // the lowered model, serialized
  std::int64_t from_opset = 0;
  std::int64_t to_opset = 0;
  std::vector<std::string> steps;       // what changed, one line each
  std::vector<std::string> unmeasured;  // forms the backend has not measured ("unknown")
  GraphInfo graph;                      // of the lowered model
};

// Lowers `model_bytes` (named `source` in messages) for `backend`. Fails with kParse for what
// InspectOnnx refuses, kLimit for tensor data that disagrees with its dims, and kUnsupported
// naming the node when no opset works (external data too).
Result<LoweredModel> LowerOnnx(std::string_view model_bytes, std::string_view source,
                               const BackendCapabilities& backend);

}  // namespace edgefleet::runtime
