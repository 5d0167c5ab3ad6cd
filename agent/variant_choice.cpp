// Choosing the variant a box serves by measurement (see agent/variant_choice.hpp).
#include "agent/variant_choice.hpp"

#include <algorithm>
#include <cstdio>

#include "manifests/join.hpp"
namespace edgefleet::agent {
namespace {

std::string Reason(const VariantTrial& trial) {
  if (trial.error) return trial.error->message;
  if (trial.report && !trial.report->pass) return "parity: " + Join(trial.report->failures, "; ");
  return "passed";
}

std::string Label(const manifests::Manifest& manifest, const VariantTrial& trial) {
  return "variant '" + manifest.variants[trial.choice.variant_index].id + "' on " +
         trial.choice.backend->capabilities().name;
}

// Loads and proves one variant; the session is kept in `session` when parity passed.
VariantTrial Try(const runtime::VariantChoice& choice, const MeasureRequest& request,
                 std::shared_ptr<runtime::Session>& session) {
  VariantTrial trial{choice, std::nullopt, std::nullopt};
  const manifests::Manifest& manifest = *request.manifest;
  const manifests::Variant& variant = manifest.variants[choice.variant_index];
  const runtime::Backend& backend = *choice.backend;
  const auto file = request.slot_dir / variant.file;
  // An ONNX file is checked node by node against the manifest and the backend's table; other
  // formats are checked by their backend's load and by parity.
  if (variant.format == "onnx") {
    auto graph = runtime::InspectOnnx(file);
    if (!graph) {
      trial.error = graph.error();
      return trial;
    }
    if (auto ok = runtime::CheckGraph(*graph, variant, backend.capabilities(), request.model);
        !ok) {
      trial.error = ok.error();
      return trial;
    }
  }
  auto loaded =
      const_cast<runtime::Backend&>(backend).Load(file, variant, request.options(backend, variant));
  if (!loaded) {
    trial.error = loaded.error();
    return trial;
  }
  std::shared_ptr<runtime::Session> candidate = std::move(loaded).value();
  auto report = runtime::RunParity(*candidate, manifest, request.slot_dir, request.active);
  if (!report) {
    trial.error = report.error();
    return trial;
  }
  trial.report = std::move(*report);
  if (trial.report->pass) session = std::move(candidate);
  return trial;
}

}  // namespace

Result<VariantMeasurement> MeasureVariants(const std::vector<runtime::VariantChoice>& runnable,
                                           const MeasureRequest& request) {
  if (runnable.empty()) return Fail(ErrorCode::kUnsupported, "no variant can run on this box");
  VariantMeasurement m;
  std::vector<std::shared_ptr<runtime::Session>> sessions;  // per trial, passing ones only
  for (const auto& choice : runnable) {
    std::shared_ptr<runtime::Session> session;
    m.trials.push_back(Try(choice, request, session));
    sessions.push_back(std::move(session));
  }
  double fastest = 0;
  bool any = false;
  for (const auto& trial : m.trials) {
    if (!trial.pass()) continue;
    fastest =
        any ? std::min(fastest, trial.report->latency_median_ms) : trial.report->latency_median_ms;
    any = true;
  }
  for (std::size_t i = 0; any && i < m.trials.size(); ++i) {
    if (m.trials[i].pass() &&
        m.trials[i].report->latency_median_ms <= fastest * (1 + kTieFraction)) {
      m.chosen = i;
      m.session = std::move(sessions[i]);
      break;
    }
  }
  return m;  // the other sessions are released here
}

nlohmann::json VariantMeasurement::ReportJson(const manifests::Manifest& manifest) const {
  nlohmann::json report;
  if (chosen && trials[*chosen].report) {
    const VariantTrial& best = trials[*chosen];
    report = best.report->ToJson();
    report["variant"] = manifest.variants[best.choice.variant_index].id;
    report["backend"] = best.choice.backend->capabilities().name;
  } else {
    std::vector<std::string> failures;
    for (const auto& trial : trials)
      failures.push_back(Label(manifest, trial) + ": " + Reason(trial));
    report = {{"pass", false}, {"failures", failures}};
  }
  nlohmann::json variants = nlohmann::json::array();
  for (std::size_t i = 0; i < trials.size(); ++i) {
    const VariantTrial& t = trials[i];
    const manifests::Variant& v = manifest.variants[t.choice.variant_index];
    variants.push_back({{"variant", v.id},
                        {"format", v.format},
                        {"backend", t.choice.backend->capabilities().name},
                        {"backend_version", t.choice.backend->capabilities().version.ToString()},
                        {"latency_median_ms", t.report ? nlohmann::json(t.report->latency_median_ms)
                                                       : nlohmann::json(nullptr)},
                        {"pass", t.pass()},
                        {"chosen", chosen == i},
                        {"reason", Reason(t)}});
  }
  report["variants"] = std::move(variants);
  return report;
}

std::string ChoiceReason(const manifests::Manifest& manifest, const VariantMeasurement& measured) {
  constexpr std::size_t kMaxFailure = 100;
  std::string out;
  if (measured.chosen) {
    const VariantTrial& best = measured.trials[*measured.chosen];
    out = "variant " + manifest.variants[best.choice.variant_index].id + " on " +
          best.choice.backend->capabilities().name + ", ";
  }
  out += "fastest of " + std::to_string(measured.trials.size()) + " measured: ";
  for (std::size_t i = 0; i < measured.trials.size(); ++i) {
    const VariantTrial& t = measured.trials[i];
    out += (i ? "; " : "") + manifest.variants[t.choice.variant_index].id + " on " +
           t.choice.backend->capabilities().name;
    if (t.pass()) {
      char ms[32];
      std::snprintf(ms, sizeof ms, " %.3f ms", t.report->latency_median_ms);
      out += ms;
    } else {
      std::string why = Reason(t);
      if (why.size() > kMaxFailure) why = why.substr(0, kMaxFailure) + "...";
      out += " failed: " + why;
    }
  }
  return out;
}

Error VariantMeasurement::Failure(const manifests::Manifest& manifest) const {
  if (trials.empty()) return Error{ErrorCode::kUnsupported, "no variant was tried"};
  const VariantTrial& first = trials.front();
  const ErrorCode code = first.error ? first.error->code : ErrorCode::kIntegrity;
  if (trials.size() == 1) return Error{code, Reason(first)};
  std::vector<std::string> reasons;
  for (const auto& trial : trials) reasons.push_back(Label(manifest, trial) + ": " + Reason(trial));
  return Error{code, "no variant passed: " + Join(reasons, "; ")};
}

}  // namespace edgefleet::agent
