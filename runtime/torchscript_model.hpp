// What a TorchScript file (torch.jit.save's zip archive) says about the operators it calls, read
// without libtorch: the serialized code of every module (`<archive>/code/**/*.py`, TorchScript's
// Python subset) is scanned for operator calls, `torch.<op>(...)` (an aten operator) and
// `ops.<namespace>.<op>(...)` (any other namespace, e.g. a custom operator library). Operators
// are named as manifests name them, "<domain>:<op>": "aten:_convolution", "my_ops:fancy". Each
// comes with the first code line that calls it, for messages ("the node").
//
// The archive is read with libarchive's zip reader, entry by entry, with caps on the entry count
// and on the code bytes read, so a hostile file costs bounded time and memory.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::runtime {

inline constexpr std::size_t kMaxTorchScriptEntries = 100000;
inline constexpr std::size_t kMaxTorchScriptCodeBytes = std::size_t{64} << 20;

struct TorchScriptOperator {
  std::string key;   // "aten:relu", "<namespace>:<op>"
  std::string node;  // "<code file>:<line>: <the line>", the first call
};

struct TorchScriptModelInfo {
  std::size_t code_files = 0;
  std::vector<TorchScriptOperator> operators;  // sorted by key, one entry each
};

// Operator calls in one code file's text (exposed for tests); `file` names it in `node`.
std::vector<TorchScriptOperator> ScanTorchScriptCode(std::string_view code,
                                                     const std::string& file);

// Reads `model_file`; fails naming the file when it is not a zip archive with TorchScript code,
// or past the caps.
Result<TorchScriptModelInfo> InspectTorchScript(const std::filesystem::path& model_file);

// The operator keys, for a manifest's "operators".
std::vector<std::string> TorchScriptOperatorKeys(const TorchScriptModelInfo& model);

}  // namespace edgefleet::runtime
