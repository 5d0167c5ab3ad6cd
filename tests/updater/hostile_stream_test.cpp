// The archive reader against hostile byte streams rather than hostile entries: data hidden after
// the end of the archive or of the compressed stream, headers whose parsing alone would cost
// hundreds of MiB (GNU sparse maps, huge pax headers), other formats and damaged trailers.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/tar_builder.hpp"
#include "tests/updater/compress.hpp"
#include "tests/updater/sources.hpp"
#include "updater/safe_archive.hpp"

namespace edgefleet::updater {
namespace {

using ::edgefleet::testing::Compression;
using ::edgefleet::testing::TarBuilder;
using test::GzipMember;
using test::PaxRecord;
using test::RecordingVisitor;
using test::StringSource;
using test::TarHeader;
using test::ZstdFrame;
using test::ZstdStream;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Status Read(const std::string& bytes, RecordingVisitor* seen = nullptr) {
  StringSource source(bytes);
  RecordingVisitor visitor;
  Status status = ReadSafeArchive(source, {}, visitor, "bundle.efb");
  if (seen != nullptr) *seen = visitor;
  return status;
}

std::string Compress(const std::string& plain, Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return plain;
    case Compression::kZstd:
      return ZstdFrame(plain);
    case Compression::kGzip:
      return GzipMember(plain);
  }
  return plain;
}

class HostileStreamTest : public ::testing::TestWithParam<Compression> {};

// `tar -i` (and any reader that does not stop at the first end marker) would list 'hidden'.
TEST_P(HostileStreamTest, RefusesASecondArchiveAfterTheEndMarker) {
  const std::string first = TarBuilder().File("model/a.onnx", "weights").Bytes();
  ASSERT_EQ(first.size(), 2048u);  // header, data block, two zero blocks
  const std::string hidden = TarBuilder().File("hidden", "evil").Bytes();
  RecordingVisitor seen;
  Status status = Read(Compress(first + hidden, GetParam()), &seen);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "bundle.efb: data after the end of the archive (a non-zero byte at offset 2048 of "
            "the tar stream, 1024 bytes after the end-of-archive marker at offset 1024; only "
            "zero padding may follow it)");
  EXPECT_THAT(seen.order, ::testing::Not(::testing::Contains("hidden")));
}

TEST_P(HostileStreamTest, AcceptsZeroPaddingAfterTheEndMarker) {
  // GNU tar and bsdtar pad the archive to 10 KiB records.
  std::string plain = TarBuilder().File("model/a.onnx", "weights").Bytes();
  plain.resize(10240, '\0');
  RecordingVisitor seen;
  EF_ASSERT_OK(Read(Compress(plain, GetParam()), &seen));
  EXPECT_THAT(seen.order, ::testing::ElementsAre("model/a.onnx"));
}

TEST_P(HostileStreamTest, RefusesEndlessZeroPaddingAfterTheEndMarker) {
  std::string plain = TarBuilder().File("model/a.onnx", "weights").Bytes();
  plain.resize(plain.size() + (5 << 20), '\0');
  Status status = Read(Compress(plain, GetParam()));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "bundle.efb: data after the end of the archive (more than 4194304 bytes of zero "
            "padding after the end-of-archive marker at offset 1024)");
}

TEST_P(HostileStreamTest, RefusesAnArchiveWithoutItsEndMarker) {
  std::string plain = TarBuilder().File("model/a.onnx", "weights").Bytes();
  plain.resize(plain.size() - 1024);
  Status status = Read(Compress(plain, GetParam()));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "bundle.efb: truncated archive after entry 'model/a.onnx' (the stream ends without "
            "an end-of-archive marker)");
}

INSTANTIATE_TEST_SUITE_P(AllCompressions, HostileStreamTest,
                         ::testing::Values(Compression::kNone, Compression::kZstd,
                                           Compression::kGzip),
                         ::edgefleet::testing::CompressionTestName);

TEST(HostileStreamTest, RefusesASecondZstdFrame) {
  const std::string first = TarBuilder(Compression::kZstd).File("model/a.onnx", "w").Bytes();
  const std::string second = TarBuilder(Compression::kZstd).File("hidden", "evil").Bytes();
  Status status = Read(first + second);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "bundle.efb: data after the end of the archive (the zstd frame ends at byte " +
                std::to_string(first.size()) +
                " of the file and a second zstd frame follows; a bundle is one frame)");
}

TEST(HostileStreamTest, RefusesAZstdSkippableFrameAfterTheFrame) {
  const std::string first = TarBuilder(Compression::kZstd).File("model/a.onnx", "w").Bytes();
  const std::string skippable(
      "\x50\x2A\x4D\x18\x04\x00\x00\x00"
      "abcd",
      12);
  Status status = Read(first + skippable);
  ASSERT_FALSE(status);
  EXPECT_THAT(status.error().message, HasSubstr("a zstd skippable frame follows"));
}

TEST(HostileStreamTest, RefusesGarbageAfterTheZstdFrame) {
  const std::string first = TarBuilder(Compression::kZstd).File("model/a.onnx", "w").Bytes();
  Status status = Read(first + "garbage!");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(status.error().message,
              HasSubstr("data after the end of the archive (the zstd frame ends at byte " +
                        std::to_string(first.size()) +
                        " of the file and other bytes (67 61 72 62 61 67 65 21 ...) follow"));
}

TEST(HostileStreamTest, RefusesASecondGzipMember) {
  const std::string first = TarBuilder(Compression::kGzip).File("model/a.onnx", "w").Bytes();
  const std::string second = TarBuilder(Compression::kGzip).File("hidden", "evil").Bytes();
  Status status = Read(first + second);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "bundle.efb: data after the end of the archive (the gzip member ends at byte " +
                std::to_string(first.size()) +
                " of the file and a second gzip member follows; a bundle is one member)");
}

TEST(HostileStreamTest, RefusesGarbageAfterTheGzipMember) {
  const std::string first = TarBuilder(Compression::kGzip).File("model/a.onnx", "w").Bytes();
  Status status = Read(first + "garbage!");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(status.error().message,
              StartsWith("bundle.efb: data after the end of the archive (the gzip member ends at "
                         "byte " +
                         std::to_string(first.size()) + " of the file and other bytes (67 61"));
}

TEST(HostileStreamTest, NamesFormatsThatAreNotBundles) {
  struct Case {
    std::string bytes;
    std::string what;
  };
  const std::string junk(600, 'j');
  const std::vector<Case> cases = {
      {std::string("\xFD\x37\x7A\x58\x5A\x00", 6) + junk, "an xz stream"},
      {"BZh91AY&SY" + junk, "a bzip2 stream"},
      {std::string("PK\x03\x04", 4) + junk, "a zip archive"},
      {std::string("\x37\x7A\xBC\xAF\x27\x1C", 6) + junk, "a 7z archive"},
  };
  for (const Case& c : cases) {
    Status status = Read(c.bytes);
    ASSERT_FALSE(status) << c.what;
    EXPECT_EQ(status.error().code, ErrorCode::kUnsupported) << c.what;
    EXPECT_EQ(status.error().message,
              "bundle.efb: is " + c.what + "; bundles are tar, tar+zstd or tar+gzip");
  }
  Status empty = Read("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(empty.error().message, "bundle.efb: is empty");
}

TEST(HostileStreamTest, DamagedGzipTrailerIsNotBlamedOnTheLastFile) {
  std::string bytes = TarBuilder(Compression::kGzip).File("model/x.onnx", "weights").Bytes();
  bytes[bytes.size() - 8] ^= 0x01;  // the CRC-32 of the member's data
  Status status = Read(bytes);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "bundle.efb: corrupt archive after the last entry 'model/x.onnx' (in the compressed "
            "stream: gzip: incorrect data check)");
}

TEST(HostileStreamTest, DamagedZstdChecksumIsNotBlamedOnTheLastFile) {
  const std::string plain = TarBuilder().File("model/x.onnx", "weights").Bytes();
  std::string bytes = ZstdFrame(plain, /*checksum=*/true);
  bytes.back() ^= 0x01;  // the frame's content checksum
  Status status = Read(bytes);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "bundle.efb: corrupt archive (at the end of the compressed stream: the zstd frame's "
            "checksum does not match the restored data)");
}

TEST(HostileStreamTest, TruncatedEndMarkerSaysSo) {
  std::string bytes = TarBuilder().File("model/x.onnx", "weights").Bytes();
  bytes.resize(bytes.size() - 700);
  Status status = Read(bytes);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message,
            "bundle.efb: truncated archive after entry 'model/x.onnx' (the stream ends inside "
            "the end-of-archive marker)");
}

TEST(HostileStreamTest, RefusesAZstdFrameAskingForAHugeWindow) {
  // A frame header declaring a 1 GiB window (Window_Descriptor exponent 20: 2^(10+20)).
  std::string bytes("\x28\xB5\x2F\xFD\x00\xA0", 6);
  bytes += std::string(64, '\0');
  Status status = Read(bytes);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kLimit);
  EXPECT_EQ(status.error().message,
            "bundle.efb: the zstd frame needs a window over the 8 MiB limit (compress at level "
            "19 or lower, without --long)");
}

TEST(HostileStreamTest, RefusesUnknownEntryTypesBeforeLibarchiveParsesThem) {
  // 'A' is a Solaris ACL header, whose body libarchive reads whole into memory.
  std::string bytes = TarHeader("model/a.onnx", 'A', 3) + test::Pad512("abc");
  bytes += std::string(1024, '\0');
  Status status = Read(bytes);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kUnsafeArchive);
  EXPECT_EQ(status.error().message,
            "bundle.efb: entry 'model/a.onnx': unsupported tar entry type 'A' (at offset 0)");
}

// Headers whose data libarchive versions skip differently: this walk and libarchive must never
// disagree about where the next header starts, or a header hidden in "data" would go unchecked.
TEST(HostileStreamTest, RefusesHeadersWhoseDataLengthIsAmbiguous) {
  const std::string pax_header = test::PaxRecord("GNU.sparse.major", "1");
  const std::string hidden = TarHeader("PaxHeaders/x", 'x', pax_header.size()) +
                             test::Pad512(pax_header) + TarHeader("x", '0', 0);
  struct Case {
    std::string header;
    std::string message;
  };
  const std::vector<Case> cases = {
      {TarHeader("model/", '0', hidden.size()),
       "bundle.efb: entry 'model/': regular-file header for a directory name (at offset 0)"},
      {TarHeader("model", '5', hidden.size()), ""},  // ustar: a directory's size is ignored
      {TarHeader("model/a", '1', hidden.size()),
       "bundle.efb: entry 'model/a': hardlink with 1536 bytes of data (at offset 0)"},
  };
  for (const Case& c : cases) {
    const std::string bytes = c.header + hidden + std::string(1024, '\0');
    Status status = Read(bytes);
    ASSERT_FALSE(status);
    if (c.message.empty()) {
      // The directory's size is not data: the hidden pax header is read and refused.
      EXPECT_EQ(status.error().message,
                "bundle.efb: sparse file (pax extended header at offset 512 has "
                "GNU.sparse.major)");
    } else {
      EXPECT_EQ(status.error().message, c.message);
    }
    EXPECT_EQ(status.error().code, ErrorCode::kUnsafeArchive);
  }
}

// ---- Memory before any check: GNU sparse maps and huge pax headers -------------------------
//
// libarchive 3.6.2 builds a sparse file's whole map (and reads a pax header's whole body) inside
// archive_read_next_header, before our code sees the entry. Each case below is a zstd bundle of
// a few KiB declaring kRegions regions; it is read in a forked child, whose peak RSS growth
// (VmHWM after clearing it) must stay under kMaxGrowthKiB. Without the header walker the growth
// is well over 100 MiB.

constexpr std::uint64_t kRegions = 2'000'000;
constexpr long kMaxGrowthKiB = 32 * 1024;

long StatusKiB(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field)) return std::stol(line.substr(std::strlen(field) + 1));
  }
  return -1;
}

struct ChildResult {
  std::string message;  // the refusal, or "OK"
  int code = -1;
  long growth_kib = -1;
};

// Reads `bytes` in a forked child and reports the result and the child's peak RSS growth.
ChildResult ReadInChild(const std::string& bytes) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    // "5" resets VmHWM to the current RSS, so the number is this read's alone.
    { std::ofstream("/proc/self/clear_refs") << "5"; }
    const long before = StatusKiB("VmHWM:");
    StringSource source(bytes);
    RecordingVisitor visitor;
    Status status = ReadSafeArchive(source, {}, visitor, "bundle.efb");
    const long growth = StatusKiB("VmHWM:") - before;
    const std::string report = std::to_string(growth) + "\n" +
                               std::to_string(status ? -1 : static_cast<int>(status.error().code)) +
                               "\n" + (status ? std::string("OK") : status.error().message);
    (void)!write(fds[1], report.data(), report.size());
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  bool finished = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    char buffer[4096];
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n > 0) report.append(buffer, static_cast<std::size_t>(n));
    finished = n <= 0;  // the child closed its end: it is exiting
  }
  close(fds[0]);
  if (!finished) {
    kill(pid, SIGKILL);
    ADD_FAILURE() << "the reading child did not finish in 120 s";
  }
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  ChildResult result;
  const std::size_t first = report.find('\n');
  const std::size_t second = report.find('\n', first + 1);
  if (first == std::string::npos || second == std::string::npos) {
    ADD_FAILURE() << "the child reported nothing (status " << wstatus << ")";
    return result;
  }
  result.growth_kib = std::stol(report.substr(0, first));
  result.code = std::stoi(report.substr(first + 1, second - first - 1));
  result.message = report.substr(second + 1);
  return result;
}

TEST(SparseMemoryTest, PaxSparseMapInTheHeaderIsRefusedFromItsSize) {
  // Format 0.0/0.1: the map is a pax header of offset/numbytes records.
  const std::string pair =
      PaxRecord("GNU.sparse.offset", "0") + PaxRecord("GNU.sparse.numbytes", "1");
  const std::string head = PaxRecord("GNU.sparse.size", "1") +
                           PaxRecord("GNU.sparse.numblocks", std::to_string(kRegions));
  const std::uint64_t pax_size = head.size() + pair.size() * kRegions;
  ZstdStream zstd;
  zstd.Add(TarHeader("PaxHeaders/a.onnx", 'x', pax_size));
  zstd.Add(head);
  zstd.Repeat(pair, kRegions);
  zstd.Add(std::string((512 - pax_size % 512) % 512, '\0'));
  zstd.Add(TarHeader("model/a.onnx", '0', 1) + test::Pad512("x") + std::string(1024, '\0'));
  const std::string bytes = zstd.Finish();
  ASSERT_LT(bytes.size(), 64u * 1024);

  const ChildResult r = ReadInChild(bytes);
  EXPECT_EQ(r.code, static_cast<int>(ErrorCode::kLimit)) << r.message;
  EXPECT_EQ(r.message, "bundle.efb: pax extended header at offset 0 is " +
                           std::to_string(pax_size) + " bytes, the limit is 65536");
  EXPECT_LT(r.growth_kib, kMaxGrowthKiB) << "peak RSS grew by " << r.growth_kib << " KiB";
  std::printf("[ measured ] pax 0.x sparse map, %zu-byte bundle: VmHWM +%ld KiB\n", bytes.size(),
              r.growth_kib);
}

TEST(SparseMemoryTest, PaxSparseMapInTheDataIsRefusedAtItsKeys) {
  // Format 1.0: a small pax header says "sparse", the map opens the entry's data.
  const std::string pax = PaxRecord("GNU.sparse.major", "1") + PaxRecord("GNU.sparse.minor", "0") +
                          PaxRecord("GNU.sparse.name", "model/a.onnx") +
                          PaxRecord("GNU.sparse.realsize", std::to_string(2 * kRegions));
  const std::string region = "0\n1\n";
  const std::string count = std::to_string(kRegions) + "\n";
  const std::uint64_t map = count.size() + region.size() * kRegions;
  const std::uint64_t data = (map + 511) / 512 * 512 + kRegions;
  ZstdStream zstd;
  zstd.Add(TarHeader("PaxHeaders/a.onnx", 'x', pax.size()) + test::Pad512(pax));
  zstd.Add(TarHeader("GNUSparseFile.0/a.onnx", '0', data));
  zstd.Add(count);
  zstd.Repeat(region, kRegions);
  zstd.Add(std::string((512 - map % 512) % 512, '\0'));
  zstd.Repeat(std::string(1000, 'x'), kRegions / 1000);
  zstd.Add(std::string((512 - data % 512) % 512, '\0') + std::string(1024, '\0'));
  const std::string bytes = zstd.Finish();
  ASSERT_LT(bytes.size(), 64u * 1024);

  const ChildResult r = ReadInChild(bytes);
  EXPECT_EQ(r.code, static_cast<int>(ErrorCode::kUnsafeArchive)) << r.message;
  EXPECT_EQ(r.message,
            "bundle.efb: sparse file (pax extended header at offset 0 has GNU.sparse.major)");
  EXPECT_LT(r.growth_kib, kMaxGrowthKiB) << "peak RSS grew by " << r.growth_kib << " KiB";
  std::printf("[ measured ] pax 1.0 sparse map, %zu-byte bundle: VmHWM +%ld KiB\n", bytes.size(),
              r.growth_kib);
}

TEST(SparseMemoryTest, OldGnuSparseHeaderIsRefusedAtItsType) {
  // Old GNU: type 'S', 4 regions in the header, 21 more in each extension block that follows.
  auto octal = [](std::uint64_t v) {
    char text[13];
    std::snprintf(text, sizeof text, "%011llo", static_cast<unsigned long long>(v));
    return std::string(text, 12);
  };
  std::string header = TarHeader("model/a.onnx", 'S', kRegions, /*gnu=*/true);
  for (int i = 0; i < 4; ++i) {
    header.replace(386 + 24 * i, 12, octal(2 * i));
    header.replace(386 + 24 * i + 12, 12, octal(1));
  }
  header[482] = 1;                               // isextended
  header.replace(483, 12, octal(2 * kRegions));  // realsize
  test::FixChecksum(header);
  std::string extension(512, '\0');
  for (int i = 0; i < 21; ++i) {
    extension.replace(24 * i, 12, octal(0));
    extension.replace(24 * i + 12, 12, octal(1));
  }
  extension[504] = 1;  // another extension block follows
  const std::uint64_t blocks = (kRegions - 4) / 21;
  ZstdStream zstd;
  zstd.Add(header);
  zstd.Repeat(extension, blocks);
  extension[504] = 0;
  zstd.Add(extension);
  zstd.Repeat(std::string(1000, 'x'), kRegions / 1000);
  zstd.Add(std::string((512 - kRegions % 512) % 512, '\0') + std::string(1024, '\0'));
  const std::string bytes = zstd.Finish();
  ASSERT_LT(bytes.size(), 64u * 1024);

  const ChildResult r = ReadInChild(bytes);
  EXPECT_EQ(r.code, static_cast<int>(ErrorCode::kUnsafeArchive)) << r.message;
  EXPECT_THAT(r.message, StartsWith("bundle.efb: entry 'model/a.onnx': sparse file"));
  EXPECT_LT(r.growth_kib, kMaxGrowthKiB) << "peak RSS grew by " << r.growth_kib << " KiB";
  std::printf("[ measured ] old GNU sparse map, %zu-byte bundle: VmHWM +%ld KiB\n", bytes.size(),
              r.growth_kib);
}

TEST(SparseMemoryTest, HugeGnuLongNameIsRefusedFromItsSize) {
  const std::uint64_t size = 200ULL << 20;
  ZstdStream zstd;
  zstd.Add(TarHeader("././@LongLink", 'L', size));
  zstd.Repeat(std::string(1 << 20, 'a'), size >> 20);
  zstd.Add(TarHeader("x", '0', 0) + std::string(1024, '\0'));
  const ChildResult r = ReadInChild(zstd.Finish());
  EXPECT_EQ(r.code, static_cast<int>(ErrorCode::kLimit)) << r.message;
  EXPECT_EQ(r.message,
            "bundle.efb: GNU long name at offset 0 is 209715200 bytes, the limit is "
            "65536");
  EXPECT_LT(r.growth_kib, kMaxGrowthKiB) << "peak RSS grew by " << r.growth_kib << " KiB";
}

}  // namespace
}  // namespace edgefleet::updater
