// Free-space checks on the file system that will hold a download or a slot, and small files
// replaced atomically.
//
// The updater refuses to start writing when the bytes it still needs plus a reserve do not fit:
// a box whose disk fills up mid-update can no longer write its journal or its logs, which is
// worse than not updating at all.
//
// Thread safety: the functions are self-contained and thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "manifests/result.hpp"

namespace edgefleet::updater {

// Bytes available to an unprivileged writer (statvfs f_bavail * f_frsize) on the file system
// that holds `dir`. Fails with kIo naming the path and the errno text.
Result<std::uint64_t> FreeBytes(const std::filesystem::path& dir);

// Succeeds when `needed + reserve` bytes are free under `dir`. Fails with kIo naming the
// directory, free, needed and reserve (e.g. "/var/lib/edgefleet: not enough free disk: 1000 bytes
// free, 5000 needed + 100 reserve"), or with FreeBytes' error.
Status CheckFreeSpace(const std::filesystem::path& dir, std::uint64_t needed,
                      std::uint64_t reserve);

// Starts the write-back of a file being written, in steps, without waiting for it: once
// kStepBytes more bytes were written since the last step, sync_file_range(SYNC_FILE_RANGE_WRITE)
// hands them to the disk. The fsync that makes the file durable at its end then has little left
// to wait for, instead of the whole file (100 MB took about 0.2 s here). Pages stay cached, so a
// reader of the same file (growing_file.hpp) still reads from memory. Advisory: a file system
// without sync_file_range is left to fsync alone.
class WriteBehind final {
 public:
  static constexpr std::uint64_t kStepBytes = 8ull << 20;
  // `fd` now holds bytes up to `end` (the file's size for an appending writer).
  void Wrote(int fd, std::uint64_t end);
  // A new file, or the same file truncated.
  void Reset() { started_ = 0; }

 private:
  std::uint64_t started_ = 0;  // bytes before this offset were handed to write-back
};

}  // namespace edgefleet::updater
