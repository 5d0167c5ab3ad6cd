#include "deploy/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
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

// "HOST:PORT" or "[IPv6]:PORT"; the port in [min_port, 65535].
Result<HostPort> ParseHostPort(std::string_view flag, const std::string& text, int min_port) {
  auto refuse = [&] {
    return Fail(ErrorCode::kInvalidArgument, std::string(flag) + ": expected HOST:PORT (port " +
                                                 std::to_string(min_port) + "..65535), found '" +
                                                 text + "'");
  };
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return refuse();
  HostPort out;
  out.host = text.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  const char* begin = text.data() + colon + 1;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, out.port);
  if (ec != std::errc() || ptr != end || out.port < min_port || out.port > 65535 ||
      out.host.empty()) {
    return refuse();
  }
  return out;
}

}  // namespace edgefleet::deploy
