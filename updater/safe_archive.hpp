// Safe, streaming reading of tar archives (plain, zstd or gzip): the one place where bundle
// archives are read, by the agent's updater and by the operator's `edgefleet bundle` tools.
//
// The bytes pass three layers: decompress.hpp (magic bytes decide plain, zstd or gzip; one frame
// or member, nothing after it), tar_guard.hpp (each tar header checked before libarchive parses
// it; only zero padding after the end-of-archive marker), then libarchive's tar reader, given
// plain tar only. The read goes on to the end of the stream after the last entry, so data hidden
// after the archive is found (except when the visitor stops early, see WantsMore).
//
// Accepted: regular files and directories with safe relative paths. Refused with kUnsafeArchive
// naming the entry: absolute paths, ".." segments, symlinks, hardlinks, devices, FIFOs, sockets,
// sparse files, other entry types, duplicate entries, non-UTF-8/over-long names. Refused with
// kLimit: more entries, a larger file or a larger total than the limits; pax or GNU extension
// headers over 64 KiB; a zstd window over 8 MiB. Refused with kIntegrity: truncated or corrupt
// archives (the message says where: "while reading 'x'", "after entry 'x'", "after the last
// entry 'x'", and whether the damage is in the compressed stream), data after the end of the
// archive, an empty file. Other recognisable formats (xz, bzip2, zip, 7z, ...) fail with
// kUnsupported naming the format. Errors of the ByteSource and the visitor pass unchanged.
// Data is streamed through the visitor in chunks; the archive never sits in memory, and memory
// stays bounded (a few MiB) whatever the headers declare.
//
// Thread safety: a call is self-contained; visitors are called on the calling thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>

#include "manifests/bundle_layout.hpp"
#include "manifests/result.hpp"

namespace edgefleet::updater {

struct ArchiveLimits {
  std::size_t max_entries = manifests::kDefaultMaxEntries;
  std::uint64_t max_file_bytes = manifests::kDefaultMaxFileBytes;
  std::uint64_t max_total_bytes = manifests::kDefaultMaxTotalBytes;
};

// Receives the regular-file and directory entries of an archive, in archive order. Any error
// returned stops the read and is passed back to the caller unchanged.
class EntryVisitor {
 public:
  virtual ~EntryVisitor() = default;
  // A directory entry, after the reader's own checks; `path` is normalised and has no trailing
  // '/'. Directories carry no bytes; a visitor with layout rules (the bundle's manifest) judges
  // them here like files, so that no entry escapes those rules.
  virtual Status Directory(std::string_view /*path*/) { return Ok(); }
  // `path` is normalised (a leading "./" removed); `size` is the size the tar header declares.
  virtual Status BeginFile(std::string_view path, std::uint64_t size) = 0;
  virtual Status Data(std::span<const std::byte> chunk) = 0;
  // Called after the entry's last byte; the reader has checked that exactly `size` bytes came.
  virtual Status EndFile() = 0;
  // Asked after each EndFile: false ends the read there with success, so a caller that needs
  // only the first entries (ReadBundleManifest) does not pull the rest of a large archive.
  virtual bool WantsMore() const { return true; }
};

// A stream of archive bytes. Read returns the number of bytes placed in `buffer` (0 at the end)
// or an error. Wrappers of a ByteSource inject faults in tests and hash bytes as they pass.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual Result<std::size_t> Read(std::span<std::byte> buffer) = 0;
};

// Reads a file in large chunks. Open fails with kIo naming the path, also when the path is not
// a regular file (a FIFO is refused at once, without waiting for a writer).
class FileByteSource final : public ByteSource {
 public:
  static Result<FileByteSource> Open(const std::filesystem::path& path);
  FileByteSource(FileByteSource&& other) noexcept;
  FileByteSource& operator=(FileByteSource&& other) noexcept;
  FileByteSource(const FileByteSource&) = delete;
  FileByteSource& operator=(const FileByteSource&) = delete;
  ~FileByteSource() override;

  Result<std::size_t> Read(std::span<std::byte> buffer) override;

 private:
  FileByteSource(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

// Reads the whole archive from `source`, handing files to `visitor`. `source_name` (e.g. the
// bundle's file name) prefixes every message. Returns the first error (from the archive, the
// limits or the visitor).
Status ReadSafeArchive(ByteSource& source, const ArchiveLimits& limits, EntryVisitor& visitor,
                       std::string_view source_name);

}  // namespace edgefleet::updater
