// SHA-256 (streaming) and Ed25519 keys, signatures and key ids, on OpenSSL 3 EVP.
//
// keyid = lowercase hex SHA-256 of the raw 32-byte public key. Signatures and keys are
// lowercase hex in every document. No OpenSSL type appears in this header.
//
// Thread safety: Sha256 is a single-threaded object; keys are immutable values usable from any
// thread; free functions are thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "manifests/result.hpp"

namespace edgefleet::manifests {

// Incremental SHA-256. Copy is deleted; move is fine.
class Sha256 final {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::span<const std::byte> data);
  void Update(std::string_view data);
  // Returns the lowercase hex digest (64 chars) and resets the object for reuse.
  std::string FinishHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string Sha256Hex(std::string_view data);
// Streams a file through SHA-256. Fails with kIo naming the path.
Result<std::string> Sha256File(const std::filesystem::path& path);

std::string HexEncode(std::span<const std::uint8_t> bytes);
// Fails with kParse on odd length or a non-hex character.
Result<std::string> HexDecode(std::string_view hex);
bool IsLowerHex(std::string_view text, std::size_t length);
// Why `text` is not `length` lowercase hex digits, for a message: "expected 64 lowercase hex
// digits (what), found 63 characters" / "..., found uppercase hex digits (write them in
// lowercase)" / "..., found 'g' at position 5". `what` may be empty.
std::string HexProblem(std::string_view text, std::size_t length, std::string_view what = {});

// An Ed25519 public key (32 raw bytes).
class PublicKey {
 public:
  // From 64 lowercase hex chars. Fails with kParse.
  static Result<PublicKey> FromHex(std::string_view hex);
  std::string Hex() const;
  const std::string& KeyId() const { return keyid_; }
  // Verifies `signature_hex` (128 hex chars) over `message`. Returns false on any failure.
  bool Verify(std::string_view message, std::string_view signature_hex) const;

 private:
  std::array<std::uint8_t, 32> raw_{};
  std::string keyid_;
};

// An Ed25519 private key with its public half.
class PrivateKey {
 public:
  static Result<PrivateKey> Generate();
  // From the 32-byte seed in hex. Fails with kParse.
  static Result<PrivateKey> FromHex(std::string_view seed_hex);
  const PublicKey& Public() const { return public_; }
  const std::string& KeyId() const { return public_.KeyId(); }
  // Returns the signature as 128 lowercase hex chars. Fails with kInternal if OpenSSL fails.
  Result<std::string> Sign(std::string_view message) const;
  std::string SeedHex() const;

 private:
  std::array<std::uint8_t, 32> seed_{};
  PublicKey public_;
};

// Key files are JSON. Private:
// {"keytype":"ed25519","keyid":"..","public":"<hex>","private":"<hex>"} written with mode 0600;
// public: the same without "private". Loading checks that keyid and public agree. Failures name the
// file and the field.
Status SavePrivateKey(const PrivateKey& key, const std::filesystem::path& path);
Status SavePublicKey(const PublicKey& key, const std::filesystem::path& path);
Result<PrivateKey> LoadPrivateKey(const std::filesystem::path& path);
// Accepts a public key file or a private key file (uses its public half).
Result<PublicKey> LoadPublicKey(const std::filesystem::path& path);

}  // namespace edgefleet::manifests
