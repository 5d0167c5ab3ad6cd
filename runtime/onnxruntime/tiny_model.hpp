// A one-node ONNX model, serialised by hand (a few protobuf fields, no libonnx): Relu on a float32
// [1,4] tensor "x" -> "y", importing the default domain at a given opset. The `onnxruntime`
// plugin's self-test runs it, and its opset probe loads it at descending opsets to find the
// newest one the library imports.
//
// Thread safety: a pure function.
#pragma once

#include <cstdint>
#include <string>

namespace edgefleet::runtime::ort {

// The ModelProto bytes. ir_version follows the opset (ONNX's table: 8 up to opset 18, 9 for 19
// and 20, 10 for 21, 11 beyond), as an exporter would write it.
std::string TinyReluModel(std::int64_t opset);

}  // namespace edgefleet::runtime::ort
