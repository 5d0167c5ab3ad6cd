// Model slots on disk: where verified bundles are unpacked and from where the runtime loads them.
//
// Layout under the agent's state directory:
//   <state_dir>/models/<name>/A/           one complete, verified bundle (or absent)
//   <state_dir>/models/<name>/B/           the other slot
//   <state_dir>/models/<name>/staging-<S>/ a bundle being verified for slot S
//   <state_dir>/downloads/                 bundle downloads (*.part while incomplete)
// A slot directory is only ever replaced whole, by an atomic exchange with its staging directory,
// so after a crash or power cut a slot holds either the old or the new bundle, never a mixture.
// Staging refuses the active slot: the caller (the journal knows which is active) names it.
//
// Unpacking is defensive even though VerifyBundle already refused unsafe paths: files are created
// with openat(O_CREAT|O_EXCL|O_NOFOLLOW) beneath a directory fd and intermediate directories with
// mkdirat, each opened with O_NOFOLLOW, so a symlink planted in a staging directory by anyone else
// is never followed out of it.
//
// Thread safety: a SlotStore is a plain value (paths); a StagingSink is used by one thread. Two
// sinks for the same model and slot at once are not supported (the journal allows one deployment
// per model).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "updater/bundle_reader.hpp"
#include "updater/disk.hpp"

namespace edgefleet::updater {

enum class Slot { kA, kB };

std::string_view ToString(Slot slot);  // "A" or "B"
// Fails with kParse naming what was found.
Result<Slot> ParseSlot(std::string_view text);
constexpr Slot OtherSlot(Slot slot) { return slot == Slot::kA ? Slot::kB : Slot::kA; }

// Unpacks files into a staging directory for one slot (a FileSink for VerifyBundle), then
// Commit() swaps it in or Discard() removes it. Destroying an uncommitted sink discards it.
class StagingSink final : public FileSink {
 public:
  ~StagingSink() override;
  StagingSink(const StagingSink&) = delete;
  StagingSink& operator=(const StagingSink&) = delete;

  // FileSink. Begin fails with kUnsafeArchive for a path that is absolute, empty, has "." or
  // ".." segments or crosses a symlink, with kIo naming the staging path when a file exists or
  // the disk fails. Write fails with kIntegrity past the size given to Begin. End(false) removes
  // the file; End(true) fsyncs it and its directory.
  Status Begin(std::string_view path, std::uint64_t size) override;
  Status Write(std::span<const std::byte> chunk) override;
  Status End(bool sha256_ok) override;

  // Atomically replaces the slot directory with the staging one (renameat2 RENAME_EXCHANGE, or a
  // plain rename when the slot does not exist yet), fsyncs the model directory, then removes the
  // old contents. Fails with kIo naming the paths; kInvalidArgument when a file is still open or
  // the sink was already committed or discarded. After a failure the slot is unchanged.
  Status Commit();
  // Removes the staging directory and everything written. Safe to call more than once.
  Status Discard();

  const std::filesystem::path& staging_path() const { return staging_path_; }
  const std::filesystem::path& slot_path() const { return slot_path_; }
  Slot slot() const { return slot_; }

 private:
  friend class SlotStore;
  struct Fds;
  StagingSink(Slot slot, std::filesystem::path staging_path, std::filesystem::path slot_path,
              std::unique_ptr<Fds> fds);

  Slot slot_;
  std::filesystem::path staging_path_;
  std::filesystem::path slot_path_;
  std::unique_ptr<Fds> fds_;  // model dir, staging dir, the file being written
  std::string current_path_;  // relative path of the open file, for messages and End(false)
  std::uint64_t current_size_ = 0;
  std::uint64_t current_written_ = 0;
  WriteBehind write_behind_;  // of the file being written
  bool finished_ = false;     // committed or discarded
};

struct GcOptions {
  // Partial downloads (*.part) whose last change is older than this are removed.
  std::chrono::seconds part_max_age = std::chrono::hours(24);
  // File names under downloads/ to keep, finished or partial (the bundle of a deployment in
  // progress); every other finished download is removed, and so is any symlink.
  std::set<std::string> referenced_downloads;
  // Models with a deployment in progress: their staging directories are kept.
  std::set<std::string> busy_models;
};

struct GcReport {
  std::vector<std::filesystem::path> removed;  // in the order removed
  std::uint64_t bytes_freed = 0;
};

class SlotStore final {
 public:
  // Creates <state_dir>/models and <state_dir>/downloads when missing. Fails with kIo naming the
  // directory.
  static Result<SlotStore> Open(const std::filesystem::path& state_dir);

  std::filesystem::path ModelDir(std::string_view model) const;
  std::filesystem::path SlotPath(std::string_view model, Slot slot) const;
  const std::filesystem::path& downloads_dir() const { return downloads_dir_; }

  // Starts staging a bundle for `slot` of `model`, removing a stale staging directory first.
  // `active` is the slot the model serves from (nullopt when none). `needed_bytes` (the signed
  // manifest's total: every file plus manifest.json) and `reserve_bytes` must be free on the
  // file system before anything is created (disk.hpp: a box whose disk fills mid-update cannot
  // write its journal). Fails with kInvalidArgument when slot == active or the model name is not
  // a single safe path segment, kIo on disk errors or too little free space (naming free, needed
  // and reserve).
  Result<std::unique_ptr<StagingSink>> BeginStaging(std::string_view model, Slot slot,
                                                    std::optional<Slot> active,
                                                    std::uint64_t needed_bytes,
                                                    std::uint64_t reserve_bytes) const;

  // Removes what a failed or rolled-back deployment left for `model`: its staging directories,
  // the candidate's slot directory when `candidate` is given (never `active`), and the model's
  // directory itself when nothing is left in it. Fails with kInvalidArgument when candidate ==
  // active or the name is unsafe, kIo naming the path it could not remove.
  Status DiscardCandidate(std::string_view model, std::optional<Slot> candidate,
                          std::optional<Slot> active) const;

  // Removes stale staging directories (of models not busy) and downloads: *.part older than the
  // age, finished files not referenced. Never touches slot directories. Returns what it removed;
  // fails with kIo on the first directory it cannot read or entry it cannot remove.
  Result<GcReport> CollectGarbage(const GcOptions& options) const;

 private:
  SlotStore(std::filesystem::path models_dir, std::filesystem::path downloads_dir)
      : models_dir_(std::move(models_dir)), downloads_dir_(std::move(downloads_dir)) {}
  std::filesystem::path models_dir_;
  std::filesystem::path downloads_dir_;
};

}  // namespace edgefleet::updater
