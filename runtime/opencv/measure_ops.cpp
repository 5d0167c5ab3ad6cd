// edgefleet_measure_ops: measures which ONNX operators a backend library really runs, and writes
// the table the backend claims (runtime/opencv/supported_ops.inc,
// runtime/onnxruntime/supported_ops.inc).
//
//   edgefleet_measure_ops [--library FILE] [--out FILE] [--report FILE]
//                         [--cut-from MODELS --reference LIBRARY --cases-out DIR]
//                         [--forms-out FILE] CASE_ROOT...
//
// Every node case under each CASE_ROOT (ONNX's conformance layout, see runtime/node_cases.hpp)
// is loaded and run through the real backend library (--library, by default the opencv plugin
// of this build tree), through the same plugin loader as the agent; the table keeps only operator
// schema versions all of whose cases passed (the rule is in runtime/node_cases.cpp). --report
// writes one line per case (name, outcome, operators, detail). Exit status: 0 written, 1 failure, 2
// bad usage.
//
// Forms (runtime/onnx_forms.hpp): --cut-from MODELS (repeatable; a directory of <name>/model.onnx,
// e.g. the zoo of tests/data/make_onnx_zoo.py) cuts single-node cases from real exports for the
// operators the library does not claim whole (runtime/form_cases.hpp), with outputs from the
// --reference library (the onnxruntime plugin), into --cases-out, which is then measured with
// the CASE_ROOTs. --forms-out writes the form table the results justify (supported_forms.inc).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/form_cases.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/plugin_backend.hpp"

namespace {

using edgefleet::runtime::NodeCaseOutcome;
using edgefleet::runtime::NodeCaseResult;

int Usage() {
  std::cerr << "usage: edgefleet_measure_ops [--library FILE] [--out FILE] [--report FILE] "
               "[--cut-from MODELS --reference LIBRARY --cases-out DIR] [--forms-out FILE] "
               "CASE_ROOT...\n";
  return 2;
}

std::string Command(int argc, char** argv) {
  std::string command = "edgefleet_measure_ops";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  return command;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path;
  std::string report_path;
  std::string library = EDGEFLEET_BACKENDS_DIR "/libedgefleet_backend_opencv.so";
  std::string reference_library;
  std::string cases_out;
  std::string forms_out;
  std::vector<std::string> cut_from;
  std::vector<std::string> roots;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if ((arg == "--out" || arg == "--report" || arg == "--library") && has_value) {
      (arg == "--out" ? out_path : arg == "--report" ? report_path : library) = argv[++i];
    } else if ((arg == "--reference" || arg == "--cases-out" || arg == "--forms-out") &&
               has_value) {
      (arg == "--reference"   ? reference_library
       : arg == "--cases-out" ? cases_out
                              : forms_out) = argv[++i];
    } else if (arg == "--cut-from" && has_value) {
      cut_from.emplace_back(argv[++i]);
    } else if (!arg.empty() && arg[0] == '-') {
      return Usage();
    } else {
      roots.push_back(arg);
    }
  }
  if (roots.empty() && cut_from.empty()) return Usage();
  if (!cut_from.empty() && (reference_library.empty() || cases_out.empty())) return Usage();

  auto backend = edgefleet::runtime::LoadBackendPlugin(library);
  if (!backend) {
    std::cerr << "edgefleet_measure_ops: " << backend.error().message << "\n";
    return 1;
  }
  const auto& capabilities = (*backend)->capabilities();

  if (!cut_from.empty()) {
    auto reference = edgefleet::runtime::LoadBackendPlugin(reference_library);
    if (!reference) {
      std::cerr << "edgefleet_measure_ops: " << reference.error().message << "\n";
      return 1;
    }
    std::set<std::string> cut;
    std::size_t written = 0;
    for (const auto& models : cut_from) {
      auto dirs = edgefleet::runtime::ListNodeCases(models);  // <name>/model.onnx, sorted
      if (!dirs) {
        std::cerr << "edgefleet_measure_ops: " << dirs.error().message << "\n";
        return 1;
      }
      for (const auto& dir : *dirs) {
        auto stats = edgefleet::runtime::WriteFormCases(dir / "model.onnx", cases_out, **reference,
                                                        capabilities, cut);
        if (!stats) {
          std::cerr << "edgefleet_measure_ops: " << stats.error().message << "\n";
          return 1;
        }
        for (const auto& note : stats->notes) std::cerr << "  " << note << "\n";
        written += stats->written;
      }
    }
    std::cout << "cut " << written << " form cases into " << cases_out << "\n";
    roots.push_back(cases_out);
  }

  // Cases cut from exports (the last root, with --cut-from) measure forms only: the operator
  // table is derived from the conformance and own node cases, as before.
  std::size_t conformance_count = 0;
  std::vector<NodeCaseResult> results;
  for (const auto& root : roots) {
    if (!cut_from.empty() && root == cases_out) conformance_count = results.size();
    auto cases = edgefleet::runtime::ListNodeCases(root);
    if (!cases) {
      std::cerr << "edgefleet_measure_ops: " << cases.error().message << "\n";
      return 1;
    }
    for (const auto& dir : *cases) {
      results.push_back(edgefleet::runtime::RunNodeCase(**backend, dir));
    }
  }

  if (cut_from.empty()) conformance_count = results.size();
  std::map<NodeCaseOutcome, int> counts;
  for (const auto& r : results) ++counts[r.outcome];
  const auto table = edgefleet::runtime::DeriveOperatorTable(
      {results.begin(), results.begin() + static_cast<std::ptrdiff_t>(conformance_count)});
  std::size_t covered = 0;
  for (const auto& r : results) covered += edgefleet::runtime::ClaimCovers(table, r) ? 1 : 0;

  const edgefleet::runtime::NodeCaseTolerance tolerance;
  const std::string summary_cases =
      std::to_string(results.size()) + " cases: " + std::to_string(counts[NodeCaseOutcome::kPass]) +
      " pass, " + std::to_string(counts[NodeCaseOutcome::kMismatch]) + " mismatch, " +
      std::to_string(counts[NodeCaseOutcome::kRunFailed]) + " run failed, " +
      std::to_string(counts[NodeCaseOutcome::kLoadFailed]) + " load failed, " +
      std::to_string(counts[NodeCaseOutcome::kNotRun]) + " not run, " +
      std::to_string(counts[NodeCaseOutcome::kNotApplicable]) + " not applicable;";
  const std::string summary_claim = std::to_string(table.size()) +
                                    " entries claimed, whose operators cover " +
                                    std::to_string(covered) + " cases entirely";
  const std::string summary = summary_cases + " " + summary_claim;
  std::cout << capabilities.name << " " << capabilities.version.ToString() << ": " << summary
            << "\n";

  if (!report_path.empty()) {
    std::ofstream report(report_path);
    for (const auto& r : results) {
      report << r.name << "\t" << edgefleet::runtime::ToString(r.outcome) << "\t";
      for (std::size_t i = 0; i < r.ops.size(); ++i) {
        report << (i ? "," : "") << (r.ops[i].domain.empty() ? "" : r.ops[i].domain + ":")
               << r.ops[i].op << "@" << r.ops[i].opset;
      }
      std::string detail = r.detail.substr(0, r.detail.find('\n'));
      report << "\t" << detail << "\n";
    }
    if (!report) {
      std::cerr << "edgefleet_measure_ops: cannot write " << report_path << "\n";
      return 1;
    }
  }

  if (!forms_out.empty()) {
    const auto forms = edgefleet::runtime::DeriveFormTable(results, table);
    std::size_t runs = 0;
    for (const auto& f : forms) runs += f.runs ? 1 : 0;
    std::ofstream out(forms_out, std::ios::trunc);
    out << "// The " << capabilities.name
        << " backend's measured ONNX form table, included inside an ef_form_claim\n"
           "// array initializer (its plugin's source beside this file). Generated; do not edit "
           "by hand.\n"
           "// Regenerate from the repository root with\n"
           "//   build/<dir>/runtime/"
        << Command(argc, argv) << "\n"
        << "// Measured on " << capabilities.name << " " << capabilities.version.ToString()
        << " with the operator table beside it: " << forms.size() << " forms, " << runs << " run, "
        << forms.size() - runs << " fail.\n"
        << "// A form spans its operator's schema version (the rule: runtime/node_cases.cpp,\n"
           "// DeriveFormTable; the check: tests/runtime/form_table_test.cpp).\n"
           "// Format: {\"<domain>\", \"<Op>\", <min>, <max>, \"<form>\", EF_FORM_RUNS|"
           "EF_FORM_FAILS, \"<why>\"},\n"
        << edgefleet::runtime::FormatFormTable(forms);
    out.close();
    if (!out) {
      std::cerr << "edgefleet_measure_ops: cannot write " << forms_out << "\n";
      return 1;
    }
  }

  const std::string body = edgefleet::runtime::FormatOperatorTable(table);
  if (out_path.empty()) {
    std::cout << body;
    return 0;
  }
  std::ofstream out(out_path, std::ios::trunc);
  out << "// The " << capabilities.name
      << " backend's measured ONNX operator table, included inside an\n"
         "// ef_operator array initializer (its plugin's source beside this file).\n"
         "// Generated; do not edit by hand. Regenerate from the repository root with\n"
         "//   build/<dir>/runtime/"
      << Command(argc, argv) << "\n"
      << "// Measured on " << capabilities.name << " " << capabilities.version.ToString() << ", "
      << "outputs within rtol " << tolerance.rtol << " and atol " << tolerance.atol << ":\n"
      << "//   " << summary_cases << "\n"
      << "//   " << summary_claim << "\n"
      << "// An entry spans the opsets where one schema version of the operator is in force. It "
         "is\n"
         "// claimed when a case of it passed, no single-node case of it failed, and no failing\n"
         "// case consists of claimed operators only (the rule: runtime/node_cases.cpp; the "
         "check:\n"
         "// tests/runtime/op_table_test.cpp).\n"
         "// Format: zero or more lines  {\"<domain>\", \"<Op>\", <min_opset>, <max_opset>},\n"
         "// with \"\" as the default ONNX domain.\n"
      << body;
  out.close();
  if (!out) {
    std::cerr << "edgefleet_measure_ops: cannot write " << out_path << "\n";
    return 1;
  }
  return 0;
}
