// Box health: RSS from /proc/self/statm, CPU from /proc/self/stat, the hottest thermal zone
// (through the thermal_root seam) and free disk.
#include "telemetry/health.hpp"

#include <gtest/gtest.h>

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

#include "tests/support/temp_dir.hpp"

namespace edgefleet::telemetry {
namespace {

using edgefleet::testing::TempDir;
using edgefleet::testing::WriteFile;

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

TEST(Health, RssGrowsAfterTouchingMemory) {
  constexpr std::size_t kBytes = 32u << 20;
  const std::uint64_t before = ReadRssBytes();
  ASSERT_GT(before, 0u);
  auto block = std::make_unique<char[]>(kBytes);
  std::memset(block.get(), 0x5a, kBytes);  // every page touched, so resident
  volatile char sink = block[kBytes - 1];
  (void)sink;
  const std::uint64_t after = ReadRssBytes();
  EXPECT_GE(after, before + (kBytes * 3) / 4) << "before " << before << ", after " << after;
  TempDir dir;
  EXPECT_GE(HealthSampler(dir.path(), dir.path()).Sample().rss_bytes, after - (1u << 20));
}

TEST(Health, HottestThermalZone) {
  TempDir thermal;
  WriteFile(thermal / "thermal_zone0" / "temp", "45000\n");
  WriteFile(thermal / "thermal_zone1" / "temp", "61500\n");
  WriteFile(thermal / "thermal_zone2" / "temp", "-12000\n");
  WriteFile(thermal / "thermal_zone3" / "type", "gpu\n");      // no temp: skipped
  WriteFile(thermal / "thermal_zone4" / "temp", "\n");         // unreadable (EINVAL on a real box)
  WriteFile(thermal / "cooling_device0" / "temp", "99000\n");  // not a zone
  HealthSampler sampler(thermal.path(), thermal.path());
  const Health h = sampler.Sample();
  ASSERT_TRUE(h.temp_c.has_value());
  EXPECT_DOUBLE_EQ(*h.temp_c, 61.5);
}

TEST(Health, BelowZeroZoneIsReported) {
  TempDir thermal;
  WriteFile(thermal / "thermal_zone0" / "temp", "-5250");
  const Health h = HealthSampler(thermal.path(), thermal.path()).Sample();
  ASSERT_TRUE(h.temp_c.has_value());
  EXPECT_DOUBLE_EQ(*h.temp_c, -5.25);
}

TEST(Health, NoZonesMeansNoTemperature) {
  TempDir thermal;
  WriteFile(thermal / "cooling_device0" / "temp", "99000\n");
  EXPECT_FALSE(HealthSampler(thermal.path(), thermal.path()).Sample().temp_c.has_value());
  EXPECT_FALSE(HealthSampler(thermal.path(), thermal / "missing").Sample().temp_c.has_value());
}

TEST(Health, DiskFree) {
  TempDir dir;
  const Health h = HealthSampler(dir.path(), dir.path()).Sample();
  EXPECT_GT(h.disk_free_bytes, 0u);
  const auto space = std::filesystem::space(dir.path());
  // Other writers on the machine move it a little between the two reads.
  EXPECT_NEAR(static_cast<double>(h.disk_free_bytes), static_cast<double>(space.available),
              64.0 * 1024 * 1024);
  EXPECT_EQ(HealthSampler(dir / "missing", dir.path()).Sample().disk_free_bytes, 0u);
}

TEST(Health, CpuRisesAfterABusyLoop) {
  TempDir dir;
  HealthSampler sampler(dir.path(), dir.path());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double idle = sampler.Sample().cpu_pct;

  // Burn 400 ms of this process's CPU time, however long the (shared) machine takes to give it.
  const auto wall_start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  volatile double x = 1;
  while (ProcessCpuSeconds() - cpu_start < 0.4) x = std::sqrt(x + 1);
  const double cpu_s = ProcessCpuSeconds() - cpu_start;
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const double busy = sampler.Sample().cpu_pct;

  // On a loaded machine the loop gets a fraction of a core, so the share is not a constant: it
  // must match what clock_gettime saw over the same interval, within /proc's accounting in
  // clock ticks (10 ms at 100 Hz; a few ticks over the loop's wall time) plus scheduling noise.
  const double expected = 100.0 * cpu_s / wall_s;
  const double ticks_pct = 100.0 * 3.0 / static_cast<double>(sysconf(_SC_CLK_TCK)) / wall_s;
  EXPECT_LT(idle, 20.0);
  EXPECT_GT(busy, idle) << "idle " << idle << "%, busy " << busy << "%";
  EXPECT_GT(busy, 0.5 * expected) << "measured " << expected << "% by clock_gettime";
  EXPECT_NEAR(busy, expected, 5.0 + ticks_pct) << "measured " << expected << "% by clock_gettime";
}

}  // namespace
}  // namespace edgefleet::telemetry
