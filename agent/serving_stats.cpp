#include "agent/serving_stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

namespace edgefleet::agent {

struct ServingStats::VersionMetrics {
  VersionMetrics(std::string m, std::string v, std::size_t feedback_capacity)
      : model(std::move(m)), version(std::move(v)), accuracy(feedback_capacity) {}
  const std::string model;
  const std::string version;
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> successes{0};
  std::atomic<std::uint64_t> samples{0};  // inferences: successful requests' batch sizes
  std::atomic<std::uint64_t> client_errors{0};
  std::atomic<std::uint64_t> server_errors{0};
  std::atomic<std::uint64_t> preprocess_ns{0};
  std::atomic<std::uint64_t> infer_ns{0};
  std::atomic<std::uint64_t> postprocess_ns{0};
  telemetry::LatencyHistogram latency;         // since start (/metrics, watch window)
  telemetry::LatencyHistogram window_latency;  // since the last TakeWindows
  telemetry::LatencyHistogram queue;           // waits for a worker (/metrics)
  telemetry::AccuracyTracker accuracy;
  // Cumulative counters at the last TakeWindows; only the telemetry thread touches them.
  struct Mark {
    std::uint64_t requests = 0, client_errors = 0, server_errors = 0;
    std::uint64_t preprocess_ns = 0, infer_ns = 0, postprocess_ns = 0;
    telemetry::AccuracySnapshot accuracy;
  } mark;
};

// One entry per model version ever served, sorted so /metrics lists versions in a stable order.
// Entries are never removed, so callers keep plain pointers to them.
class ServingStats::Registry {
 public:
  explicit Registry(std::size_t feedback_capacity) : feedback_capacity_(feedback_capacity) {}

  VersionMetrics& Get(const std::string& model, const std::string& version) {
    {
      std::shared_lock lock(mu_);
      auto it = by_key_.find({model, version});
      if (it != by_key_.end()) return *it->second;
    }
    std::unique_lock lock(mu_);
    auto& slot = by_key_[{model, version}];
    if (!slot) slot = std::make_unique<VersionMetrics>(model, version, feedback_capacity_);
    return *slot;
  }

  const VersionMetrics* Find(const std::string& model, const std::string& version) const {
    std::shared_lock lock(mu_);
    auto it = by_key_.find({model, version});
    return it == by_key_.end() ? nullptr : it->second.get();
  }

  std::vector<VersionMetrics*> All() const {
    std::shared_lock lock(mu_);
    std::vector<VersionMetrics*> out;
    for (const auto& [key, metrics] : by_key_) out.push_back(metrics.get());
    return out;
  }

  std::vector<VersionMetrics*> ForModel(const std::string& model) const {
    std::shared_lock lock(mu_);
    std::vector<VersionMetrics*> out;
    for (auto it = by_key_.lower_bound({model, ""});
         it != by_key_.end() && it->first.first == model; ++it) {
      out.push_back(it->second.get());
    }
    return out;
  }

 private:
  const std::size_t feedback_capacity_;
  mutable std::shared_mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<VersionMetrics>> by_key_;
};

namespace {

void AddMs(std::atomic<std::uint64_t>& counter, double ms) {
  counter.fetch_add(static_cast<std::uint64_t>(std::max(0.0, ms) * 1e6), std::memory_order_relaxed);
}

std::uint64_t Load(const std::atomic<std::uint64_t>& a) {
  return a.load(std::memory_order_relaxed);
}

}  // namespace

ServingStats::ServingStats(std::size_t feedback_capacity)
    : registry_(std::make_unique<Registry>(feedback_capacity)) {}

ServingStats::~ServingStats() = default;

void ServingStats::RecordFailure(const std::string& model, const std::string& version, int status) {
  VersionMetrics& vm = registry_->Get(model, version);
  vm.requests.fetch_add(1, std::memory_order_relaxed);
  (status >= 500 ? vm.server_errors : vm.client_errors).fetch_add(1, std::memory_order_relaxed);
}

void ServingStats::RecordSuccess(const std::string& model, const std::string& version,
                                 const InferTiming& timing, const std::string& request_id,
                                 const std::optional<telemetry::Top1>& top1,
                                 std::uint64_t samples) {
  VersionMetrics& vm = registry_->Get(model, version);
  if (top1) vm.accuracy.RecordPrediction(request_id, *top1);
  vm.requests.fetch_add(1, std::memory_order_relaxed);
  vm.successes.fetch_add(1, std::memory_order_relaxed);
  vm.samples.fetch_add(samples, std::memory_order_relaxed);
  AddMs(vm.preprocess_ns, timing.preprocess_ms);
  AddMs(vm.infer_ns, timing.infer_ms);
  AddMs(vm.postprocess_ns, timing.postprocess_ms);
  vm.latency.Record(timing.total_ms);
  vm.window_latency.Record(timing.total_ms);
  vm.queue.Record(timing.queue_ms);
}

FeedbackResult ServingStats::Feedback(const std::string& model, const std::string& request_id,
                                      std::int64_t label) {
  FeedbackResult result;
  // The prediction lives with the version that served it; try each version of the model.
  for (VersionMetrics* vm : registry_->ForModel(model)) {
    if (!vm->accuracy.Knows(request_id)) continue;
    switch (vm->accuracy.Feedback(request_id, label)) {
      case telemetry::FeedbackOutcome::kCorrect:
        result.outcome = FeedbackResult::Outcome::kCorrect;
        break;
      case telemetry::FeedbackOutcome::kWrong:
        result.outcome = FeedbackResult::Outcome::kWrong;
        break;
      case telemetry::FeedbackOutcome::kDuplicate:
        result.outcome = FeedbackResult::Outcome::kDuplicate;
        break;
      case telemetry::FeedbackOutcome::kUnknownId:
        continue;  // evicted since Knows()
    }
    result.version = vm->version;
    result.accuracy = vm->accuracy.Snapshot();
    return result;
  }
  feedback_unknown_.fetch_add(1, std::memory_order_relaxed);
  return result;
}

VersionStats ServingStats::Stats(const std::string& model, const std::string& version) const {
  VersionStats stats;
  const VersionMetrics* vm = registry_->Find(model, version);
  if (!vm) return stats;
  stats.requests = Load(vm->requests);
  stats.client_errors = Load(vm->client_errors);
  stats.server_errors = Load(vm->server_errors);
  stats.latency = vm->latency.Snapshot();
  const telemetry::AccuracySnapshot acc = vm->accuracy.Snapshot();
  stats.labeled = acc.labeled;
  stats.correct = acc.correct;
  return stats;
}

std::vector<WindowStats> ServingStats::TakeWindows() {
  std::vector<WindowStats> out;
  for (VersionMetrics* vm : registry_->All()) {
    auto take = [](const std::atomic<std::uint64_t>& counter, std::uint64_t& mark) {
      const std::uint64_t now = Load(counter);
      const std::uint64_t delta = now - mark;
      mark = now;
      return delta;
    };
    VersionMetrics::Mark& m = vm->mark;
    WindowStats w;
    w.model = vm->model;
    w.version = vm->version;
    w.latency = vm->window_latency.SnapshotAndReset();
    w.requests = take(vm->requests, m.requests);
    w.client_errors = take(vm->client_errors, m.client_errors);
    w.server_errors = take(vm->server_errors, m.server_errors);
    w.preprocess_ms = static_cast<double>(take(vm->preprocess_ns, m.preprocess_ns)) / 1e6;
    w.infer_ms = static_cast<double>(take(vm->infer_ns, m.infer_ns)) / 1e6;
    w.postprocess_ms = static_cast<double>(take(vm->postprocess_ns, m.postprocess_ns)) / 1e6;
    // The tracker keeps running moments since start; the window's mean and variance are the
    // difference of the two running sums (n*mean and sum of squares = n*(var + mean^2)).
    const telemetry::AccuracySnapshot now = vm->accuracy.Snapshot();
    const telemetry::AccuracySnapshot& before = m.accuracy;
    w.labeled = now.labeled - before.labeled;
    w.correct = now.correct - before.correct;
    w.predictions = now.predictions - before.predictions;
    if (w.predictions > 0) {
      auto sums = [](const telemetry::AccuracySnapshot& s) {
        const double n = static_cast<double>(s.predictions);
        const double mean = s.confidence_mean;
        const double var = s.confidence_std * s.confidence_std;
        return std::pair{n * mean, n * (var + mean * mean)};
      };
      const auto [sum_now, sq_now] = sums(now);
      const auto [sum_before, sq_before] = sums(before);
      const double n = static_cast<double>(w.predictions);
      w.confidence_mean = (sum_now - sum_before) / n;
      const double var = (sq_now - sq_before) / n - w.confidence_mean * w.confidence_mean;
      w.confidence_std = std::sqrt(std::max(0.0, var));
    }
    m.accuracy = now;
    out.push_back(std::move(w));
  }
  return out;
}

std::string ServingStats::PrometheusText() const {
  const auto all = registry_->All();
  std::string out;
  auto family = [&](std::string_view metric, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric, help, metric, type);
  };
  auto labels = [](const VersionMetrics& vm) {
    return fmt::format("model=\"{}\",version=\"{}\"", PrometheusLabelValue(vm.model),
                       PrometheusLabelValue(vm.version));
  };
  family("edgefleet_inference_requests_total", "counter",
         "Inference requests answered per model version, any outcome.");
  for (const VersionMetrics* vm : all) {
    out += fmt::format("edgefleet_inference_requests_total{{{}}} {}\n", labels(*vm),
                       Load(vm->requests));
  }
  family("edgefleet_inference_success_total", "counter",
         "Successful inference requests per model version (each one execution of the model).");
  for (const VersionMetrics* vm : all) {
    out += fmt::format("edgefleet_inference_success_total{{{}}} {}\n", labels(*vm),
                       Load(vm->successes));
  }
  family("edgefleet_inference_count_total", "counter",
         "Inferences performed per model version: the batch sizes of successful requests.");
  for (const VersionMetrics* vm : all) {
    out +=
        fmt::format("edgefleet_inference_count_total{{{}}} {}\n", labels(*vm), Load(vm->samples));
  }
  family("edgefleet_inference_errors_total", "counter",
         "Failed inference requests per model version; class client is 4xx, server is 5xx.");
  for (const VersionMetrics* vm : all) {
    out += fmt::format("edgefleet_inference_errors_total{{{},class=\"client\"}} {}\n", labels(*vm),
                       Load(vm->client_errors));
    out += fmt::format("edgefleet_inference_errors_total{{{},class=\"server\"}} {}\n", labels(*vm),
                       Load(vm->server_errors));
  }
  auto histogram = [&](std::string_view metric, std::string_view help,
                       const telemetry::LatencyHistogram VersionMetrics::*member) {
    family(metric, "histogram", help);
    for (const VersionMetrics* vm : all) {
      const telemetry::LatencySnapshot s = (vm->*member).Snapshot();
      const std::string l = labels(*vm);
      for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
        const std::string le = i < telemetry::kLatencyBoundsMs.size()
                                   ? fmt::format("{:g}", telemetry::kLatencyBoundsMs[i] / 1000.0)
                                   : std::string("+Inf");
        out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", metric, l, le, s.buckets[i]);
      }
      out += fmt::format("{}_sum{{{}}} {}\n", metric, l, s.sum_ms / 1000.0);
      out += fmt::format("{}_count{{{}}} {}\n", metric, l, s.count);
    }
  };
  histogram("edgefleet_inference_latency_seconds",
            "Time from a read request body to the response, the wait for a worker included; "
            "successful inferences only.",
            &VersionMetrics::latency);
  histogram("edgefleet_inference_queue_seconds",
            "Time a successful inference waited for a worker of the local API.",
            &VersionMetrics::queue);
  std::vector<std::pair<const VersionMetrics*, telemetry::AccuracySnapshot>> accuracy;
  for (const VersionMetrics* vm : all) accuracy.emplace_back(vm, vm->accuracy.Snapshot());
  family("edgefleet_inference_stage_seconds_total", "counter",
         "Time spent per stage (preprocess, infer, postprocess) per model version.");
  for (const VersionMetrics* vm : all) {
    const std::pair<const char*, const std::atomic<std::uint64_t>*> stages[] = {
        {"preprocess", &vm->preprocess_ns},
        {"infer", &vm->infer_ns},
        {"postprocess", &vm->postprocess_ns}};
    for (const auto& [stage, ns] : stages) {
      out += fmt::format("edgefleet_inference_stage_seconds_total{{{},stage=\"{}\"}} {}\n",
                         labels(*vm), stage, static_cast<double>(Load(*ns)) / 1e9);
    }
  }
  auto accuracy_metric = [&](std::string_view metric, std::string_view type, std::string_view help,
                             auto&& value) {
    family(metric, type, help);
    for (const auto& [vm, s] : accuracy) {
      out += fmt::format("{}{{{}}} {}\n", metric, labels(*vm), value(s));
    }
  };
  using Acc = telemetry::AccuracySnapshot;
  accuracy_metric("edgefleet_predictions_total", "counter",
                  "Top-1 predictions remembered for feedback.",
                  [](const Acc& s) { return s.predictions; });
  accuracy_metric("edgefleet_feedback_labeled_total", "counter",
                  "Predictions that received their true label.",
                  [](const Acc& s) { return s.labeled; });
  accuracy_metric("edgefleet_feedback_correct_total", "counter",
                  "Labeled predictions whose top-1 class was right.",
                  [](const Acc& s) { return s.correct; });
  accuracy_metric("edgefleet_feedback_duplicate_total", "counter",
                  "Feedback refused because the request already had its label.",
                  [](const Acc& s) { return s.duplicate_feedback; });
  accuracy_metric("edgefleet_feedback_evicted_total", "counter",
                  "Predictions forgotten unlabeled because the id table was full.",
                  [](const Acc& s) { return s.evicted; });
  accuracy_metric("edgefleet_top1_confidence_mean", "gauge",
                  "Mean softmax confidence of the top-1 class (a drift proxy).",
                  [](const Acc& s) { return s.confidence_mean; });
  accuracy_metric("edgefleet_top1_confidence_stddev", "gauge",
                  "Standard deviation of the top-1 softmax confidence.",
                  [](const Acc& s) { return s.confidence_std; });
  family("edgefleet_feedback_unknown_total", "counter",
         "Feedback for request ids that no served version remembers.");
  out += fmt::format("edgefleet_feedback_unknown_total {}\n", Load(feedback_unknown_));
  family("edgefleet_inference_in_flight", "gauge",
         "Infer requests whose headers were read and whose response is not set yet.");
  out +=
      fmt::format("edgefleet_inference_in_flight {}\n", in_flight_.load(std::memory_order_relaxed));
  return out;
}

}  // namespace edgefleet::agent
