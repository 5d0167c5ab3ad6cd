// The fixed keys and trust root shared by the fuzz targets and their seed generator.
//
// Signatures cannot be forged by a fuzzer, so the signed seeds (bundles, manifests, desired
// states, roots) are made with these keys (fixed seeds, not secrets) and the targets verify
// against the root made from them: a mutated file that keeps its signed part intact goes past
// the signature check into the rest of the reader. Aborts when OpenSSL fails (a broken build).
//
// Thread safety: the accessors build their values once (function-local statics).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/result.hpp"
#include "manifests/time.hpp"
#include "manifests/trust.hpp"

namespace edgefleet::fuzz {

template <typename T>
T OrDie(Result<T> result, const char* what) {
  if (!result) {
    std::fprintf(stderr, "fuzz setup: %s: %s\n", what, result.error().message.c_str());
    std::abort();
  }
  return std::move(result).value();
}

inline manifests::PrivateKey FixedKey(char fill) {
  return OrDie(manifests::PrivateKey::FromHex(std::string(64, fill)), "fixed key");
}
inline const manifests::PrivateKey& RootKey() {
  static const manifests::PrivateKey key = FixedKey('1');
  return key;
}
inline const manifests::PrivateKey& ReleaseKey() {
  static const manifests::PrivateKey key = FixedKey('2');
  return key;
}
inline const manifests::PrivateKey& DeployKey() {
  static const manifests::PrivateKey key = FixedKey('3');
  return key;
}

// "Now" for every check with a clock, so a run does not depend on the day: the seeds' documents
// are valid at this time.
inline manifests::Timestamp FixedNow() {
  return OrDie(manifests::ParseTimestamp("2026-12-01T00:00:00Z"), "fixed time");
}

// Version 1, expiring 2099, one key per role, signed by the root key.
inline manifests::SignedEnvelope FixedRootEnvelope() {
  manifests::TrustRootBody body;
  body.version = 1;
  body.expires = OrDie(manifests::ParseTimestamp("2099-01-01T00:00:00Z"), "root expiry");
  const std::pair<manifests::Role, const manifests::PrivateKey*> roles[] = {
      {manifests::Role::kRoot, &RootKey()},
      {manifests::Role::kRelease, &ReleaseKey()},
      {manifests::Role::kDeploy, &DeployKey()}};
  for (const auto& [role, key] : roles) {
    body.keys.emplace(key->KeyId(), key->Public());
    body.roles[role] = manifests::RoleKeys{{key->KeyId()}, 1};
  }
  manifests::SignedEnvelope envelope;
  envelope.signed_body = body.ToJson();
  if (!envelope.Sign(RootKey())) {
    std::fprintf(stderr, "fuzz setup: signing the root failed\n");
    std::abort();
  }
  return envelope;
}

inline const manifests::TrustRoot& FixedTrustRoot() {
  static const manifests::TrustRoot root = OrDie(
      manifests::TrustRoot::FromEnvelope(FixedRootEnvelope(), FixedNow(), "root.json"), "root");
  return root;
}

}  // namespace edgefleet::fuzz
