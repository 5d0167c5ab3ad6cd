#include "updater/bundle_reader.hpp"

#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/time.hpp"
#include "manifests/trust.hpp"
#include "tests/support/tar_builder.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/updater/bundles.hpp"
#include "tests/updater/sources.hpp"

namespace edgefleet::updater {
namespace {

using ::edgefleet::testing::BuildBundle;
using ::edgefleet::testing::Compression;
using ::edgefleet::testing::TarBuilder;
using manifests::PrivateKey;
using manifests::Role;
using manifests::SignedEnvelope;
using manifests::TrustRoot;
using test::Bytes;
using test::Files;
using test::GeneratedTarSource;
using test::ManifestBody;
using test::NewKey;
using test::StringSource;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class BundleReaderTest : public ::testing::Test {
 protected:
  BundleReaderTest()
      : root_key_(NewKey()), release1_(NewKey()), release2_(NewKey()), stranger_(NewKey()) {
    files_ = {{"model/a.onnx", Bytes(5000, 1)},
              {"golden/set1/input_0.pb", Bytes(300, 2)},
              {"golden/set1/output_0.pb", Bytes(40, 3)}};
  }

  // A self-signed root whose release role holds release1_ and release2_.
  TrustRoot Trust(int release_threshold = 1) {
    manifests::TrustRootBody body;
    body.version = 1;
    body.expires = manifests::Now() + std::chrono::hours(24);
    body.keys.emplace(root_key_.KeyId(), root_key_.Public());
    body.keys.emplace(release1_.KeyId(), release1_.Public());
    body.keys.emplace(release2_.KeyId(), release2_.Public());
    body.roles[Role::kRoot] = {{root_key_.KeyId()}, 1};
    body.roles[Role::kRelease] = {{release1_.KeyId(), release2_.KeyId()}, release_threshold};
    body.roles[Role::kDeploy] = {{root_key_.KeyId()}, 1};
    SignedEnvelope envelope;
    envelope.signed_body = body.ToJson();
    EXPECT_TRUE(envelope.Sign(root_key_));
    Result<TrustRoot> trust = TrustRoot::FromEnvelope(envelope, manifests::Now(), "root.json");
    if (!trust) ADD_FAILURE() << trust.error().message;
    return std::move(trust).value();
  }

  static SignedEnvelope Envelope(nlohmann::json body, const std::vector<const PrivateKey*>& keys) {
    SignedEnvelope envelope;
    envelope.signed_body = std::move(body);
    for (const PrivateKey* key : keys) EXPECT_TRUE(envelope.Sign(*key));
    return envelope;
  }
  SignedEnvelope Signed(const Files& files) { return Envelope(ManifestBody(files), {&release1_}); }

  static Result<BundleContents> Verify(const std::string& bytes, const TrustRoot& trust,
                                       FileSink* sink = nullptr, const ArchiveLimits& limits = {}) {
    StringSource source(bytes);
    return VerifyBundle(source, "bundle.efb", trust, limits, sink);
  }

  static void ExpectError(const Result<BundleContents>& result, ErrorCode code,
                          const std::string& message) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_EQ(result.error().message, message);
  }

  PrivateKey root_key_;
  PrivateKey release1_;
  PrivateKey release2_;
  PrivateKey stranger_;
  Files files_;
};

class BundleReaderCompressionTest : public BundleReaderTest,
                                    public ::testing::WithParamInterface<Compression> {};

TEST_P(BundleReaderCompressionTest, AcceptsAValidBundle) {
  const TrustRoot trust = Trust();
  const SignedEnvelope envelope = Signed(files_);
  const std::string bytes = BuildBundle(envelope, files_, GetParam());
  Result<BundleContents> contents = Verify(bytes, trust);
  EF_ASSERT_OK(contents);
  EXPECT_EQ(contents->manifest.name, "digits");
  EXPECT_EQ(contents->manifest.version.ToString(), "1.2.0");
  EXPECT_EQ(contents->manifest.files.size(), 3u);
  EXPECT_EQ(contents->envelope.signatures.size(), 1u);
  EXPECT_EQ(contents->payload_bytes, envelope.ToJson().dump().size() + 5000 + 300 + 40);
  EXPECT_GT(contents->archive_bytes, 0u);
  EXPECT_LE(contents->archive_bytes, bytes.size());
}

INSTANTIATE_TEST_SUITE_P(Compressions, BundleReaderCompressionTest,
                         ::testing::Values(Compression::kNone, Compression::kZstd,
                                           Compression::kGzip),
                         ::edgefleet::testing::CompressionTestName);

// What `tar -i`, `zstd -dc` or `zcat` would find after the end of a valid bundle: a second tar
// after the end marker, or a second frame/member. VerifyBundle used to stop at the first end
// and call the bundle good.
TEST_P(BundleReaderCompressionTest, RefusesAnArchiveAppendedAfterTheBundle) {
  const SignedEnvelope envelope = Signed(files_);
  const std::string bundle = BuildBundle(envelope, files_, GetParam());
  const std::string hidden = TarBuilder(GetParam()).File("model/a.onnx", "evil").Bytes();
  Result<BundleContents> result = Verify(bundle + hidden, Trust());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(result.error().message,
              StartsWith("bundle.efb: data after the end of the archive ("));
  switch (GetParam()) {
    case Compression::kNone:
      EXPECT_THAT(result.error().message, HasSubstr("bytes after the end-of-archive marker"));
      break;
    case Compression::kZstd:
      EXPECT_THAT(result.error().message, HasSubstr("a second zstd frame follows"));
      break;
    case Compression::kGzip:
      EXPECT_THAT(result.error().message, HasSubstr("a second gzip member follows"));
      break;
  }
}

TEST_F(BundleReaderTest, AcceptsAThresholdOfTwoDistinctReleaseKeys) {
  const SignedEnvelope envelope = Envelope(ManifestBody(files_), {&release1_, &release2_});
  EF_ASSERT_OK(Verify(BuildBundle(envelope, files_), Trust(2)));
}

TEST_F(BundleReaderTest, RefusesAChangedModelByte) {
  const SignedEnvelope envelope = Signed(files_);
  Files tampered = files_;
  tampered[0].second[1234] ^= 0x01;
  ExpectError(Verify(BuildBundle(envelope, tampered), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: 'model/a.onnx': sha256 expected " +
                  manifests::Sha256Hex(files_[0].second) + ", found " +
                  manifests::Sha256Hex(tampered[0].second));
}

TEST_F(BundleReaderTest, RefusesAMissingFile) {
  const SignedEnvelope envelope = Signed(files_);
  Files fewer(files_.begin(), files_.end() - 1);
  ExpectError(Verify(BuildBundle(envelope, fewer), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: missing file listed in manifest: 'golden/set1/output_0.pb'");
}

TEST_F(BundleReaderTest, RefusesAnExtraFile) {
  const SignedEnvelope envelope = Signed(files_);
  Files more = files_;
  more.emplace_back("model/extra.bin", "surprise");
  ExpectError(Verify(BuildBundle(envelope, more), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: extra file not in manifest: 'model/extra.bin'");
}

TEST_F(BundleReaderTest, RefusesAnEntryLargerThanDeclared) {
  Files declared = files_;
  declared[0].second.resize(1000);
  const SignedEnvelope envelope = Signed(declared);
  Files bigger = files_;
  bigger[0].second.resize(2000);
  ExpectError(Verify(BuildBundle(envelope, bigger), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: entry 'model/a.onnx' is 2000 bytes, the manifest declares 1000");
}

TEST_F(BundleReaderTest, RefusesAnEndlessEntryBeforeReadingItsData) {
  // 4 GiB is under the archive caps, so only the manifest's size stands in the way; the source
  // generates it on demand, so the test itself holds nothing large.
  const SignedEnvelope envelope = Signed(files_);
  GeneratedTarSource source;
  source.Literal("manifest.json", envelope.ToJson().dump()).Pattern("model/a.onnx", 4ULL << 30);
  Result<BundleContents> result = VerifyBundle(source, "bundle.efb", Trust(), {});
  ExpectError(result, ErrorCode::kIntegrity,
              "bundle.efb: entry 'model/a.onnx' is 4294967296 bytes, the manifest declares 5000");
  EXPECT_LE(source.served(), 1u << 20);
}

TEST_F(BundleReaderTest, RefusesAManifestThatIsNotFirst) {
  const SignedEnvelope envelope = Signed(files_);
  TarBuilder builder;
  builder.File("model/a.onnx", files_[0].second).File("manifest.json", envelope.ToJson().dump());
  ExpectError(Verify(builder.Bytes(), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: manifest.json must be the first entry, found 'model/a.onnx'");
}

TEST_F(BundleReaderTest, RefusesAnUnsignedManifest) {
  const SignedEnvelope envelope = Envelope(ManifestBody(files_), {});
  ExpectError(Verify(BuildBundle(envelope, files_), Trust()), ErrorCode::kSignature,
              "bundle.efb: manifest.json is not signed");
}

TEST_F(BundleReaderTest, RefusesAManifestSignedByAnUnknownKey) {
  const SignedEnvelope envelope = Envelope(ManifestBody(files_), {&stranger_});
  Result<BundleContents> result = Verify(BuildBundle(envelope, files_), Trust());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kSignature);
  EXPECT_THAT(result.error().message,
              StartsWith("bundle.efb: manifest.json: release role: 0 valid signature(s) of 1 "
                         "required; unknown keyids: "));
  EXPECT_THAT(result.error().message, HasSubstr(stranger_.KeyId().substr(0, 8)));
}

TEST_F(BundleReaderTest, RefusesAManifestSignedByTheRootKeyInsteadOfARelease) {
  // A key the root knows, but not for this role: it does not count.
  const SignedEnvelope envelope = Envelope(ManifestBody(files_), {&root_key_});
  Result<BundleContents> result = Verify(BuildBundle(envelope, files_), Trust());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kSignature);
  EXPECT_THAT(result.error().message,
              StartsWith("bundle.efb: manifest.json: release role: 0 valid signature(s) of 1 "
                         "required"));
}

TEST_F(BundleReaderTest, RefusesBelowTheReleaseThreshold) {
  // Two signatures by the same key count once.
  SignedEnvelope envelope = Signed(files_);
  envelope.signatures.push_back(envelope.signatures.front());
  ExpectError(Verify(BuildBundle(envelope, files_), Trust(2)), ErrorCode::kSignature,
              "bundle.efb: manifest.json: release role: 1 valid signature(s) of 2 required");
}

TEST_F(BundleReaderTest, RefusesASignatureOverOtherBytes) {
  SignedEnvelope envelope = Signed(files_);
  envelope.signed_body["version"] = "9.9.9";  // signed 1.2.0
  Result<BundleContents> result = Verify(BuildBundle(envelope, files_), Trust());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kSignature);
  EXPECT_THAT(result.error().message,
              StartsWith("bundle.efb: manifest.json: release role: 0 valid signature(s) of 1 "
                         "required; invalid: "));
}

TEST_F(BundleReaderTest, RefusesAnOversizedManifestBeforeBufferingIt) {
  TarBuilder builder;
  builder.File("manifest.json", std::string(manifests::kMaxManifestBytes + 1, ' '));
  ExpectError(Verify(builder.Bytes(), Trust()), ErrorCode::kLimit,
              "bundle.efb: manifest.json is 1048577 bytes, the limit is 1048576");
}

TEST_F(BundleReaderTest, RefusesAManifestThatIsNotJson) {
  TarBuilder builder;
  builder.File("manifest.json", "{not json");
  Result<BundleContents> result = Verify(builder.Bytes(), Trust());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kParse);
  EXPECT_THAT(result.error().message, StartsWith("bundle.efb: manifest.json: "));
}

TEST_F(BundleReaderTest, RefusesASignedButInvalidManifestBody) {
  nlohmann::json body = ManifestBody(files_);
  body.erase("name");
  const SignedEnvelope envelope = Envelope(body, {&release1_});
  Result<BundleContents> result = Verify(BuildBundle(envelope, files_), Trust());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kParse);
  EXPECT_THAT(result.error().message, StartsWith("bundle.efb: manifest.json: signed.name"));
}

TEST_F(BundleReaderTest, RefusesAnArchiveWithoutFiles) {
  ExpectError(Verify(TarBuilder().Bytes(), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: no manifest.json (the archive holds no files)");
}

TEST_F(BundleReaderTest, RefusesADirectoryBeforeTheManifest) {
  // A directory is an entry like any other: the manifest has to come before it too.
  TarBuilder builder;
  builder.Directory("model/").File("manifest.json", Signed(files_).ToJson().dump());
  for (const auto& [path, contents] : files_) builder.File(path, contents);
  ExpectError(Verify(builder.Bytes(), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: manifest.json must be the first entry, found 'model/'");
}

TEST_F(BundleReaderTest, RefusesADirectoryTheManifestDoesNotList) {
  TarBuilder builder;
  builder.File("manifest.json", Signed(files_).ToJson().dump());
  for (const auto& [path, contents] : files_) builder.File(path, contents);
  builder.Directory("extra-dir/");
  ExpectError(Verify(builder.Bytes(), Trust()), ErrorCode::kIntegrity,
              "bundle.efb: directory not in manifest: 'extra-dir/' (it is the parent of no listed "
              "file)");
}

TEST_F(BundleReaderTest, AcceptsParentDirectoriesOfListedFiles) {
  // What `tar -C dir .` writes after manifest.json: each parent directory before its files.
  TarBuilder builder;
  builder.File("manifest.json", Signed(files_).ToJson().dump())
      .Directory("./model/")
      .File("./model/a.onnx", files_[0].second)
      .Directory("golden/")
      .Directory("golden/set1/")
      .File("golden/set1/input_0.pb", files_[1].second)
      .File("golden/set1/output_0.pb", files_[2].second);
  EF_ASSERT_OK(Verify(builder.Bytes(), Trust()));
}

TEST_F(BundleReaderTest, PassesUnsafeEntriesThroughAsUnsafe) {
  TarBuilder builder;
  builder.File("manifest.json", Signed(files_).ToJson().dump()).File("../model/a.onnx", "x");
  ExpectError(Verify(builder.Bytes(), Trust()), ErrorCode::kUnsafeArchive,
              "bundle.efb: entry '../model/a.onnx': path escapes the bundle (\"..\" segment)");
}

TEST_F(BundleReaderTest, VerifiesAFileAndReadsOnlyTheManifestOfOne) {
  edgefleet::testing::TempDir dir;
  files_[0].second = Bytes(3 << 20, 7);
  const SignedEnvelope envelope = Signed(files_);
  edgefleet::testing::WriteFile(dir / "digits.efb", BuildBundle(envelope, files_));

  Result<BundleContents> verified = VerifyBundleFile(dir / "digits.efb", Trust());
  EF_ASSERT_OK(verified);
  EXPECT_EQ(verified->manifest.files[0].size, 3u << 20);

  Result<BundleContents> read = ReadBundleManifest(dir / "digits.efb");
  EF_ASSERT_OK(read);
  EXPECT_EQ(read->manifest.name, "digits");
  EXPECT_EQ(read->payload_bytes, envelope.ToJson().dump().size());
  EXPECT_LT(read->archive_bytes, 1u << 20);  // it stopped after manifest.json
}

TEST_F(BundleReaderTest, ReadBundleManifestAcceptsAnUnsignedManifest) {
  edgefleet::testing::TempDir dir;
  const SignedEnvelope envelope = Envelope(ManifestBody(files_), {});
  edgefleet::testing::WriteFile(dir / "digits.efb",
                                BuildBundle(envelope, files_, Compression::kZstd));
  Result<BundleContents> read = ReadBundleManifest(dir / "digits.efb");
  EF_ASSERT_OK(read);
  EXPECT_TRUE(read->envelope.signatures.empty());
}

TEST_F(BundleReaderTest, ReadBundleManifestStillRefusesAManifestThatIsNotFirst) {
  edgefleet::testing::TempDir dir;
  TarBuilder builder;
  builder.File("model/a.onnx", "x").File("manifest.json", Signed(files_).ToJson().dump());
  builder.WriteTo(dir / "digits.efb");
  Result<BundleContents> read = ReadBundleManifest(dir / "digits.efb");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().message,
            "digits.efb: manifest.json must be the first entry, found 'model/a.onnx'");
}

TEST_F(BundleReaderTest, VerifyBundleFileNamesAMissingFile) {
  edgefleet::testing::TempDir dir;
  Result<BundleContents> result = VerifyBundleFile(dir / "nope.efb", Trust());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIo);
  EXPECT_THAT(result.error().message, HasSubstr("nope.efb"));
}

// Records every call, as a slot writer would see them.
class RecordingSink : public FileSink {
 public:
  struct File {
    std::string path;
    std::uint64_t size = 0;
    std::string data;
    std::optional<bool> ok;  // unset until End
  };
  Status Begin(std::string_view path, std::uint64_t size) override {
    EXPECT_TRUE(files.empty() || files.back().ok.has_value()) << "Begin before End";
    files.push_back({std::string(path), size, {}, std::nullopt});
    return Ok();
  }
  Status Write(std::span<const std::byte> chunk) override {
    files.back().data.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    if (fail_writes_of == files.back().path) return Fail(ErrorCode::kIo, "slot B: disk full");
    return Ok();
  }
  Status End(bool sha256_ok) override {
    EXPECT_FALSE(files.back().ok.has_value()) << "End twice";
    files.back().ok = sha256_ok;
    return Ok();
  }
  std::vector<File> files;
  std::string fail_writes_of;
};

TEST_F(BundleReaderTest, SinkReceivesTheVerifiedManifestAndEveryFile) {
  const SignedEnvelope envelope = Signed(files_);
  RecordingSink sink;
  EF_ASSERT_OK(Verify(BuildBundle(envelope, files_, Compression::kZstd), Trust(), &sink));
  ASSERT_EQ(sink.files.size(), 4u);
  EXPECT_EQ(sink.files[0].path, "manifest.json");
  EXPECT_EQ(sink.files[0].data, envelope.ToJson().dump());
  for (std::size_t i = 0; i < files_.size(); ++i) {
    EXPECT_EQ(sink.files[i + 1].path, files_[i].first);
    EXPECT_EQ(sink.files[i + 1].size, files_[i].second.size());
    EXPECT_EQ(sink.files[i + 1].data, files_[i].second);
    EXPECT_EQ(sink.files[i + 1].ok, true);
  }
}

TEST_F(BundleReaderTest, SinkIsToldToDropAFileWhoseHashFails) {
  const SignedEnvelope envelope = Signed(files_);
  Files tampered = files_;
  tampered[1].second[0] ^= 0x01;
  RecordingSink sink;
  Result<BundleContents> result = Verify(BuildBundle(envelope, tampered), Trust(), &sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIntegrity);
  ASSERT_EQ(sink.files.size(), 3u);
  EXPECT_EQ(sink.files[1].ok, true);
  EXPECT_EQ(sink.files[2].path, "golden/set1/input_0.pb");
  EXPECT_EQ(sink.files[2].ok, false);
}

TEST_F(BundleReaderTest, SinkGetsNothingFromAnUnverifiedManifest) {
  const SignedEnvelope envelope = Envelope(ManifestBody(files_), {&stranger_});
  RecordingSink sink;
  ASSERT_FALSE(Verify(BuildBundle(envelope, files_), Trust(), &sink));
  EXPECT_TRUE(sink.files.empty());
}

TEST_F(BundleReaderTest, SinkIsToldToDropAFileCutShortByATruncatedArchive) {
  const SignedEnvelope envelope = Signed(files_);
  const std::string bytes = BuildBundle(envelope, files_);
  const std::size_t model_at = bytes.find(files_[0].second);
  ASSERT_NE(model_at, std::string::npos);
  RecordingSink sink;
  Result<BundleContents> result = Verify(bytes.substr(0, model_at + 2500), Trust(), &sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIntegrity);
  EXPECT_THAT(result.error().message,
              StartsWith("bundle.efb: truncated archive while reading 'model/a.onnx'"));
  ASSERT_EQ(sink.files.size(), 2u);
  EXPECT_EQ(sink.files[1].ok, false);
}

// The manifest declares every entry and size; a bundle over the limits is refused as soon as
// the manifest is verified, before the sink receives anything (it used to get every file up to
// the limit, written and synced, before the archive reader counted past it).
TEST_F(BundleReaderTest, RefusesAManifestListingMoreEntriesThanTheLimitBeforeAnyFileIsWritten) {
  ArchiveLimits limits;
  limits.max_entries = 3;  // manifest.json + 3 files is 4
  RecordingSink sink;
  ExpectError(Verify(BuildBundle(Signed(files_), files_), Trust(), &sink, limits),
              ErrorCode::kLimit,
              "bundle.efb: manifest.json lists 3 files; with manifest.json that is 4 entries, the "
              "limit is 3");
  EXPECT_TRUE(sink.files.empty());
}

TEST_F(BundleReaderTest, RefusesAManifestListingAFileOverTheLimitBeforeAnyFileIsWritten) {
  ArchiveLimits limits;
  limits.max_file_bytes = 4999;
  RecordingSink sink;
  ExpectError(Verify(BuildBundle(Signed(files_), files_), Trust(), &sink, limits),
              ErrorCode::kLimit,
              "bundle.efb: manifest.json: signed.files[0] 'model/a.onnx' is 5000 bytes, the limit "
              "is 4999");
  EXPECT_TRUE(sink.files.empty());
}

TEST_F(BundleReaderTest, RefusesAManifestListingATotalOverTheLimitBeforeAnyFileIsWritten) {
  const SignedEnvelope envelope = Signed(files_);
  const std::uint64_t total = envelope.ToJson().dump().size() + 5000 + 300 + 40;
  ArchiveLimits limits;
  limits.max_total_bytes = total - 1;
  RecordingSink sink;
  ExpectError(Verify(BuildBundle(envelope, files_), Trust(), &sink, limits), ErrorCode::kLimit,
              "bundle.efb: manifest.json: the listed files and manifest.json total " +
                  std::to_string(total) + " bytes, the limit is " + std::to_string(total - 1));
  EXPECT_TRUE(sink.files.empty());
  limits.max_total_bytes = total;
  EF_ASSERT_OK(Verify(BuildBundle(envelope, files_), Trust(), &sink, limits));
}

TEST_F(BundleReaderTest, SinkErrorPropagatesUnchanged) {
  const SignedEnvelope envelope = Signed(files_);
  RecordingSink sink;
  sink.fail_writes_of = "model/a.onnx";
  Result<BundleContents> result = Verify(BuildBundle(envelope, files_), Trust(), &sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIo);
  EXPECT_EQ(result.error().message, "slot B: disk full");
  EXPECT_EQ(sink.files.back().ok, false);  // and the open file is dropped
}

TEST_F(BundleReaderTest, SourceErrorPropagatesUnchanged) {
  const std::string bytes = BuildBundle(Signed(files_), files_);
  StringSource source(bytes, 512);
  source.FailAfter(bytes.find(files_[0].second) + 100,
                   Error{ErrorCode::kIo, "download: connection reset"});
  Result<BundleContents> result = VerifyBundle(source, "bundle.efb", Trust(), {});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIo);
  EXPECT_EQ(result.error().message, "download: connection reset");
}

}  // namespace
}  // namespace edgefleet::updater
