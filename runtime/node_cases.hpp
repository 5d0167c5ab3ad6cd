// ONNX node test cases run through a Backend, and the operator table they justify.
//
// A case is a directory in the layout of ONNX's conformance data (Debian's libonnx-testdata,
// /usr/share/libonnx-testdata/data/node) and of tests/data/onnx/node:
//   <case>/model.onnx, <case>/test_data_set_N/input_K.pb, <case>/test_data_set_N/output_K.pb
// A backend's supported-operator table is derived from these results (edgefleet_measure_ops
// writes it; tests/runtime/op_table_test.cpp checks it), so the table claims only what was seen
// to load and match.
//
// Thread safety: free functions; RunNodeCase uses the backend as Backend's contract allows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"
#include "runtime/compat.hpp"

namespace edgefleet::runtime {

// Output comparison as numpy.testing.assert_allclose: |got - want| <= atol + rtol * |want|.
// ONNX's backend test runner uses rtol 1e-3 with atol 1e-7; 1e-7 is below float32 resolution
// for values of order one, and a backend that sums in another order (SIMD, Winograd) lands
// values that cancel to near zero a few 1e-6 away from numpy's float64 reference. 1e-5 is still
// far below anything that changes a model's output, and stricter than a manifest's parity atol.
struct NodeCaseTolerance {
  double rtol = 1e-3;
  double atol = 1e-5;
};

// Empty when `got` equals `want` within `tolerance` (dtype and shape exactly, integers exactly);
// otherwise what differs ("element 12: 0.5, expected 0.25").
std::string CompareTensors(const Tensor& got, const Tensor& want,
                           const NodeCaseTolerance& tolerance);

enum class NodeCaseOutcome {
  kPass,           // every test data set ran and matched
  kMismatch,       // ran, but an output differs (dtype, shape or values)
  kRunFailed,      // loaded, but Run failed
  kLoadFailed,     // the backend refused the model
  kNotRun,         // cannot be attempted: graph or data outside what edgefleet tensors hold
  kNotApplicable,  // no bundle can hold it (a graph without inputs or outputs): says nothing
                   // about its operators, so the table ignores it
};
std::string_view ToString(NodeCaseOutcome outcome);

struct NodeOp {
  std::string domain;  // "" for ai.onnx
  std::string op;
  int opset = 0;  // the case's import of `domain`
  auto operator<=>(const NodeOp&) const = default;
};

// One node of a case with its form (runtime/onnx_forms.hpp).
struct NodeCaseNode {
  NodeOp op;
  std::string form;
  std::string name;
};

struct NodeCaseResult {
  std::string name;                 // the directory's name
  std::vector<NodeOp> ops;          // distinct operators of the graph, sorted
  std::vector<NodeCaseNode> nodes;  // every node, in graph order
  NodeCaseOutcome outcome = NodeCaseOutcome::kNotRun;
  std::string detail;  // why it did not pass
};

// Case directories under `root` (those holding model.onnx), sorted by name. kNotFound when
// `root` does not exist.
Result<std::vector<std::filesystem::path>> ListNodeCases(const std::filesystem::path& root);

// The variant a case's graph is loaded as: its own opset, operators, inputs and outputs.
manifests::Variant CaseVariant(const GraphInfo& graph, const std::string& id);

// Inspects, loads (a Variant built from the graph's own inputs and outputs) and runs one case on
// every test data set, comparing with `tolerance`. Never fails: the outcome says what happened.
NodeCaseResult RunNodeCase(Backend& backend, const std::filesystem::path& case_dir,
                           const NodeCaseTolerance& tolerance = {});

// The operator table the results justify (the rule is in node_cases.cpp), sorted by domain, op
// and opset.
std::vector<OperatorSupport> DeriveOperatorTable(const std::vector<NodeCaseResult>& results);

// The form table the results justify for operators `table` does not claim at a case's opset (the
// rule is in node_cases.cpp): a form runs when every case measuring it passed, fails (with the
// first failure's outcome and detail as its reason) when one did not. Not-run and
// not-applicable cases say nothing about a form. Only operator versions with a running form
// have rows. Sorted by domain, op, opset and form.
std::vector<FormClaim> DeriveFormTable(const std::vector<NodeCaseResult>& results,
                                       const std::vector<OperatorSupport>& table);

// True when `caps` (operator and form tables) predicts that every node of the case runs.
bool ClaimsCover(const BackendCapabilities& caps, const NodeCaseResult& result);

// One `{"<domain>", "<Op>", <min>, <max>, "<form>", EF_FORM_RUNS|EF_FORM_FAILS, "<why>"},` line
// per claim (C string escapes), the format of supported_forms.inc.
std::string FormatFormTable(const std::vector<FormClaim>& forms);

// True when every operator of the case is claimed by `table` at the case's opset: the table
// predicts that this case runs. False for a case whose operators are unknown (not inspected).
bool ClaimCovers(const std::vector<OperatorSupport>& table, const NodeCaseResult& result);

// The results whose case uses `entry.op` of `entry.domain` at an opset inside the entry's range
// (not-applicable cases left out).
std::vector<const NodeCaseResult*> CasesCoveredBy(const std::vector<NodeCaseResult>& results,
                                                  const OperatorSupport& entry);

// One `{"<domain>", "<Op>", <min>, <max>},` line per entry, the format of supported_ops.inc.
std::string FormatOperatorTable(const std::vector<OperatorSupport>& table);

}  // namespace edgefleet::runtime
