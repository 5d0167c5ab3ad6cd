// The trust root on each box (after TUF/Uptane, kept small).
//
// signed = {"type": "edgefleet/root", "spec_version": 1, "version": N, "expires": "<RFC3339>",
//           "keys": {"<keyid>": {"keytype": "ed25519", "public": "<hex>"}},
//           "roles": {"root": {"keyids": [...], "threshold": n},
//                     "release": {...}, "deploy": {...}}}
// Roles: root signs new roots (rotation), release signs bundle manifests, deploy signs
// desired-state documents. Each distinct key counts once toward a threshold; signatures by keys
// not in the role are ignored (they do not fail the document, they just do not count).
//
// Thread safety: a TrustRoot is an immutable value after construction.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/result.hpp"
#include "manifests/time.hpp"

namespace edgefleet::manifests {

enum class Role { kRoot, kRelease, kDeploy };
std::string_view ToString(Role role);

struct RoleKeys {
  std::vector<std::string> keyids;
  int threshold = 1;
};

struct TrustRootBody {
  std::uint64_t version = 1;
  Timestamp expires{};
  std::map<std::string, PublicKey> keys;  // by keyid
  std::map<Role, RoleKeys> roles;
  nlohmann::json extensions = nlohmann::json::object();  // top-level "x-" keys, kept verbatim

  // Field-precise parse of the `signed` object (kParse listing every problem: unknown fields,
  // keyid not matching its key, role naming an unknown key, threshold < 1 or > key count,
  // missing role).
  static Result<TrustRootBody> FromJson(const nlohmann::json& body, std::string_view source);
  nlohmann::json ToJson() const;
};

class TrustRoot {
 public:
  // Loads a self-signed root (first install, or factory provisioning): the envelope must carry
  // the root role's threshold of valid signatures by its own root keys, and must not be
  // expired at `now`. Fails with kParse, kSignature or kExpired.
  static Result<TrustRoot> FromEnvelope(const SignedEnvelope& envelope, Timestamp now,
                                        std::string_view source);
  static Result<TrustRoot> Load(const std::filesystem::path& path, Timestamp now);

  // Verifies `envelope` for `role`: at least threshold distinct role keys with valid signatures
  // over Canonical(signed). Fails with kSignature saying how many valid of how many needed and
  // which keyids were unknown or invalid. Expiry of the document itself is the caller's (each
  // document type has its own expires field).
  Status Verify(const SignedEnvelope& envelope, Role role) const;

  // Rotation: `next` must be exactly version()+1, signed by this root's root-role threshold AND
  // by its own root-role threshold, and not expired at `now`. Returns the new root.
  Result<TrustRoot> Rotate(const SignedEnvelope& next, Timestamp now) const;

  const TrustRootBody& body() const { return body_; }
  const SignedEnvelope& envelope() const { return envelope_; }
  std::uint64_t version() const { return body_.version; }

 private:
  TrustRoot(TrustRootBody body, SignedEnvelope envelope)
      : body_(std::move(body)), envelope_(std::move(envelope)) {}
  TrustRootBody body_;
  SignedEnvelope envelope_;
};

}  // namespace edgefleet::manifests
