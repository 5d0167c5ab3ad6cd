#include "updater/slots.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
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
#include "updater/bundle_reader.hpp"
#include "updater/disk.hpp"

namespace edgefleet::updater {
namespace {

namespace fs = std::filesystem;
using ::edgefleet::testing::BuildBundle;
using ::edgefleet::testing::ReadFile;
using ::edgefleet::testing::TempDir;
using ::edgefleet::testing::WriteFile;
using manifests::PrivateKey;
using manifests::Role;
using manifests::SignedEnvelope;
using manifests::TrustRoot;
using test::Bytes;
using test::Files;
using test::ManifestBody;
using test::NewKey;
using test::StringSource;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// Every regular file under `root`: relative path -> SHA-256 (short failure messages).
std::map<std::string, std::string> Tree(const fs::path& root) {
  std::map<std::string, std::string> tree;
  if (!fs::exists(root)) return tree;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) {
      tree[fs::relative(entry.path(), root).string()] =
          manifests::Sha256Hex(ReadFile(entry.path()));
    }
  }
  return tree;
}

// A slot's payload: its tree without manifest.json (which the sink also receives and keeps).
std::map<std::string, std::string> Payload(const fs::path& root) {
  std::map<std::string, std::string> tree = Tree(root);
  EXPECT_EQ(tree.erase("manifest.json"), 1u) << root << " has no manifest.json";
  return tree;
}

struct Identity {
  ino_t inode;
  std::int64_t mtime_ns;
  bool operator==(const Identity&) const = default;
};

Identity IdentityOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return {st.st_ino, std::int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

class SlotsTest : public ::testing::Test {
 protected:
  SlotsTest() : root_key_(NewKey()), release_(NewKey()) {
    v1_ = {{"model/a.onnx", Bytes(5000, 1)},
           {"golden/set1/input_0.pb", Bytes(300, 2)},
           {"golden/set1/output_0.pb", Bytes(40, 3)}};
    v2_ = {{"model/a.onnx", Bytes(7000, 11)},
           {"golden/set1/input_0.pb", Bytes(300, 12)},
           {"golden/set1/output_0.pb", Bytes(40, 13)}};
    Result<SlotStore> store = SlotStore::Open(dir_ / "state");
    EXPECT_TRUE(store) << store.error().message;
    store_.emplace(std::move(store).value());
    trust_.emplace(Trust());
  }

  TrustRoot Trust() {
    manifests::TrustRootBody body;
    body.version = 1;
    body.expires = manifests::Now() + std::chrono::hours(24);
    body.keys.emplace(root_key_.KeyId(), root_key_.Public());
    body.keys.emplace(release_.KeyId(), release_.Public());
    body.roles[Role::kRoot] = {{root_key_.KeyId()}, 1};
    body.roles[Role::kRelease] = {{release_.KeyId()}, 1};
    body.roles[Role::kDeploy] = {{root_key_.KeyId()}, 1};
    SignedEnvelope envelope;
    envelope.signed_body = body.ToJson();
    EXPECT_TRUE(envelope.Sign(root_key_));
    Result<TrustRoot> trust = TrustRoot::FromEnvelope(envelope, manifests::Now(), "root.json");
    if (!trust) ADD_FAILURE() << trust.error().message;
    return std::move(trust).value();
  }

  // The bundle bytes for `files`, signed for `signed_files` (a tampered bundle differs).
  std::string Bundle(const Files& signed_files, const Files& files, const std::string& version) {
    SignedEnvelope envelope;
    envelope.signed_body = ManifestBody(signed_files, version);
    EXPECT_TRUE(envelope.Sign(release_));
    return BuildBundle(envelope, files);
  }

  Result<BundleContents> VerifyInto(const std::string& bytes, StagingSink& sink) {
    StringSource source(bytes);
    return VerifyBundle(source, "bundle.efb", *trust_, ArchiveLimits{}, &sink);
  }

  // Stages and commits `files` into `slot` (the full path a deployment takes).
  void Install(const Files& files, const std::string& version, Slot slot,
               std::optional<Slot> active) {
    Result<std::unique_ptr<StagingSink>> sink = store_->BeginStaging("digits", slot, active, 0, 0);
    ASSERT_TRUE(sink) << sink.error().message;
    EF_ASSERT_OK(VerifyInto(Bundle(files, files, version), **sink));
    EF_ASSERT_OK((*sink)->Commit());
  }

  static std::map<std::string, std::string> Expected(const Files& files) {
    std::map<std::string, std::string> tree;
    for (const auto& [path, contents] : files) tree[path] = manifests::Sha256Hex(contents);
    return tree;
  }

  fs::path ModelDir() const { return store_->ModelDir("digits"); }

  TempDir dir_;
  PrivateKey root_key_;
  PrivateKey release_;
  Files v1_;
  Files v2_;
  std::optional<SlotStore> store_;
  std::optional<TrustRoot> trust_;
};

TEST(SlotTest, NamesParseAndFlip) {
  EXPECT_EQ(ToString(Slot::kA), "A");
  EXPECT_EQ(ParseSlot("B").value(), Slot::kB);
  EXPECT_EQ(OtherSlot(Slot::kA), Slot::kB);
  Result<Slot> bad = ParseSlot("C");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "slot: expected \"A\" or \"B\", found \"C\"");
}

TEST_F(SlotsTest, AVerifiedBundleUnpacksIntoStagingAndCommitsIntoBWhileALeftUntouched) {
  Install(v1_, "1.0.0", Slot::kA, std::nullopt);
  const fs::path slot_a = store_->SlotPath("digits", Slot::kA);
  ASSERT_EQ(Payload(slot_a), Expected(v1_));
  std::map<std::string, Identity> a_before;
  for (const auto& [path, contents] : v1_) a_before[path] = IdentityOf(slot_a / path);

  Result<std::unique_ptr<StagingSink>> sink =
      store_->BeginStaging("digits", Slot::kB, Slot::kA, 0, 0);
  ASSERT_TRUE(sink) << sink.error().message;
  StagingSink& staging = **sink;
  EXPECT_EQ(staging.staging_path(), ModelDir() / "staging-B");
  EXPECT_EQ(staging.slot_path(), ModelDir() / "B");
  Result<BundleContents> contents = VerifyInto(Bundle(v2_, v2_, "1.1.0"), staging);
  EF_ASSERT_OK(contents);
  EXPECT_EQ(contents->manifest.version.ToString(), "1.1.0");
  EXPECT_EQ(Payload(staging.staging_path()), Expected(v2_));  // staged, not yet in the slot
  EXPECT_FALSE(fs::exists(ModelDir() / "B"));
  EF_ASSERT_OK(staging.Commit());

  EXPECT_EQ(Payload(ModelDir() / "B"), Expected(v2_));
  EXPECT_FALSE(fs::exists(staging.staging_path()));
  EXPECT_EQ(Payload(slot_a), Expected(v1_));
  for (const auto& [path, identity] : a_before) EXPECT_EQ(IdentityOf(slot_a / path), identity);
  // Only the slots remain in the model directory.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(ModelDir())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_THAT(names, UnorderedElementsAre("A", "B"));
}

TEST_F(SlotsTest, CommitReplacesAnExistingSlotWhole) {
  Install(v1_, "1.0.0", Slot::kB, Slot::kA);
  Files smaller = {{"model/a.onnx", Bytes(100, 5)},
                   {"golden/set1/input_0.pb", Bytes(30, 6)},
                   {"golden/set1/output_0.pb", Bytes(4, 7)}};
  WriteFile(ModelDir() / "B" / "stray.txt", "from an older bundle");
  Install(smaller, "1.2.0", Slot::kB, Slot::kA);
  EXPECT_EQ(Payload(ModelDir() / "B"), Expected(smaller));  // nothing of the old tree is left
  EXPECT_FALSE(fs::exists(ModelDir() / "staging-B"));
}

TEST_F(SlotsTest, RefusesToStageTheActiveSlotOrAnUnsafeModelName) {
  Install(v1_, "1.0.0", Slot::kA, std::nullopt);
  Result<std::unique_ptr<StagingSink>> sink =
      store_->BeginStaging("digits", Slot::kA, Slot::kA, 0, 0);
  ASSERT_FALSE(sink);
  EXPECT_EQ(sink.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(sink.error().message,
            ModelDir().string() + ": refusing to stage into slot A: it is the active slot");
  EXPECT_EQ(Payload(store_->SlotPath("digits", Slot::kA)), Expected(v1_));
  for (const std::string name : {"", ".", "..", "a/b"}) {
    Result<std::unique_ptr<StagingSink>> bad =
        store_->BeginStaging(name, Slot::kB, std::nullopt, 0, 0);
    ASSERT_FALSE(bad) << name;
    EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument) << name;
  }
}

TEST_F(SlotsTest, StagingMoreThanTheFreeSpaceIsRefusedBeforeAnythingIsCreated) {
  Result<std::uint64_t> free_bytes = FreeBytes(dir_.path());
  ASSERT_TRUE(free_bytes) << free_bytes.error().message;
  // Needed alone too large, and needed + reserve too large: both refused, nothing created.
  for (const auto& [needed, reserve] : {std::pair<std::uint64_t, std::uint64_t>{*free_bytes * 2, 0},
                                        {*free_bytes / 2, *free_bytes}}) {
    Result<std::unique_ptr<StagingSink>> sink =
        store_->BeginStaging("digits", Slot::kA, std::nullopt, needed, reserve);
    ASSERT_FALSE(sink);
    EXPECT_EQ(sink.error().code, ErrorCode::kIo);
    EXPECT_THAT(sink.error().message, HasSubstr("not enough free disk"));
    EXPECT_THAT(sink.error().message, HasSubstr(std::to_string(needed) + " needed + " +
                                                std::to_string(reserve) + " reserve"));
    EXPECT_FALSE(fs::exists(ModelDir()));
  }
  Result<std::unique_ptr<StagingSink>> fits =
      store_->BeginStaging("digits", Slot::kA, std::nullopt, 4096, 0);
  EXPECT_TRUE(fits) << fits.error().message;
}

TEST_F(SlotsTest, DiscardCandidateRemovesTheCandidateAndAnEmptyModelDirectoryOnly) {
  // A first model that failed: its slot and the model's directory go.
  Install(v1_, "1.0.0", Slot::kA, std::nullopt);
  EF_ASSERT_OK(store_->DiscardCandidate("digits", Slot::kA, std::nullopt));
  EXPECT_FALSE(fs::exists(ModelDir()));
  EF_ASSERT_OK(store_->DiscardCandidate("digits", Slot::kA, std::nullopt));  // nothing left: ok

  // A candidate beside an active model: the candidate and any staging go, the active slot stays.
  Install(v1_, "1.0.0", Slot::kA, std::nullopt);
  Install(v2_, "1.1.0", Slot::kB, Slot::kA);
  ASSERT_TRUE(store_->BeginStaging("digits", Slot::kB, Slot::kA, 0, 0));  // left behind
  EF_ASSERT_OK(store_->DiscardCandidate("digits", Slot::kB, Slot::kA));
  EXPECT_FALSE(fs::exists(ModelDir() / "B"));
  EXPECT_FALSE(fs::exists(ModelDir() / "staging-B"));
  EXPECT_EQ(Payload(ModelDir() / "A"), Expected(v1_));

  Status active = store_->DiscardCandidate("digits", Slot::kA, Slot::kA);
  ASSERT_FALSE(active);
  EXPECT_EQ(active.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(Payload(ModelDir() / "A"), Expected(v1_));
  EXPECT_FALSE(store_->DiscardCandidate("..", std::nullopt, std::nullopt));
}

TEST_F(SlotsTest, AHashFailureLeavesNoStagingFilesAndSlotBAsBefore) {
  Install(v1_, "1.0.0", Slot::kB, Slot::kA);
  const Identity b_model = IdentityOf(ModelDir() / "B" / "model/a.onnx");
  Files tampered = v2_;
  tampered[1].second[17] ^= 0x01;  // golden/set1/input_0.pb: the second file, after one good one
  Result<std::unique_ptr<StagingSink>> sink =
      store_->BeginStaging("digits", Slot::kB, Slot::kA, 0, 0);
  ASSERT_TRUE(sink) << sink.error().message;
  Result<BundleContents> contents = VerifyInto(Bundle(v2_, tampered, "1.1.0"), **sink);
  ASSERT_FALSE(contents);
  EXPECT_EQ(contents.error().code, ErrorCode::kIntegrity);
  // The sink dropped the bad file itself (End(false)); the good one before it waits for Discard.
  EXPECT_FALSE(fs::exists((*sink)->staging_path() / "golden/set1/input_0.pb"));
  EF_ASSERT_OK((*sink)->Discard());
  EXPECT_FALSE(fs::exists(ModelDir() / "staging-B"));
  EXPECT_EQ(Payload(ModelDir() / "B"), Expected(v1_));
  EXPECT_EQ(IdentityOf(ModelDir() / "B" / "model/a.onnx"), b_model);
  Status late = (*sink)->Commit();
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(SlotsTest, DestroyingAnUncommittedSinkRemovesItsStaging) {
  {
    Result<std::unique_ptr<StagingSink>> sink =
        store_->BeginStaging("digits", Slot::kA, std::nullopt, 0, 0);
    ASSERT_TRUE(sink) << sink.error().message;
    EF_ASSERT_OK(VerifyInto(Bundle(v1_, v1_, "1.0.0"), **sink));
    EXPECT_TRUE(fs::exists(ModelDir() / "staging-A" / "model/a.onnx"));
  }
  EXPECT_FALSE(fs::exists(ModelDir() / "staging-A"));
  EXPECT_FALSE(fs::exists(ModelDir() / "A"));
}

TEST_F(SlotsTest, SymlinksPlantedInStagingAreNotFollowed) {
  const fs::path outside = dir_ / "outside";
  fs::create_directories(outside);
  WriteFile(outside / "victim", "precious");
  {
    // A directory symlink where the bundle needs "model/".
    Result<std::unique_ptr<StagingSink>> sink =
        store_->BeginStaging("digits", Slot::kB, Slot::kA, 0, 0);
    ASSERT_TRUE(sink) << sink.error().message;
    fs::create_directory_symlink(outside, (*sink)->staging_path() / "model");
    Result<BundleContents> contents = VerifyInto(Bundle(v2_, v2_, "1.1.0"), **sink);
    ASSERT_FALSE(contents);
    EXPECT_EQ(contents.error().code, ErrorCode::kUnsafeArchive) << contents.error().message;
    EXPECT_THAT(contents.error().message,
                HasSubstr("staging-B/model: not a directory (symlinks are never followed)"));
  }
  {
    // A file symlink exactly where a bundle file goes.
    Result<std::unique_ptr<StagingSink>> sink =
        store_->BeginStaging("digits", Slot::kB, Slot::kA, 0, 0);
    ASSERT_TRUE(sink) << sink.error().message;
    fs::create_directories((*sink)->staging_path() / "model");
    fs::create_symlink(outside / "victim", (*sink)->staging_path() / "model" / "a.onnx");
    Result<BundleContents> contents = VerifyInto(Bundle(v2_, v2_, "1.1.0"), **sink);
    ASSERT_FALSE(contents);
    EXPECT_EQ(contents.error().code, ErrorCode::kIo) << contents.error().message;
    EXPECT_THAT(contents.error().message, HasSubstr("links are not followed"));
  }
  EXPECT_EQ(ReadFile(outside / "victim"), "precious");
  EXPECT_EQ(Tree(outside).size(), 1u);
  EXPECT_FALSE(fs::exists(ModelDir() / "staging-B"));  // both sinks discarded on destruction
  EXPECT_FALSE(fs::exists(ModelDir() / "B"));
}

TEST_F(SlotsTest, TheSinkRefusesUnsafePathsAndExtraBytesByItself) {
  Result<std::unique_ptr<StagingSink>> sink =
      store_->BeginStaging("digits", Slot::kB, Slot::kA, 0, 0);
  ASSERT_TRUE(sink) << sink.error().message;
  for (const std::string path : {"", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/"}) {
    Status status = (*sink)->Begin(path, 1);
    ASSERT_FALSE(status) << path;
    EXPECT_EQ(status.error().code, ErrorCode::kUnsafeArchive) << path;
  }
  EF_ASSERT_OK((*sink)->Begin("a/b/c.bin", 3));
  const std::string data = "abcd";
  Status too_much = (*sink)->Write(std::as_bytes(std::span(data)));
  ASSERT_FALSE(too_much);
  EXPECT_EQ(too_much.error().code, ErrorCode::kIntegrity);
  EF_ASSERT_OK((*sink)->Write(std::as_bytes(std::span(data).first(3))));
  EF_ASSERT_OK((*sink)->End(true));
  EXPECT_EQ(ReadFile((*sink)->staging_path() / "a/b/c.bin"), "abc");
  Status duplicate = (*sink)->Begin("a/b/c.bin", 3);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, ErrorCode::kIo);
}

TEST_F(SlotsTest, GarbageCollectionRemovesStaleStagingAndOldDownloadsAndKeepsTheRest) {
  Install(v1_, "1.0.0", Slot::kA, std::nullopt);
  const fs::path models = dir_ / "state" / "models";
  const fs::path downloads = store_->downloads_dir();
  EXPECT_EQ(downloads, dir_ / "state" / "downloads");
  WriteFile(models / "digits" / "staging-B" / "model" / "a.onnx", "half-unpacked");  // crashed
  WriteFile(models / "busy" / "staging-A" / "model" / "a.onnx", "being unpacked now");
  WriteFile(downloads / "old.efb.part", std::string(1000, 'x'));
  WriteFile(downloads / "fresh.efb.part", "still downloading");
  WriteFile(downloads / "done.efb", std::string(500, 'y'));
  WriteFile(downloads / "keep.efb", "referenced by the deployment in progress");
  const auto two_days_ago = fs::file_time_type::clock::now() - std::chrono::hours(48);
  fs::last_write_time(downloads / "old.efb.part", two_days_ago);

  GcOptions options;
  options.part_max_age = std::chrono::hours(24);
  options.referenced_downloads = {"keep.efb"};
  options.busy_models = {"busy"};
  Result<GcReport> report = store_->CollectGarbage(options);
  EF_ASSERT_OK(report);
  EXPECT_THAT(report->removed, ElementsAre(models / "digits" / "staging-B", downloads / "done.efb",
                                           downloads / "old.efb.part"));
  EXPECT_EQ(report->bytes_freed, std::string("half-unpacked").size() + 1000 + 500);

  EXPECT_EQ(Payload(store_->SlotPath("digits", Slot::kA)), Expected(v1_));
  EXPECT_TRUE(fs::exists(models / "busy" / "staging-A" / "model" / "a.onnx"));
  EXPECT_TRUE(fs::exists(downloads / "fresh.efb.part"));
  EXPECT_TRUE(fs::exists(downloads / "keep.efb"));
  EXPECT_FALSE(fs::exists(downloads / "old.efb.part"));
  EXPECT_FALSE(fs::exists(downloads / "done.efb"));

  // Nothing left to collect: a second pass removes nothing.
  Result<GcReport> again = store_->CollectGarbage(options);
  EF_ASSERT_OK(again);
  EXPECT_TRUE(again->removed.empty());
}

}  // namespace
}  // namespace edgefleet::updater
