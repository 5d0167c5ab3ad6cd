// The parity smoke test (see runtime/parity.hpp).
#include "runtime/parity.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

namespace edgefleet::runtime {
namespace {

// labels.json holds one small integer per golden sample; 16 MiB is millions of labels, far more
// than a golden set on a box should hold, and keeps a hostile file from exhausting memory.
constexpr std::size_t kMaxLabelsBytes = 16u << 20;

std::string Fixed(double value, int digits = 3) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  return buffer;
}

std::string Sci(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.3g", value);
  return buffer;
}

std::string Describe(DType dtype, std::span<const std::int64_t> shape) {
  return std::string(ToString(dtype)) + " " + ShapeToString(shape);
}

std::string Describe(const TensorInfo& info) { return Describe(info.dtype, info.shape); }
std::string Describe(const Tensor& tensor) { return Describe(tensor.dtype, tensor.shape); }

std::string Names(const std::vector<TensorInfo>& infos) {
  std::string out;
  for (const auto& info : infos) out += (out.empty() ? "" : ", ") + info.name;
  return out.empty() ? "none" : out;
}

// IEEE 754 binary16 to float, for golden data exported in half precision.
float HalfToFloat(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal: shift the mantissa up until its leading one becomes the implicit bit.
    std::uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

template <typename T>
void AppendAs(const Tensor& tensor, std::vector<double>& out) {
  for (T v : tensor.As<T>()) out.push_back(static_cast<double>(v));
}

// Every element as double, whatever the dtype: comparisons and argmax then need one code path.
std::vector<double> ToDoubles(const Tensor& tensor) {
  std::vector<double> out;
  out.reserve(tensor.data.size() / ElementSize(tensor.dtype));
  switch (tensor.dtype) {
    case DType::kFloat32:
      AppendAs<float>(tensor, out);
      break;
    case DType::kFloat64:
      AppendAs<double>(tensor, out);
      break;
    case DType::kInt8:
      AppendAs<std::int8_t>(tensor, out);
      break;
    case DType::kUInt8:
      AppendAs<std::uint8_t>(tensor, out);
      break;
    case DType::kInt16:
      AppendAs<std::int16_t>(tensor, out);
      break;
    case DType::kInt32:
      AppendAs<std::int32_t>(tensor, out);
      break;
    case DType::kInt64:
      AppendAs<std::int64_t>(tensor, out);
      break;
    case DType::kFloat16:
      for (std::size_t i = 0; i + 1 < tensor.data.size(); i += 2) {
        std::uint16_t h;
        std::memcpy(&h, tensor.data.data() + i, sizeof(h));
        out.push_back(HalfToFloat(h));
      }
      break;
    case DType::kBool:
      for (std::byte b : tensor.data) out.push_back(b != std::byte{0} ? 1.0 : 0.0);
      break;
  }
  return out;
}

// The class of each batch row: the argmax over everything after the batch dimension (the last
// dimension for the usual [N, classes]); ties go to the first index, as numpy's argmax does.
std::vector<std::size_t> RowArgmax(const std::vector<double>& values, std::size_t rows) {
  std::vector<std::size_t> out(rows, 0);
  if (rows == 0) return out;
  const std::size_t width = values.size() / rows;
  for (std::size_t r = 0; r < rows; ++r) {
    const double* row = values.data() + r * width;
    std::size_t best = 0;
    for (std::size_t i = 1; i < width; ++i) {
      if (row[i] > row[best]) best = i;
    }
    out[r] = best;
  }
  return out;
}

std::size_t CountEqual(const std::vector<std::size_t>& a, const std::vector<std::size_t>& b) {
  std::size_t same = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) same += a[i] == b[i] ? 1 : 0;
  return same;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// Nearest-rank percentile: with 5 runs p95 is the slowest one, which is what a small sample can
// honestly say.
double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

// Per golden set: labels (nullopt = that sample has none). Sets absent from the file have no
// labels at all.
using LabelMap = std::map<std::string, std::vector<std::optional<std::int64_t>>, std::less<>>;

Result<std::string> ReadCapped(const std::filesystem::path& path, std::string_view name,
                               std::size_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) {
    return Fail(ErrorCode::kIntegrity,
                std::string(name) + ": cannot read (" + ec.message() + ") at " + path.string());
  }
  if (size > max_bytes) {
    return Fail(ErrorCode::kLimit, std::string(name) + ": " + std::to_string(size) +
                                       " bytes, more than the " + std::to_string(max_bytes) +
                                       " allowed");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (!in) return Fail(ErrorCode::kIntegrity, std::string(name) + ": read failed");
  return buffer.str();
}

Result<LabelMap> ReadLabels(const std::filesystem::path& path, std::string_view name,
                            const manifests::Manifest& manifest) {
  EF_ASSIGN_OR_RETURN(const std::string text, ReadCapped(path, name, kMaxLabelsBytes));
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kIntegrity, std::string(name) + ": not JSON: " + e.what());
  }
  if (!doc.is_object()) {
    return Fail(ErrorCode::kIntegrity, std::string(name) +
                                           ": expected an object {\"<set>\": [label, ...]}, "
                                           "found " +
                                           doc.type_name());
  }
  LabelMap labels;
  std::vector<std::string> problems;
  // The checks below make nlohmann's accessors safe; the catch is the module edge all the same.
  try {
    for (const auto& [set, values] : doc.items()) {
      const bool known = std::any_of(manifest.golden.begin(), manifest.golden.end(),
                                     [&set = set](const manifests::GoldenSet& g) {
                                       return g.name == set;  // clang 14: no binding captures
                                     });
      if (!known) {
        problems.push_back(std::string(name) + ": \"" + set +
                           "\": expected the name of a golden set of the manifest, found an "
                           "unknown one");
        continue;
      }
      if (!values.is_array()) {
        problems.push_back(std::string(name) + ": " + set +
                           ": expected an array of labels, found " + values.type_name());
        continue;
      }
      auto& out = labels[set];
      for (std::size_t i = 0; i < values.size(); ++i) {
        const auto& v = values[i];
        if (v.is_null()) {
          out.emplace_back();
        } else if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
          out.emplace_back(v.get<std::int64_t>());
        } else {
          problems.push_back(std::string(name) + ": " + set + "[" + std::to_string(i) +
                             "]: expected a class index (integer >= 0) or null, found " + v.dump());
          if (problems.size() >= 10) break;  // one bad file should not produce a megabyte of text
        }
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kIntegrity, std::string(name) + ": " + e.what());
  }
  if (!problems.empty()) {
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "\n") + p;
    return Fail(ErrorCode::kIntegrity, message);
  }
  return labels;
}

// Reads one golden file and checks it against the session's tensor it feeds or is compared with.
Result<Tensor> ReadGolden(const std::filesystem::path& bundle_dir, const std::string& file,
                          const TensorInfo& info, std::string_view role) {
  const auto path = bundle_dir / file;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Fail(ErrorCode::kIntegrity, file + ": missing: expected the golden " +
                                           std::string(role) + " '" + info.name + "' (" +
                                           Describe(info) + ") at " + path.string());
  }
  auto tensor = ReadTensorProto(path);
  if (!tensor) {
    return Fail(ErrorCode::kIntegrity, file + ": unreadable golden " + std::string(role) + " '" +
                                           info.name + "': " + tensor.error().message);
  }
  if (tensor->dtype != info.dtype || !ShapeMatches(tensor->shape, info.shape)) {
    return Fail(ErrorCode::kIntegrity, file + ": golden " + std::string(role) + " '" + info.name +
                                           "': expected " + Describe(info) + ", found " +
                                           Describe(*tensor));
  }
  if (tensor->shape.empty()) {
    return Fail(ErrorCode::kIntegrity, file + ": golden " + std::string(role) + " '" + info.name +
                                           "': expected a batch dimension, found a scalar");
  }
  if (auto valid = tensor->Validate(); !valid) {
    return Fail(ErrorCode::kIntegrity, file + ": " + valid.error().message);
  }
  return std::move(tensor).value();
}

struct LoadedSet {
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
  std::size_t rows = 0;
};

Result<LoadedSet> LoadSet(const manifests::GoldenSet& set, const Session& session,
                          const std::filesystem::path& bundle_dir) {
  const auto& in_infos = session.inputs();
  const auto& out_infos = session.outputs();
  if (set.inputs.size() != in_infos.size()) {
    return Fail(ErrorCode::kIntegrity,
                "golden set '" + set.name + "': expected " + std::to_string(in_infos.size()) +
                    " input file(s), one per model input (" + Names(in_infos) + "), found " +
                    std::to_string(set.inputs.size()));
  }
  if (set.outputs.size() != out_infos.size()) {
    return Fail(ErrorCode::kIntegrity,
                "golden set '" + set.name + "': expected " + std::to_string(out_infos.size()) +
                    " output file(s), one per model output (" + Names(out_infos) + "), found " +
                    std::to_string(set.outputs.size()));
  }
  if (set.outputs.empty()) {
    return Fail(ErrorCode::kIntegrity,
                "golden set '" + set.name + "': expected at least one output file, found none");
  }
  LoadedSet loaded;
  std::string first_file;
  auto check_rows = [&](const Tensor& t, const std::string& file) -> Status {
    const auto rows = static_cast<std::size_t>(t.shape[0]);
    if (first_file.empty()) {
      if (rows == 0) {
        return Fail(ErrorCode::kIntegrity, file + ": expected at least one batch row, found 0");
      }
      loaded.rows = rows;
      first_file = file;
    } else if (rows != loaded.rows) {
      return Fail(ErrorCode::kIntegrity, file + ": expected " + std::to_string(loaded.rows) +
                                             " batch rows (as in " + first_file + "), found " +
                                             std::to_string(rows));
    }
    return Ok();
  };
  for (std::size_t i = 0; i < in_infos.size(); ++i) {
    EF_ASSIGN_OR_RETURN(Tensor t, ReadGolden(bundle_dir, set.inputs[i], in_infos[i], "input"));
    EF_RETURN_IF_ERROR(check_rows(t, set.inputs[i]));
    // The manifest orders golden files like the model's inputs; the name inside the file is
    // whatever the exporter wrote, so feed by the session's name.
    t.name = in_infos[i].name;
    loaded.inputs.push_back(std::move(t));
  }
  for (std::size_t i = 0; i < out_infos.size(); ++i) {
    EF_ASSIGN_OR_RETURN(Tensor t, ReadGolden(bundle_dir, set.outputs[i], out_infos[i], "output"));
    EF_RETURN_IF_ERROR(check_rows(t, set.outputs[i]));
    loaded.outputs.push_back(std::move(t));
  }
  return loaded;
}

// Runs `inputs` once and checks that the first output can be compared with `expected`.
Result<Tensor> RunOnce(Session& session, const std::vector<Tensor>& inputs, const Tensor& expected,
                       const std::string& expected_file, std::string_view who) {
  auto outputs = session.Run(inputs);
  if (!outputs) return Unexpected(outputs.error().Wrap(std::string(who) + " run"));
  if (outputs->empty()) {
    return Fail(ErrorCode::kIntegrity, std::string(who) + " returned no outputs, expected " +
                                           Describe(expected) + " as in " + expected_file);
  }
  Tensor& first = outputs->front();
  if (first.dtype != expected.dtype || first.shape != expected.shape) {
    return Fail(ErrorCode::kIntegrity, std::string(who) + " output '" + first.name + "' is " +
                                           Describe(first) + ", expected " + Describe(expected) +
                                           " as in " + expected_file);
  }
  return std::move(first);
}

double ElapsedMs(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

nlohmann::json OptionalJson(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json OptionalJson(const std::optional<std::size_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json ParityReport::ToJson() const {
  nlohmann::json sets_json = nlohmann::json::array();
  for (const auto& s : sets) {
    sets_json.push_back({{"name", s.name},
                         {"samples", s.samples},
                         {"values_compared", s.values_compared},
                         {"values_out_of_tolerance", s.values_out_of_tolerance},
                         {"max_abs_diff", s.max_abs_diff},
                         {"max_rel_diff", s.max_rel_diff},
                         {"top1_agreement", s.top1_agreement},
                         {"labeled", OptionalJson(s.labeled)},
                         {"correct", OptionalJson(s.correct)},
                         {"active_agreement", OptionalJson(s.active_agreement)}});
  }
  nlohmann::json policy_json = {{"atol", policy.atol},
                                {"rtol", policy.rtol},
                                {"min_top1_agreement", policy.min_top1_agreement},
                                {"min_accuracy", OptionalJson(policy.min_accuracy)},
                                {"max_latency_factor", policy.max_latency_factor}};
  return {{"pass", pass},
          {"failures", failures},
          {"policy", std::move(policy_json)},
          {"samples", samples},
          {"top1_agreement", top1_agreement},
          {"accuracy", OptionalJson(accuracy)},
          {"latency_median_ms", latency_median_ms},
          {"latency_p95_ms", latency_p95_ms},
          {"active_agreement", OptionalJson(active_agreement)},
          {"active_latency_median_ms", OptionalJson(active_latency_median_ms)},
          {"latency_factor", OptionalJson(latency_factor)},
          {"sets", std::move(sets_json)}};
}

Result<ParityReport> RunParity(Session& candidate, const manifests::Manifest& manifest,
                               const std::filesystem::path& bundle_dir, Session* active,
                               const ParityOptions& options) {
  const auto& policy = manifest.parity;
  if (manifest.golden.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "manifest " + manifest.name + " " + manifest.version.ToString() +
                    ": no golden sets, so there is nothing to prove parity on");
  }
  LabelMap labels;
  if (manifest.labels) {
    EF_ASSIGN_OR_RETURN(labels,
                        ReadLabels(bundle_dir / *manifest.labels, *manifest.labels, manifest));
  }
  const int timed_runs = std::max(1, options.latency_runs);

  ParityReport report;
  report.policy = policy;
  std::size_t agree = 0;
  std::size_t labeled = 0;
  std::size_t correct = 0;
  std::size_t active_agree = 0;
  std::vector<double> candidate_ms;
  std::vector<double> active_ms;
  for (const auto& set : manifest.golden) {
    const std::string where = "golden set '" + set.name + "'";
    EF_ASSIGN_OR_RETURN(LoadedSet loaded, LoadSet(set, candidate, bundle_dir));
    const Tensor& expected = loaded.outputs.front();
    const std::string& expected_file = set.outputs.front();

    // Warm-up runs are untimed: first runs pay for allocation and lazy initialisation, which
    // says nothing about serving latency.
    auto first = RunOnce(candidate, loaded.inputs, expected, expected_file, "candidate");
    if (!first) return Unexpected(first.error().Wrap(where));
    Tensor got = std::move(first).value();
    std::optional<Tensor> active_got;
    std::vector<Tensor> active_inputs;
    if (active != nullptr) {
      // Fed by position: a new version may rename its inputs, and the golden files are ordered
      // like the model's inputs, not named after the previous model's.
      const auto& infos = active->inputs();
      if (infos.size() != loaded.inputs.size()) {
        return Fail(ErrorCode::kInvalidArgument,
                    where + ": the active model takes " + std::to_string(infos.size()) +
                        " input(s) (" + Names(infos) + "), the candidate " +
                        std::to_string(loaded.inputs.size()) + "; they cannot be compared");
      }
      active_inputs = loaded.inputs;
      for (std::size_t i = 0; i < infos.size(); ++i) active_inputs[i].name = infos[i].name;
      auto a = RunOnce(*active, active_inputs, expected, expected_file, "active model");
      if (!a) return Unexpected(a.error().Wrap(where));
      active_got = std::move(a).value();
    }
    // Candidate and active runs alternate so that drift in CPU frequency or load during the
    // measurement affects both medians alike.
    for (int run = 0; run < timed_runs; ++run) {
      auto start = std::chrono::steady_clock::now();
      auto r = candidate.Run(loaded.inputs);
      candidate_ms.push_back(ElapsedMs(start));
      if (!r) return Unexpected(r.error().Wrap(where + ": candidate timed run"));
      if (active != nullptr) {
        start = std::chrono::steady_clock::now();
        auto a = active->Run(active_inputs);
        active_ms.push_back(ElapsedMs(start));
        if (!a) return Unexpected(a.error().Wrap(where + ": active model timed run"));
      }
    }

    GoldenSetReport s;
    s.name = set.name;
    s.samples = loaded.rows;
    const std::vector<double> a = ToDoubles(got);
    const std::vector<double> b = ToDoubles(expected);
    s.values_compared = b.size();
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (std::isnan(a[i]) || std::isnan(b[i])) {
        // NaN equals NaN (numpy's assert_allclose does the same); NaN against a number cannot
        // be within any tolerance.
        if (std::isnan(a[i]) != std::isnan(b[i])) {
          ++s.values_out_of_tolerance;
          s.max_abs_diff = std::numeric_limits<double>::infinity();
        }
        continue;
      }
      const double diff = std::fabs(a[i] - b[i]);
      s.max_abs_diff = std::max(s.max_abs_diff, diff);
      // Relative difference is undefined where the expected value is 0 (common after ReLU);
      // those values are judged by atol alone.
      if (b[i] != 0) s.max_rel_diff = std::max(s.max_rel_diff, diff / std::fabs(b[i]));
      if (diff > policy.atol + policy.rtol * std::fabs(b[i])) ++s.values_out_of_tolerance;
    }
    const auto got_class = RowArgmax(a, loaded.rows);
    const auto expected_class = RowArgmax(b, loaded.rows);
    const std::size_t set_agree = CountEqual(got_class, expected_class);
    s.top1_agreement = static_cast<double>(set_agree) / static_cast<double>(loaded.rows);
    agree += set_agree;

    if (auto it = labels.find(set.name); it != labels.end()) {
      const auto& set_labels = it->second;
      if (set_labels.size() != loaded.rows) {
        return Fail(ErrorCode::kIntegrity,
                    *manifest.labels + ": " + set.name + ": expected " +
                        std::to_string(loaded.rows) + " labels, one per batch row of " +
                        set.inputs.front() + ", found " + std::to_string(set_labels.size()));
      }
      const std::size_t classes = b.size() / loaded.rows;
      std::size_t set_labeled = 0;
      std::size_t set_correct = 0;
      for (std::size_t r = 0; r < loaded.rows; ++r) {
        if (!set_labels[r]) continue;
        const auto label = static_cast<std::size_t>(*set_labels[r]);
        if (label >= classes) {
          return Fail(ErrorCode::kIntegrity,
                      *manifest.labels + ": " + set.name + "[" + std::to_string(r) +
                          "]: expected a class index below " + std::to_string(classes) +
                          " (the width of " + expected_file + "), found " + std::to_string(label));
        }
        ++set_labeled;
        set_correct += got_class[r] == label ? 1 : 0;
      }
      s.labeled = set_labeled;
      s.correct = set_correct;
      labeled += set_labeled;
      correct += set_correct;
    }

    if (active_got) {
      const auto active_class = RowArgmax(ToDoubles(*active_got), loaded.rows);
      const std::size_t set_active_agree = CountEqual(got_class, active_class);
      s.active_agreement = static_cast<double>(set_active_agree) / static_cast<double>(loaded.rows);
      active_agree += set_active_agree;
    }

    if (s.values_out_of_tolerance > 0) {
      report.failures.push_back(
          where + ": " + std::to_string(s.values_out_of_tolerance) + " of " +
          std::to_string(s.values_compared) + " values out of tolerance (|a-b| > atol " +
          Sci(policy.atol) + " + rtol " + Sci(policy.rtol) + " * |b|; max abs diff " +
          Sci(s.max_abs_diff) + ", max rel diff " + Sci(s.max_rel_diff) + ")");
    }
    report.samples += loaded.rows;
    report.sets.push_back(std::move(s));
  }

  const auto total = static_cast<double>(report.samples);
  report.top1_agreement = static_cast<double>(agree) / total;
  if (report.top1_agreement < policy.min_top1_agreement) {
    report.failures.push_back("top1_agreement " + Fixed(report.top1_agreement) +
                              " < min_top1_agreement " + Fixed(policy.min_top1_agreement) + " (" +
                              std::to_string(agree) + " of " + std::to_string(report.samples) +
                              " samples agree with the golden outputs)");
  }
  if (labeled > 0) {
    report.accuracy = static_cast<double>(correct) / static_cast<double>(labeled);
    if (policy.min_accuracy && *report.accuracy < *policy.min_accuracy) {
      report.failures.push_back("accuracy " + Fixed(*report.accuracy) + " < min_accuracy " +
                                Fixed(*policy.min_accuracy) + " (" + std::to_string(correct) +
                                " of " + std::to_string(labeled) + " labeled)");
    }
  }
  report.latency_median_ms = Median(candidate_ms);
  report.latency_p95_ms = Percentile(candidate_ms, 95);
  if (active != nullptr) {
    report.active_agreement = static_cast<double>(active_agree) / total;
    report.active_latency_median_ms = Median(active_ms);
    // A timer too coarse to see the active model run leaves no ratio to judge; 0 would make
    // every candidate infinitely slow.
    if (*report.active_latency_median_ms > 0) {
      report.latency_factor = report.latency_median_ms / *report.active_latency_median_ms;
      if (*report.latency_factor > policy.max_latency_factor) {
        report.failures.push_back("latency_factor " + Fixed(*report.latency_factor, 2) +
                                  " > max_latency_factor " + Fixed(policy.max_latency_factor, 2) +
                                  " (candidate median " + Fixed(report.latency_median_ms) +
                                  " ms, active median " + Fixed(*report.active_latency_median_ms) +
                                  " ms)");
      }
    }
  }
  report.pass = report.failures.empty();
  return report;
}

}  // namespace edgefleet::runtime
