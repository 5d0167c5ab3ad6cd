// SHA-256, Ed25519 and key files on OpenSSL 3 EVP (see manifests/crypto.hpp).
#include "manifests/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/files.hpp"
#include "manifests/json_fields.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::manifests {
namespace {

using EvpMdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using EvpPkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

constexpr std::size_t kKeyBytes = 32;
constexpr std::size_t kSignatureBytes = 64;
// Key files are tiny; the cap keeps a wrong path (a log, a device) from being read whole.
constexpr std::size_t kMaxKeyFileBytes = 16 * 1024;

EvpMdCtx NewMdCtx() { return EvpMdCtx(EVP_MD_CTX_new(), &EVP_MD_CTX_free); }

EvpPkey PublicPkey(const std::array<std::uint8_t, kKeyBytes>& raw) {
  return EvpPkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()),
                 &EVP_PKEY_free);
}

EvpPkey PrivatePkey(const std::array<std::uint8_t, kKeyBytes>& seed) {
  return EvpPkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()),
                 &EVP_PKEY_free);
}

// The fields shared by public and private key files. Returns the public key when every field
// is well-formed and the keyid matches.
std::optional<PublicKey> ReadPublicFields(FieldReader& reader, const nlohmann::json& doc) {
  const auto keytype = reader.String(doc, "keytype", "keytype");
  if (keytype && *keytype != "ed25519") {
    reader.Problem("keytype", "expected \"ed25519\", found \"" + *keytype + "\"");
  }
  const auto keyid = reader.String(doc, "keyid", "keyid");
  const auto public_hex = reader.String(doc, "public", "public");
  if (!public_hex) return std::nullopt;
  auto key = PublicKey::FromHex(*public_hex);
  if (!key) {
    reader.Problem("public", key.error().message);
    return std::nullopt;
  }
  if (keyid && *keyid != key->KeyId()) {
    reader.Problem("keyid", "expected the SHA-256 of the public key (" + key->KeyId() +
                                "), found \"" + *keyid + "\"");
  }
  return *key;
}

Result<nlohmann::json> ReadKeyDocument(const std::filesystem::path& path) {
  EF_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxKeyFileBytes));
  return ParseJsonText(text, path.string(), kMaxKeyFileBytes);
}

}  // namespace

struct Sha256::Impl {
  EvpMdCtx ctx = NewMdCtx();

  void Reset() {
    // Only fails on allocation failure, which the rest of the program cannot survive either.
    if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) std::abort();
  }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { impl_->Reset(); }
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(std::span<const std::byte> data) {
  if (impl_ == nullptr) {  // a moved-from object is usable again, like a fresh one
    impl_ = std::make_unique<Impl>();
    impl_->Reset();
  }
  if (!data.empty()) EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size());
}

void Sha256::Update(std::string_view data) { Update(std::as_bytes(std::span(data))); }

std::string Sha256::FinishHex() {
  if (impl_ == nullptr) {
    impl_ = std::make_unique<Impl>();
    impl_->Reset();
  }
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(impl_->ctx.get(), digest.data(), &length) != 1) std::abort();
  impl_->Reset();
  return HexEncode(std::span(digest.data(), length));
}

std::string Sha256Hex(std::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.FinishHex();
}

Result<std::string> Sha256File(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, path.string() + ": cannot open: " + std::strerror(errno));
  Sha256 sha;
  std::vector<char> buffer(64 * 1024);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    sha.Update(std::string_view(buffer.data(), static_cast<std::size_t>(in.gcount())));
  }
  if (in.bad()) return Fail(ErrorCode::kIo, path.string() + ": read failed");
  return sha.FinishHex();
}

std::string HexEncode(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0x0f];
  }
  return out;
}

Result<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Fail(ErrorCode::kParse, "expected an even number of hex digits, found " +
                                       std::to_string(hex.size()) + " characters");
  }
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return Fail(ErrorCode::kParse, "expected hex digits, found a non-hex character at offset " +
                                         std::to_string(hi < 0 ? i : i + 1));
    }
    out += static_cast<char>((hi << 4) | lo);
  }
  return out;
}

bool IsLowerHex(std::string_view text, std::size_t length) {
  if (text.size() != length) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string HexProblem(std::string_view text, std::size_t length, std::string_view what) {
  std::string out = "expected " + std::to_string(length) + " lowercase hex digits";
  if (!what.empty()) out += " (" + std::string(what) + ")";
  if (text.size() != length) return out + ", found " + std::to_string(text.size()) + " characters";
  bool upper = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) continue;
    if (c >= 'A' && c <= 'F') {
      upper = true;
      continue;
    }
    return out + ", found " + QuoteName(text.substr(i, 1)) + " at position " + std::to_string(i);
  }
  return out + (upper ? ", found uppercase hex digits (write them in lowercase)" : "");
}

Result<PublicKey> PublicKey::FromHex(std::string_view hex) {
  if (!IsLowerHex(hex, kKeyBytes * 2)) {
    return Fail(ErrorCode::kParse, HexProblem(hex, kKeyBytes * 2, "an Ed25519 public key"));
  }
  EF_ASSIGN_OR_RETURN(const std::string raw, HexDecode(hex));
  PublicKey key;
  std::memcpy(key.raw_.data(), raw.data(), kKeyBytes);
  // OpenSSL checks the length only; a bad point is caught when a signature fails to verify.
  if (PublicPkey(key.raw_) == nullptr) {
    return Fail(ErrorCode::kParse, "expected an Ed25519 public key, found bytes OpenSSL refuses");
  }
  key.keyid_ = Sha256Hex(raw);
  return key;
}

std::string PublicKey::Hex() const { return HexEncode(raw_); }

bool PublicKey::Verify(std::string_view message, std::string_view signature_hex) const {
  if (!IsLowerHex(signature_hex, kSignatureBytes * 2)) return false;
  auto sig = HexDecode(signature_hex);
  if (!sig) return false;
  EvpPkey pkey = PublicPkey(raw_);
  EvpMdCtx ctx = NewMdCtx();
  if (pkey == nullptr || ctx == nullptr) return false;
  // Ed25519 is a one-shot scheme: no digest (NULL md) and EVP_DigestVerify, not Update/Final.
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()),
                          sig->size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

Result<PrivateKey> PrivateKey::Generate() {
  std::array<std::uint8_t, kKeyBytes> seed{};
  if (RAND_priv_bytes(seed.data(), static_cast<int>(seed.size())) != 1) {
    return Fail(ErrorCode::kInternal, "RAND_priv_bytes failed to produce an Ed25519 seed");
  }
  auto key = FromHex(HexEncode(seed));
  OPENSSL_cleanse(seed.data(), seed.size());
  return key;
}

Result<PrivateKey> PrivateKey::FromHex(std::string_view seed_hex) {
  if (!IsLowerHex(seed_hex, kKeyBytes * 2)) {
    return Fail(ErrorCode::kParse, HexProblem(seed_hex, kKeyBytes * 2, "an Ed25519 private seed"));
  }
  EF_ASSIGN_OR_RETURN(std::string raw, HexDecode(seed_hex));
  PrivateKey key;
  std::memcpy(key.seed_.data(), raw.data(), kKeyBytes);
  OPENSSL_cleanse(raw.data(), raw.size());
  EvpPkey pkey = PrivatePkey(key.seed_);
  if (pkey == nullptr) return Fail(ErrorCode::kInternal, "OpenSSL refused an Ed25519 seed");
  std::array<std::uint8_t, kKeyBytes> pub{};
  std::size_t pub_len = pub.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), pub.data(), &pub_len) != 1 || pub_len != kKeyBytes) {
    return Fail(ErrorCode::kInternal, "OpenSSL could not derive the Ed25519 public key");
  }
  EF_ASSIGN_OR_RETURN(key.public_, PublicKey::FromHex(HexEncode(pub)));
  return key;
}

Result<std::string> PrivateKey::Sign(std::string_view message) const {
  EvpPkey pkey = PrivatePkey(seed_);
  EvpMdCtx ctx = NewMdCtx();
  if (pkey == nullptr || ctx == nullptr) {
    return Fail(ErrorCode::kInternal, "OpenSSL could not load the Ed25519 signing key");
  }
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) {
    return Fail(ErrorCode::kInternal, "EVP_DigestSignInit failed for Ed25519");
  }
  std::array<std::uint8_t, kSignatureBytes> sig{};
  std::size_t sig_len = sig.size();
  if (EVP_DigestSign(ctx.get(), sig.data(), &sig_len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      sig_len != kSignatureBytes) {
    return Fail(ErrorCode::kInternal, "EVP_DigestSign failed for Ed25519");
  }
  return HexEncode(sig);
}

std::string PrivateKey::SeedHex() const { return HexEncode(seed_); }

Status SavePrivateKey(const PrivateKey& key, const std::filesystem::path& path) {
  const nlohmann::json doc = {{"keytype", "ed25519"},
                              {"keyid", key.KeyId()},
                              {"public", key.Public().Hex()},
                              {"private", key.SeedHex()}};
  return WriteFileAtomically(path, doc.dump(2) + "\n", 0600);
}

Status SavePublicKey(const PublicKey& key, const std::filesystem::path& path) {
  const nlohmann::json doc = {
      {"keytype", "ed25519"}, {"keyid", key.KeyId()}, {"public", key.Hex()}};
  return WriteFileAtomically(path, doc.dump(2) + "\n", 0644);
}

Result<PrivateKey> LoadPrivateKey(const std::filesystem::path& path) {
  EF_ASSIGN_OR_RETURN(const nlohmann::json doc, ReadKeyDocument(path));
  FieldReader reader(path.string());
  if (!doc.is_object()) {
    reader.Problem("(document)",
                   "wrong type, expected object, found " + std::string(JsonTypeName(doc)));
    return Unexpected(reader.ToStatus().error());
  }
  reader.RejectUnknown(doc, {"keytype", "keyid", "public", "private"}, "");
  const auto pub = ReadPublicFields(reader, doc);
  const auto seed = reader.String(doc, "private", "private");
  std::optional<PrivateKey> key;
  if (seed) {
    auto parsed = PrivateKey::FromHex(*seed);
    if (!parsed) {
      reader.Problem("private", parsed.error().message);
    } else {
      key = std::move(parsed).value();
      if (pub && pub->Hex() != key->Public().Hex()) {
        reader.Problem("public", "expected the public half of the private key (" +
                                     key->Public().Hex() + "), found \"" + pub->Hex() + "\"");
      }
    }
  }
  EF_RETURN_IF_ERROR(reader.ToStatus());
  return *key;
}

Result<PublicKey> LoadPublicKey(const std::filesystem::path& path) {
  EF_ASSIGN_OR_RETURN(const nlohmann::json doc, ReadKeyDocument(path));
  if (doc.is_object() && doc.contains("private")) {
    // A private key file: check it entirely (public half must match) and use its public half.
    EF_ASSIGN_OR_RETURN(const PrivateKey key, LoadPrivateKey(path));
    return key.Public();
  }
  FieldReader reader(path.string());
  if (!doc.is_object()) {
    reader.Problem("(document)",
                   "wrong type, expected object, found " + std::string(JsonTypeName(doc)));
    return Unexpected(reader.ToStatus().error());
  }
  reader.RejectUnknown(doc, {"keytype", "keyid", "public"}, "");
  const auto pub = ReadPublicFields(reader, doc);
  EF_RETURN_IF_ERROR(reader.ToStatus());
  return *pub;
}

}  // namespace edgefleet::manifests
