// Single-node cases cut from real models, so that a backend's form table (onnx_forms.hpp) is
// measured on the forms exporters emit and not only on ONNX's conformance cases, whose inputs
// are all graph inputs where an exporter's weights are constants.
//
// A case is written in ONNX's node-case layout (node_cases.hpp) and then measured like any
// other: <root>/<op>_op<opset>_<hash>/model.onnx, test_data_set_{0,1}/input_K.pb, output_K.pb.
// The node keeps its attributes and its constant inputs (initializers, Constant nodes' values)
// as initializers; its computed inputs become graph inputs of the shape inference found, with
// a symbolic or unknown dimension (a batch) kept symbolic, filled with seeded normal values:
// data set 0 gives such dimensions size 1, data set 1 size 2. Each computed input reaches the
// node through a carrier, an Elu node named kCarrierPrefix<N> (claimed whole by OpenCV at every
// opset it has), because an engine may run a node fed straight by a graph input unlike one fed
// by a layer; DeriveFormTable attributes a case to its one node that is not a carrier. A node
// of constants only gets one unused graph input. The outputs
// are what a reference backend computes (ONNX Runtime), since no exporter output exists for one
// node.
//
// Thread safety: free functions; the backend is used as Backend's contract allows.
#pragma once

#include <cstddef>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::runtime {

inline constexpr std::string_view kCarrierPrefix = "edgefleet_carrier_";

struct FormCaseStats {
  std::size_t written = 0;
  std::size_t claimed_whole = 0;  // of the nodes seen, those whose operator the target claims
  std::size_t already_cut = 0;    // nodes whose form an earlier case has
  std::size_t not_cuttable = 0;   // no computed input, a non-float or unknown-shape one
  std::size_t reference_failed = 0;
  std::vector<std::string> notes;  // one line per node not cut or not run, with the reason
};

// Cuts the cases of `model_file`, one per node form and opset not in `cut` (extended with each
// one written; keys are FormKey() + "@<opset>"), whether `target` claims the operator whole or not:
// a claim made on conformance cases is tested on the forms exporters emit. A node without computed
// inputs gets a graph input nothing reads (a bundle's graph has inputs). Fails when the model
// cannot be read or a case cannot be written (naming the file); a node that cannot be cut or that
// the reference cannot run is noted, not an error.
Result<FormCaseStats> WriteFormCases(const std::filesystem::path& model_file,
                                     const std::filesystem::path& out_root, Backend& reference,
                                     const BackendCapabilities& target, std::set<std::string>& cut);

}  // namespace edgefleet::runtime
