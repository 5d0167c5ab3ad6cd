// Box health for telemetry windows: resident memory of this process (/proc/self/statm), CPU use
// of this process between two samples (/proc/self/stat utime+stime over wall time), temperature
// (the hottest /sys/class/thermal/thermal_zone*/temp, absent when there is none) and free disk of
// a directory's file system (statvfs f_bavail).
//
// Thread safety: a HealthSampler is used by one thread (the telemetry thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>

#include "telemetry/payloads.hpp"

namespace edgefleet::telemetry {

class HealthSampler final {
 public:
  // `disk_dir`: whose file system's free space is reported. `thermal_root` is a seam for tests
  // (a directory laid out like /sys/class/thermal).
  explicit HealthSampler(std::filesystem::path disk_dir,
                         std::filesystem::path thermal_root = "/sys/class/thermal");
  // Health now; cpu_pct covers the time since the previous Sample() (or since construction).
  // Fields that cannot be read are 0 (temp_c: absent); never fails.
  Health Sample();

 private:
  std::filesystem::path disk_dir_;
  std::filesystem::path thermal_root_;
  std::chrono::steady_clock::time_point last_wall_;
  std::uint64_t last_cpu_ticks_ = 0;
};

// User plus system CPU time of this process so far (every thread), in seconds, to the
// nanosecond (CLOCK_PROCESS_CPUTIME_ID; 0 if that clock cannot be read).
double ReadCpuSeconds();

// Resident set size of this process in bytes (0 when /proc is unreadable).
std::uint64_t ReadRssBytes();

}  // namespace edgefleet::telemetry
