// Reading a download while it is being written: the bundle is verified and unpacked as its bytes
// arrive (one streamed pass), while the part file stays on disk for a resume.
//
// The writer (Fetcher::Fetch, through FetchOptions::follower) reports each size the part file
// reaches, a truncation (the download starts over) and the end; a GrowingFileSource reads the
// same file from byte 0, blocking until more bytes are there. What it reads is what is on disk
// (the page cache), so a restart that resumes a download re-reads the part file's bytes first.
// A truncation makes every read after it fail with kAborted: bytes already handed on may belong
// to the discarded attempt, so the reader's whole pass must be thrown away and done again.
//
// Thread safety: GrowingFile is shared by one writer thread and one reader thread; every member
// is guarded by its mutex. A GrowingFileSource is used by its reader thread only.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>

#include "manifests/result.hpp"
#include "updater/safe_archive.hpp"

namespace edgefleet::updater {

class GrowingFile final {
 public:
  GrowingFile() = default;
  GrowingFile(const GrowingFile&) = delete;
  GrowingFile& operator=(const GrowingFile&) = delete;
  ~GrowingFile();

  // Writer: the part file at `path` now holds `size` bytes. The first call opens the file for
  // the reader (it exists by then); a failure to open ends the reads with kIo.
  void Grew(const std::filesystem::path& path, std::uint64_t size);
  // Writer: the part file was truncated to start over; reads fail from now on.
  void Restarted();
  // Writer: no more bytes will come. `complete_path` is the finished file when the download
  // succeeded (read from there if the part was never opened, e.g. the file was already
  // complete); nullopt when it failed.
  void Finished(std::optional<std::filesystem::path> complete_path);
  // Reader side: stop waiting (e.g. the reader's pass is abandoned); reads fail with kAborted.
  void Abort();

 private:
  friend class GrowingFileSource;
  // Blocks until bytes beyond `offset` exist, the file ended, or a failure; returns the readable
  // size, 0 at the end, or the error.
  Result<std::uint64_t> WaitBeyond(std::uint64_t offset);

  std::mutex mutex_;
  std::condition_variable changed_;
  int fd_ = -1;                 // guarded by mutex_; opened at the first Grew (or Finished)
  std::uint64_t size_ = 0;      // guarded by mutex_
  bool finished_ = false;       // guarded by mutex_
  std::optional<Error> error_;  // guarded by mutex_: restarted, aborted, open failure
};

// A ByteSource over a GrowingFile, from byte 0.
class GrowingFileSource final : public ByteSource {
 public:
  explicit GrowingFileSource(GrowingFile& file) : file_(file) {}
  Result<std::size_t> Read(std::span<std::byte> buffer) override;

 private:
  GrowingFile& file_;
  std::uint64_t offset_ = 0;
};

}  // namespace edgefleet::updater
