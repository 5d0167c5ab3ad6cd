// End-to-end: what a refused bundle leaves behind (nothing), and what the operator is told, for
// the real `edgefleet-agent install` (offline) and `run` (online) processes (issue 16: causes 3,
// 6 and 7, and the messages).
#include <sys/statvfs.h>

#include "manifests/log_value.hpp"
#include "tests/integration/agent_fixture.hpp"
#include "tests/support/tar_builder.hpp"
#include "updater/journal.hpp"

namespace edgefleet {
namespace {

class AgentRefusal : public AgentE2E {
 protected:
  // The files of a bundle source directory, as the manifest lists them.
  static std::vector<std::pair<std::string, std::string>> FilesOf(const json& manifest,
                                                                  const fs::path& dir) {
    std::vector<std::pair<std::string, std::string>> files;
    for (const auto& f : manifest["files"]) {
      files.emplace_back(f["path"], testing::ReadFile(dir / f["path"].get<std::string>()));
    }
    return files;
  }

  // Everything under models/ (relative paths), to compare before and after a refusal.
  std::set<std::string> ModelTree() {
    std::set<std::string> out;
    std::error_code ec;
    const fs::path models = state_dir_ / "models";
    for (fs::recursive_directory_iterator it(models, ec), end; !ec && it != end; it.increment(ec)) {
      out.insert(fs::relative(it->path(), models).string());
    }
    return out;
  }

  std::uint64_t FreeBytes() {
    struct statvfs info {};
    EXPECT_EQ(::statvfs(state_dir_.c_str(), &info), 0);
    return static_cast<std::uint64_t>(info.f_bavail) * info.f_frsize;
  }
};

TEST_F(AgentRefusal, AnUnsignedBundleIsRefusedAsUnsignedAndLeavesNothing) {
  Bundle v1 = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  auto first = Install(v1.path);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const json before = Status();
  const std::set<std::string> tree = ModelTree();

  struct Case {
    std::string name;
    std::function<void(json&)> edit;
  };
  // A new model name (nothing may be created for it), the active version and a lower one (the
  // version reasons must not come before "not signed").
  const std::vector<Case> cases = {
      {"new-name", [](json& b) { b["name"] = "ghost"; }},
      {"active-version", [](json&) {}},
      {"downgrade", [](json& b) { b["version"] = "0.9.0"; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    json body = v1.manifest;
    c.edit(body);
    manifests::SignedEnvelope unsigned_env;
    unsigned_env.signed_body = body;
    const fs::path path = tmp_ / ("unsigned-" + c.name + ".efb");
    testing::WriteFile(path,
                       testing::BuildBundle(unsigned_env, FilesOf(v1.manifest, kDigits / "v1")));
    auto r = Install(path);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("manifest.json is not signed"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("active model"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("below"), std::string::npos) << r.err;
    EXPECT_EQ(ModelTree(), tree) << "a directory or file was created for an unsigned bundle";
    EXPECT_FALSE(fs::exists(state_dir_ / "models" / "ghost"));
    EXPECT_EQ(Status(), before) << "the journal recorded something named by an unsigned bundle";
  }
}

TEST_F(AgentRefusal, AnOfflineDowngradeNamesRollbackProtectionNotTheDatabase) {
  Bundle v1 = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), nullptr);
  ASSERT_EQ(Install(v2.path).exit_code, 0);
  const json before = Status();
  auto r = Install(v1.path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("digits 1.0.0 is below the highest version committed on this box, 1.1.0"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("offline install never downgrades"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("journal.db"), std::string::npos) << r.err;
  EXPECT_EQ(Status(), before);
}

// Cause 3: `status --json` aborted (nlohmann type_error 316) on a journaled reason with invalid
// UTF-8, and stayed broken until 20 newer deployments pushed the record out.
TEST_F(AgentRefusal, StatusNeverAbortsOnRawBytesInTheJournal) {
  {
    // A journal as an older agent wrote it: raw Latin-1, an escape sequence and a bidi override.
    fs::create_directories(state_dir_);
    auto journal = updater::Journal::Open(state_dir_ / "journal.db");
    ASSERT_TRUE(journal) << journal.error().message;
    updater::DeploymentRequest request;
    request.model = "digits";
    request.version = "1.0.0";
    request.bundle_url = "file:///tmp/caf\xe9.efb";
    request.bundle_sha256 = std::string(64, 'a');
    auto dep = journal->BeginDeployment(request);
    ASSERT_TRUE(dep) << dep.error().message;
    ASSERT_TRUE(journal->RecordTransition(dep->id, updater::DeploymentState::kDownloading,
                                          "caf\xe9 \x1b[31mred\xe2\x80\xae"));
    ASSERT_TRUE(journal->Finish(dep->id, updater::DeploymentState::kFailed,
                                "entry 'model/\xff\xfe': refused"));
  }
  auto r = testing::RunProcess(
      {EDGEFLEET_AGENT, "status", "--config", config_path_.string(), "--json"}, seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json doc = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << r.out;
  ASSERT_EQ(doc["deployments"].size(), 1u);
  EXPECT_EQ(doc["deployments"][0]["reason"], "entry 'model/\\xff\\xfe': refused");
  EXPECT_EQ(doc["deployments"][0]["transitions"][1]["reason"], "caf\\xe9 \\x1b[31mred\\u202e");
  auto text = testing::RunProcess({EDGEFLEET_AGENT, "status", "--config", config_path_.string()},
                                  seconds(30));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(manifests::IsValidUtf8(text.out)) << text.out;
  EXPECT_EQ(text.out.find('\x1b'), std::string::npos) << text.out;

  // A valid bundle whose file name is Latin-1: installed, and its name shown escaped.
  Bundle v1 = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  const fs::path latin1 = tmp_ / "caf\xe9.efb";
  fs::copy_file(v1.path, latin1);
  auto installed = Install(latin1);
  ASSERT_EQ(installed.exit_code, 0) << installed.err;
  const json status = Status();
  ASSERT_FALSE(status.contains("error")) << status.dump();
  EXPECT_NE(status.dump().find("caf\\\\xe9.efb"), std::string::npos) << status.dump(1);
}

// Cause 6: a validly signed bundle of a few KiB declaring a large file filled the disk before
// ENOSPC. The signed total is now checked, with the reserve, before a byte is unpacked.
TEST_F(AgentRefusal, ABundleLargerThanTheFreeSpaceIsRefusedBeforeUnpacking) {
  constexpr std::uint64_t kPad = 512ull << 20;  // zeros: a few hundred KiB with zstd
  Bundle v1 = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  ASSERT_EQ(Install(v1.path).exit_code, 0);
  Bundle big = testing::MakeBundle(fleet_, "v2", tmp_.path(), [&](json& b, const fs::path& dir) {
    b["watch"] = testing::ShortWatch();
    json pad = b["variants"][0];
    pad["id"] = "pad";
    pad["file"] = "model/pad.onnx";
    pad["format"] = "padding";  // zeros, not a model: bundle create does not inspect it
    b["variants"].push_back(pad);
    // A sparse file: the source costs no disk, the bundle is small, the slot would need 512 MiB.
    testing::WriteFile(dir / "model" / "pad.onnx", "");
    fs::resize_file(dir / "model" / "pad.onnx", kPad);
  });
  ASSERT_LT(big.bytes.size(), 16u << 20) << "the padded bundle should compress";
  const std::set<std::string> tree = ModelTree();

  // Room for the download and less than the unpacked bundle, with a margin of 256 MiB both ways
  // for other writers on this file system (tests run in parallel).
  const std::uint64_t reserve = FreeBytes() - (kPad / 2);
  WriteConfig({{"reserve_bytes", reserve}});

  auto offline = Install(big.path);
  EXPECT_EQ(offline.exit_code, 1) << offline.out;
  EXPECT_NE(offline.err.find("not enough free disk"), std::string::npos) << offline.err;
  EXPECT_EQ(ModelTree(), tree);

  StartAgent();
  server_.Add("/big.efb", big.bytes);
  const std::uint64_t after = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(big, server_.Url("/big.efb"))});
  json d = WaitTerminal("1.1.0", after, seconds(60), false);
  EXPECT_EQ(d.value("state", ""), "failed") << d.dump(1);
  EXPECT_NE(d.value("reason", "").find("not enough free disk"), std::string::npos) << d.dump(1);
  EXPECT_EQ(server_.BytesSent("/big.efb"), big.bytes.size()) << "the download fits and is done";
  EXPECT_EQ(ModelTree(), tree);
  EXPECT_EQ(ServedVersion(), "1.0.0");
  StopAgent();
}

// Parity refuses the broken model after it was unpacked into slot B: its files must go, online
// and offline (a failed 128 MiB candidate used to stay in its slot).
TEST_F(AgentRefusal, AFailedCandidateLeavesNoFilesBehind) {
  Bundle v1 = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  ASSERT_EQ(Install(v1.path).exit_code, 0);
  const std::set<std::string> tree = ModelTree();
  ASSERT_TRUE(tree.contains("digits/A")) << testing::Tail(log_);
  Bundle broken = testing::MakeBundle(fleet_, "broken", tmp_.path(), nullptr);

  auto offline = Install(broken.path);
  EXPECT_EQ(offline.exit_code, 1);
  EXPECT_NE(offline.err.find("parity"), std::string::npos) << offline.err;
  EXPECT_EQ(ModelTree(), tree);

  StartAgent();
  server_.Add("/broken.efb", broken.bytes);
  const std::uint64_t after = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(broken, server_.Url("/broken.efb"))});
  json d = WaitTerminal(broken.version, after, seconds(60), false);
  EXPECT_EQ(d.value("state", ""), "failed") << d.dump(1);
  EXPECT_NE(d.value("reason", "").find("parity"), std::string::npos) << d.dump(1);
  EXPECT_EQ(ModelTree(), tree);
  StopAgent();
}

}  // namespace
}  // namespace edgefleet
