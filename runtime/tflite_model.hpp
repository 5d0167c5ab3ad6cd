// What a TensorFlow Lite model file says about itself: its schema version, the operators its main
// subgraph runs and that subgraph's inputs and outputs. `bundle create` fills a tflite variant's
// requirements from it, as compat.hpp's InspectOnnx does for ONNX.
//
// A .tflite file is a FlatBuffer of TFLite's schema.fbs (root table Model, file identifier
// "TFL3"). No FlatBuffers library is linked: a small reader checks every offset, vtable, vector
// and string against the file's size before it reads, takes an absent field (or a vtable too
// short to have it) as the schema's default, and reads a fixed depth of tables (Model, its
// OperatorCodes and subgraph 0 with its Tensors and Operators), so a hostile file ends in an error,
// never in a read outside the bytes. The work is linear in the file: operator codes and the
// inputs and outputs read are capped (kLimit), subgraph 0's operator nodes are read once each,
// and vectors that many tables may share (operator inputs, intermediate tensors) are not walked.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::runtime {

// The only schema version TFLite's converter has written since buffers moved out of tensors; the
// interpreter refuses any other. A tflite variant's manifest "opset" is this version.
inline constexpr std::uint32_t kTfliteSchemaVersion = 3;
// The largest file read (FlatBuffers cannot address 2 GiB; the ONNX cap is the same 1 GiB).
inline constexpr std::uintmax_t kMaxTfliteBytes = 1ull << 30;
// More operator codes than any real model has (TFLite names about 200 builtins); the cap bounds
// the memory their names take.
inline constexpr std::size_t kMaxTfliteOperatorCodes = 4096;
// Subgraph 0's inputs and outputs each, and dimensions per tensor.
inline constexpr std::size_t kMaxTfliteGraphTensors = 4096;
inline constexpr std::size_t kMaxTfliteRank = 64;
// A custom operator's name or a tensor name.
inline constexpr std::size_t kMaxTfliteNameBytes = 4096;
// Builtin code 32: the operator is named by the file's custom_code.
inline constexpr std::int32_t kTfliteCustomCode = 32;
// The manifest's domain for custom operators: "custom:<custom_code>" (compat.hpp's
// "<domain>:<op>"), so a backend that claims no such operator refuses the variant before download.
inline constexpr std::string_view kTfliteCustomDomain = "custom";

struct TfliteOperator {
  std::string name;  // "CONV_2D"; the custom_code when `custom`; "BUILTIN_<code>" when unnamed
  bool custom = false;
  std::int32_t builtin_code = 0;  // max(deprecated_builtin_code, builtin_code), as TFLite reads it
  std::int32_t version = 1;
  std::size_t first_node = 0;  // index of the first node of subgraph 0 that runs it (messages)
};

struct TfliteModelInfo {
  std::uint32_t schema_version = 0;
  std::size_t subgraph_count = 0;
  std::size_t node_count = 0;  // operator nodes of subgraph 0
  // The operators subgraph 0's nodes run, one entry per (operator, version), sorted by
  // TfliteOperatorKey and version.
  std::vector<TfliteOperator> operators;
  // Subgraph 0's inputs and outputs in order: names, dtypes, and shapes from shape_signature
  // when the file has it (-1 for a dynamic dimension), else from shape.
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
};

// Reads `bytes`, a .tflite file that messages call `where`. Fails with kParse naming `where`, the
// schema path and what is wrong ("model.tflite: operator_codes[3].custom_code: string of 9000
// bytes at byte 1234 runs past the end of the file (size 1000)"; names from the file are quoted
// and escaped), kUnsupported for another schema version or a tensor type edgefleet tensors
// cannot hold (STRING, COMPLEX64, ...), kLimit over a cap above.
Result<TfliteModelInfo> InspectTflite(std::string_view bytes, const std::string& where);
// The same for a file (kIo or kLimit from reading it, naming it).
Result<TfliteModelInfo> InspectTflite(const std::filesystem::path& model_file);

// "CONV_2D" for code 3; "BUILTIN_<code>" for a code this build has no name for.
std::string TfliteBuiltinName(std::int32_t code);

// The manifest's spelling of an operator: the builtin name, or "custom:<custom_code>".
std::string TfliteOperatorKey(const TfliteOperator& op);
// The operators of `model` as a manifest lists them, sorted and without repeats.
std::vector<std::string> TfliteOperatorKeys(const TfliteModelInfo& model);

}  // namespace edgefleet::runtime
