#include "agent/shared_memory.hpp"
#include "manifests/log_value.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

namespace edgefleet::agent {

struct SharedMemoryRegistry::Region {
  SharedMemoryRegionInfo info;
  int fd = -1;
  Region() = default;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region() {
    if (fd >= 0) ::close(fd);
  }
};

bool IsRegionName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (unsigned char c : name) {
    if (!std::isalnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

bool IsSharedMemoryKey(const std::string& key) {
  if (key.size() < 2 || key.size() > 255 || key[0] != '/') return false;
  if (key == "/." || key == "/..") return false;
  for (std::size_t i = 1; i < key.size(); ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

Status SharedMemoryRegistry::Register(const std::string& name, const std::string& key,
                                      std::uint64_t offset, std::uint64_t byte_size) {
  if (!IsRegionName(name)) {
    return Fail(ErrorCode::kInvalidArgument,
                "region name: expected 1-128 characters of A-Z a-z 0-9 _ . -");
  }
  if (!IsSharedMemoryKey(key)) {
    return Fail(ErrorCode::kInvalidArgument,
                "region '" + name +
                    "': key: expected \"/name\" (one leading slash, no other, "
                    "at most 255 characters)");
  }
  if (byte_size == 0 || offset > std::numeric_limits<std::uint64_t>::max() - byte_size) {
    return Fail(ErrorCode::kInvalidArgument,
                "region '" + name +
                    "': byte_size must be positive and offset + byte_size must "
                    "not overflow");
  }
  // Caller holds mu_. Checked before opening the object and again before adding it: another
  // request may take the name or the last slot meanwhile.
  auto check_room = [&]() -> Status {
    if (regions_.count(name) != 0) {
      return Fail(ErrorCode::kInvalidArgument, "region '" + name + "' is already registered");
    }
    if (regions_.size() >= max_regions_) {
      return Fail(ErrorCode::kLimit, "region '" + name + "': " + std::to_string(max_regions_) +
                                         " regions are registered, the most allowed");
    }
    return Ok();
  };
  {
    std::lock_guard lock(mu_);
    EF_RETURN_IF_ERROR(check_room());
  }
  auto region = std::make_shared<Region>();
  region->info = {name, key, offset, byte_size};
  // Read-only: the agent never writes a client's memory. glibc adds O_NOFOLLOW and O_CLOEXEC.
  // O_NONBLOCK: a FIFO someone made under /dev/shm would otherwise hold this worker in open()
  // until a writer came; it opens at once and fails the regular-file check below.
  region->fd = ::shm_open(key.c_str(), O_RDONLY | O_NONBLOCK, 0);
  if (region->fd < 0) {
    const int err = errno;
    return Fail(
        err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
        "region '" + name + "': cannot open shared memory " + key + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(region->fd, &st) != 0) {
    return Fail(ErrorCode::kIo,
                "region '" + name + "': cannot stat " + key + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                "region '" + name + "': " + key + " is not a shared memory object");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (offset + byte_size > size) {
    return Fail(ErrorCode::kInvalidArgument, "region '" + name + "': offset " +
                                                 std::to_string(offset) + " + byte_size " +
                                                 std::to_string(byte_size) + " passes the end of " +
                                                 key + " (" + std::to_string(size) + " bytes)");
  }
  std::lock_guard lock(mu_);
  EF_RETURN_IF_ERROR(check_room());
  regions_.emplace(name, std::move(region));
  return Ok();
}

Status SharedMemoryRegistry::Unregister(const std::string& name) {
  std::lock_guard lock(mu_);
  if (regions_.erase(name) == 0) {
    return Fail(ErrorCode::kNotFound, "no shared memory region " + manifests::QuoteName(name));
  }
  return Ok();
}

void SharedMemoryRegistry::UnregisterAll() {
  std::map<std::string, std::shared_ptr<const Region>> gone;
  std::lock_guard lock(mu_);
  gone.swap(regions_);
}

std::vector<SharedMemoryRegionInfo> SharedMemoryRegistry::List() const {
  std::vector<SharedMemoryRegionInfo> out;
  std::lock_guard lock(mu_);
  for (const auto& [name, region] : regions_) out.push_back(region->info);
  return out;
}

Result<SharedMemoryRegionInfo> SharedMemoryRegistry::Find(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return Fail(ErrorCode::kNotFound, "no shared memory region " + manifests::QuoteName(name));
  }
  return it->second->info;
}

Status SharedMemoryRegistry::Read(const std::string& name, std::uint64_t offset, std::uint64_t size,
                                  std::vector<std::byte>* out) const {
  std::shared_ptr<const Region> region;
  {
    std::lock_guard lock(mu_);
    auto it = regions_.find(name);
    if (it == regions_.end()) {
      return Fail(ErrorCode::kNotFound, "no shared memory region " + manifests::QuoteName(name));
    }
    region = it->second;
  }
  const SharedMemoryRegionInfo& info = region->info;
  if (offset > info.byte_size || size > info.byte_size - offset) {
    return Fail(ErrorCode::kInvalidArgument,
                "region '" + name + "': offset " + std::to_string(offset) + " + " +
                    std::to_string(size) + " bytes passes the region's " +
                    std::to_string(info.byte_size) + " bytes");
  }
  out->resize(size);
  std::uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(region->fd, out->data() + done, size - done,
                              static_cast<off_t>(info.offset + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "the object is shorter now";
      return Fail(ErrorCode::kIo, "region '" + name + "' (" + info.key + "): read " +
                                      std::to_string(done) + " of " + std::to_string(size) +
                                      " bytes: " + why);
    }
    done += static_cast<std::uint64_t>(n);
  }
  return Ok();
}

}  // namespace edgefleet::agent
