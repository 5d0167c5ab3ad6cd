#include "deploy/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace edgefleet::deploy {

Result<std::string> ReadSmallFile(const std::filesystem::path& path, std::size_t max_bytes) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return Fail(ErrorCode::kIo, path.string() + ": cannot read: " + ec.message());
  if (size > max_bytes) {
    return Fail(ErrorCode::kLimit, path.string() + ": " + std::to_string(size) +
                                       " bytes, more than the " + std::to_string(max_bytes) +
                                       " allowed");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (!in) return Fail(ErrorCode::kIo, path.string() + ": read failed");
  return buffer.str();
}

Status WriteFileAtomically(const std::filesystem::path& path, std::string_view contents) {
  auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::string temp = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = mkstemp(temp.data());
  if (fd < 0) {
    return Fail(ErrorCode::kIo, path.string() + ": cannot create a temporary file: " +
                                    std::strerror(errno));
  }
  fchmod(fd, 0644);
  std::size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int saved = errno;
      close(fd);
      unlink(temp.c_str());
      return Fail(ErrorCode::kIo, path.string() + ": write failed: " + std::strerror(saved));
    }
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(temp.c_str());
    return Fail(ErrorCode::kIo, path.string() + ": fsync failed: " + std::strerror(errno));
  }
  if (rename(temp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    unlink(temp.c_str());
    return Fail(ErrorCode::kIo, path.string() + ": rename failed: " + std::strerror(saved));
  }
  return Ok();
}

}  // namespace edgefleet::deploy
