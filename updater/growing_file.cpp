#include "updater/growing_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace edgefleet::updater {

GrowingFile::~GrowingFile() {
  if (fd_ >= 0) ::close(fd_);
}

void GrowingFile::Grew(const std::filesystem::path& path, std::uint64_t size) {
  std::lock_guard lock(mutex_);
  if (fd_ < 0 && !error_) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      error_ = Error{ErrorCode::kIo, "cannot open '" + path.string() +
                                         "' to follow the download: " + std::strerror(errno)};
    }
  }
  size_ = std::max(size_, size);
  changed_.notify_all();
}

void GrowingFile::Restarted() {
  std::lock_guard lock(mutex_);
  if (!error_) {
    error_ = Error{ErrorCode::kAborted,
                   "the download started over; the bytes read so far are not the bundle's"};
  }
  changed_.notify_all();
}

void GrowingFile::Finished(std::optional<std::filesystem::path> complete_path) {
  std::lock_guard lock(mutex_);
  finished_ = true;
  if (!complete_path && !error_) {
    error_ = Error{ErrorCode::kAborted, "the download ended without the whole bundle"};
  } else if (complete_path && fd_ < 0 && !error_) {
    fd_ = ::open(complete_path->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      error_ = Error{ErrorCode::kIo,
                     "cannot open '" + complete_path->string() + "': " + std::strerror(errno)};
    } else {
      const off_t end = ::lseek(fd_, 0, SEEK_END);
      size_ = end > 0 ? static_cast<std::uint64_t>(end) : 0;
    }
  }
  changed_.notify_all();
}

void GrowingFile::Abort() {
  std::lock_guard lock(mutex_);
  if (!error_) error_ = Error{ErrorCode::kAborted, "reading the download was abandoned"};
  changed_.notify_all();
}

Result<std::uint64_t> GrowingFile::WaitBeyond(std::uint64_t offset) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return error_ || (fd_ >= 0 && size_ > offset) || finished_; });
  if (error_) return Unexpected(*error_);
  return size_;
}

Result<std::size_t> GrowingFileSource::Read(std::span<std::byte> buffer) {
  EF_ASSIGN_OR_RETURN(const std::uint64_t size, file_.WaitBeyond(offset_));
  if (size <= offset_) return std::size_t{0};  // finished, everything read
  const std::size_t want =
      static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - offset_));
  // fd_ is set once and never changes afterwards, so reading it outside the lock is safe.
  while (true) {
    const ssize_t n = ::pread(file_.fd_, buffer.data(), want, static_cast<off_t>(offset_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Fail(ErrorCode::kIo, "reading the download at byte " + std::to_string(offset_) + ": " +
                                      (n < 0 ? std::strerror(errno) : "unexpected end"));
    }
    offset_ += static_cast<std::uint64_t>(n);
    return static_cast<std::size_t>(n);
  }
}

}  // namespace edgefleet::updater
