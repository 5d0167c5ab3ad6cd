#include "manifests/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "manifests/unique_fd.hpp"

namespace edgefleet::manifests {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

}  // namespace

Result<std::string> ReadSmallFile(const std::filesystem::path& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, path.string() + ": cannot open: " + ErrnoText(errno));
  std::string data;
  char buffer[4096];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    data.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (data.size() > max_bytes) {
      return Fail(ErrorCode::kLimit,
                  path.string() + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  if (in.bad()) return Fail(ErrorCode::kIo, path.string() + ": read failed");
  return data;
}

Status WriteFileAtomically(const std::filesystem::path& path, std::string_view contents,
                           mode_t mode) {
  const std::string where = path.string();
  std::filesystem::path temp = path;
  temp += ".tmp-XXXXXX";
  std::string temp_name = temp.string();
  // mkstemp creates with 0600; fchmod below widens it for public keys only.
  UniqueFd fd(::mkstemp(temp_name.data()));
  if (fd.get() < 0) {
    return Fail(ErrorCode::kIo, where + ": cannot create temporary file: " + ErrnoText(errno));
  }
  bool committed = false;
  struct Cleanup {
    const std::string& name;
    const bool& committed;
    ~Cleanup() {
      if (!committed) ::unlink(name.c_str());
    }
  } cleanup{temp_name, committed};

  if (::fchmod(fd.get(), mode) != 0) {
    return Fail(ErrorCode::kIo, where + ": cannot set file mode: " + ErrnoText(errno));
  }
  std::size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = ::write(fd.get(), contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrorCode::kIo, where + ": write failed: " + ErrnoText(errno));
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    return Fail(ErrorCode::kIo, where + ": fsync failed: " + ErrnoText(errno));
  }
  if (fd.Close() != 0) {
    return Fail(ErrorCode::kIo, where + ": close failed: " + ErrnoText(errno));
  }
  if (::rename(temp_name.c_str(), where.c_str()) != 0) {
    return Fail(ErrorCode::kIo, where + ": cannot rename temporary file: " + ErrnoText(errno));
  }
  committed = true;
  // The rename is durable only once the directory entry is on disk; a failure here leaves a
  // complete file in place, so it is not reported as an error.
  const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : ".";
  UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
  return Ok();
}

}  // namespace edgefleet::manifests
