// Benchmark (issue 5, acceptance 5): how many ~600-byte telemetry messages per second the
// Outbox appends into SQLite (WAL, synchronous=NORMAL), with 1, 10 and 100 messages per Append
// (one transaction each), into a fresh file per run; median of 5 runs per mode. A last mode
// appends into an outbox already at its bound, so every Append also drops the oldest rows.
//
//   outbox_throughput [messages_per_run=20000] [dir=$TMPDIR or /tmp]
//
// Exits 1 when the batched mode the agent uses (a telemetry window of up to 10 messages per
// Append) is below 20,000 messages/s.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "telemetry/outbox.hpp"

namespace fs = std::filesystem;
using edgefleet::telemetry::Outbox;
using edgefleet::telemetry::OutboxLimits;
using edgefleet::telemetry::OutgoingMessage;

namespace {

constexpr double kTarget = 20000.0;
constexpr std::size_t kAgentBatch = 10;
constexpr int kRuns = 5;

// A telemetry window like ARCHITECTURE.md's sketch, padded to ~600 bytes; the id differs per
// message as it does in the agent.
std::string Payload(std::size_t i) {
  char buf[700];
  const int n = std::snprintf(
      buf, sizeof(buf),
      R"({"id":"6f1c2a9e-%012zx","device":"box-17","ts":%lld,"window_s":10,"model":"digits",)"
      R"("version":"1.2.0","slot":"B","role":"active","count":250,"errors":0,)"
      R"("latency_ms":{"sum":3120.5,"max":41.2,"p50":11.9,"p90":16.0,"p95":21.7,"p99":30.1,)"
      R"("le_1":0,"le_2.5":0,"le_5":0,"le_10":61,"le_25":240,"le_50":250,"le_100":250,)"
      R"("le_250":250,"le_inf":250},"stage_ms":{"pre":1.2,"infer":10.1,"post":0.9},)"
      R"("accuracy":{"labeled":40,"correct":37,"shadow_agree":0.96},)"
      R"("confidence":{"mean":0.83,"std":0.09},"health":{"rss_bytes":81234944,)"
      R"("cpu_pct":37.5,"temp_c":61.0,"disk_free_bytes":1234567890},"pad":"%s"})",
      i, 1763700000000LL + static_cast<long long>(i), "0123456789abcdef0123456789abcdef");
  return std::string(buf, static_cast<std::size_t>(n));
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Messages per second for one run; a negative value when an Append failed.
double Run(const fs::path& dir, std::size_t messages, std::size_t batch, OutboxLimits limits,
           std::size_t prefill) {
  const fs::path file = dir / "outbox.db";
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(file.string() + suffix);
  auto outbox = Outbox::Open(file, limits);
  if (!outbox) {
    std::fprintf(stderr, "%s\n", outbox.error().message.c_str());
    return -1;
  }
  std::vector<OutgoingMessage> all(messages + prefill);
  for (std::size_t i = 0; i < all.size(); ++i) {
    all[i].topic = "edgefleet/v1/fleet-a/device/box-17/telemetry";
    all[i].payload = Payload(i);
  }
  for (std::size_t i = 0; i < prefill; i += 1000) {
    const std::size_t n = std::min<std::size_t>(1000, prefill - i);
    if (!(*outbox)->Append(std::span(all.data() + i, n))) return -1;
  }
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = prefill; i < all.size(); i += batch) {
    const std::size_t n = std::min(batch, all.size() - i);
    auto st = (*outbox)->Append(std::span(all.data() + i, n));
    if (!st) {
      std::fprintf(stderr, "%s\n", st.error().message.c_str());
      return -1;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(messages) / s;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t messages = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20000;
  const char* tmp = std::getenv("TMPDIR");
  const fs::path base = argc > 2 ? fs::path(argv[2]) : fs::path(tmp && *tmp ? tmp : "/tmp");
  const fs::path dir = base / ("edgefleet-outbox-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::printf("outbox append rate: %zu messages of %zu bytes per run, median of %d, in %s\n",
              messages, Payload(0).size(), kRuns, dir.c_str());

  struct Mode {
    const char* name;
    std::size_t batch;
    std::size_t prefill;
    OutboxLimits limits;
  };
  const OutboxLimits roomy;  // defaults: 100,000 rows, 7 days
  const OutboxLimits full{.max_messages = 10000, .max_age = roomy.max_age};
  const Mode modes[] = {
      {"batch 1", 1, 0, roomy},
      {"batch 10", 10, 0, roomy},
      {"batch 100", 100, 0, roomy},
      {"batch 10, at the 10,000-row bound (drops)", 10, 10000, full},
  };
  double agent_rate = 0;
  bool failed = false;
  for (const Mode& mode : modes) {
    std::vector<double> rates;
    for (int r = 0; r < kRuns; ++r) {
      const double rate = Run(dir, messages, mode.batch, mode.limits, mode.prefill);
      if (rate < 0) failed = true;
      rates.push_back(rate);
    }
    std::string all;
    for (double rate : rates) all += " " + std::to_string(static_cast<long>(rate));
    const double median = Median(rates);
    std::printf("%-44s %9.0f msg/s  (runs:%s)\n", mode.name, median, all.c_str());
    if (mode.batch == kAgentBatch && mode.prefill == 0) agent_rate = median;
  }
  fs::remove_all(dir);
  const bool pass = !failed && agent_rate >= kTarget;
  std::printf("%s: batch %zu (the agent's mode) %.0f msg/s, target >= %.0f msg/s\n",
              pass ? "PASS" : "FAIL", kAgentBatch, agent_rate, kTarget);
  return pass ? 0 : 1;
}
