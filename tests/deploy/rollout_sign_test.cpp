// A wave's desired-state documents signed on every core (deploy/rollout_sign: SignDeviceDocs):
// each document is the one its device and serial ask for, in order, and its signature verifies.
// Label tsan: the helper threads share the signer and the input.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "deploy/rollout/rollout_sign.hpp"
#include "manifests/canonical.hpp"
#include "manifests/envelope.hpp"

namespace edgefleet::deploy {
namespace {

Signer TestSigner() {
  auto key = manifests::PrivateKey::Generate();
  EXPECT_TRUE(key) << key.error().message;
  Signer s;
  s.keys.push_back(*key);
  s.fleet = "lab";
  s.expires_s = 3600;
  return s;
}

nlohmann::json Models(const std::string& version) {
  return nlohmann::json::array({{{"name", "digits"},
                                 {"version", version},
                                 {"allow_downgrade", false},
                                 {"bundle",
                                  {{"url", "https://bundles.example/digits.efb"},
                                   {"sha256", std::string(64, 'a')},
                                   {"size", 1234}}}}});
}

TEST(RolloutSign, AWaveSignedOnEveryCoreKeepsEachDeviceItsOwnDocument) {
  const Signer signer = TestSigner();
  // Above the size where helper threads start, and not a multiple of their count.
  std::vector<std::string> names;
  for (int i = 0; i < 777; ++i) names.push_back("box-" + std::to_string(i));
  std::vector<DeviceDoc> docs;
  for (std::size_t i = 0; i < names.size(); ++i) {
    docs.push_back({&names[i], 1000 + i, Models("1." + std::to_string(i % 7) + ".0")});
  }
  auto out = SignDeviceDocs(signer, docs);
  ASSERT_TRUE(out) << out.error().message;
  ASSERT_EQ(out->size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto env = manifests::SignedEnvelope::FromText((*out)[i], "document",
                                                   manifests::kMaxDesiredStateBytes);
    ASSERT_TRUE(env) << env.error().message;
    const nlohmann::json& body = env->signed_body;
    EXPECT_EQ(body.at("target").at("device"), names[i]);
    EXPECT_EQ(body.at("serial"), 1000 + i);
    EXPECT_EQ(body.at("models").at(0).at("version"), "1." + std::to_string(i % 7) + ".0");
    ASSERT_EQ(env->signatures.size(), 1u);
    EXPECT_EQ(env->signatures[0].keyid, signer.keys[0].KeyId());
    EXPECT_TRUE(signer.keys[0].Public().Verify(manifests::Canonical(body), env->signatures[0].sig))
        << names[i];
  }
}

TEST(RolloutSign, OneBadDocumentFailsTheWaveNamingIt) {
  const Signer signer = TestSigner();
  std::vector<std::string> names;
  for (int i = 0; i < 600; ++i) names.push_back("box-" + std::to_string(i));
  std::vector<DeviceDoc> docs;
  for (std::size_t i = 0; i < names.size(); ++i)
    docs.push_back({&names[i], 1 + i, Models("1.0.0")});
  docs[451].models[0]["version"] = "not a version";
  auto out = SignDeviceDocs(signer, docs);
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("device/box-451"), std::string::npos) << out.error().message;
  EXPECT_NE(out.error().message.find("not a version"), std::string::npos) << out.error().message;
}

TEST(RolloutSign, NoDocumentsIsNoWork) {
  auto out = SignDeviceDocs(TestSigner(), {});
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_TRUE(out->empty());
}

}  // namespace
}  // namespace edgefleet::deploy
