// What `bundle create` learns from a variant's model file, so that an operator never types an
// operator list: for an ONNX file (format "onnx", or a .onnx file without a format) the format,
// the default-domain opset, the operators, the node forms and the inputs and outputs (names,
// dtypes, shapes) come from the graph (libonnx's checker runs first); for a TFLite file (format
// "tflite", or a .tflite file without a format; runtime/tflite_model.hpp) the format, the schema
// version as the opset (3), the builtin operators by name ("CONV_2D", custom ones as
// "custom:<custom_code>") and subgraph 0's inputs and outputs (-1 where shape_signature says the
// dimension is dynamic); for a TorchScript file (format "torchscript", or a .pt file;
// runtime/torchscript_model.hpp) the format, opset 1 and the operators its code calls
// ("aten:<op>"), its inputs and outputs staying as typed. A field bundle.json already gives is kept
// when it agrees with the file (inputs and outputs may narrow a dynamic dimension) and refused when
// it does not. Other formats are taken as typed (this build cannot read them).
//
// Thread safety: free functions.
#pragma once

#include <filesystem>
#include <map>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

// Fills spec["variants"][i] from the files under `source_dir` (or, for a file `generated` names,
// from where it was generated); one line per filled variant on `out`. Fails with the checker's
// or the TFLite reader's error naming the file, or kParse naming the field, what bundle.json says
// and what the file says.
Status FillVariantsFromFiles(nlohmann::json& spec, const std::filesystem::path& source_dir,
                             const std::filesystem::path& spec_path, std::ostream& out,
                             const std::map<std::string, std::filesystem::path>& generated = {});

}  // namespace edgefleet::deploy
