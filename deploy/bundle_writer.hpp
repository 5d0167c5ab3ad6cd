// Writing bundle archives (*.efb): tar (pax), optionally zstd- or gzip-compressed, through
// libarchive. The archive is written to a temporary file beside the target and renamed into place
// by Commit(), so a failure at any point leaves no half-written bundle behind.
//
// Thread safety: a BundleWriter is used by one thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

enum class Compression { kNone, kGzip, kZstd };

// "none" | "gzip" | "zstd"; fails with kInvalidArgument naming the accepted values.
Result<Compression> ParseCompression(std::string_view text);
std::string_view ToString(Compression compression);
// Guesses the compression of an existing archive from its magic bytes. Fails with kIo.
Result<Compression> DetectCompression(const std::filesystem::path& path);

class BundleWriter final {
 public:
  // `mtime` is stamped on every entry, so equal inputs give equal archives.
  static Result<BundleWriter> Create(const std::filesystem::path& path, Compression compression,
                                     std::int64_t mtime);
  BundleWriter(BundleWriter&&) noexcept;
  BundleWriter& operator=(BundleWriter&&) noexcept;
  BundleWriter(const BundleWriter&) = delete;
  BundleWriter& operator=(const BundleWriter&) = delete;
  ~BundleWriter();  // removes the temporary file unless Commit() succeeded

  // Starts a regular-file entry of exactly `size` bytes; Write() must then deliver them all.
  Status Begin(std::string_view name, std::uint64_t size);
  Status Write(std::span<const std::byte> data);
  Status AddBytes(std::string_view name, std::string_view data);
  // Streams `source` into entry `name` and returns the SHA-256 of the bytes written, so the
  // caller can check that the file did not change since it was hashed. Fails with kIo.
  Result<std::string> AddFile(std::string_view name, const std::filesystem::path& source);

  // Finishes the archive, fsyncs it and renames it over the target path.
  Status Commit();

 private:
  struct Impl;
  explicit BundleWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::deploy
