#include "updater/tar_guard.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "manifests/log_value.hpp"

namespace edgefleet::updater {
namespace {

using manifests::EscapeText;
using manifests::QuoteName;

constexpr std::uint64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

// ustar field offsets.
constexpr std::size_t kNameAt = 0, kNameLen = 100;
constexpr std::size_t kSizeAt = 124, kSizeLen = 12;
constexpr std::size_t kChecksumAt = 148, kChecksumLen = 8;
constexpr std::size_t kTypeAt = 156;
constexpr std::size_t kMagicAt = 257;
constexpr std::size_t kPrefixAt = 345, kPrefixLen = 155;

std::uint64_t Padding(std::uint64_t size) { return (512 - size % 512) % 512; }

std::string_view Field(std::span<const std::byte, 512> block, std::size_t at, std::size_t len) {
  const char* p = reinterpret_cast<const char*>(block.data()) + at;
  return {p, strnlen(p, len)};
}

// A numeric header field as libarchive's tar_atol reads it: base-256 when the high bit of the
// first byte is set, else octal after leading blanks. nullopt when negative or over INT64_MAX
// (libarchive refuses those too).
std::optional<std::uint64_t> Number(std::span<const std::byte, 512> block, std::size_t at,
                                    std::size_t len) {
  const auto* p = reinterpret_cast<const unsigned char*>(block.data()) + at;
  std::uint64_t value = 0;
  if (p[0] & 0x80) {
    if (p[0] & 0x40) return std::nullopt;  // negative
    value = p[0] & 0x3f;
    for (std::size_t i = 1; i < len; ++i) {
      if (value > (kInt64Max >> 8)) return std::nullopt;
      value = (value << 8) | p[i];
    }
    return value;
  }
  std::size_t i = 0;
  while (i < len && (p[i] == ' ' || p[i] == '\t')) ++i;
  if (i < len && p[i] == '-') return std::nullopt;
  for (; i < len && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (value > (kInt64Max >> 3)) return std::nullopt;
    value = (value << 3) | (p[i] - '0');
  }
  return value;
}

// As libarchive: the sum of the header bytes with the checksum field read as spaces, either
// unsigned (POSIX) or signed (old Sun and GNU tars).
bool ChecksumMatches(std::span<const std::byte, 512> block) {
  const std::optional<std::uint64_t> stored = Number(block, kChecksumAt, kChecksumLen);
  if (!stored) return false;
  std::int64_t unsigned_sum = 0;
  std::int64_t signed_sum = 0;
  for (std::size_t i = 0; i < 512; ++i) {
    const bool in_field = i >= kChecksumAt && i < kChecksumAt + kChecksumLen;
    const auto byte = in_field ? std::byte{' '} : block[i];
    unsigned_sum += static_cast<unsigned char>(byte);
    signed_sum += static_cast<signed char>(byte);
  }
  return static_cast<std::int64_t>(*stored) == unsigned_sum ||
         static_cast<std::int64_t>(*stored) == signed_sum;
}

bool AllZero(std::span<const std::byte> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

std::string MetaName(char type) {
  switch (type) {
    case 'x':
      return "pax extended header";
    case 'g':
      return "pax global header";
    case 'L':
      return "GNU long name";
    default:
      return "GNU long link name";
  }
}

// Keys whose presence makes libarchive treat the entry as sparse (and build its map).
bool IsSparseKey(std::string_view key) {
  return key.starts_with("GNU.sparse.") || key == "SUN.holesdata" || key == "SCHILY.realsize";
}

}  // namespace

Error TarGuard::Raise(StreamFault::Kind kind, ErrorCode code, std::string detail,
                      std::optional<std::string> entry) {
  fault_ = StreamFault{kind, code, std::move(detail), std::move(entry), false};
  return Error{code, fault_->detail};
}

std::string TarGuard::Where() const {
  if (state_ == State::kData && meta_type_ == 0 && data_left_ > 0) {
    return " while reading " + QuoteName(entry_);
  }
  if (entries_ == 0) return "";
  if (state_ == State::kAfterEnd) return " after the last entry " + QuoteName(entry_);
  return " after entry " + QuoteName(entry_);
}

Result<std::size_t> TarGuard::Read(std::span<std::byte> buffer) {
  if (fault_) return Error{fault_->code, fault_->detail};
  if (done_) return std::size_t{0};
  Result<std::size_t> n = inner_.Read(buffer);
  if (!n) return n;  // the source's own error, unchanged
  if (*n > buffer.size()) return Fail(ErrorCode::kInternal, "byte source returned too much");
  if (*n == 0) {
    EF_RETURN_IF_ERROR(AtEnd());
    done_ = true;
    return std::size_t{0};
  }
  EF_RETURN_IF_ERROR(Scan(buffer.first(*n)));
  return n;
}

Status TarGuard::Scan(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    std::size_t take = 0;
    switch (state_) {
      case State::kHeader:
        take = std::min(bytes.size(), block_.size() - block_fill_);
        std::memcpy(block_.data() + block_fill_, bytes.data(), take);
        block_fill_ += take;
        pos_ += take;
        if (block_fill_ == block_.size()) {
          block_fill_ = 0;
          header_at_ = pos_ - block_.size();
          EF_RETURN_IF_ERROR(Header());
        }
        break;
      case State::kData:
        if (data_left_ > 0) {
          take = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), data_left_));
          if (meta_type_ != 0) meta_.append(reinterpret_cast<const char*>(bytes.data()), take);
          data_left_ -= take;
        } else {
          take = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), pad_left_));
          pad_left_ -= take;
        }
        pos_ += take;
        if (data_left_ == 0 && pad_left_ == 0) {
          state_ = State::kHeader;
          if (meta_type_ != 0) EF_RETURN_IF_ERROR(EndMeta());
        }
        break;
      case State::kAfterEnd: {
        take = bytes.size();
        const auto nonzero =
            std::find_if(bytes.begin(), bytes.end(), [](std::byte b) { return b != std::byte{0}; });
        if (nonzero != bytes.end()) {
          const std::uint64_t at = pos_ + static_cast<std::uint64_t>(nonzero - bytes.begin());
          return Raise(StreamFault::Kind::kTrailingData, ErrorCode::kIntegrity,
                       "a non-zero byte at offset " + std::to_string(at) + " of the tar stream, " +
                           std::to_string(at - end_at_) +
                           " bytes after the end-of-archive marker at offset " +
                           std::to_string(end_at_) + "; only zero padding may follow it");
        }
        pos_ += take;
        if (pos_ - end_at_ > kMaxEndPaddingBytes) {
          return Raise(StreamFault::Kind::kTrailingData, ErrorCode::kIntegrity,
                       "more than " + std::to_string(kMaxEndPaddingBytes) +
                           " bytes of zero padding after the end-of-archive marker at offset " +
                           std::to_string(end_at_));
        }
        break;
      }
    }
    bytes = bytes.subspan(take);
  }
  return Ok();
}

Status TarGuard::Header() {
  const std::span<const std::byte, 512> block(block_);
  const std::string at = "offset " + std::to_string(header_at_);
  if (AllZero(block)) {
    if (meta_in_a_row_ > 0) {
      return Raise(StreamFault::Kind::kCorrupt, ErrorCode::kIntegrity,
                   "the end-of-archive marker at " + at +
                       " follows a pax or GNU extension header that belongs to no entry");
    }
    state_ = State::kAfterEnd;
    end_at_ = header_at_;
    return Ok();
  }
  if (!ChecksumMatches(block)) {
    if (header_at_ == 0) {
      return Raise(StreamFault::Kind::kNotATar, ErrorCode::kIntegrity,
                   "is not a tar archive (no valid tar header at its start)");
    }
    return Raise(StreamFault::Kind::kCorrupt, ErrorCode::kIntegrity,
                 "the tar header at " + at + " has a bad checksum");
  }
  const char type = static_cast<char>(block[kTypeAt]);
  std::string name(Field(block, kNameAt, kNameLen));
  const std::string_view prefix = Field(block, kPrefixAt, kPrefixLen);
  if (Field(block, kMagicAt, 6) == "ustar" && static_cast<char>(block[kMagicAt + 5]) == '\0' &&
      !prefix.empty()) {
    name = std::string(prefix) + "/" + name;
  }
  const std::optional<std::uint64_t> size = Number(block, kSizeAt, kSizeLen);
  if (!size) {
    return Raise(StreamFault::Kind::kCorrupt, ErrorCode::kIntegrity,
                 "the tar header at " + at + " has an invalid size field");
  }

  switch (type) {
    case 'x':
    case 'g':
    case 'L':
    case 'K': {
      meta_type_ = type;
      if (++meta_in_a_row_ > kMaxMetaHeadersInARow) {
        return Raise(StreamFault::Kind::kRefused, ErrorCode::kLimit,
                     "more than " + std::to_string(kMaxMetaHeadersInARow) +
                         " pax or GNU extension headers in a row (at " + at + ")");
      }
      // Refused from the size field: libarchive would read the whole body into memory.
      if (*size > kMaxMetaHeaderBytes) {
        return Raise(StreamFault::Kind::kRefused, ErrorCode::kLimit,
                     MetaName(type) + " at " + at + " is " + std::to_string(*size) +
                         " bytes, the limit is " + std::to_string(kMaxMetaHeaderBytes));
      }
      meta_.clear();
      data_left_ = *size;
      pad_left_ = Padding(*size);
      state_ = State::kData;
      if (*size == 0) {
        state_ = State::kHeader;
        return EndMeta();
      }
      return Ok();
    }
    case 'S':
      return Raise(StreamFault::Kind::kRefused, ErrorCode::kUnsafeArchive,
                   "sparse file (GNU 'S' header at " + at + ")", pending_path_.value_or(name));
    case '0':
    case '\0':
    case '7':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
      break;
    default:
      return Raise(
          StreamFault::Kind::kRefused, ErrorCode::kUnsafeArchive,
          "unsupported tar entry type '" + EscapeText(std::string(1, type)) + "' (at " + at + ")",
          pending_path_.value_or(name));
  }

  // As libarchive 3.6.2: links, devices, FIFOs and directories carry no data unless a pax
  // "size" says so; pax "size" overrides the header's for every type. Where libarchive versions
  // differ (or guess) about whether data follows a header, the entry is refused, so that this
  // walk and libarchive can never disagree about where the next header starts: data on anything
  // but a regular file, and data on a regular-file header whose name ends in '/' (old tars'
  // directories; libarchive 3.7 ignores that data, 3.6 skips it). No bundle holds either.
  const bool no_data_type = type >= '1' && type <= '6';
  const std::uint64_t data = pending_size_.value_or(type == '1' || !no_data_type ? *size : 0);
  entry_ = pending_path_.value_or(name);
  ++entries_;
  if (no_data_type && data > 0) {
    return Raise(StreamFault::Kind::kRefused, ErrorCode::kUnsafeArchive,
                 std::string(type == '1' ? "hardlink" : "non-file entry") + " with " +
                     std::to_string(data) + " bytes of data (at " + at + ")",
                 entry_);
  }
  if (!no_data_type && data > 0 && entry_.ends_with('/')) {
    return Raise(StreamFault::Kind::kRefused, ErrorCode::kUnsafeArchive,
                 "regular-file header for a directory name (at " + at + ")", entry_);
  }
  pending_size_.reset();
  pending_path_.reset();
  meta_in_a_row_ = 0;
  meta_type_ = 0;
  data_left_ = data;
  pad_left_ = Padding(data);
  state_ = data > 0 ? State::kData : State::kHeader;
  return Ok();
}

Status TarGuard::EndMeta() {
  const char type = std::exchange(meta_type_, 0);
  switch (type) {
    case 'x':
      return PaxRecords(false);
    case 'g':
      return PaxRecords(true);
    case 'L':
      pending_path_ = meta_.substr(0, meta_.find('\0'));
      return Ok();
    default:
      return Ok();
  }
}

// Records are "<length> <key>=<value>\n", the length counting the whole record. libarchive
// ignores a malformed header with a warning, which the safe reader refuses anyway.
Status TarGuard::PaxRecords(bool global) {
  const std::string at = "offset " + std::to_string(header_at_);
  std::string_view rest = meta_;
  while (!rest.empty()) {
    std::size_t digits = 0;
    std::uint64_t length = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9' && digits < 18) {
      length = length * 10 + static_cast<std::uint64_t>(rest[digits] - '0');
      ++digits;
    }
    const std::string_view record =
        length <= rest.size() ? rest.substr(0, static_cast<std::size_t>(length)) : "";
    const std::size_t equals = record.find('=');
    if (digits == 0 || record.size() <= digits + 1 || record[digits] != ' ' ||
        record.back() != '\n' || equals == std::string_view::npos || equals == digits + 1) {
      return Raise(StreamFault::Kind::kCorrupt, ErrorCode::kIntegrity,
                   "malformed record in the " + MetaName(global ? 'g' : 'x') + " at " + at);
    }
    const std::string_view key = record.substr(digits + 1, equals - digits - 1);
    const std::string_view value = record.substr(equals + 1, record.size() - equals - 2);
    if (IsSparseKey(key)) {
      // Refused at the key, before libarchive builds the map (format 0.x lists it here,
      // format 1.0 at the start of the entry's data).
      return Raise(StreamFault::Kind::kRefused, ErrorCode::kUnsafeArchive,
                   "sparse file (" + MetaName(global ? 'g' : 'x') + " at " + at + " has " +
                       EscapeText(key, 40) + ")",
                   pending_path_);
    }
    if (!global && key == "path") pending_path_ = std::string(value);
    if (!global && key == "size") {
      std::uint64_t size = 0;
      bool valid = !value.empty() && value.size() <= 18;
      for (char c : value) valid = valid && c >= '0' && c <= '9';
      for (char c : value) size = valid ? size * 10 + static_cast<std::uint64_t>(c - '0') : 0;
      if (!valid) {
        return Raise(
            StreamFault::Kind::kCorrupt, ErrorCode::kIntegrity,
            "the pax extended header at " + at + " has an invalid size " + QuoteName(value));
      }
      pending_size_ = size;
    }
    rest.remove_prefix(record.size());
  }
  return Ok();
}

Status TarGuard::AtEnd() {
  switch (state_) {
    case State::kAfterEnd:
      return Ok();
    case State::kHeader:
      if (block_fill_ > 0 && AllZero(std::span(block_.data(), block_fill_))) {
        return Raise(StreamFault::Kind::kTruncated, ErrorCode::kIntegrity,
                     "the stream ends inside the end-of-archive marker");
      }
      if (block_fill_ > 0) {
        return Raise(
            StreamFault::Kind::kTruncated, ErrorCode::kIntegrity,
            "the stream ends inside a tar header at offset " + std::to_string(pos_ - block_fill_));
      }
      return Raise(StreamFault::Kind::kTruncated, ErrorCode::kIntegrity,
                   "the stream ends without an end-of-archive marker");
    case State::kData:
      if (meta_type_ != 0) {
        return Raise(StreamFault::Kind::kTruncated, ErrorCode::kIntegrity,
                     "the stream ends inside the " + MetaName(meta_type_) + " at offset " +
                         std::to_string(header_at_));
      }
      return Raise(StreamFault::Kind::kTruncated, ErrorCode::kIntegrity,
                   data_left_ > 0 ? "the stream ends " + std::to_string(data_left_) +
                                        " bytes before the end of the entry's data"
                                  : "the stream ends inside the padding after the entry's data");
  }
  return Ok();
}

}  // namespace edgefleet::updater
