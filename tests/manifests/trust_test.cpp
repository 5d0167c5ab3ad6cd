// Trust roots: parsing, thresholds, expiry and rotation.
#include <gtest/gtest.h>

#include "manifests/canonical.hpp"
#include "manifests/desired_state.hpp"
#include "manifests/trust.hpp"
#include "tests/manifests/samples.hpp"
#include "tests/manifests/test_util.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::manifests {
namespace {

using testing::At;
using testing::FailsWithLine;
using testing::KeyFromByte;
using testing::MakeRootBody;
using testing::ParseFailsWith;

std::string Short(const PrivateKey& k) { return k.KeyId().substr(0, 16) + ".."; }

class TrustTest : public ::testing::Test {
 protected:
  const Timestamp now_ = At("2026-11-21T05:00:00Z");
  const Timestamp later_ = At("2027-11-21T05:00:00Z");
  const PrivateKey root1_ = KeyFromByte(1);
  const PrivateKey root2_ = KeyFromByte(2);
  const PrivateKey rel1_ = KeyFromByte(11);
  const PrivateKey rel2_ = KeyFromByte(12);
  const PrivateKey rel3_ = KeyFromByte(13);
  const PrivateKey deploy_ = KeyFromByte(21);
  const PrivateKey stranger_ = KeyFromByte(99);

  // Root v1: root key root1 (threshold 1), release 2-of-3.
  SignedEnvelope RootV1() const {
    SignedEnvelope env;
    env.signed_body =
        MakeRootBody(1, {root1_}, 1, {rel1_, rel2_, rel3_}, 2, {deploy_}, later_).ToJson();
    EXPECT_TRUE(env.Sign(root1_));
    return env;
  }
  TrustRoot Root() const {
    auto root = TrustRoot::FromEnvelope(RootV1(), now_, "root.json");
    EXPECT_TRUE(root) << root.error().message;
    return std::move(root).value();
  }
  static SignedEnvelope Signed(nlohmann::json body, std::initializer_list<PrivateKey> keys) {
    SignedEnvelope env;
    env.signed_body = std::move(body);
    for (const auto& k : keys) EXPECT_TRUE(env.Sign(k));
    return env;
  }
};

TEST_F(TrustTest, RootBodyRoundTrip) {
  TrustRootBody body =
      MakeRootBody(3, {root1_, root2_}, 2, {rel1_}, 1, {deploy_}, At("2027-01-02T03:04:05Z"));
  body.extensions["x-owner"] = "ops";
  const auto json = body.ToJson();
  EXPECT_EQ(json["type"], "edgefleet/root");
  auto parsed = TrustRootBody::FromJson(json, "root.json");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->ToJson(), json);
  EXPECT_EQ(parsed->version, 3u);
  EXPECT_EQ(parsed->roles.at(Role::kRoot).threshold, 2);
  EXPECT_EQ(parsed->roles.at(Role::kRoot).keyids.size(), 2u);
  EXPECT_EQ(parsed->keys.at(rel1_.KeyId()).Hex(), rel1_.Public().Hex());
  EXPECT_EQ(parsed->extensions["x-owner"], "ops");
}

TEST_F(TrustTest, RootBodyReportsEveryProblem) {
  nlohmann::json body = MakeRootBody(1, {root1_}, 1, {rel1_}, 1, {deploy_}, later_).ToJson();
  const std::string wrong_id = std::string(64, 'c');
  body["keys"][wrong_id] = {{"keytype", "ed25519"}, {"public", rel2_.Public().Hex()}};
  body["roles"]["release"]["threshold"] = 2;  // only one keyid
  body["roles"]["root"]["keyids"].push_back(root1_.KeyId());
  body["roles"]["deploy"]["keyids"].push_back(stranger_.KeyId());
  body["roles"].erase("release");
  body["roles"]["admin"] = {{"keyids", nlohmann::json::array()}, {"threshold", 1}};
  body["version"] = 0;
  auto parsed = TrustRootBody::FromJson(body, "root.json");
  const std::string ks = "root.json: signed.keys." + wrong_id;
  for (const std::string& line :
       {ks + ": expected the keyid to be the SHA-256 of its public key (" + rel2_.KeyId() +
            "), found \"" + wrong_id + "\"",
        std::string("root.json: signed.version: expected an integer >= 1, found 0"),
        "root.json: signed.roles.root.keyids[1]: expected unique keyids, found \"" +
            root1_.KeyId() + "\" again",
        "root.json: signed.roles.deploy.keyids[1]: expected a keyid listed in signed.keys, "
        "found \"" +
            stranger_.KeyId() + "\"",
        std::string("root.json: signed.roles.release: missing required field, expected object, "
                    "found nothing"),
        std::string("root.json: signed.roles.admin: unknown field, expected one of deploy, "
                    "release, root (or an \"x-\" extension), found \"admin\"")}) {
    EXPECT_TRUE(ParseFailsWith(parsed, line));
  }
  body["roles"]["release"] = {{"keyids", {rel1_.KeyId()}}, {"threshold", 2}};
  EXPECT_TRUE(ParseFailsWith(TrustRootBody::FromJson(body, "root.json"),
                             "root.json: signed.roles.release.threshold: expected an integer from "
                             "1 to the number of keyids (1), found 2"));
}

TEST_F(TrustTest, SelfSignedRootLoadsFromFile) {
  edgefleet::testing::TempDir dir;
  edgefleet::testing::WriteFile(dir / "root.json", RootV1().ToJson().dump(2));
  auto root = TrustRoot::Load(dir / "root.json", now_);
  ASSERT_TRUE(root) << root.error().message;
  EXPECT_EQ(root->version(), 1u);
  EXPECT_EQ(root->body().roles.at(Role::kRelease).threshold, 2);
  EXPECT_EQ(TrustRoot::Load(dir / "missing.json", now_).error().code, ErrorCode::kIo);
}

TEST_F(TrustTest, RootMustBeSelfSignedAndUnexpired) {
  const auto unsigned_root = Signed(RootV1().signed_body, {});
  EXPECT_TRUE(FailsWithLine(TrustRoot::FromEnvelope(unsigned_root, now_, "root.json"),
                            ErrorCode::kSignature,
                            "root.json: self-signature: root role: 0 valid signature(s) of 1 "
                            "required; the document carries no signatures"));
  const auto by_release = Signed(RootV1().signed_body, {rel1_});
  EXPECT_TRUE(FailsWithLine(TrustRoot::FromEnvelope(by_release, now_, "root.json"),
                            ErrorCode::kSignature,
                            "root.json: self-signature: root role: 0 valid signature(s) of 1 "
                            "required; unknown keyids: " +
                                Short(rel1_)));
  EXPECT_TRUE(FailsWithLine(TrustRoot::FromEnvelope(RootV1(), later_, "root.json"),
                            ErrorCode::kExpired,
                            "root.json: expired at 2027-11-21T05:00:00Z (now "
                            "2027-11-21T05:00:00Z)"));
}

TEST_F(TrustTest, VerifyValidThreshold) {
  const auto env = Signed(testing::SampleManifestBody(), {rel1_, rel3_});
  EXPECT_TRUE(Root().Verify(env, Role::kRelease));
  // Release keys mean nothing for the deploy role.
  EXPECT_TRUE(FailsWithLine(Root().Verify(env, Role::kDeploy), ErrorCode::kSignature,
                            "deploy role: 0 valid signature(s) of 1 required; unknown keyids: " +
                                std::min(Short(rel1_), Short(rel3_)) + ", " +
                                std::max(Short(rel1_), Short(rel3_))));
}

TEST_F(TrustTest, WrongKeyIsIgnoredButNamed) {
  const auto env = Signed(testing::SampleManifestBody(), {rel1_, stranger_});
  EXPECT_TRUE(FailsWithLine(
      Root().Verify(env, Role::kRelease), ErrorCode::kSignature,
      "release role: 1 valid signature(s) of 2 required; unknown keyids: " + Short(stranger_)));
  // An unknown signer does not spoil a document that reaches its threshold.
  const auto enough = Signed(testing::SampleManifestBody(), {rel1_, stranger_, rel2_});
  EXPECT_TRUE(Root().Verify(enough, Role::kRelease));
}

TEST_F(TrustTest, TooFewForThreshold) {
  const auto env = Signed(testing::SampleManifestBody(), {rel2_});
  EXPECT_TRUE(FailsWithLine(Root().Verify(env, Role::kRelease), ErrorCode::kSignature,
                            "release role: 1 valid signature(s) of 2 required"));
  EXPECT_TRUE(
      FailsWithLine(Root().Verify(Signed(testing::SampleManifestBody(), {}), Role::kRelease),
                    ErrorCode::kSignature,
                    "release role: 0 valid signature(s) of 2 required; the document "
                    "carries no signatures"));
}

TEST_F(TrustTest, SameKeyTwiceCountsOnce) {
  SignedEnvelope env = Signed(testing::SampleManifestBody(), {rel1_});
  env.signatures.push_back(env.signatures[0]);  // the same entry twice
  EXPECT_TRUE(FailsWithLine(Root().Verify(env, Role::kRelease), ErrorCode::kSignature,
                            "release role: 1 valid signature(s) of 2 required"));
  // A bad entry and a good entry under the same keyid: the key counts once, and only because
  // its good signature verified.
  SignedEnvelope twice = Signed(testing::SampleManifestBody(), {rel1_});
  Signature garbage{rel1_.KeyId(), std::string(128, '0')};
  twice.signatures.insert(twice.signatures.begin(), garbage);
  EXPECT_TRUE(FailsWithLine(Root().Verify(twice, Role::kRelease), ErrorCode::kSignature,
                            "release role: 1 valid signature(s) of 2 required"));
}

TEST_F(TrustTest, OneByteChangedInSignedBody) {
  SignedEnvelope env = Signed(testing::SampleManifestBody(), {rel1_, rel2_});
  ASSERT_TRUE(Root().Verify(env, Role::kRelease));
  env.signed_body["files"][0]["size"] = 1235;
  const std::string both =
      std::min(Short(rel1_), Short(rel2_)) + ", " + std::max(Short(rel1_), Short(rel2_));
  EXPECT_TRUE(FailsWithLine(Root().Verify(env, Role::kRelease), ErrorCode::kSignature,
                            "release role: 0 valid signature(s) of 2 required; invalid: " + both));
  // Through text, too: flip one character of the serialized body.
  SignedEnvelope good = Signed(testing::SampleManifestBody(), {rel1_, rel2_});
  std::string text = good.ToJson().dump();
  const auto pos = text.find("digits_op10");
  ASSERT_NE(pos, std::string::npos);
  text[pos] = 'D';
  auto tampered = SignedEnvelope::FromText(text, "manifest.json", kMaxManifestBytes);
  ASSERT_TRUE(tampered);
  EXPECT_EQ(Root().Verify(*tampered, Role::kRelease).error().code, ErrorCode::kSignature);
}

TEST_F(TrustTest, ExpiredDesiredState) {
  EXPECT_TRUE(CheckNotExpired(At("2026-11-21T05:00:01Z"), now_, "desired"));
  EXPECT_TRUE(FailsWithLine(CheckNotExpired(now_, now_, "desired"), ErrorCode::kExpired,
                            "desired: expired at 2026-11-21T05:00:00Z (now 2026-11-21T05:00:00Z)"));
}

TEST_F(TrustTest, RotationAccepted) {
  const TrustRoot v1 = Root();
  // v2 hands the root role to root2 and raises nothing else.
  const auto next =
      Signed(MakeRootBody(2, {root2_}, 1, {rel1_, rel2_}, 1, {deploy_}, later_).ToJson(),
             {root1_, root2_});
  auto v2 = v1.Rotate(next, now_);
  ASSERT_TRUE(v2) << v2.error().message;
  EXPECT_EQ(v2->version(), 2u);
  EXPECT_EQ(v2->body().roles.at(Role::kRelease).threshold, 1);
  EXPECT_TRUE(v2->Verify(Signed(testing::SampleManifestBody(), {rel2_}), Role::kRelease));
  // The chain continues: v3 signed by root2 (old) and root1 (new).
  const auto v3_env = Signed(MakeRootBody(3, {root1_}, 1, {rel1_}, 1, {deploy_}, later_).ToJson(),
                             {root2_, root1_});
  auto v3 = v2->Rotate(v3_env, now_);
  ASSERT_TRUE(v3) << v3.error().message;
  EXPECT_EQ(v3->version(), 3u);
}

TEST_F(TrustTest, RotationSignedOnlyByNewKeyRefused) {
  const auto next =
      Signed(MakeRootBody(2, {root2_}, 1, {rel1_}, 1, {deploy_}, later_).ToJson(), {root2_});
  EXPECT_TRUE(FailsWithLine(Root().Rotate(next, now_), ErrorCode::kSignature,
                            "new root: signatures by the current root (version 1): root role: 0 "
                            "valid signature(s) of 1 required; unknown keyids: " +
                                Short(root2_)));
}

TEST_F(TrustTest, RotationByOldKeyOnlyRefused) {
  const auto next =
      Signed(MakeRootBody(2, {root2_}, 1, {rel1_}, 1, {deploy_}, later_).ToJson(), {root1_});
  EXPECT_TRUE(FailsWithLine(Root().Rotate(next, now_), ErrorCode::kSignature,
                            "new root: signatures by the new root (version 2): root role: 0 "
                            "valid signature(s) of 1 required; unknown keyids: " +
                                Short(root1_)));
}

TEST_F(TrustTest, RotationSkippingOrRepeatingAVersionRefused) {
  for (std::uint64_t version : {3u, 1u}) {
    const auto next =
        Signed(MakeRootBody(version, {root2_}, 1, {rel1_}, 1, {deploy_}, later_).ToJson(),
               {root1_, root2_});
    EXPECT_TRUE(FailsWithLine(Root().Rotate(next, now_), ErrorCode::kInvalidArgument,
                              "new root: signed.version: expected exactly 2 (the current root is "
                              "version 1), found " +
                                  std::to_string(version)));
  }
}

TEST_F(TrustTest, ExpiredRotationRefused) {
  const auto next =
      Signed(MakeRootBody(2, {root2_}, 1, {rel1_}, 1, {deploy_}, now_).ToJson(), {root1_, root2_});
  EXPECT_EQ(Root().Rotate(next, now_).error().code, ErrorCode::kExpired);
}

TEST_F(TrustTest, RotationHonoursOldThresholdOfTwo) {
  // v1 with root threshold 2 of {root1, root2}; a rotation signed by only one old key fails.
  SignedEnvelope v1_env =
      Signed(MakeRootBody(1, {root1_, root2_}, 2, {rel1_}, 1, {deploy_}, later_).ToJson(),
             {root1_, root2_});
  auto v1 = TrustRoot::FromEnvelope(v1_env, now_, "root.json");
  ASSERT_TRUE(v1) << v1.error().message;
  const PrivateKey root3 = KeyFromByte(3);
  const auto next =
      Signed(MakeRootBody(2, {root3}, 1, {rel1_}, 1, {deploy_}, later_).ToJson(), {root1_, root3});
  EXPECT_TRUE(FailsWithLine(v1->Rotate(next, now_), ErrorCode::kSignature,
                            "new root: signatures by the current root (version 1): root role: 1 "
                            "valid signature(s) of 2 required; unknown keyids: " +
                                Short(root3)));
}

}  // namespace
}  // namespace edgefleet::manifests
