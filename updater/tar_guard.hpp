// The second layer of the safe archive reader: walks the 512-byte blocks of the plain tar stream
// on its way to libarchive and refuses, before libarchive parses them, the headers whose parsing
// alone costs memory or hides entries:
//   - pax 'x'/'g' headers and GNU 'L'/'K' long names over kMaxMetaHeaderBytes, from the size
//     field (libarchive 3.6.2 reads such a header whole into memory), and more than
//     kMaxMetaHeadersInARow of them before one entry;
//   - sparse files: pax records GNU.sparse.* (formats 0.0, 0.1 and 1.0), SUN.holesdata,
//     SCHILY.realsize, and GNU 'S' headers (libarchive builds the whole sparse map in memory,
//     ~480 MiB for 10 million regions in a 48 KiB bundle, before the entry reaches our checks);
//   - entry types other than files, directories, links and devices; data on anything but a
//     regular file, or on a file header whose name ends in '/' (where libarchive versions
//     disagree about what is data, so the walk could lose step with the parser);
//   - damaged headers (checksum, size field, malformed pax records);
//   - after the end-of-archive marker (the first all-zero header block) anything but zeros, and
//     more than kMaxEndPaddingBytes of them; a stream that ends without the marker.
// Every block is checked before the Read that returns it does, so libarchive never sees an
// unchecked byte. Data is skipped, not kept: only a metadata header's body (capped) is held.
//
// Errors of the ByteSource below pass through unchanged; a problem with the bytes fails Read and
// sets fault(). Where() says where the stream stands, for messages about damage found below.
//
// Thread safety: one thread at a time, like the ByteSource it wraps.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "manifests/result.hpp"
#include "updater/safe_archive.hpp"
#include "updater/stream_fault.hpp"

namespace edgefleet::updater {

inline constexpr std::uint64_t kMaxMetaHeaderBytes = 64 * 1024;
inline constexpr int kMaxMetaHeadersInARow = 8;
// GNU tar and bsdtar pad to 10 KiB records by default; bsdtar's largest blocking factor is 4 MiB.
inline constexpr std::uint64_t kMaxEndPaddingBytes = 4 * 1024 * 1024;

class TarGuard final : public ByteSource {
 public:
  explicit TarGuard(ByteSource& inner) : inner_(inner) {}

  // The inner bytes, each checked; 0 at the end of the stream, once everything was accepted.
  Result<std::size_t> Read(std::span<std::byte> buffer) override;

  const std::optional<StreamFault>& fault() const { return fault_; }
  // True once the end-of-archive marker was seen.
  bool ended() const { return state_ == State::kAfterEnd; }
  // For messages: " while reading 'x'", " after entry 'x'", " after the last entry 'x'", or ""
  // before the first entry.
  std::string Where() const;

 private:
  enum class State { kHeader, kData, kAfterEnd };

  Status Scan(std::span<const std::byte> bytes);
  Status Header();
  Status EndMeta();
  Status PaxRecords(bool global);
  Status AtEnd();
  Error Raise(StreamFault::Kind kind, ErrorCode code, std::string detail,
              std::optional<std::string> entry = std::nullopt);

  ByteSource& inner_;
  State state_ = State::kHeader;
  std::uint64_t pos_ = 0;  // offset in the tar stream of the next byte to check
  std::array<std::byte, 512> block_{};
  std::size_t block_fill_ = 0;
  std::uint64_t header_at_ = 0;  // offset of the last header block

  std::uint64_t data_left_ = 0;  // of the current entry's data
  std::uint64_t pad_left_ = 0;   // then its padding to 512
  char meta_type_ = 0;           // 'x', 'g', 'L' or 'K' while reading such a body, else 0
  std::string meta_;             // that body, at most kMaxMetaHeaderBytes
  int meta_in_a_row_ = 0;
  std::optional<std::uint64_t> pending_size_;  // pax "size" for the next entry
  std::optional<std::string> pending_path_;    // pax "path" or GNU long name

  std::string entry_;  // the last entry's name, raw
  std::uint64_t entries_ = 0;
  std::uint64_t end_at_ = 0;  // offset of the end-of-archive marker
  bool done_ = false;
  std::optional<StreamFault> fault_;
};

}  // namespace edgefleet::updater
