// Fuzzes the bundle reader: updater::VerifyBundle (tar, plain or zstd/gzip, manifest first,
// release signatures against the fixed trust root, sizes and hashes) over the input as an
// in-memory ByteSource, with a sink that takes and drops each verified-so-far file; then
// updater::ReadSafeArchive over the same bytes with a visitor that discards, which reaches every
// entry of an archive whose manifest does not verify. The seeds (tests/fuzz/corpus/archive) are
// bundles signed with the fixed keys of fuzz_keys.hpp.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>

#include "tests/fuzz/fuzz_keys.hpp"
#include "updater/bundle_reader.hpp"
#include "updater/safe_archive.hpp"

namespace {

using edgefleet::Ok;
using edgefleet::Result;
using edgefleet::Status;

// Hands out the input in reads of at most `chunk` bytes (libarchive then sees short reads).
class MemorySource final : public edgefleet::updater::ByteSource {
 public:
  MemorySource(std::string_view bytes, std::size_t chunk) : bytes_(bytes), chunk_(chunk) {}
  Result<std::size_t> Read(std::span<std::byte> buffer) override {
    const std::size_t n = std::min({buffer.size(), bytes_.size(), chunk_});
    std::memcpy(buffer.data(), bytes_.data(), n);
    bytes_.remove_prefix(n);
    return n;
  }

 private:
  std::string_view bytes_;
  std::size_t chunk_;
};

class DiscardSink final : public edgefleet::updater::FileSink {
 public:
  Status Begin(std::string_view, std::uint64_t) override { return Ok(); }
  Status Write(std::span<const std::byte>) override { return Ok(); }
  Status End(bool) override { return Ok(); }
};

class DiscardVisitor final : public edgefleet::updater::EntryVisitor {
 public:
  Status BeginFile(std::string_view, std::uint64_t) override { return Ok(); }
  Status Data(std::span<const std::byte>) override { return Ok(); }
  Status EndFile() override { return Ok(); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Small limits: a few bytes claiming a huge entry must be refused, not allocated or read.
  edgefleet::updater::ArchiveLimits limits;
  limits.max_entries = 64;
  limits.max_file_bytes = 1u << 20;
  limits.max_total_bytes = 4u << 20;
  // The chunk size varies with the input's length, so short reads are exercised too.
  const std::size_t chunk = size % 7 == 0 ? 512 : 64 * 1024;
  {
    MemorySource source(bytes, chunk);
    DiscardSink sink;
    auto verified = edgefleet::updater::VerifyBundle(
        source, "fuzz.efb", edgefleet::fuzz::FixedTrustRoot(), limits, &sink);
    // FUZZ_VERBOSE=1 says why an input is refused: how to check that a seed gets past the
    // signature check (a seed that does not only exercises the reader up to manifest.json).
    static const bool verbose = std::getenv("FUZZ_VERBOSE") != nullptr;
    if (verbose) {
      std::fprintf(stderr, "VerifyBundle: %s\n",
                   verified ? "verified" : verified.error().message.c_str());
    }
  }
  {
    MemorySource source(bytes, chunk);
    DiscardVisitor visitor;
    (void)edgefleet::updater::ReadSafeArchive(source, limits, visitor, "fuzz.tar");
  }
  return 0;
}
