// SHA-256, Ed25519 keys and key files, and the signed envelope.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "manifests/canonical.hpp"
#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/json_fields.hpp"
#include "tests/manifests/samples.hpp"
#include "tests/manifests/test_util.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::manifests {
namespace {

using edgefleet::testing::ReadFile;
using edgefleet::testing::TempDir;
using edgefleet::testing::WriteFile;
using testing::FailsWithLine;
using testing::KeyFromByte;
using testing::ParseFailsWith;

TEST(Sha256Test, KnownVectorsAndStreaming) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 sha;
  sha.Update("a");
  sha.Update(std::string_view("bc"));
  EXPECT_EQ(sha.FinishHex(), Sha256Hex("abc"));
  // FinishHex resets: the object is reusable.
  sha.Update("abc");
  EXPECT_EQ(sha.FinishHex(), Sha256Hex("abc"));
  Sha256 moved = std::move(sha);
  moved.Update("abc");
  EXPECT_EQ(moved.FinishHex(), Sha256Hex("abc"));
}

TEST(Sha256Test, File) {
  TempDir dir;
  std::string big(200000, 'x');
  WriteFile(dir / "f", big);
  auto hex = Sha256File(dir / "f");
  ASSERT_TRUE(hex) << hex.error().message;
  EXPECT_EQ(*hex, Sha256Hex(big));
  auto missing = Sha256File(dir / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kIo);
  EXPECT_NE(missing.error().message.find((dir / "nope").string()), std::string::npos);
}

TEST(HexTest, EncodeDecode) {
  const std::uint8_t bytes[] = {0x00, 0x7f, 0xff, 0xab};
  EXPECT_EQ(HexEncode(bytes), "007fffab");
  EXPECT_EQ(*HexDecode("007FffAB"), std::string("\x00\x7f\xff\xab", 4));
  EXPECT_EQ(HexDecode("abc").error().code, ErrorCode::kParse);
  EXPECT_EQ(HexDecode("zz").error().code, ErrorCode::kParse);
  EXPECT_TRUE(IsLowerHex("00ff", 4));
  EXPECT_FALSE(IsLowerHex("00FF", 4));
  EXPECT_FALSE(IsLowerHex("00ff", 6));
}

TEST(Ed25519Test, Rfc8032Vector) {
  // RFC 8032 section 7.1, TEST 1 (empty message).
  auto key =
      PrivateKey::FromHex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_EQ(key->Public().Hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  EXPECT_EQ(key->KeyId(), Sha256Hex(*HexDecode(key->Public().Hex())));
  auto sig = key->Sign("");
  ASSERT_TRUE(sig);
  EXPECT_EQ(*sig,
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3"
            "9701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  EXPECT_TRUE(key->Public().Verify("", *sig));
}

TEST(Ed25519Test, SignVerifyAndRejectTampering) {
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key);
  auto other = PrivateKey::Generate();
  ASSERT_TRUE(other);
  EXPECT_NE(key->KeyId(), other->KeyId());
  auto sig = key->Sign("message");
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->size(), 128u);
  EXPECT_TRUE(key->Public().Verify("message", *sig));
  EXPECT_FALSE(key->Public().Verify("messagE", *sig));
  EXPECT_FALSE(other->Public().Verify("message", *sig));
  std::string flipped = *sig;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  EXPECT_FALSE(key->Public().Verify("message", flipped));
  EXPECT_FALSE(key->Public().Verify("message", sig->substr(0, 126)));
  EXPECT_FALSE(key->Public().Verify("message", "zz" + sig->substr(2)));
  // Seed round trip gives the same key.
  auto again = PrivateKey::FromHex(key->SeedHex());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->KeyId(), key->KeyId());
}

TEST(Ed25519Test, RefusesMalformedHex) {
  EXPECT_EQ(PublicKey::FromHex("abcd").error().message,
            "expected 64 lowercase hex digits (an Ed25519 public key), found 4 characters");
  EXPECT_EQ(PublicKey::FromHex(std::string(64, 'A')).error().code, ErrorCode::kParse);
  EXPECT_EQ(PrivateKey::FromHex(std::string(63, 'a')).error().code, ErrorCode::kParse);
}

TEST(KeyFileTest, PrivateKeyRoundTripWithMode0600) {
  TempDir dir;
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key);
  const auto path = dir / "release.key";
  ASSERT_TRUE(SavePrivateKey(*key, path));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = LoadPrivateKey(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->SeedHex(), key->SeedHex());
  EXPECT_EQ(loaded->KeyId(), key->KeyId());
  // A private key file also serves as a public key file.
  auto pub = LoadPublicKey(path);
  ASSERT_TRUE(pub);
  EXPECT_EQ(pub->Hex(), key->Public().Hex());
  // No temporary file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
  // Overwriting replaces atomically and keeps the mode.
  auto second = PrivateKey::Generate();
  ASSERT_TRUE(SavePrivateKey(*second, path));
  EXPECT_EQ(LoadPrivateKey(path)->KeyId(), second->KeyId());
}

TEST(KeyFileTest, PublicKeyRoundTrip) {
  TempDir dir;
  auto key = PrivateKey::Generate();
  const auto path = dir / "release.pub";
  ASSERT_TRUE(SavePublicKey(key->Public(), path));
  const auto doc = nlohmann::json::parse(ReadFile(path));
  EXPECT_FALSE(doc.contains("private"));
  EXPECT_EQ(doc["keytype"], "ed25519");
  EXPECT_EQ(doc["keyid"], key->KeyId());
  auto pub = LoadPublicKey(path);
  ASSERT_TRUE(pub) << pub.error().message;
  EXPECT_EQ(pub->KeyId(), key->KeyId());
  // A public key file is not a private key.
  EXPECT_TRUE(ParseFailsWith(LoadPrivateKey(path),
                             path.string() +
                                 ": private: missing required field, expected string, found "
                                 "nothing"));
}

TEST(KeyFileTest, RefusesInconsistentOrMalformedFiles) {
  TempDir dir;
  const PrivateKey a = KeyFromByte(1);
  const PrivateKey b = KeyFromByte(2);
  const auto path = dir / "k.json";
  WriteFile(path, nlohmann::json{{"keytype", "ed25519"},
                                 {"keyid", b.KeyId()},
                                 {"public", a.Public().Hex()},
                                 {"private", a.SeedHex()}}
                      .dump());
  EXPECT_TRUE(ParseFailsWith(LoadPrivateKey(path),
                             path.string() + ": keyid: expected the SHA-256 of the public key (" +
                                 a.KeyId() + "), found \"" + b.KeyId() + "\""));
  WriteFile(path, nlohmann::json{{"keytype", "rsa"},
                                 {"keyid", b.KeyId()},
                                 {"public", b.Public().Hex()},
                                 {"private", a.SeedHex()},
                                 {"comment", "x"}}
                      .dump());
  auto loaded = LoadPrivateKey(path);
  EXPECT_TRUE(
      ParseFailsWith(loaded, path.string() + ": keytype: expected \"ed25519\", found \"rsa\""));
  EXPECT_TRUE(ParseFailsWith(
      loaded, path.string() + ": public: expected the public half of the private key (" +
                  a.Public().Hex() + "), found \"" + b.Public().Hex() + "\""));
  EXPECT_TRUE(ParseFailsWith(
      loaded, path.string() + ": comment: unknown field, expected one of keyid, keytype, private, "
                              "public (or an \"x-\" extension), found \"comment\""));
  WriteFile(path, "{not json");
  EXPECT_EQ(LoadPrivateKey(path).error().code, ErrorCode::kParse);
  EXPECT_EQ(LoadPublicKey(dir / "missing").error().code, ErrorCode::kIo);
  EXPECT_EQ(SavePrivateKey(a, dir / "no" / "such" / "dir").error().code, ErrorCode::kIo);
}

TEST(JsonTextTest, SizeCapMalformedDuplicatesAndDepth) {
  EXPECT_TRUE(FailsWithLine(ParseJsonText("[1,2,3]", "d.json", 3), ErrorCode::kLimit,
                            "d.json: document is 7 bytes, limit is 3"));
  auto bad = ParseJsonText("{\"a\": tru}", "d.json", 100);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kParse);
  EXPECT_TRUE(bad.error().message.starts_with("d.json: malformed JSON at byte 10: "))
      << bad.error().message;
  EXPECT_TRUE(FailsWithLine(ParseJsonText(R"({"a":{"k":1,"k":2}})", "d.json", 100),
                            ErrorCode::kParse,
                            "d.json: malformed JSON: duplicate object key \"k\""));
  // The same key in sibling objects is fine.
  EXPECT_TRUE(ParseJsonText(R"({"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}]})", "d", 100));
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_TRUE(FailsWithLine(ParseJsonText(deep, "d.json", 1000), ErrorCode::kParse,
                            "d.json: malformed JSON: nesting deeper than 64 levels"));
  EXPECT_EQ(ParseJsonText("\"\xff\"", "d.json", 100).error().code, ErrorCode::kParse);
}

TEST(EnvelopeTest, SignRoundTripAndVerify) {
  const PrivateKey key = KeyFromByte(7);
  SignedEnvelope env;
  env.signed_body = testing::SampleManifestBody();
  ASSERT_TRUE(env.Sign(key));
  ASSERT_TRUE(env.Sign(key));  // re-signing replaces, never doubles
  ASSERT_EQ(env.signatures.size(), 1u);
  EXPECT_EQ(env.signatures[0].keyid, key.KeyId());
  EXPECT_TRUE(key.Public().Verify(Canonical(env.signed_body), env.signatures[0].sig));

  const std::string text = env.ToJson().dump(2);
  auto parsed = SignedEnvelope::FromText(text, "manifest.json", kMaxManifestBytes);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->signed_body, env.signed_body);
  ASSERT_EQ(parsed->signatures.size(), 1u);
  EXPECT_EQ(parsed->signatures[0].keyid, env.signatures[0].keyid);
  EXPECT_EQ(parsed->signatures[0].sig, env.signatures[0].sig);
  EXPECT_EQ(parsed->ToJson(), env.ToJson());
  // Canonical bytes survive pretty printing and re-parsing.
  EXPECT_EQ(Canonical(parsed->signed_body), Canonical(env.signed_body));

  EXPECT_TRUE(FailsWithLine(
      SignedEnvelope::FromText(text, "manifest.json", 100), ErrorCode::kLimit,
      "manifest.json: document is " + std::to_string(text.size()) + " bytes, limit is 100"));
}

TEST(EnvelopeTest, AnUppercaseKeyidIsNamedAsSuch) {
  // Operators copy keyids from tools that print uppercase hex; "found 64 characters" told them
  // nothing.
  const auto doc =
      nlohmann::json::parse(R"({"signed": {}, "signatures": [{"keyid": ")" + std::string(64, 'A') +
                            R"(", "sig": ")" + std::string(128, 'b') + R"("}]})");
  EXPECT_TRUE(ParseFailsWith(SignedEnvelope::FromJson(doc, "manifest.json"),
                             "manifest.json: signatures[0].keyid: expected 64 lowercase hex "
                             "digits, found uppercase hex digits (write them in lowercase)"));
  EXPECT_EQ(HexProblem("12345", 64, "a key"),
            "expected 64 lowercase hex digits (a key), found 5 characters");
  EXPECT_EQ(HexProblem(std::string(63, '0') + "\n", 64),
            "expected 64 lowercase hex digits, found '\\n' at position 63");
}

TEST(EnvelopeTest, ReportsEveryShapeProblem) {
  const auto doc = nlohmann::json::parse(R"({
    "signed": [], "extra": 1, "x-note": "unsigned",
    "signatures": [{"keyid": "abc", "sig": 5}, "nope", {"keyid": ")" +
                                         std::string(64, 'a') + R"(", "sig": ")" +
                                         std::string(128, 'b') + R"(", "by": "me"}]
  })");
  auto env = SignedEnvelope::FromJson(doc, "manifest.json");
  ASSERT_FALSE(env);
  const auto lines = testing::Lines(env.error().message);
  EXPECT_EQ(lines.size(), 7u) << env.error().message;
  for (const char* line :
       {"manifest.json: extra: unknown field, expected one of signatures, signed, found \"extra\"",
        "manifest.json: x-note: unknown field, expected one of signatures, signed, found "
        "\"x-note\"",
        "manifest.json: signed: wrong type, expected object, found array",
        "manifest.json: signatures[0].keyid: expected 64 lowercase hex digits, found 3 characters",
        "manifest.json: signatures[0].sig: wrong type, expected string, found integer",
        "manifest.json: signatures[1]: wrong type, expected object, found string",
        "manifest.json: signatures[2].by: unknown field, expected one of keyid, sig, found "
        "\"by\""}) {
    EXPECT_TRUE(ParseFailsWith(env, line));
  }
  EXPECT_TRUE(ParseFailsWith(SignedEnvelope::FromJson(nlohmann::json::array(), "m.json"),
                             "m.json: (document): wrong type, expected object, found array"));
  EXPECT_TRUE(ParseFailsWith(SignedEnvelope::FromJson(nlohmann::json::object(), "m.json"),
                             "m.json: signatures: missing required field, expected array, found "
                             "nothing"));
}

}  // namespace
}  // namespace edgefleet::manifests
