// ByteSources and visitors for updater tests: in-memory archives served in chunks of a chosen
// size (short reads), sources that fail after N bytes, and a tar stream generated on the fly so
// that multi-gigabyte entries can be offered without ever existing in memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "manifests/result.hpp"
#include "tests/support/tar_builder.hpp"
#include "updater/safe_archive.hpp"

// Asserts that a Result holds a value, printing its error otherwise (evaluated only on failure).
#define EF_ASSERT_OK(expr)                                 \
  do {                                                     \
    const auto& ef_result_ = (expr);                       \
    ASSERT_TRUE(ef_result_) << ef_result_.error().message; \
  } while (0)

namespace edgefleet::testing {

inline const char* CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "plain";
    case Compression::kZstd:
      return "zstd";
    case Compression::kGzip:
      return "gzip";
  }
  return "unknown";
}

// Readable test names and messages for parameterised tests (found by ADL).
inline void PrintTo(Compression compression, std::ostream* os) {
  *os << CompressionName(compression);
}

// The name generator for INSTANTIATE_TEST_SUITE_P over the compressions.
inline std::string CompressionTestName(const ::testing::TestParamInfo<Compression>& info) {
  return CompressionName(info.param);
}

}  // namespace edgefleet::testing

namespace edgefleet::updater::test {

// Serves `data` at most `chunk` bytes per Read; after `fail_after` bytes, Read fails with `error`.
class StringSource final : public ByteSource {
 public:
  explicit StringSource(std::string data, std::size_t chunk = SIZE_MAX)
      : data_(std::move(data)), chunk_(chunk) {}

  StringSource& FailAfter(std::size_t bytes, Error error) {
    fail_after_ = bytes;
    error_ = std::move(error);
    return *this;
  }

  Result<std::size_t> Read(std::span<std::byte> buffer) override {
    if (pos_ >= fail_after_) return Unexpected(error_);
    std::size_t n = std::min({buffer.size(), chunk_, data_.size() - pos_, fail_after_ - pos_});
    std::memcpy(buffer.data(), data_.data() + pos_, n);
    pos_ += n;
    ++reads_;
    return n;
  }

  std::size_t served() const { return pos_; }
  std::size_t reads() const { return reads_; }

 private:
  std::string data_;
  std::size_t chunk_;
  std::size_t pos_ = 0;
  std::size_t reads_ = 0;
  std::size_t fail_after_ = SIZE_MAX;
  Error error_;
};

// The byte a generated entry holds at `offset`: a pattern, so dropped or repeated chunks show.
inline std::byte PatternByte(std::uint64_t offset) { return std::byte(offset % 251); }

// A ustar stream generated while it is read. Entries either carry literal contents or declare a
// size whose bytes are PatternByte(offset), produced on demand; sizes use GNU base-256 in the
// header, so any size fits. Nothing but the literal contents is held in memory.
class GeneratedTarSource final : public ByteSource {
 public:
  GeneratedTarSource& Literal(std::string path, std::string contents) {
    entries_.push_back({std::move(path), contents.size(), std::move(contents), true});
    return *this;
  }
  GeneratedTarSource& Pattern(std::string path, std::uint64_t size) {
    entries_.push_back({std::move(path), size, {}, false});
    return *this;
  }

  Result<std::size_t> Read(std::span<std::byte> buffer) override {
    if (entries_.empty() && segment_ == Segment::kHeader) segment_ = Segment::kTrailer;
    std::size_t written = 0;
    while (written < buffer.size()) {
      if (segment_pos_ == SegmentSize()) {
        if (!Advance()) break;
        continue;
      }
      const std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>(buffer.size() - written, SegmentSize() - segment_pos_));
      Fill(buffer.subspan(written, n));
      segment_pos_ += n;
      written += n;
    }
    served_ += written;
    return written;
  }

  std::uint64_t served() const { return served_; }

 private:
  struct Entry {
    std::string path;
    std::uint64_t size;
    std::string contents;
    bool literal;
  };
  // Segments: per entry a header, its data, its padding; then the end-of-archive blocks.
  enum class Segment { kHeader, kData, kPadding, kTrailer, kDone };

  std::uint64_t SegmentSize() const {
    switch (segment_) {
      case Segment::kHeader:
        return 512;
      case Segment::kData:
        return entries_[index_].size;
      case Segment::kPadding:
        return (512 - entries_[index_].size % 512) % 512;
      case Segment::kTrailer:
        return 1024;
      case Segment::kDone:
        return 0;
    }
    return 0;
  }

  bool Advance() {
    segment_pos_ = 0;
    switch (segment_) {
      case Segment::kHeader:
        segment_ = Segment::kData;
        return true;
      case Segment::kData:
        segment_ = Segment::kPadding;
        return true;
      case Segment::kPadding:
        ++index_;
        segment_ = Segment::kHeader;
        break;
      case Segment::kTrailer:
        segment_ = Segment::kDone;
        return false;
      case Segment::kDone:
        return false;
    }
    if (index_ >= entries_.size()) segment_ = Segment::kTrailer;
    return true;
  }

  void Fill(std::span<std::byte> out) const {
    switch (segment_) {
      case Segment::kHeader: {
        const std::string header = Header(entries_[index_]);
        std::memcpy(out.data(), header.data() + segment_pos_, out.size());
        break;
      }
      case Segment::kData: {
        const Entry& e = entries_[index_];
        if (e.literal) {
          std::memcpy(out.data(), e.contents.data() + segment_pos_, out.size());
        } else {
          for (std::size_t i = 0; i < out.size(); ++i) out[i] = PatternByte(segment_pos_ + i);
        }
        break;
      }
      default:
        std::fill(out.begin(), out.end(), std::byte{0});
        break;
    }
  }

  static std::string Header(const Entry& e) {
    std::string h(512, '\0');
    std::memcpy(h.data(), e.path.data(), std::min<std::size_t>(e.path.size(), 100));
    std::memcpy(h.data() + 100, "0000644", 7);
    std::memcpy(h.data() + 108, "0000000", 7);
    std::memcpy(h.data() + 116, "0000000", 7);
    // GNU base-256 size: the top bit of the first byte marks it.
    h[124] = static_cast<char>(0x80);
    for (int i = 0; i < 8; ++i) {
      h[135 - i] = static_cast<char>((e.size >> (8 * i)) & 0xff);
    }
    std::memcpy(h.data() + 136, "14537266400", 11);  // mtime
    h[156] = '0';                                    // regular file
    std::memcpy(h.data() + 257, "ustar", 6);
    std::memcpy(h.data() + 263, "00", 2);
    std::memset(h.data() + 148, ' ', 8);
    unsigned sum = 0;
    for (char c : h) sum += static_cast<unsigned char>(c);
    char field[8];
    std::snprintf(field, sizeof field, "%06o", sum);
    std::memcpy(h.data() + 148, field, 7);  // six digits, NUL, then the space kept
    return h;
  }

  std::vector<Entry> entries_;
  std::size_t index_ = 0;
  Segment segment_ = Segment::kHeader;
  std::uint64_t segment_pos_ = 0;
  std::uint64_t served_ = 0;
};

// Records what the reader hands over, and checks the call order it promises.
class RecordingVisitor : public EntryVisitor {
 public:
  Status BeginFile(std::string_view path, std::uint64_t size) override {
    EXPECT_FALSE(open_) << "BeginFile inside an open file";
    open_ = true;
    order.emplace_back(path);
    sizes[std::string(path)] = size;
    files[std::string(path)];
    current_ = std::string(path);
    return Ok();
  }
  Status Data(std::span<const std::byte> chunk) override {
    EXPECT_TRUE(open_);
    EXPECT_FALSE(chunk.empty());
    files[current_].append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    return Ok();
  }
  Status EndFile() override {
    EXPECT_TRUE(open_);
    open_ = false;
    return Ok();
  }

  std::vector<std::string> order;
  std::map<std::string, std::string> files;
  std::map<std::string, std::uint64_t> sizes;

 private:
  bool open_ = false;
  std::string current_;
};

}  // namespace edgefleet::updater::test
