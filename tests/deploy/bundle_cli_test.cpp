// End-to-end tests of the operator's bundle tools: the real `edgefleet` binary on the real digits
// model, and hostile archives built by the test, each refused with its own message and exit 1.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "tests/support/process.hpp"
#include "tests/support/tar_builder.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tflite_builder.hpp"

namespace edgefleet {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::Compression;
using testing::ProcessResult;
using testing::RunProcess;
using testing::TarBuilder;

const fs::path kDigitsV1 = fs::path(EDGEFLEET_TEST_DATA_DIR) / "digits" / "v1";

ProcessResult Cli(std::vector<std::string> args) {
  args.insert(args.begin(), EDGEFLEET_CLI);
  return RunProcess(args, std::chrono::seconds(60));
}

std::vector<std::string> FilesIn(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class BundleCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"root", "release", "deploy", "stranger"}) {
      auto r = Cli({"keygen", "--out", (dir_ / name).string()});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    auto r =
        Cli({"trust", "init", "--root-key", Path("root.key"), "--release-key", Path("release.pub"),
             "--deploy-key", Path("deploy.pub"), "-o", Path("root.json")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = Cli({"bundle", "create", kDigitsV1.string(), "-o", Path("v1.efb"), "--key",
             Path("release.key")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = Cli({"bundle", "inspect", "--json", Path("v1.efb")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto doc = json::parse(r.out);
    doc.erase("bundle");
    auto envelope = manifests::SignedEnvelope::FromJson(doc, "inspect");
    ASSERT_TRUE(envelope) << envelope.error().message;
    good_ = *envelope;
    for (const auto& f : good_.signed_body["files"]) {
      files_.emplace_back(f["path"], testing::ReadFile(kDigitsV1 / f["path"].get<std::string>()));
    }
    auto key = manifests::LoadPrivateKey(dir_ / "release.key");
    ASSERT_TRUE(key) << key.error().message;
    release_key_ = std::make_unique<manifests::PrivateKey>(*key);
  }

  std::string Path(const char* name) const { return (dir_ / name).string(); }

  ProcessResult Verify(const fs::path& bundle) {
    return Cli({"bundle", "verify", bundle.string(), "--trust", Path("root.json")});
  }

  // Writes a bundle whose manifest is `body` signed by the release key, holding `files`.
  fs::path Write(const std::string& name, const json& body,
                 const std::vector<std::pair<std::string, std::string>>& files) {
    manifests::SignedEnvelope env;
    env.signed_body = body;
    EXPECT_TRUE(env.Sign(*release_key_));
    auto path = dir_ / name;
    testing::WriteFile(path, testing::BuildBundle(env, files));
    return path;
  }

  // Expects `bundle verify` to fail with exit 1 and a message containing every needle.
  void ExpectRefused(const fs::path& bundle, const std::vector<std::string>& needles) {
    auto r = Verify(bundle);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_TRUE(r.out.find("OK") == std::string::npos) << r.out;
    for (const auto& needle : needles) {
      EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr lacks '" << needle << "':\n"
                                                       << r.err;
    }
  }

  // Copies the digits source into `src` with one more variant, `variant`, whose file holds
  // `model`; returns the bundle.json written.
  json WithVariant(const testing::TempDir& src, const std::string& model, const json& variant) {
    fs::copy(kDigitsV1, src.path(), fs::copy_options::recursive);
    testing::WriteFile(src / variant["file"].get<std::string>(), model);
    auto spec = json::parse(testing::ReadFile(src / "bundle.json"));
    spec["variants"].push_back(variant);
    testing::WriteFile(src / "bundle.json", spec.dump());
    return spec;
  }

  // `bundle create` of `src` into `name`, signed; its stdout, and the variants `bundle inspect`
  // reads back (null when either failed).
  std::pair<std::string, json> CreateAndInspect(const testing::TempDir& src, const char* name) {
    auto r = Cli(
        {"bundle", "create", src.path().string(), "-o", Path(name), "--key", Path("release.key")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    if (r.exit_code != 0) return {r.out, json()};
    auto inspected = Cli({"bundle", "inspect", "--json", Path(name)});
    EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
    if (inspected.exit_code != 0) return {r.out, json()};
    return {r.out, json::parse(inspected.out)["signed"]["variants"]};
  }

  testing::TempDir dir_;
  manifests::SignedEnvelope good_;
  std::vector<std::pair<std::string, std::string>> files_;
  std::unique_ptr<manifests::PrivateKey> release_key_;
};

TEST_F(BundleCliTest, CreatedBundleVerifiesAndInspects) {
  auto r = Verify(dir_ / "v1.efb");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("bundle verify: OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("digits 1.0.0"), std::string::npos) << r.out;

  r = Cli({"bundle", "inspect", Path("v1.efb")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("model/digits_op10.onnx"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("onnx-op13: onnx opset 13"), std::string::npos) << r.out;
  EXPECT_EQ(good_.signed_body["name"], "digits");
  EXPECT_EQ(good_.signed_body["files"].size(), 5u);
  // Every file of the source directory is in the bundle with its real hash.
  for (const auto& f : good_.signed_body["files"]) {
    auto sha = manifests::Sha256File(kDigitsV1 / f["path"].get<std::string>());
    ASSERT_TRUE(sha);
    EXPECT_EQ(f["sha256"], *sha) << f["path"];
  }
}

TEST_F(BundleCliTest, TestHarnessBundleIsAccepted) {
  // The hostile cases below change one thing each against this baseline.
  ASSERT_EQ(Verify(Write("baseline.efb", good_.signed_body, files_)).exit_code, 0);
}

TEST_F(BundleCliTest, RefusesChangedModelByte) {
  auto files = files_;
  files[0].second[100] ^= 0x01;
  ExpectRefused(Write("x.efb", good_.signed_body, files), {files[0].first, "sha256 expected"});
}

TEST_F(BundleCliTest, RefusesMissingFile) {
  auto files = files_;
  files.pop_back();
  ExpectRefused(Write("x.efb", good_.signed_body, files), {"missing", files_.back().first});
}

TEST_F(BundleCliTest, RefusesExtraFile) {
  auto files = files_;
  files.emplace_back("model/extra.bin", "surprise");
  ExpectRefused(Write("x.efb", good_.signed_body, files), {"extra", "model/extra.bin"});
}

TEST_F(BundleCliTest, RefusesParentDirectoryEntry) {
  auto files = files_;
  files.emplace_back("../x", "escape");
  ExpectRefused(Write("x.efb", good_.signed_body, files), {"'../x'", ".."});
}

TEST_F(BundleCliTest, RefusesAbsoluteEntry) {
  auto files = files_;
  files.emplace_back("/etc/x", "escape");
  ExpectRefused(Write("x.efb", good_.signed_body, files), {"/etc/x", "absolute"});
}

TEST_F(BundleCliTest, RefusesLinksAndDuplicates) {
  struct Case {
    const char* name;
    std::function<void(TarBuilder&)> add;
    std::vector<std::string> needles;
  };
  std::vector<Case> cases = {
      {"symlink",
       [](TarBuilder& t) { t.Symlink("model/link", "/etc/passwd"); },
       {"model/link", "symlink"}},
      {"hardlink",
       [&](TarBuilder& t) { t.Hardlink("model/hard", files_[0].first); },
       {"model/hard", "hardlink"}},
      {"duplicate",
       [&](TarBuilder& t) { t.File(files_[0].first, files_[0].second); },
       {files_[0].first, "duplicate"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TarBuilder tar;
    tar.File("manifest.json", good_.ToJson().dump());
    for (const auto& [path, data] : files_) tar.File(path, data);
    c.add(tar);
    auto path = dir_ / (std::string(c.name) + ".efb");
    tar.WriteTo(path);
    ExpectRefused(path, c.needles);
  }
}

TEST_F(BundleCliTest, RefusesTruncatedArchive) {
  std::string bytes = testing::ReadFile(dir_ / "v1.efb");
  auto path = dir_ / "truncated.efb";
  testing::WriteFile(path, bytes.substr(0, bytes.size() / 2));
  ExpectRefused(path, {"truncated"});
}

TEST_F(BundleCliTest, RefusesEntryLargerThanDeclared) {
  auto body = good_.signed_body;
  body["files"][0]["size"] = body["files"][0]["size"].get<std::uint64_t>() - 10;
  ExpectRefused(Write("x.efb", body, files_), {files_[0].first, "declares"});
}

TEST_F(BundleCliTest, RefusesUnsignedManifest) {
  manifests::SignedEnvelope env;
  env.signed_body = good_.signed_body;
  auto path = dir_ / "unsigned.efb";
  testing::WriteFile(path, testing::BuildBundle(env, files_));
  ExpectRefused(path, {"not signed"});
}

TEST_F(BundleCliTest, RefusesManifestSignedByUnknownKey) {
  auto stranger = manifests::LoadPrivateKey(dir_ / "stranger.key");
  ASSERT_TRUE(stranger);
  manifests::SignedEnvelope env;
  env.signed_body = good_.signed_body;
  ASSERT_TRUE(env.Sign(*stranger));
  auto path = dir_ / "stranger.efb";
  testing::WriteFile(path, testing::BuildBundle(env, files_));
  ExpectRefused(path, {"release", stranger->KeyId().substr(0, 12)});
}

TEST_F(BundleCliTest, SignAddsSignaturesForAThreshold) {
  ASSERT_EQ(Cli({"keygen", "--out", Path("release2")}).exit_code, 0);
  auto r = Cli({"trust", "init", "--root-key", Path("root.key"), "--release-key",
                Path("release.pub"), "--release-key", Path("release2.pub"), "--release-threshold",
                "2", "--deploy-key", Path("deploy.pub"), "-o", Path("root2.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"bundle", "create", kDigitsV1.string(), "-o", Path("u.efb"), "--compression", "gzip"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto verify2 = [&] {
    return Cli({"bundle", "verify", Path("u.efb"), "--trust", Path("root2.json")});
  };
  EXPECT_NE(verify2().err.find("not signed"), std::string::npos);
  ASSERT_EQ(Cli({"bundle", "sign", Path("u.efb"), "--key", Path("release.key")}).exit_code, 0);
  r = verify2();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("1 valid signature(s) of 2"), std::string::npos) << r.err;
  // Signing twice with the same key still counts once.
  ASSERT_EQ(Cli({"bundle", "sign", Path("u.efb"), "--key", Path("release.key")}).exit_code, 0);
  EXPECT_EQ(verify2().exit_code, 1);
  ASSERT_EQ(Cli({"bundle", "sign", Path("u.efb"), "--key", Path("release2.key")}).exit_code, 0);
  r = verify2();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Re-signing kept the compression and left no temporary files behind.
  auto inspect = Cli({"bundle", "inspect", "--json", Path("u.efb")});
  ASSERT_EQ(inspect.exit_code, 0);
  auto doc = json::parse(inspect.out);
  EXPECT_EQ(doc["bundle"]["compression"], "gzip");
  EXPECT_EQ(doc["signatures"].size(), 2u);
  for (const auto& name : FilesIn(dir_.path())) EXPECT_NE(name[0], '.') << name;
}

TEST_F(BundleCliTest, CreateNamesTheBadFieldAndLeavesNothingBehind) {
  testing::TempDir src;
  fs::copy(kDigitsV1, src.path(), fs::copy_options::recursive);
  auto spec = json::parse(testing::ReadFile(src / "bundle.json"));
  spec["variants"][0]["opset"] = "ten";
  spec["parity"]["atol"] = -1;
  testing::WriteFile(src / "bundle.json", spec.dump());
  auto r = Cli({"bundle", "create", src.path().string(), "-o", Path("bad.efb")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("signed.variants[0].opset"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("signed.parity.atol"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "bad.efb"));

  spec = json::parse(testing::ReadFile(kDigitsV1 / "bundle.json"));
  testing::WriteFile(src / "bundle.json", spec.dump());
  fs::remove(src / "golden" / "labels.json");
  r = Cli({"bundle", "create", src.path().string(), "-o", Path("bad.efb")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("golden/labels.json"), std::string::npos) << r.err;
  for (const auto& name : FilesIn(dir_.path())) {
    EXPECT_NE(name, "bad.efb");
    EXPECT_NE(name[0], '.') << name;
  }
}

// The backends issue: an ONNX variant's format, opset, operators, inputs and outputs come from
// its file; what bundle.json gives is checked against the file.
TEST_F(BundleCliTest, CreateFillsAnOnnxVariantFromItsFileAndChecksWhatIsGiven) {
  testing::TempDir src;
  fs::copy(kDigitsV1, src.path(), fs::copy_options::recursive);
  auto spec = json::parse(testing::ReadFile(src / "bundle.json"));
  const json typed = spec["variants"];
  for (auto& v : spec["variants"]) {
    for (const char* key : {"format", "opset", "operators", "forms", "inputs", "outputs"}) {
      v.erase(key);
    }
  }
  testing::WriteFile(src / "bundle.json", spec.dump());
  auto r = Cli({"bundle", "create", src.path().string(), "-o", Path("filled.efb"), "--key",
                Path("release.key")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("variants[0] onnx-op10: filled format, opset, operators, forms, inputs, "
                       "outputs from model/digits_op10.onnx (opset 10, 5 operators, 5 forms)"),
            std::string::npos)
      << r.out;
  r = Cli({"bundle", "inspect", "--json", Path("filled.efb")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json filled = json::parse(r.out)["signed"]["variants"];
  ASSERT_EQ(filled.size(), typed.size());
  for (std::size_t i = 0; i < typed.size(); ++i) {
    for (const char* key : {"format", "opset", "operators", "outputs"}) {
      EXPECT_EQ(filled[i][key], typed[i][key]) << i << " " << key;
    }
    // The graph's batch dimension is dynamic: -1, as the hand-written manifest says.
    EXPECT_EQ(filled[i]["inputs"], typed[i]["inputs"]) << i;
    // One form or more per operator, each "<operator>(<form>)".
    ASSERT_GE(filled[i]["forms"].size(), filled[i]["operators"].size()) << i;
    for (const auto& form : filled[i]["forms"]) {
      const std::string text = form.get<std::string>();
      const std::string op = text.substr(0, text.find('('));
      EXPECT_NE(std::find(filled[i]["operators"].begin(), filled[i]["operators"].end(), op),
                filled[i]["operators"].end())
          << text;
      EXPECT_EQ(text.back(), ')') << text;
    }
  }

  // What bundle.json gives must agree with the file.
  spec["variants"][0]["opset"] = 12;
  testing::WriteFile(src / "bundle.json", spec.dump());
  r = Cli({"bundle", "create", src.path().string(), "-o", Path("wrong.efb")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("variants[0].opset: bundle.json says 12, 'model/digits_op10.onnx' has 10"),
            std::string::npos)
      << r.err;
  spec["variants"][0].erase("opset");
  spec["variants"][0]["operators"] = {"Conv", "Relu"};
  testing::WriteFile(src / "bundle.json", spec.dump());
  r = Cli({"bundle", "create", src.path().string(), "-o", Path("wrong.efb")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("variants[0].operators: bundle.json says [\"Conv\",\"Relu\"]"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "wrong.efb"));
}

// A tflite variant (a .tflite file, or "format": "tflite") is filled the same way: the schema
// version as its opset, the builtin operators by name, inputs and outputs with their dynamic
// dimensions, all from the file.
TEST_F(BundleCliTest, CreateFillsATfliteVariantFromItsFile) {
  testing::TempDir src;
  json spec = WithVariant(src, testing::BuildTflite(testing::SmallTfliteModel()),
                          {{"id", "tflite"},
                           {"file", "model/digits.tflite"},
                           {"backends", {{{"name", "tflite"}, {"version", ">=20.8.0 <21.0.0"}}}}});
  const auto [out, variants] = CreateAndInspect(src, "tflite.efb");
  EXPECT_NE(out.find("variants[2] tflite: filled format, opset, operators, inputs, outputs from "
                     "model/digits.tflite (schema 3, 4 operators, 4 nodes)"),
            std::string::npos)
      << out;
  ASSERT_EQ(variants.size(), 3u);
  const json& variant = variants[2];
  EXPECT_EQ(variant["format"], "tflite");
  EXPECT_EQ(variant["opset"], 3);
  EXPECT_EQ(variant["operators"], json({"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE"}));
  EXPECT_FALSE(variant.contains("forms"));
  EXPECT_EQ(variant["inputs"],
            json::parse(R"([{"name":"input","dtype":"float32","shape":[-1,8,8,1]}])"));
  EXPECT_EQ(variant["outputs"],
            json::parse(R"([{"name":"logits","dtype":"float32","shape":[-1,10]}])"));
  EXPECT_EQ(Verify(dir_ / "tflite.efb").exit_code, 0);

  // What bundle.json gives is checked against the file; a broken file is refused by name.
  spec["variants"][2]["operators"] = {"CONV_2D"};
  testing::WriteFile(src / "bundle.json", spec.dump());
  auto r = Cli({"bundle", "create", src.path().string(), "-o", Path("wrong.efb")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("variants[2].operators: bundle.json says [\"CONV_2D\"], "
                       "'model/digits.tflite' has [\"CONV_2D\",\"FULLY_CONNECTED\","),
            std::string::npos)
      << r.err;
  spec["variants"][2].erase("operators");
  spec["variants"][2]["inputs"] = json::parse(R"([{"name":"input","dtype":"float32",
                                                    "shape":[-1,1,8,8]}])");
  testing::WriteFile(src / "bundle.json", spec.dump());
  r = Cli({"bundle", "create", src.path().string(), "-o", Path("wrong.efb")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("variants[2].inputs: [0] shape [-1,1,8,8], the file has [-1,8,8,1]"),
            std::string::npos)
      << r.err;
  spec["variants"][2].erase("inputs");
  testing::WriteFile(src / "bundle.json", spec.dump());
  std::string broken = testing::BuildTflite(testing::SmallTfliteModel());
  testing::WriteFile(src / "model" / "digits.tflite", broken.substr(0, broken.size() / 3));
  r = Cli({"bundle", "create", src.path().string(), "-o", Path("wrong.efb")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("model/digits.tflite: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("past the end of the file"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "wrong.efb"));
}

// A custom operator is listed as "custom:<name>", the form a backend's table would have to
// claim, so a box whose backend does not refuses the variant before download.
TEST_F(BundleCliTest, CreateListsATfliteCustomOperatorByItsDomain) {
  testing::TempDir src;
  WithVariant(src, testing::BuildTflite(testing::SmallTfliteModel("Fancy.Op-2")),
              {{"id", "tflite-custom"},
               {"file", "model/fancy.bin"},
               {"format", "tflite"},
               {"backends", {{{"name", "tflite"}, {"version", ">=20.8.0"}}}}});
  const auto [out, variants] = CreateAndInspect(src, "custom.efb");
  EXPECT_NE(out.find("variants[2] tflite-custom: filled opset, operators, inputs, outputs from "
                     "model/fancy.bin (schema 3, 5 operators, 5 nodes)"),
            std::string::npos)
      << out;
  ASSERT_EQ(variants.size(), 3u);
  EXPECT_EQ(variants[2]["operators"],
            json({"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE", "custom:Fancy.Op-2"}));
}

TEST_F(BundleCliTest, NonAsciiFileNamesRoundTrip) {
  // pax stores UTF-8 names; writing and reading them must not depend on the process locale.
  testing::TempDir src;
  fs::copy(kDigitsV1, src.path(), fs::copy_options::recursive);
  fs::rename(src / "model" / "digits_op10.onnx", src / "model" / "ziffern_\xc3\xbc.onnx");
  auto spec = json::parse(testing::ReadFile(src / "bundle.json"));
  spec["variants"][0]["file"] = "model/ziffern_\xc3\xbc.onnx";
  testing::WriteFile(src / "bundle.json", spec.dump());
  auto r = Cli(
      {"bundle", "create", src.path().string(), "-o", Path("u.efb"), "--key", Path("release.key")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Verify(dir_ / "u.efb");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"bundle", "inspect", Path("u.efb")});
  EXPECT_NE(r.out.find("model/ziffern_\xc3\xbc.onnx"), std::string::npos) << r.out;
}

TEST_F(BundleCliTest, KeygenRefusesToOverwriteAKey) {
  auto before = testing::ReadFile(dir_ / "release.key");
  auto r = Cli({"keygen", "--out", Path("release")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  EXPECT_EQ(testing::ReadFile(dir_ / "release.key"), before);
  EXPECT_EQ(fs::status(dir_ / "release.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(BundleCliTest, BadUsageExitsTwo) {
  EXPECT_EQ(Cli({"bundle", "verify"}).exit_code, 2);
  EXPECT_EQ(
      Cli({"bundle", "create", kDigitsV1.string(), "-o", Path("x.efb"), "--compression", "lz4"})
          .exit_code,
      2);
}

}  // namespace
}  // namespace edgefleet
