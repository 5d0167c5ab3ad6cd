#include "updater/safe_archive.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/tar_builder.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/updater/sources.hpp"

namespace edgefleet::updater {
namespace {

using ::edgefleet::testing::Compression;
using ::edgefleet::testing::TarBuilder;
using test::GeneratedTarSource;
using test::PatternByte;
using test::RecordingVisitor;
using test::StringSource;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Status Read(const std::string& bytes, EntryVisitor& visitor, const ArchiveLimits& limits = {}) {
  StringSource source(bytes);
  return ReadSafeArchive(source, limits, visitor, "bundle.efb");
}

Status Read(const TarBuilder& builder, const ArchiveLimits& limits = {}) {
  RecordingVisitor visitor;
  return Read(builder.Bytes(), visitor, limits);
}

// A few hundred KiB of non-repeating bytes, so chunking and compression both matter.
std::string Payload(std::size_t size) {
  std::string s(size, '\0');
  std::uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

class SafeArchiveCompressionTest : public ::testing::TestWithParam<Compression> {};

TEST_P(SafeArchiveCompressionTest, StreamsExactBytesOfEveryFile) {
  const std::string big = Payload(700 * 1024);
  TarBuilder builder(GetParam());
  builder.Directory("model/")
      .File("model/a.onnx", big)
      .File("./golden/set1/input_0.pb", "abc")
      .File("empty.txt", "")
      .Directory("golden/set2");
  RecordingVisitor visitor;
  EF_ASSERT_OK(Read(builder.Bytes(), visitor));
  EXPECT_THAT(visitor.order,
              ::testing::ElementsAre("model/a.onnx", "golden/set1/input_0.pb", "empty.txt"));
  EXPECT_EQ(visitor.files["model/a.onnx"], big);
  EXPECT_EQ(visitor.sizes["model/a.onnx"], big.size());
  EXPECT_EQ(visitor.files["golden/set1/input_0.pb"], "abc");
  EXPECT_EQ(visitor.files["empty.txt"], "");
}

TEST_P(SafeArchiveCompressionTest, ShortReadsOfOneByteWork) {
  const std::string data = Payload(20000);
  const std::string bytes = TarBuilder(GetParam()).File("model/a.onnx", data).Bytes();
  StringSource source(bytes, /*chunk=*/1);
  RecordingVisitor visitor;
  EF_ASSERT_OK(ReadSafeArchive(source, {}, visitor, "bundle.efb"));
  EXPECT_EQ(visitor.files["model/a.onnx"], data);
  EXPECT_GT(source.reads(), 10000u);  // the reader really did see one byte at a time
}

TEST_P(SafeArchiveCompressionTest, TruncatedArchiveFailsWithIntegrity) {
  const std::string bytes =
      TarBuilder(GetParam()).File("model/x.onnx", Payload(300 * 1024)).Bytes();
  RecordingVisitor visitor;
  Status status = Read(bytes.substr(0, bytes.size() / 2), visitor);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(status.error().message,
              StartsWith("bundle.efb: truncated archive while reading 'model/x.onnx'"));
}

INSTANTIATE_TEST_SUITE_P(AllCompressions, SafeArchiveCompressionTest,
                         ::testing::Values(Compression::kNone, Compression::kZstd,
                                           Compression::kGzip),
                         ::edgefleet::testing::CompressionTestName);

TEST(SafeArchiveTest, TruncatedInTheMiddleOfAFilesDataNamesTheFile) {
  const std::string data = Payload(100000);
  const std::string bytes = TarBuilder().File("a.txt", "x").File("model/x.onnx", data).Bytes();
  const std::size_t data_at = bytes.find(data);
  ASSERT_NE(data_at, std::string::npos);
  RecordingVisitor visitor;
  Status status = Read(bytes.substr(0, data_at + data.size() / 2), visitor);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(status.error().message,
              StartsWith("bundle.efb: truncated archive while reading 'model/x.onnx'"));
  // What came before the cut was delivered (and must be discarded by the caller).
  EXPECT_EQ(visitor.files["a.txt"], "x");
}

TEST(SafeArchiveTest, GarbageBytesFailWithIntegrity) {
  RecordingVisitor visitor;
  Status status = Read(Payload(8192), visitor);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(status.error().message, StartsWith("bundle.efb: "));
  EXPECT_TRUE(visitor.order.empty());
}

TEST(SafeArchiveTest, CorruptHeaderAfterAnEntryNamesThatEntry) {
  std::string bytes = TarBuilder().File("a.txt", "x").File("b.txt", "y").Bytes();
  // The second header starts at 1024 + the pax extended header of the first... find "b.txt".
  const std::size_t second = bytes.rfind("b.txt");
  ASSERT_NE(second, std::string::npos);
  bytes[second - second % 512 + 148] = '9';  // break the checksum of b.txt's header block
  RecordingVisitor visitor;
  Status status = Read(bytes, visitor);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(status.error().message,
              StartsWith("bundle.efb: corrupt archive after entry 'a.txt'"));
}

struct Hostile {
  const char* name;
  TarBuilder archive;
  ErrorCode code;
  std::string message;
};

void PrintTo(const Hostile& hostile, std::ostream* os) { *os << hostile.name; }

class SafeArchiveHostileTest : public ::testing::TestWithParam<Hostile> {};

TEST_P(SafeArchiveHostileTest, IsRefusedWithItsOwnMessage) {
  const Hostile& h = GetParam();
  RecordingVisitor visitor;
  Status status = Read(h.archive.Bytes(), visitor);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, h.code);
  EXPECT_EQ(status.error().message, h.message);
  // Nothing of the hostile entry reached the visitor.
  EXPECT_LE(visitor.order.size(), 1u);
}

std::vector<Hostile> HostileArchives() {
  const ErrorCode kUnsafe = ErrorCode::kUnsafeArchive;
  std::vector<Hostile> v;
  v.push_back({"DotDot", TarBuilder().File("../x", "evil"), kUnsafe,
               "bundle.efb: entry '../x': path escapes the bundle (\"..\" segment)"});
  v.push_back({"Absolute", TarBuilder().File("/etc/x", "evil"), kUnsafe,
               "bundle.efb: entry '/etc/x': absolute path"});
  v.push_back({"InnerDotDot", TarBuilder().File("a/../../x", "evil"), kUnsafe,
               "bundle.efb: entry 'a/../../x': path escapes the bundle (\"..\" segment)"});
  v.push_back({"DotSegment", TarBuilder().File("a/./x", "x"), kUnsafe,
               "bundle.efb: entry 'a/./x': \".\" segment in path"});
  v.push_back({"EmptySegment", TarBuilder().File("a//x", "x"), kUnsafe,
               "bundle.efb: entry 'a//x': empty segment in path"});
  v.push_back({"Backslash", TarBuilder().File("a\\x", "x"), kUnsafe,
               "bundle.efb: entry 'a\\\\x': backslash in path"});
  v.push_back({"ControlCharacter", TarBuilder().File("a\nx", "x"), kUnsafe,
               "bundle.efb: entry 'a\\nx': control character in path"});
  v.push_back({"TooLong", TarBuilder().File(std::string(256, 'a'), "x"), kUnsafe,
               "bundle.efb: entry '" + std::string(120, 'a') +
                   "...': path is 256 bytes, the limit is 255"});
  v.push_back({"Symlink", TarBuilder().File("a", "x").Symlink("model/a.onnx", "/etc/passwd"),
               kUnsafe, "bundle.efb: entry 'model/a.onnx': symlink (to '/etc/passwd')"});
  v.push_back({"Hardlink", TarBuilder().File("a", "x").Hardlink("model/a.onnx", "a"), kUnsafe,
               "bundle.efb: entry 'model/a.onnx': hardlink (to 'a')"});
  v.push_back(
      {"Fifo", TarBuilder().Fifo("model/pipe"), kUnsafe, "bundle.efb: entry 'model/pipe': FIFO"});
  v.push_back({"CharDevice", TarBuilder().CharDevice("model/null"), kUnsafe,
               "bundle.efb: entry 'model/null': character device"});
  v.push_back({"Duplicate", TarBuilder().File("model/a.onnx", "1").File("model/a.onnx", "2"),
               kUnsafe, "bundle.efb: entry 'model/a.onnx': duplicate entry"});
  v.push_back({"DuplicateAfterDotSlash",
               TarBuilder().File("model/a.onnx", "1").File("./model/a.onnx", "2"), kUnsafe,
               "bundle.efb: entry './model/a.onnx': duplicate entry"});
  v.push_back({"FileThenDirectory", TarBuilder().File("model", "1").Directory("model/"), kUnsafe,
               "bundle.efb: entry 'model/': directory has the same name as an earlier file"});
  v.push_back({"DirectoryThenFile", TarBuilder().Directory("model/").File("model", "1"), kUnsafe,
               "bundle.efb: entry 'model': file has the same name as an earlier directory"});
  v.push_back({"FileAsParent", TarBuilder().File("model", "1").File("model/a.onnx", "2"), kUnsafe,
               "bundle.efb: entry 'model/a.onnx': parent 'model' is a file"});
  v.push_back({"ImpliedDirectoryThenFile",
               TarBuilder().File("model/a.onnx", "1").File("model", "2"), kUnsafe,
               "bundle.efb: entry 'model': file has the same name as an earlier directory"});
  // A name ending in '/' on a file header with data: refused before libarchive, whose versions
  // disagree about whether that data belongs to the entry.
  v.push_back({"EmptyPath", TarBuilder().File("./", "x"), kUnsafe,
               "bundle.efb: entry './': regular-file header for a directory name (at offset 0)"});
  v.push_back({"EmptyPathWithoutData", TarBuilder().File("./", ""), kUnsafe,
               "bundle.efb: entry './': empty path"});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Entries, SafeArchiveHostileTest, ::testing::ValuesIn(HostileArchives()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(SafeArchiveTest, LimitsTooManyEntries) {
  ArchiveLimits limits;
  limits.max_entries = 3;
  Status status =
      Read(TarBuilder().Directory("d").File("d/a", "1").File("d/b", "2").File("d/c", "3"), limits);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kLimit);
  EXPECT_EQ(status.error().message, "bundle.efb: entry 'd/c': more than 3 entries");
}

TEST(SafeArchiveTest, LimitsFileOverCapBeforeItsDataIsRead) {
  ArchiveLimits limits;
  limits.max_file_bytes = 10;
  RecordingVisitor visitor;
  Status status =
      Read(TarBuilder().File("a", "0123456789").File("b", "0123456789X").Bytes(), visitor, limits);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kLimit);
  EXPECT_EQ(status.error().message, "bundle.efb: entry 'b': file is 11 bytes, the limit is 10");
  EXPECT_THAT(visitor.order, ::testing::ElementsAre("a"));
}

TEST(SafeArchiveTest, LimitsTotalOverCap) {
  ArchiveLimits limits;
  limits.max_total_bytes = 25;
  RecordingVisitor visitor;
  Status status = Read(
      TarBuilder().File("a", "0123456789").File("b", "0123456789").File("c", "0123456789").Bytes(),
      visitor, limits);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kLimit);
  EXPECT_EQ(status.error().message, "bundle.efb: entry 'c': files total 30 bytes, the limit is 25");
  EXPECT_THAT(visitor.order, ::testing::ElementsAre("a", "b"));
}

TEST(SafeArchiveTest, HugeDeclaredFileIsRefusedAfterReadingOnlyItsHeader) {
  // 9 GiB declared, over the default 8 GiB cap: the endless-data attack costs one buffer.
  GeneratedTarSource source;
  source.Pattern("model/huge.onnx", 9ULL << 30);
  RecordingVisitor visitor;
  Status status = ReadSafeArchive(source, {}, visitor, "bundle.efb");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kLimit);
  EXPECT_EQ(status.error().message,
            "bundle.efb: entry 'model/huge.onnx': file is 9663676416 bytes, the limit is "
            "8589934592");
  EXPECT_LE(source.served(), 1u << 20);
  EXPECT_TRUE(visitor.order.empty());
}

// Checks bytes as they pass, so a 64 MiB entry is verified without being kept.
class PatternVisitor : public EntryVisitor {
 public:
  Status BeginFile(std::string_view, std::uint64_t) override { return Ok(); }
  Status Data(std::span<const std::byte> chunk) override {
    for (std::byte b : chunk) {
      if (b != PatternByte(offset_++)) ++mismatches;
    }
    max_chunk = std::max(max_chunk, chunk.size());
    return Ok();
  }
  Status EndFile() override { return Ok(); }
  std::uint64_t offset_ = 0;
  std::uint64_t mismatches = 0;
  std::size_t max_chunk = 0;
};

TEST(SafeArchiveTest, StreamsALargeEntryInBoundedChunks) {
  constexpr std::uint64_t kSize = 64ULL << 20;
  GeneratedTarSource source;
  source.Pattern("model/big.onnx", kSize);
  PatternVisitor visitor;
  EF_ASSERT_OK(ReadSafeArchive(source, {}, visitor, "bundle.efb"));
  EXPECT_EQ(visitor.offset_, kSize);
  EXPECT_EQ(visitor.mismatches, 0u);
  EXPECT_LE(visitor.max_chunk, 1u << 20);
}

TEST(SafeArchiveTest, SourceErrorPropagatesUnchanged) {
  const std::string bytes = TarBuilder().File("model/a.onnx", Payload(100000)).Bytes();
  for (std::size_t fail_after : {std::size_t{0}, std::size_t{100}, std::size_t{600},
                                 std::size_t{50000}, std::size_t{100500}}) {
    StringSource source(bytes, 4096);
    source.FailAfter(fail_after, Error{ErrorCode::kIo, "network: connection reset"});
    RecordingVisitor visitor;
    Status status = ReadSafeArchive(source, {}, visitor, "bundle.efb");
    ASSERT_FALSE(status) << fail_after;
    EXPECT_EQ(status.error().code, ErrorCode::kIo) << fail_after;
    EXPECT_EQ(status.error().message, "network: connection reset") << fail_after;
  }
}

class FailingVisitor : public RecordingVisitor {
 public:
  Status Data(std::span<const std::byte> chunk) override {
    EF_RETURN_IF_ERROR(RecordingVisitor::Data(chunk));
    return Fail(ErrorCode::kIo, "slot: disk full");
  }
};

TEST(SafeArchiveTest, VisitorErrorPropagatesUnchanged) {
  FailingVisitor visitor;
  Status status = Read(TarBuilder().File("a", "1").File("b", "2").Bytes(), visitor);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIo);
  EXPECT_EQ(status.error().message, "slot: disk full");
  EXPECT_THAT(visitor.order, ::testing::ElementsAre("a"));
}

class FirstFileVisitor : public RecordingVisitor {
 public:
  bool WantsMore() const override { return order.empty(); }
};

TEST(SafeArchiveTest, VisitorCanStopAfterAnEntry) {
  GeneratedTarSource source;
  source.Literal("manifest.json", "{}").Pattern("model/big.onnx", 1ULL << 30);
  FirstFileVisitor visitor;
  EF_ASSERT_OK(ReadSafeArchive(source, {}, visitor, "bundle.efb"));
  EXPECT_THAT(visitor.order, ::testing::ElementsAre("manifest.json"));
  EXPECT_LE(source.served(), 1u << 20);
}

TEST(SafeArchiveTest, AcceptsUtf8Names) {
  RecordingVisitor visitor;
  EF_ASSERT_OK(Read(TarBuilder().File("model/mod\xc3\xa8le.onnx", "x").Bytes(), visitor));
  EXPECT_THAT(visitor.order, ::testing::ElementsAre("model/mod\xc3\xa8le.onnx"));
}

TEST(SafeArchiveTest, RefusesNamesThatAreNotUtf8) {
  // ustar stores raw bytes, which is how a non-UTF-8 name arrives in practice.
  GeneratedTarSource source;
  source.Literal("a\xff.bin", "x");
  RecordingVisitor visitor;
  Status status = ReadSafeArchive(source, {}, visitor, "bundle.efb");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kUnsafeArchive);
  EXPECT_EQ(status.error().message, "bundle.efb: entry 'a\\xff.bin': path is not valid UTF-8");
}

TEST(SafeArchiveTest, AcceptsAnEmptyArchive) {
  RecordingVisitor visitor;
  EF_ASSERT_OK(Read(TarBuilder().Bytes(), visitor));
  EXPECT_TRUE(visitor.order.empty());
}

TEST(FileByteSourceTest, ReadsAFile) {
  edgefleet::testing::TempDir dir;
  const std::string data = Payload(600 * 1024);
  TarBuilder(Compression::kZstd).File("model/a.onnx", data).WriteTo(dir / "m.efb");
  Result<FileByteSource> source = FileByteSource::Open(dir / "m.efb");
  ASSERT_TRUE(source);
  RecordingVisitor visitor;
  EF_ASSERT_OK(ReadSafeArchive(*source, {}, visitor, "m.efb"));
  EXPECT_EQ(visitor.files["model/a.onnx"], data);
}

TEST(FileByteSourceTest, OpenFailsWithIoNamingThePath) {
  edgefleet::testing::TempDir dir;
  Result<FileByteSource> source = FileByteSource::Open(dir / "missing.efb");
  ASSERT_FALSE(source);
  EXPECT_EQ(source.error().code, ErrorCode::kIo);
  EXPECT_THAT(source.error().message, HasSubstr((dir / "missing.efb").string()));
}

TEST(FileByteSourceTest, OpenRefusesAFifoWithoutWaitingForAWriter) {
  edgefleet::testing::TempDir dir;
  const std::filesystem::path fifo = dir / "bundle.efb";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto opened = std::async(std::launch::async, [&] { return FileByteSource::Open(fifo); });
  if (opened.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    // open() waits for a writer: become one so the thread returns, then fail.
    const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    opened.wait();
    if (writer >= 0) ::close(writer);
    FAIL() << "FileByteSource::Open blocked on a FIFO for 5 s";
  }
  Result<FileByteSource> source = opened.get();
  ASSERT_FALSE(source);
  EXPECT_EQ(source.error().code, ErrorCode::kIo);
  EXPECT_EQ(source.error().message,
            "cannot open '" + fifo.string() + "': is not a regular file (a FIFO)");
}

TEST(FileByteSourceTest, OpenRefusesADirectory) {
  edgefleet::testing::TempDir dir;
  Result<FileByteSource> source = FileByteSource::Open(dir.path());
  ASSERT_FALSE(source);
  EXPECT_EQ(source.error().code, ErrorCode::kIo);
  EXPECT_EQ(source.error().message,
            "cannot open '" + dir.path().string() + "': is not a regular file (a directory)");
}

}  // namespace
}  // namespace edgefleet::updater
