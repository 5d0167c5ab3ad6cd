#include "updater/slots.hpp"

#include <fcntl.h>
#include <stdio.h>  // renameat2 (glibc >= 2.28)
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include "manifests/log_value.hpp"
#include "manifests/unique_fd.hpp"
#include "updater/disk.hpp"

namespace edgefleet::updater {
namespace {

namespace fs = std::filesystem;
using manifests::QuoteName;

using manifests::UniqueFd;

Unexpected IoError(const fs::path& path, std::string_view what, int err) {
  return Fail(ErrorCode::kIo, path.string() + ": " + std::string(what) + ": " + std::strerror(err));
}

// A model name becomes one directory name: refuse anything that could name another place.
bool IsSafeSegment(std::string_view name) {
  return !name.empty() && name.size() <= 255 && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

Result<UniqueFd> OpenDir(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return IoError(path, "open directory", errno);
  return fd;
}

Result<UniqueFd> OpenDirAt(int parent, const std::string& name, const fs::path& for_messages) {
  UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    // ELOOP/ENOTDIR: the name is a symlink or a file where a directory belongs.
    if (err == ELOOP || err == ENOTDIR) {
      return Fail(ErrorCode::kUnsafeArchive,
                  for_messages.string() + ": not a directory (symlinks are never followed)");
    }
    return IoError(for_messages, "open directory", err);
  }
  return fd;
}

// mkdir that accepts an existing directory (not a symlink to one: the open checks that).
Status MakeDir(const fs::path& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return IoError(path, "mkdir", errno);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return IoError(path, "lstat", errno);
  if (!S_ISDIR(st.st_mode)) {
    return Fail(ErrorCode::kIo, path.string() + ": exists and is not a directory");
  }
  return Ok();
}

Status FsyncFd(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) return IoError(path, "fsync", errno);
  return Ok();
}

// Sums regular file sizes under `path` (for the GC report); never follows symlinks.
std::uint64_t TreeBytes(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(path, ec);
  if (ec) return 0;
  if (fs::is_regular_file(status)) {
    const auto size = fs::file_size(path, ec);
    return ec ? 0 : size;
  }
  if (!fs::is_directory(status)) return 0;
  std::uint64_t total = 0;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) total += it->file_size(ec);
  }
  return total;
}

Status RemoveTree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);  // removes symlinks themselves, never their targets
  if (ec) return Fail(ErrorCode::kIo, path.string() + ": remove: " + ec.message());
  return Ok();
}

constexpr std::string_view kStagingPrefix = "staging-";

}  // namespace

struct StagingSink::Fds {
  UniqueFd model_dir;
  UniqueFd staging_dir;
  UniqueFd file;
  UniqueFd file_dir;  // the directory holding `file` (to fsync its entry and unlink on failure)
  std::string file_leaf;
};

std::string_view ToString(Slot slot) { return slot == Slot::kA ? "A" : "B"; }

Result<Slot> ParseSlot(std::string_view text) {
  if (text == "A") return Slot::kA;
  if (text == "B") return Slot::kB;
  return Fail(ErrorCode::kParse,
              "slot: expected \"A\" or \"B\", found \"" + std::string(text) + "\"");
}

StagingSink::StagingSink(Slot slot, fs::path staging_path, fs::path slot_path,
                         std::unique_ptr<Fds> fds)
    : slot_(slot),
      staging_path_(std::move(staging_path)),
      slot_path_(std::move(slot_path)),
      fds_(std::move(fds)) {}

StagingSink::~StagingSink() {
  if (!finished_) (void)Discard();
}

Status StagingSink::Begin(std::string_view path, std::uint64_t size) {
  if (finished_) {
    return Fail(ErrorCode::kInvalidArgument, staging_path_.string() + ": staging already finished");
  }
  if (fds_->file.valid()) {
    return Fail(ErrorCode::kInvalidArgument,
                staging_path_.string() + ": '" + current_path_ + "' is still open");
  }
  const fs::path where = staging_path_ / std::string(path);
  auto unsafe = [&](std::string_view why) {
    return Fail(ErrorCode::kUnsafeArchive,
                staging_path_.string() + ": '" + std::string(path) + "': " + std::string(why));
  };
  if (path.empty() || path.front() == '/') return unsafe("not a relative path");
  if (path.find('\0') != std::string_view::npos) return unsafe("contains NUL");

  // Walk the segments from the staging dir fd: mkdirat + openat(O_NOFOLLOW) for each directory.
  std::vector<std::string> segments;
  for (std::size_t start = 0; start <= path.size();) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string segment(path.substr(start, slash - start));
    if (segment.empty() || segment == "." || segment == "..") {
      return unsafe("empty, '.' or '..' path segment");
    }
    segments.push_back(std::move(segment));
    start = slash + 1;
  }
  UniqueFd dir(::dup(fds_->staging_dir.get()));
  if (!dir.valid()) return IoError(staging_path_, "dup", errno);
  fs::path so_far = staging_path_;
  for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
    so_far /= segments[i];
    bool created = false;
    if (::mkdirat(dir.get(), segments[i].c_str(), 0755) == 0) {
      created = true;
    } else if (errno != EEXIST) {
      return IoError(so_far, "mkdir", errno);
    }
    EF_ASSIGN_OR_RETURN(UniqueFd child, OpenDirAt(dir.get(), segments[i], so_far));
    // A new directory entry survives a power cut only once its parent is synced.
    if (created) EF_RETURN_IF_ERROR(FsyncFd(dir.get(), so_far.parent_path()));
    dir = std::move(child);
  }
  const std::string& leaf = segments.back();
  UniqueFd file(::openat(dir.get(), leaf.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!file.valid()) {
    const int err = errno;
    // O_EXCL refuses any existing name, a planted symlink included, without following it.
    if (err == EEXIST)
      return IoError(where, "create (already exists; links are not followed)", err);
    return IoError(where, "create", err);
  }
  fds_->file = std::move(file);
  fds_->file_dir = std::move(dir);
  fds_->file_leaf = leaf;
  current_path_ = std::string(path);
  current_size_ = size;
  current_written_ = 0;
  write_behind_.Reset();
  return Ok();
}

Status StagingSink::Write(std::span<const std::byte> chunk) {
  if (!fds_->file.valid()) {
    return Fail(ErrorCode::kInvalidArgument, staging_path_.string() + ": Write without Begin");
  }
  if (chunk.size() > current_size_ - current_written_) {
    return Fail(ErrorCode::kIntegrity, (staging_path_ / current_path_).string() +
                                           ": more bytes than the declared " +
                                           std::to_string(current_size_));
  }
  const std::byte* data = chunk.data();
  std::size_t left = chunk.size();
  while (left > 0) {
    const ssize_t n = ::write(fds_->file.get(), data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(staging_path_ / current_path_, "write", errno);
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  current_written_ += chunk.size();
  write_behind_.Wrote(fds_->file.get(), current_written_);
  return Ok();
}

Status StagingSink::End(bool sha256_ok) {
  if (!fds_->file.valid()) {
    return Fail(ErrorCode::kInvalidArgument, staging_path_.string() + ": End without Begin");
  }
  const fs::path where = staging_path_ / current_path_;
  Status status = Ok();
  if (!sha256_ok) {
    fds_->file.Reset();
    if (::unlinkat(fds_->file_dir.get(), fds_->file_leaf.c_str(), 0) != 0) {
      status = IoError(where, "unlink", errno);
    }
  } else if (current_written_ != current_size_) {
    status =
        Fail(ErrorCode::kIntegrity, where.string() + ": wrote " + std::to_string(current_written_) +
                                        " of " + std::to_string(current_size_) + " bytes");
  } else {
    status = FsyncFd(fds_->file.get(), where);
    if (status) status = FsyncFd(fds_->file_dir.get(), where.parent_path());
  }
  fds_->file.Reset();
  fds_->file_dir.Reset();
  fds_->file_leaf.clear();
  current_path_.clear();
  return status;
}

Status StagingSink::Commit() {
  if (finished_) {
    return Fail(ErrorCode::kInvalidArgument, staging_path_.string() + ": staging already finished");
  }
  if (fds_->file.valid()) {
    return Fail(ErrorCode::kInvalidArgument,
                staging_path_.string() + ": '" + current_path_ + "' is still open");
  }
  EF_RETURN_IF_ERROR(FsyncFd(fds_->staging_dir.get(), staging_path_));
  const std::string staging_name = staging_path_.filename().string();
  const std::string slot_name = slot_path_.filename().string();
  const int model_fd = fds_->model_dir.get();
  // The slot path flips from the old tree to the new one in one step; the old tree lands at the
  // staging name and is removed afterwards (or by garbage collection after a crash).
  bool exchanged = true;
  if (::renameat2(model_fd, staging_name.c_str(), model_fd, slot_name.c_str(), RENAME_EXCHANGE) !=
      0) {
    if (errno != ENOENT)
      return IoError(slot_path_, "exchange with " + staging_path_.string(), errno);
    exchanged = false;
    if (::renameat2(model_fd, staging_name.c_str(), model_fd, slot_name.c_str(),
                    RENAME_NOREPLACE) != 0) {
      return IoError(slot_path_, "rename from " + staging_path_.string(), errno);
    }
  }
  finished_ = true;
  fds_->staging_dir.Reset();
  EF_RETURN_IF_ERROR(FsyncFd(model_fd, slot_path_.parent_path()));
  if (exchanged) EF_RETURN_IF_ERROR(RemoveTree(staging_path_));
  return Ok();
}

Status StagingSink::Discard() {
  if (finished_) return Ok();
  fds_->file.Reset();
  fds_->file_dir.Reset();
  fds_->staging_dir.Reset();
  finished_ = true;
  return RemoveTree(staging_path_);
}

Result<SlotStore> SlotStore::Open(const fs::path& state_dir) {
  fs::path models = state_dir / "models";
  fs::path downloads = state_dir / "downloads";
  EF_RETURN_IF_ERROR(MakeDir(state_dir));
  EF_RETURN_IF_ERROR(MakeDir(models));
  EF_RETURN_IF_ERROR(MakeDir(downloads));
  return SlotStore(std::move(models), std::move(downloads));
}

fs::path SlotStore::ModelDir(std::string_view model) const {
  return models_dir_ / std::string(model);
}

fs::path SlotStore::SlotPath(std::string_view model, Slot slot) const {
  return ModelDir(model) / std::string(ToString(slot));
}

Result<std::unique_ptr<StagingSink>> SlotStore::BeginStaging(std::string_view model, Slot slot,
                                                             std::optional<Slot> active,
                                                             std::uint64_t needed_bytes,
                                                             std::uint64_t reserve_bytes) const {
  if (!IsSafeSegment(model)) {
    return Fail(ErrorCode::kInvalidArgument, models_dir_.string() + ": model name '" +
                                                 std::string(model) +
                                                 "' is not a single path segment");
  }
  const fs::path model_dir = ModelDir(model);
  if (active && *active == slot) {
    return Fail(ErrorCode::kInvalidArgument, model_dir.string() + ": refusing to stage into slot " +
                                                 std::string(ToString(slot)) +
                                                 ": it is the active slot");
  }
  // Before the first byte or directory: a refusal for space leaves nothing behind.
  EF_RETURN_IF_ERROR(CheckFreeSpace(models_dir_, needed_bytes, reserve_bytes));
  EF_RETURN_IF_ERROR(MakeDir(model_dir));
  auto fds = std::make_unique<StagingSink::Fds>();
  EF_ASSIGN_OR_RETURN(fds->model_dir, OpenDir(model_dir));
  const std::string staging_name = std::string(kStagingPrefix) + std::string(ToString(slot));
  const fs::path staging_path = model_dir / staging_name;
  EF_RETURN_IF_ERROR(RemoveTree(staging_path));  // a leftover from a crashed attempt
  if (::mkdirat(fds->model_dir.get(), staging_name.c_str(), 0755) != 0) {
    return IoError(staging_path, "mkdir", errno);
  }
  EF_RETURN_IF_ERROR(FsyncFd(fds->model_dir.get(), model_dir));
  EF_ASSIGN_OR_RETURN(fds->staging_dir,
                      OpenDirAt(fds->model_dir.get(), staging_name, staging_path));
  return std::unique_ptr<StagingSink>(
      new StagingSink(slot, staging_path, SlotPath(model, slot), std::move(fds)));
}

Status SlotStore::DiscardCandidate(std::string_view model, std::optional<Slot> candidate,
                                   std::optional<Slot> active) const {
  if (!IsSafeSegment(model)) {
    return Fail(ErrorCode::kInvalidArgument, models_dir_.string() + ": model name " +
                                                 QuoteName(model) +
                                                 " is not a single path segment");
  }
  const fs::path model_dir = ModelDir(model);
  if (candidate && active && *candidate == *active) {
    return Fail(ErrorCode::kInvalidArgument, model_dir.string() + ": refusing to remove slot " +
                                                 std::string(ToString(*candidate)) +
                                                 ": it is the active slot");
  }
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(model_dir, ec))) return Ok();
  for (Slot slot : {Slot::kA, Slot::kB}) {
    EF_RETURN_IF_ERROR(
        RemoveTree(model_dir / (std::string(kStagingPrefix) + std::string(ToString(slot)))));
  }
  if (candidate) EF_RETURN_IF_ERROR(RemoveTree(SlotPath(model, *candidate)));
  // rmdir removes the directory only when it is empty: a model with a slot left keeps it.
  if (::rmdir(model_dir.c_str()) != 0 && errno != ENOTEMPTY && errno != EEXIST) {
    return IoError(model_dir, "rmdir", errno);
  }
  return Ok();
}

Result<GcReport> SlotStore::CollectGarbage(const GcOptions& options) const {
  GcReport report;
  auto remove = [&](const fs::path& path) -> Status {
    const std::uint64_t bytes = TreeBytes(path);
    EF_RETURN_IF_ERROR(RemoveTree(path));
    report.removed.push_back(path);
    report.bytes_freed += bytes;
    return Ok();
  };
  std::error_code ec;
  // Staging directories: a model's staging is live only while its deployment is in progress.
  for (fs::directory_iterator models(models_dir_, ec), end; !ec && models != end;
       models.increment(ec)) {
    if (!models->is_directory(ec) || models->is_symlink(ec)) continue;
    const std::string model = models->path().filename().string();
    if (options.busy_models.contains(model)) continue;
    std::vector<fs::path> stale;
    std::error_code inner;
    for (fs::directory_iterator it(models->path(), inner), e; !inner && it != e;
         it.increment(inner)) {
      if (it->path().filename().string().starts_with(kStagingPrefix)) stale.push_back(it->path());
    }
    if (inner) return Fail(ErrorCode::kIo, models->path().string() + ": list: " + inner.message());
    std::sort(stale.begin(), stale.end());  // a stable report
    for (const fs::path& path : stale) EF_RETURN_IF_ERROR(remove(path));
  }
  if (ec) return Fail(ErrorCode::kIo, models_dir_.string() + ": list: " + ec.message());

  const auto now = fs::file_time_type::clock::now();
  std::vector<fs::path> downloads;
  for (fs::directory_iterator it(downloads_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (options.referenced_downloads.contains(name)) continue;
    std::error_code entry_ec;
    // A link is never something the fetcher wrote; remove it without looking at its target.
    if (it->is_symlink(entry_ec) || !name.ends_with(".part")) {
      downloads.push_back(it->path());
      continue;
    }
    const auto mtime = it->last_write_time(entry_ec);
    if (!entry_ec && now - mtime > options.part_max_age) downloads.push_back(it->path());
  }
  if (ec) return Fail(ErrorCode::kIo, downloads_dir_.string() + ": list: " + ec.message());
  std::sort(downloads.begin(), downloads.end());
  for (const fs::path& path : downloads) EF_RETURN_IF_ERROR(remove(path));
  return report;
}

}  // namespace edgefleet::updater
