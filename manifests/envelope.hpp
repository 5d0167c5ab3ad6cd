// The signed envelope every document travels in:
//   {"signed": {...}, "signatures": [{"keyid": "<hex>", "sig": "<hex>"}]}
// Signatures are Ed25519 over Canonical(signed).
//
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/result.hpp"

namespace edgefleet::manifests {

// Hard size caps for documents (aktualizr caps root-like metadata at 64 KiB).
inline constexpr std::size_t kMaxRootBytes = 64 * 1024;
inline constexpr std::size_t kMaxDesiredStateBytes = 64 * 1024;
inline constexpr std::size_t kMaxManifestBytes = 1024 * 1024;

struct Signature {
  std::string keyid;
  std::string sig;
};

struct SignedEnvelope {
  nlohmann::json signed_body = nlohmann::json::object();
  std::vector<Signature> signatures;

  // Parses the envelope shape only (signed is an object; signatures well-formed hex; no other
  // top-level keys). Fails with kParse listing every problem, prefixed by `source`.
  static Result<SignedEnvelope> FromJson(const nlohmann::json& doc, std::string_view source);
  // Text form with the size cap (kLimit when over `max_bytes`).
  static Result<SignedEnvelope> FromText(std::string_view text, std::string_view source,
                                         std::size_t max_bytes);
  nlohmann::json ToJson() const;

  // Appends a signature by `key` over Canonical(signed_body). A key that already signed is
  // replaced, never doubled. Fails with kInternal if signing fails.
  Status Sign(const PrivateKey& key);
};

}  // namespace edgefleet::manifests
