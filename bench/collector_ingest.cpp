// Benchmark (issue 15, item 1): the collector's cost per message, without a broker. Simulated
// devices (deploy/sim_device, the agent's own encoders) produce a window per second each and an
// event a minute; each batch_s simulated seconds' messages are parsed and checked
// (ClassifyMessage) and stored (CollectorStore::Apply, in the collector's batches of at most
// CollectorOptions::max_batch) into a fresh SQLite file, as the collector's writer thread does
// with --batch-wait-ms batch_s*1000. Prints the CPU cost per message of both steps in each tenth
// of the run (the database grows) and over all of it, the store's messages per second, the
// store's share of kernel time and the bytes it wrote per message (/proc/self/io: WAL frames and
// checkpoints); exits 1 when the last tenth stores fewer than `target` messages per second.
//
//   collector_ingest [devices=10000] [seconds=60] [target=10400] [dir=$TMPDIR or /tmp] [batch_s=1]
//
// Generating the messages is not timed. The figure it checks is the writer alone on one core;
// in `edgefleet collect` the network thread, the broker and (in bench/fleet_scale.py) the
// simulators share the box with it.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "deploy/collector/collector.hpp"
#include "deploy/collector/collector_store.hpp"
#include "deploy/sim_device.hpp"

namespace fs = std::filesystem;
using edgefleet::deploy::ClassifyMessage;
using edgefleet::deploy::CollectorStore;
using edgefleet::deploy::IncomingMessage;
using edgefleet::deploy::SimDevice;
using edgefleet::deploy::SimMessage;
using edgefleet::deploy::SimProfile;

namespace {

const std::size_t kBatch = edgefleet::deploy::CollectorOptions{}.max_batch;

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Phase {
  std::size_t messages = 0;
  double parse_s = 0;
  double store_s = 0;
  double store_sys_s = 0;  // of store_s, in the kernel (writes, reads, faults)
  double written_mb = 0;   // by the process while storing (/proc/self/io write_bytes)
};

double SystemSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_stime.tv_sec) + static_cast<double>(u.ru_stime.tv_usec) / 1e6;
}

// Bytes this process has caused to be written to storage (0 where /proc/self/io is missing).
double WrittenMb() {
  std::FILE* f = std::fopen("/proc/self/io", "r");
  if (!f) return 0;
  char line[128];
  unsigned long long bytes = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "write_bytes: %llu", &bytes) == 1) break;
  }
  std::fclose(f);
  return static_cast<double>(bytes) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t devices = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10000;
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 60;
  const double target = argc > 3 ? std::atof(argv[3]) : 10400.0;
  const char* tmp = std::getenv("TMPDIR");
  const fs::path base = argc > 4 ? fs::path(argv[4]) : fs::path(tmp ? tmp : "/tmp");
  const int batch_s = argc > 5 ? std::atoi(argv[5]) : 1;
  if (devices == 0 || seconds < 10 || batch_s < 1 || batch_s > seconds / 10) {
    std::fprintf(stderr,
                 "usage: collector_ingest [devices>0] [seconds>=10] [target] [dir] "
                 "[batch_s=1..seconds/10]\n");
    return 2;
  }
  const fs::path dir = base / ("collector_ingest." + std::to_string(getpid()));
  fs::create_directories(dir);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};

  auto store = CollectorStore::Open(dir / "collector.db");
  if (!store) {
    std::fprintf(stderr, "open: %s\n", store.error().message.c_str());
    return 2;
  }
  SimProfile profile;
  profile.fleet = "bench";
  profile.groups = {"lab"};
  const std::int64_t start_ms = 1796000000000;
  std::vector<std::unique_ptr<SimDevice>> fleet;
  fleet.reserve(devices);
  for (std::size_t i = 0; i < devices; ++i) {
    fleet.push_back(
        std::make_unique<SimDevice>(&profile, "box-" + std::to_string(i), false, i + 1, start_ms));
  }

  Phase tenths[10], all;
  std::vector<SimMessage> out, pending;
  std::vector<IncomingMessage> batch;
  for (int second = 0; second <= seconds; ++second) {
    const std::int64_t now_ms = start_ms + second * 1000LL;
    out.clear();
    for (auto& d : fleet) {
      if (second == 0) out.push_back(d->Status(true, 1, now_ms));
      d->TakeDue(now_ms, &out);
    }
    Phase here;
    // A transaction holds batch_s seconds of messages, as --batch-wait-ms gathers them.
    if (second != 0 && second % batch_s != 0 && second != seconds) {
      pending.insert(pending.end(), out.begin(), out.end());
      continue;
    }
    if (!pending.empty()) {
      pending.insert(pending.end(), out.begin(), out.end());
      out.swap(pending);
      pending.clear();
    }
    for (std::size_t begin = 0; begin < out.size(); begin += kBatch) {
      const std::size_t end = std::min(out.size(), begin + kBatch);
      batch.clear();
      const double t0 = CpuSeconds();
      for (std::size_t i = begin; i < end; ++i) {
        auto in = ClassifyMessage(out[i].topic, out[i].payload, now_ms);
        if (!in) {
          std::fprintf(stderr, "classify: %s\n", in.error().message.c_str());
          return 2;
        }
        batch.push_back(std::move(*in));
      }
      const double t1 = CpuSeconds();
      const double sys1 = SystemSeconds();
      const double mb1 = WrittenMb();
      auto outcomes = store->Apply(batch);
      const double t2 = CpuSeconds();
      here.store_sys_s += SystemSeconds() - sys1;
      here.written_mb += WrittenMb() - mb1;
      if (!outcomes) {
        std::fprintf(stderr, "apply: %s\n", outcomes.error().message.c_str());
        return 2;
      }
      here.messages += batch.size();
      here.parse_s += t1 - t0;
      here.store_s += t2 - t1;
    }
    if (second == 0) continue;  // births: not the steady state
    for (Phase* p : {&all, &tenths[std::min(9, (second - 1) * 10 / seconds)]}) {
      p->messages += here.messages;
      p->parse_s += here.parse_s;
      p->store_s += here.store_s;
      p->store_sys_s += here.store_sys_s;
      p->written_mb += here.written_mb;
    }
  }

  std::error_code ec;
  const auto db_bytes = fs::file_size(dir / "collector.db", ec);
  std::printf("devices=%zu seconds=%d batch_s=%d messages=%zu db_mb=%.0f load_avg=", devices,
              seconds, batch_s, all.messages, static_cast<double>(db_bytes) / 1e6);
  double load[1] = {0};
  if (getloadavg(load, 1) == 1) std::printf("%.2f\n", load[0]);
  std::printf("%-12s %10s %14s %14s %16s %14s %15s\n", "phase", "messages", "parse us/msg",
              "store us/msg", "store msgs/s", "of which sys", "written KB/msg");
  auto row = [](const std::string& name, const Phase& p) {
    const double n = static_cast<double>(std::max<std::size_t>(1, p.messages));
    std::printf("%-12s %10zu %14.1f %14.1f %16.0f %14.1f %15.1f\n", name.c_str(), p.messages,
                p.parse_s / n * 1e6, p.store_s / n * 1e6, p.store_s > 0 ? n / p.store_s : 0,
                p.store_sys_s / n * 1e6, p.written_mb / n * 1e3);
  };
  for (int i = 0; i < 10; ++i) row("tenth " + std::to_string(i + 1), tenths[i]);
  row("all", all);
  const Phase& last = tenths[9];
  const double last_rate = static_cast<double>(last.messages) / std::max(1e-9, last.store_s);
  const double both_rate =
      static_cast<double>(last.messages) / std::max(1e-9, last.store_s + last.parse_s);
  std::printf("last 10%%: store %.0f msgs/s, parse+store %.0f msgs/s on one core; target %.0f\n",
              last_rate, both_rate, target);
  return last_rate >= target ? 0 : 1;
}
