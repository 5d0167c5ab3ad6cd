#include "updater/disk.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <string>

namespace edgefleet::updater {

Result<std::uint64_t> FreeBytes(const std::filesystem::path& dir) {
  struct statvfs info {};
  if (::statvfs(dir.c_str(), &info) != 0) {
    const int err = errno;
    return Fail(ErrorCode::kIo, dir.string() + ": statvfs: " + std::strerror(err));
  }
  // f_bavail, not f_bfree: the blocks kept for root are not ours to use.
  return static_cast<std::uint64_t>(info.f_bavail) * static_cast<std::uint64_t>(info.f_frsize);
}

Status CheckFreeSpace(const std::filesystem::path& dir, std::uint64_t needed,
                      std::uint64_t reserve) {
  EF_ASSIGN_OR_RETURN(const std::uint64_t free_bytes, FreeBytes(dir));
  // Saturating sum: a hostile or mistaken "needed" near 2^64 must not wrap into a small number.
  const std::uint64_t required = needed > std::numeric_limits<std::uint64_t>::max() - reserve
                                     ? std::numeric_limits<std::uint64_t>::max()
                                     : needed + reserve;
  if (free_bytes < required) {
    return Fail(ErrorCode::kIo, dir.string() +
                                    ": not enough free disk: " + std::to_string(free_bytes) +
                                    " bytes free, " + std::to_string(needed) + " needed + " +
                                    std::to_string(reserve) + " reserve");
  }
  return Ok();
}

void WriteBehind::Wrote(int fd, std::uint64_t end) {
  if (end < started_) started_ = 0;  // truncated underneath us
  if (end - started_ < kStepBytes) return;
  (void)::sync_file_range(fd, static_cast<off_t>(started_), static_cast<off_t>(end - started_),
                          SYNC_FILE_RANGE_WRITE);
  started_ = end;
}

}  // namespace edgefleet::updater
