// The first layer of the safe archive reader: turns a bundle file's bytes (tar, tar+zstd or
// tar+gzip, told apart by their magic bytes) into the plain tar stream, streamed.
//
// Decompressing here rather than in libarchive's filters decides exactly what counts as the end:
// a bundle is ONE zstd frame or ONE gzip member, and nothing may follow it (no second frame or
// member, no skippable frame, no garbage), so that no tool that reads concatenated frames
// (`zstd -d`, `gzip -d`, `tar -i`) can see entries the reader never checked. Other formats that
// are recognisable (xz, bzip2, zip, 7z, lz4, lzip, compress) and an empty file are named instead
// of being reported as a corrupt archive. A zstd frame may ask for a window of at most
// kMaxZstdWindowLog (8 MiB: every level up to 19 without --long), which bounds the memory a
// hostile frame header can claim.
//
// Cost, measured with `edgefleet bundle verify` on a 512 MiB incompressible bundle from the page
// cache (medians of 3, against libarchive's own filters on the same machine): zstd 1.07 s vs
// 1.07 s, plain 0.87-0.99 s vs 0.91 s, gzip 1.35 s vs 1.12 s (about 0.1 s more user time in
// zlib; the buffer sizes made no difference); peak RSS unchanged at 17-19 MiB.
//
// Errors of the ByteSource below pass through unchanged; a problem with the bytes themselves
// fails Read with a message and sets fault() (see stream_fault.hpp). After a fault, Read keeps
// failing. Output produced before a fault is returned first; the fault comes with the next Read.
//
// Thread safety: one thread at a time, like the ByteSource it wraps.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "manifests/result.hpp"
#include "updater/safe_archive.hpp"
#include "updater/stream_fault.hpp"

namespace edgefleet::updater {

inline constexpr int kMaxZstdWindowLog = 23;

class DecompressingSource final : public ByteSource {
 public:
  explicit DecompressingSource(ByteSource& inner);
  DecompressingSource(const DecompressingSource&) = delete;
  DecompressingSource& operator=(const DecompressingSource&) = delete;
  ~DecompressingSource() override;

  // Plain tar bytes; 0 only at the clean end of the (compressed) stream.
  Result<std::size_t> Read(std::span<std::byte> buffer) override;

  // Set when Read failed because of the stream's bytes (not because `inner` failed).
  const std::optional<StreamFault>& fault() const;

 private:
  struct Impl;  // keeps zstd.h and zlib.h out of this header
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::updater
