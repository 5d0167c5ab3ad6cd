// Input tensors from POSIX shared memory: the system shared memory extension of the KServe v2 /
// Triton protocol, input side. An application on the box writes a frame into a shm object
// (shm_open), registers it once as a named region, and then sends infer requests whose inputs
// say {"shared_memory_region": name, "shared_memory_byte_size": n[, "shared_memory_offset": k]}
// instead of carrying the bytes: a 224x224x3 float frame is 588 KiB that no longer crosses the
// socket (bench/RESULTS.md measures both).
//
// Hostile clients: region names and keys are checked (a key is "/name", no other slash, so only
// objects under /dev/shm can be opened, and glibc opens them O_NOFOLLOW); the object must be a
// regular file at least offset + byte_size long when registered; reads use pread on the
// registered descriptor, never mmap, so a client that truncates the object afterwards gets a
// clear short-read error rather than crashing the agent with SIGBUS; at most `max_regions`.
// Output to shared memory is not supported.
//
// Thread safety: all methods are thread-safe. A read holds its region alive, so an unregister
// during a request neither fails that request nor closes the descriptor under it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::agent {

struct SharedMemoryRegionInfo {
  std::string name;
  std::string key;
  std::uint64_t offset = 0;
  std::uint64_t byte_size = 0;
};

class SharedMemoryRegistry {
 public:
  explicit SharedMemoryRegistry(std::size_t max_regions) : max_regions_(max_regions) {}

  // kInvalidArgument: bad name or key, already registered, object too small or not a regular
  // file; kNotFound: no such object; kLimit: max_regions reached; kIo: other open/stat failure.
  Status Register(const std::string& name, const std::string& key, std::uint64_t offset,
                  std::uint64_t byte_size);
  // kNotFound when no region has that name.
  Status Unregister(const std::string& name);
  void UnregisterAll();
  // Every region, or only `name` (kNotFound when unknown).
  std::vector<SharedMemoryRegionInfo> List() const;
  Result<SharedMemoryRegionInfo> Find(const std::string& name) const;
  // Reads `size` bytes at `offset` within region `name` into `out` (resized). kNotFound unknown
  // region; kInvalidArgument when offset + size passes the region's end; kIo on a short read.
  Status Read(const std::string& name, std::uint64_t offset, std::uint64_t size,
              std::vector<std::byte>* out) const;

 private:
  struct Region;
  std::size_t max_regions_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Region>> regions_;  // guarded by mu_
};

// A region name: 1-128 characters of [A-Za-z0-9_.-]. A key: "/" then 1-254 characters, none of
// them "/" or a control character, and not "/." or "/..".
bool IsRegionName(const std::string& name);
bool IsSharedMemoryKey(const std::string& key);

}  // namespace edgefleet::agent
