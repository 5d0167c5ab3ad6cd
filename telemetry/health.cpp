// Box health from /proc, /sys/class/thermal and statvfs (see telemetry/health.hpp).
#include "telemetry/health.hpp"

#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace edgefleet::telemetry {
namespace {

// utime + stime of this process in clock ticks (0 when /proc/self/stat is unreadable).
std::uint64_t ReadCpuTicks() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // Field 2 (comm) is in parentheses and may itself hold spaces and ')': counting starts after
  // the last ')', where field 3 (state) begins. utime and stime are fields 14 and 15.
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(line.substr(close + 1));
  std::string skipped;
  for (int field = 3; field < 14; ++field) fields >> skipped;
  std::uint64_t utime = 0;
  std::uint64_t stime = 0;
  if (!(fields >> utime >> stime)) return 0;
  return utime + stime;
}

// The hottest readable thermal_zone*/temp under `root` in degrees Celsius.
std::optional<double> ReadHottestZone(const std::filesystem::path& root) {
  std::optional<double> hottest;
  std::error_code ec;
  std::filesystem::directory_iterator it(root, ec);
  if (ec) return std::nullopt;
  for (const auto& entry : it) {
    if (!entry.path().filename().string().starts_with("thermal_zone")) continue;
    // Some zones (e.g. an idle GPU, a missing sensor) fail the read with EINVAL or ENODATA;
    // they are skipped, not reported as 0 degrees.
    std::ifstream in(entry.path() / "temp");
    long long millidegrees = 0;
    if (!(in >> millidegrees)) continue;
    const double celsius = static_cast<double>(millidegrees) / 1000.0;
    hottest = hottest ? std::max(*hottest, celsius) : celsius;
  }
  return hottest;
}

std::uint64_t ReadDiskFreeBytes(const std::filesystem::path& dir) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return 0;
  // f_bavail: what an unprivileged process may still write (f_bfree includes root's reserve).
  return static_cast<std::uint64_t>(fs.f_bavail) * static_cast<std::uint64_t>(fs.f_frsize);
}

}  // namespace

double ReadCpuSeconds() {
  // The process's CPU clock (every thread, user and system) to the nanosecond; /proc's ticks
  // are 10 ms, so a process that had used less read 0.
  timespec ts{};
  if (::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::uint64_t ReadRssBytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t size_pages = 0;
  std::uint64_t resident_pages = 0;
  if (!(in >> size_pages >> resident_pages)) return 0;
  const long page = ::sysconf(_SC_PAGESIZE);
  return page > 0 ? resident_pages * static_cast<std::uint64_t>(page) : 0;
}

HealthSampler::HealthSampler(std::filesystem::path disk_dir, std::filesystem::path thermal_root)
    : disk_dir_(std::move(disk_dir)),
      thermal_root_(std::move(thermal_root)),
      last_wall_(std::chrono::steady_clock::now()),
      last_cpu_ticks_(ReadCpuTicks()) {}

Health HealthSampler::Sample() {
  Health health;
  health.rss_bytes = ReadRssBytes();

  const auto now = std::chrono::steady_clock::now();
  const std::uint64_t ticks = ReadCpuTicks();
  const double wall_s = std::chrono::duration<double>(now - last_wall_).count();
  const long ticks_per_s = ::sysconf(_SC_CLK_TCK);
  if (wall_s > 0 && ticks_per_s > 0 && ticks >= last_cpu_ticks_) {
    const double cpu_s =
        static_cast<double>(ticks - last_cpu_ticks_) / static_cast<double>(ticks_per_s);
    health.cpu_pct = 100.0 * cpu_s / wall_s;
  }
  last_wall_ = now;
  last_cpu_ticks_ = ticks;

  health.temp_c = ReadHottestZone(thermal_root_);
  health.disk_free_bytes = ReadDiskFreeBytes(disk_dir_);
  return health;
}

}  // namespace edgefleet::telemetry
