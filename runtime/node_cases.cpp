// Node test cases through a backend, and the operator table derived from them (node_cases.hpp).
#include "runtime/node_cases.hpp"

#include <onnx/defs/schema.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>

#include "runtime/compat.hpp"
#include "runtime/form_cases.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

// IEEE 754 binary16 to float, for comparing float16 outputs.
float HalfToFloat(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits = 0;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa != 0) {
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  } else {
    bits = sign;
  }
  float value = 0;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

std::optional<std::vector<double>> AsDoubles(const Tensor& t) {
  std::vector<double> out;
  auto append = [&](auto span) {
    out.assign(span.begin(), span.end());
    return true;
  };
  switch (t.dtype) {
    case DType::kFloat32:
      append(t.As<float>());
      break;
    case DType::kFloat64:
      append(t.As<double>());
      break;
    case DType::kFloat16: {
      for (std::size_t i = 0; i + 1 < t.data.size(); i += 2) {
        std::uint16_t h = 0;
        std::memcpy(&h, t.data.data() + i, 2);
        out.push_back(HalfToFloat(h));
      }
      break;
    }
    default:
      return std::nullopt;
  }
  return out;
}

}  // namespace

std::string CompareTensors(const Tensor& got, const Tensor& want,
                           const NodeCaseTolerance& tolerance) {
  if (got.dtype != want.dtype) {
    return "dtype " + std::string(ToString(got.dtype)) + ", expected " +
           std::string(ToString(want.dtype));
  }
  if (got.shape != want.shape) {
    return "shape " + ShapeToString(got.shape) + ", expected " + ShapeToString(want.shape);
  }
  if (got.data.size() != want.data.size()) return "data size differs";
  const auto g = AsDoubles(got);
  const auto w = AsDoubles(want);
  if (!g || !w) {
    // Integers and booleans: exact.
    return got.data == want.data ? "" : "values differ (exact comparison)";
  }
  for (std::size_t i = 0; i < w->size(); ++i) {
    const double a = (*g)[i];
    const double b = (*w)[i];
    if (std::isnan(a) && std::isnan(b)) continue;
    if (std::isinf(b) && a == b) continue;
    if (!(std::fabs(a - b) <= tolerance.atol + tolerance.rtol * std::fabs(b))) {
      std::ostringstream text;
      text << "element " << i << ": " << a << ", expected " << b;
      return text.str();
    }
  }
  return "";
}

namespace {

manifests::TensorSpec ToSpec(const TensorInfo& info) {
  return {info.name, std::string(ToString(info.dtype)), info.shape};
}

// The schema version of `op` in force at `opset` and the last opset where it still is (the
// highest opset this libonnx knows when no later version exists). nullopt for an operator libonnx
// does not define at that opset.
std::optional<std::pair<int, int>> SchemaRange(const NodeOp& op) {
  const auto* schema = onnx::OpSchemaRegistry::Schema(op.op, op.opset, op.domain);
  if (schema == nullptr) return std::nullopt;
  const int since = schema->since_version();
  const auto& ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  const auto domain_range = ranges.find(op.domain);
  if (domain_range == ranges.end()) return std::nullopt;
  const int last_known = domain_range->second.second;
  int until = std::max(op.opset, since);
  while (until < last_known) {
    const auto* next = onnx::OpSchemaRegistry::Schema(op.op, until + 1, op.domain);
    if (next == nullptr || next->since_version() != since) break;
    ++until;
  }
  return std::make_pair(since, until);
}

}  // namespace

std::string_view ToString(NodeCaseOutcome outcome) {
  switch (outcome) {
    case NodeCaseOutcome::kPass:
      return "pass";
    case NodeCaseOutcome::kMismatch:
      return "mismatch";
    case NodeCaseOutcome::kRunFailed:
      return "run-failed";
    case NodeCaseOutcome::kLoadFailed:
      return "load-failed";
    case NodeCaseOutcome::kNotRun:
      return "not-run";
    case NodeCaseOutcome::kNotApplicable:
      return "not-applicable";
  }
  return "?";
}

Result<std::vector<fs::path>> ListNodeCases(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return Fail(ErrorCode::kNotFound, root.string() + ": not a directory");
  }
  std::vector<fs::path> cases;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (fs::is_regular_file(it->path() / "model.onnx")) cases.push_back(it->path());
  }
  if (ec) return Fail(ErrorCode::kIo, root.string() + ": " + ec.message());
  std::sort(cases.begin(), cases.end());
  return cases;
}

manifests::Variant CaseVariant(const GraphInfo& graph, const std::string& id) {
  manifests::Variant variant;
  variant.id = id;
  variant.file = "model.onnx";
  variant.format = "onnx";
  const auto default_import = graph.opset_imports.find("");
  variant.opset =
      default_import == graph.opset_imports.end() ? 0 : static_cast<int>(default_import->second);
  variant.operators = OperatorKeys(graph);
  for (const auto& input : graph.inputs) variant.inputs.push_back(ToSpec(input));
  for (const auto& output : graph.outputs) variant.outputs.push_back(ToSpec(output));
  return variant;
}

NodeCaseResult RunNodeCase(Backend& backend, const fs::path& case_dir,
                           const NodeCaseTolerance& tolerance) {
  NodeCaseResult result;
  result.name = case_dir.filename().string();
  auto graph = InspectOnnx(case_dir / "model.onnx");
  if (!graph) {
    result.detail = graph.error().message;
    return result;
  }
  std::set<NodeOp> ops;
  for (const auto& node : graph->nodes) {
    const auto import = graph->opset_imports.find(node.domain);
    const int opset = import == graph->opset_imports.end() ? 0 : static_cast<int>(import->second);
    ops.insert({node.domain, node.op_type, opset});
    result.nodes.push_back({{node.domain, node.op_type, opset}, node.form, node.name});
  }
  result.ops.assign(ops.begin(), ops.end());

  const manifests::Variant variant = CaseVariant(*graph, result.name);

  // A graph without inputs (test_constant) or outputs cannot be a variant: a manifest declares at
  // least one of each. Not run, rather than a load failure the backend is blamed for.
  if (variant.inputs.empty() || variant.outputs.empty()) {
    result.outcome = NodeCaseOutcome::kNotApplicable;
    result.detail = "a graph without inputs or outputs cannot be a bundle variant";
    return result;
  }
  // Test data first: a case whose data edgefleet tensors cannot hold is not the backend's fault.
  std::vector<std::pair<std::vector<Tensor>, std::vector<Tensor>>> data_sets;
  std::vector<fs::path> set_dirs;
  std::error_code ec;
  for (fs::directory_iterator it(case_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory() && it->path().filename().string().rfind("test_data_set_", 0) == 0) {
      set_dirs.push_back(it->path());
    }
  }
  std::sort(set_dirs.begin(), set_dirs.end());
  if (set_dirs.empty()) {
    result.detail = "no test_data_set_N directory";
    return result;
  }
  for (const auto& dir : set_dirs) {
    std::vector<Tensor> inputs;
    std::vector<Tensor> outputs;
    for (std::size_t k = 0; k < graph->inputs.size(); ++k) {
      auto tensor = ReadTensorProto(dir / ("input_" + std::to_string(k) + ".pb"));
      if (!tensor) {
        result.detail = tensor.error().message;
        return result;
      }
      tensor->name = graph->inputs[k].name;
      inputs.push_back(std::move(*tensor));
    }
    for (std::size_t k = 0; k < graph->outputs.size(); ++k) {
      auto tensor = ReadTensorProto(dir / ("output_" + std::to_string(k) + ".pb"));
      if (!tensor) {
        result.detail = tensor.error().message;
        return result;
      }
      outputs.push_back(std::move(*tensor));
    }
    data_sets.emplace_back(std::move(inputs), std::move(outputs));
  }

  // Backends must not throw (backend.hpp); a throw here is still a failed case, not a crash of
  // the measurement.
  try {
    SessionOptions options;
    options.threads = 1;
    options.parallel_runs = 1;
    auto session = backend.Load(case_dir / "model.onnx", variant, options);
    if (!session) {
      result.outcome = NodeCaseOutcome::kLoadFailed;
      result.detail = session.error().message;
      return result;
    }
    for (std::size_t s = 0; s < data_sets.size(); ++s) {
      const std::string where = set_dirs[s].filename().string() + ": ";
      auto outputs = (*session)->Run(data_sets[s].first);
      if (!outputs) {
        result.outcome = NodeCaseOutcome::kRunFailed;
        result.detail = where + outputs.error().message;
        return result;
      }
      const auto& want = data_sets[s].second;
      if (outputs->size() != want.size()) {
        result.outcome = NodeCaseOutcome::kMismatch;
        result.detail = where + std::to_string(outputs->size()) + " outputs, expected " +
                        std::to_string(want.size());
        return result;
      }
      for (std::size_t k = 0; k < want.size(); ++k) {
        const auto difference = CompareTensors((*outputs)[k], want[k], tolerance);
        if (!difference.empty()) {
          result.outcome = NodeCaseOutcome::kMismatch;
          result.detail = where + "output " + std::to_string(k) + ": " + difference;
          return result;
        }
      }
    }
  } catch (const std::exception& e) {
    result.outcome = NodeCaseOutcome::kRunFailed;
    result.detail = std::string("backend threw: ") + e.what();
    return result;
  }
  result.outcome = NodeCaseOutcome::kPass;
  return result;
}

// The rule. ONNX gives an operator's behaviour at model opset N by its latest schema version
// <= N, so a case at opset N exercises exactly that schema version, which is in force from its
// since_version up to the opset before the next version (or, when there is none yet, up to the
// highest opset this libonnx knows: a later ONNX may add a version we have not seen). So a
// measured point extends to that range and no further: an unmeasured older or newer version of
// a measured operator stays unclaimed. Per (domain, op, schema version):
//  1. A candidate has at least one passing case, and no single-node case of it failed (a
//     single-node case is the test of that operator; not run counts as failed).
//  2. A failing multi-node case (ONNX's "_expanded" function bodies, for instance) whose
//     operators are all still candidates contradicts them together and we cannot tell which one
//     is at fault, so all of them are withdrawn; repeated until nothing changes. A failing
//     multi-node case with an operator that is not a candidate is explained by that operator.
// What is left is claimed. The invariant this gives, and op_table_test checks: every case whose
// operators are all claimed at its opsets passed.
std::vector<OperatorSupport> DeriveOperatorTable(const std::vector<NodeCaseResult>& results) {
  using Key = std::tuple<std::string, std::string, int>;
  struct Group {
    int until = 0;
    bool any_pass = false;
    bool single_node_failed = false;
  };
  std::map<Key, Group> groups;
  std::vector<std::pair<const NodeCaseResult*, std::vector<Key>>> cases;
  for (const auto& result : results) {
    if (result.outcome == NodeCaseOutcome::kNotApplicable) continue;
    const bool pass = result.outcome == NodeCaseOutcome::kPass;
    std::vector<Key> keys;
    bool all_known = true;
    for (const auto& op : result.ops) {
      const auto range = SchemaRange(op);
      if (!range) {
        all_known = false;  // not an ONNX-defined operator: never claimed
        continue;
      }
      Key key{op.domain, op.op, range->first};
      auto& group = groups[key];
      group.until = range->second;
      group.any_pass = group.any_pass || pass;
      if (!pass && result.ops.size() == 1) group.single_node_failed = true;
      keys.push_back(std::move(key));
    }
    if (!pass && all_known && !keys.empty()) cases.emplace_back(&result, std::move(keys));
  }
  std::set<Key> candidates;
  for (const auto& [key, group] : groups) {
    if (group.any_pass && !group.single_node_failed) candidates.insert(key);
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& [result, keys] : cases) {
      const bool all_candidates = std::all_of(
          keys.begin(), keys.end(), [&](const Key& k) { return candidates.count(k) != 0; });
      if (!all_candidates) continue;
      for (const auto& k : keys) candidates.erase(k);
      changed = true;
    }
  }
  std::vector<OperatorSupport> table;
  for (const auto& key : candidates) {
    const auto& [domain, op, since] = key;
    const int until = groups.at(key).until;
    // Adjacent claimed versions merge into one line: the claim is the same union of opsets.
    if (!table.empty() && table.back().domain == domain && table.back().op == op &&
        table.back().max_opset + 1 == since) {
      table.back().max_opset = until;
      continue;
    }
    table.push_back({domain, op, since, until});
  }
  return table;
}

bool ClaimCovers(const std::vector<OperatorSupport>& table, const NodeCaseResult& result) {
  if (result.ops.empty() || result.outcome == NodeCaseOutcome::kNotApplicable) return false;
  return std::all_of(result.ops.begin(), result.ops.end(), [&](const NodeOp& op) {
    return std::any_of(table.begin(), table.end(), [&](const OperatorSupport& e) {
      return e.domain == op.domain && e.op == op.op && e.min_opset <= op.opset &&
             op.opset <= e.max_opset;
    });
  });
}

std::vector<const NodeCaseResult*> CasesCoveredBy(const std::vector<NodeCaseResult>& results,
                                                  const OperatorSupport& entry) {
  std::vector<const NodeCaseResult*> covered;
  for (const auto& result : results) {
    if (result.outcome == NodeCaseOutcome::kNotApplicable) continue;  // no bundle can hold it
    const bool uses = std::any_of(result.ops.begin(), result.ops.end(), [&](const NodeOp& op) {
      return op.domain == entry.domain && op.op == entry.op && entry.min_opset <= op.opset &&
             op.opset <= entry.max_opset;
    });
    if (uses) covered.push_back(&result);
  }
  return covered;
}

// The form rule. A form extends over its operator's schema version, like an operator entry. Per
// (domain, op, schema version, form), from the cases that measure it (a single-node case, or a
// case where it is the one node whose operator the operator table does not claim): runs when
// every such case passed, fails when one loaded, ran or compared badly. For an operator the
// table claims whole only failing forms are kept (the claim was made on conformance cases,
// whose inputs all come from the graph; an export's constant inputs can still fail). Then, as for
// operators, a failing multi-node case whose every node the tables predict to run withdraws the
// "runs" forms among its nodes (they become unmeasured), until nothing changes. The invariant,
// which op_table_test checks: every case the two tables together predict to run passed.
std::vector<FormClaim> DeriveFormTable(const std::vector<NodeCaseResult>& results,
                                       const std::vector<OperatorSupport>& table) {
  using Key = std::tuple<std::string, std::string, int, std::string>;
  std::map<Key, FormClaim> claims;
  auto claimed_op = [&](const NodeOp& op) {
    return std::any_of(table.begin(), table.end(), [&](const OperatorSupport& e) {
      return e.domain == op.domain && e.op == op.op && e.min_opset <= op.opset &&
             op.opset <= e.max_opset;
    });
  };
  for (const auto& result : results) {
    if (result.outcome == NodeCaseOutcome::kNotApplicable ||
        result.outcome == NodeCaseOutcome::kNotRun) {
      continue;
    }
    // A case of one node (besides the carriers of a cut case, form_cases.hpp) measures that
    // node's form; a larger case the form of its one node whose operator the table does not
    // claim.
    std::vector<const NodeCaseNode*> nodes;
    for (const auto& node : result.nodes) {
      if (!node.name.starts_with(kCarrierPrefix)) nodes.push_back(&node);
    }
    const NodeCaseNode* measured = nodes.size() == 1 ? nodes.front() : nullptr;
    std::size_t unclaimed = 0;
    for (const auto* node : nodes) {
      if (nodes.size() == 1 || claimed_op(node->op)) continue;
      measured = node;
      ++unclaimed;
    }
    if (measured == nullptr || (nodes.size() > 1 && unclaimed != 1)) continue;
    const auto& node = *measured;
    // Of an operator claimed whole, only a failing form is news.
    if (claimed_op(node.op) && result.outcome == NodeCaseOutcome::kPass) continue;
    const auto range = SchemaRange(node.op);
    if (!range) continue;
    Key key{node.op.domain, node.op.op, range->first, node.form};
    auto [it, fresh] = claims.try_emplace(key);
    FormClaim& claim = it->second;
    if (fresh) {
      claim = {node.op.domain, node.op.op, range->first, range->second, node.form, true, ""};
    }
    if (result.outcome != NodeCaseOutcome::kPass && claim.runs) {
      claim.runs = false;
      std::string why = std::string(ToString(result.outcome)) + " (" + result.name + ")";
      if (!result.detail.empty()) why += ": " + result.detail.substr(0, 200);
      claim.why = std::move(why);
    }
  }
  BackendCapabilities caps;
  caps.operators = table;
  for (bool changed = true; changed;) {
    changed = false;
    caps.forms.clear();
    for (const auto& [key, claim] : claims) caps.forms.push_back(claim);
    for (const auto& result : results) {
      if (result.outcome == NodeCaseOutcome::kPass ||
          result.outcome == NodeCaseOutcome::kNotApplicable || result.nodes.size() < 2 ||
          !ClaimsCover(caps, result)) {
        continue;
      }
      for (const auto& node : result.nodes) {
        const auto range = SchemaRange(node.op);
        if (!range) continue;
        const auto found = claims.find(Key{node.op.domain, node.op.op, range->first, node.form});
        if (found != claims.end() && found->second.runs) {
          claims.erase(found);
          changed = true;
        }
      }
    }
  }
  // Rows of an operator version neither claimed whole nor with a running form add nothing: the
  // agent refuses its nodes by rule (BackendCapabilities::Judge, kRefused).
  std::set<std::tuple<std::string, std::string, int>> running;
  for (const auto& [key, claim] : claims) {
    if (claim.runs) running.emplace(claim.domain, claim.op, claim.min_opset);
  }
  std::vector<FormClaim> out;
  for (auto& [key, claim] : claims) {
    if (running.count({claim.domain, claim.op, claim.min_opset}) != 0 ||
        claimed_op({claim.domain, claim.op, claim.min_opset})) {
      out.push_back(std::move(claim));
    }
  }
  return out;
}

bool ClaimsCover(const BackendCapabilities& caps, const NodeCaseResult& result) {
  if (result.nodes.empty() || result.outcome == NodeCaseOutcome::kNotApplicable) return false;
  return std::all_of(result.nodes.begin(), result.nodes.end(), [&](const NodeCaseNode& node) {
    return caps.Judge(node.op.domain, node.op.op, node.op.opset, node.form) == FormVerdict::kRuns;
  });
}

namespace {

std::string CString(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f || c == '?') {
      // '?' escaped too: "??" followed by some characters is a trigraph in older C.
      char buffer[5];
      std::snprintf(buffer, sizeof buffer, "\\%03o", u);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

std::string FormatFormTable(const std::vector<FormClaim>& forms) {
  std::string text;
  for (const auto& f : forms) {
    text += "{" + CString(f.domain) + ", " + CString(f.op) + ", " + std::to_string(f.min_opset) +
            ", " + std::to_string(f.max_opset) + ", " + CString(f.form) + ", " +
            (f.runs ? "EF_FORM_RUNS" : "EF_FORM_FAILS") + ", " + CString(f.why) + "},\n";
  }
  return text;
}

std::string FormatOperatorTable(const std::vector<OperatorSupport>& table) {
  std::string text;
  for (const auto& entry : table) {
    text += "{\"" + entry.domain + "\", \"" + entry.op + "\", " + std::to_string(entry.min_opset) +
            ", " + std::to_string(entry.max_opset) + "},\n";
  }
  return text;
}

}  // namespace edgefleet::runtime
