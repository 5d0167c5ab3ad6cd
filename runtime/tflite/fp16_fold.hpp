// Folds a TFLite model's float16 weights into float32 before Arm NN 20.08 parses it.
//
// Models converted with float16 quantization (all of MediaPipe's: face detection, hands, pose,
// selfie segmentation) store each weight tensor as FLOAT16 and convert it at run time with a
// DEQUANTIZE operator whose output feeds the convolution. Arm NN 20.08's TfLiteParser wants
// constant weights and refuses such a model ("Buffer #0 has 0 bytes"). This rewrites the file the
// way TFLite's own delegates see it: for each DEQUANTIZE whose input is a constant FLOAT16 tensor
// used by nothing else, the tensor becomes FLOAT32 with the converted values, the DEQUANTIZE's
// consumers read it directly, and the DEQUANTIZE is dropped.
//
// The rewrite patches the flatbuffer in place and appends the float32 data at its end (a
// flatbuffer's offsets point forward, so new data after everything else is reachable from any
// table): the model's structure, names and every other byte stay as they were. Every offset read
// is checked against the file; a file this does not understand is left unchanged, and the parser
// then says what it thinks of it.
//
// Standard library only, like runtime/plugin_kit.hpp: the plugin links nothing of edgefleet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace edgefleet::runtime::tflite {

struct FoldResult {
  std::size_t folded = 0;  // DEQUANTIZE operators removed (their weights now float32)
};

// Rewrites `model` (a whole .tflite file) in place, whole or not at all. Never throws on
// malformed input (only std::bad_alloc, before any byte changed); a malformed or unexpected file
// is left as it was, with folded 0.
FoldResult FoldFloat16Weights(std::vector<std::uint8_t>& model);

}  // namespace edgefleet::runtime::tflite
