// Trust roots: keys, roles, thresholds, rotation (see manifests/trust.hpp).
#include "manifests/trust.hpp"

#include <fstream>
#include <set>
#include <sstream>

#include "manifests/canonical.hpp"
#include "manifests/crypto.hpp"
#include "manifests/desired_state.hpp"
#include "manifests/json_fields.hpp"

namespace edgefleet::manifests {
namespace {

constexpr Role kAllRoles[] = {Role::kRoot, Role::kRelease, Role::kDeploy};

// Keyids are 64 hex chars; a prefix is enough to tell keys apart in a one-line message.
std::string ShortKeyId(std::string_view keyid) {
  constexpr std::size_t kShown = 16;
  if (keyid.size() <= kShown) return std::string(keyid);
  return std::string(keyid.substr(0, kShown)) + "..";
}

std::string JoinKeyIds(const std::set<std::string>& keyids) {
  std::string out;
  for (const auto& k : keyids) {
    if (!out.empty()) out += ", ";
    out += ShortKeyId(k);
  }
  return out;
}

// Counts distinct keys of `role` in `body` with a valid signature over Canonical(signed).
Status VerifyWith(const TrustRootBody& body, const SignedEnvelope& envelope, Role role) {
  const auto role_it = body.roles.find(role);
  if (role_it == body.roles.end()) {
    return Fail(ErrorCode::kSignature,
                std::string(ToString(role)) + " role: not defined in the trust root");
  }
  const RoleKeys& role_keys = role_it->second;
  const std::set<std::string> members(role_keys.keyids.begin(), role_keys.keyids.end());
  const std::string message = Canonical(envelope.signed_body);

  std::set<std::string> valid;
  std::set<std::string> unknown;
  std::set<std::string> invalid;
  for (const auto& sig : envelope.signatures) {
    if (!members.contains(sig.keyid)) {
      unknown.insert(sig.keyid);
      continue;
    }
    // A key counts once however many entries carry it (TUF's "each key counts once").
    if (valid.contains(sig.keyid)) continue;
    const auto key = body.keys.find(sig.keyid);
    if (key != body.keys.end() && key->second.Verify(message, sig.sig)) {
      valid.insert(sig.keyid);
      invalid.erase(sig.keyid);
    } else {
      invalid.insert(sig.keyid);
    }
  }
  if (valid.size() >= static_cast<std::size_t>(role_keys.threshold)) return Ok();

  std::string text = std::string(ToString(role)) + " role: " + std::to_string(valid.size()) +
                     " valid signature(s) of " + std::to_string(role_keys.threshold) + " required";
  if (envelope.signatures.empty()) text += "; the document carries no signatures";
  if (!unknown.empty()) text += "; unknown keyids: " + JoinKeyIds(unknown);
  if (!invalid.empty()) text += "; invalid: " + JoinKeyIds(invalid);
  return Fail(ErrorCode::kSignature, std::move(text));
}

// Whether signed.keys names `keyid` (even if its entry is broken: that is reported there).
bool KeyListed(const nlohmann::json& body, const std::string& keyid) {
  const auto keys = body.find("keys");
  return keys != body.end() && keys->is_object() && keys->contains(keyid);
}

Result<TrustRootBody> ParseBody(const nlohmann::json& body, std::string_view source) {
  try {
    return TrustRootBody::FromJson(body, source);
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kParse, std::string(source) + ": " + e.what());
  }
}

}  // namespace

std::string_view ToString(Role role) {
  switch (role) {
    case Role::kRoot:
      return "root";
    case Role::kRelease:
      return "release";
    case Role::kDeploy:
      return "deploy";
  }
  return "unknown";
}

Result<TrustRootBody> TrustRootBody::FromJson(const nlohmann::json& body, std::string_view source) {
  FieldReader reader{std::string(source)};
  const std::string root = "signed";
  if (!body.is_object()) {
    reader.Problem(root, "wrong type, expected object, found " + std::string(JsonTypeName(body)));
    return Unexpected(reader.ToStatus().error());
  }
  reader.RejectUnknown(body, {"type", "spec_version", "version", "expires", "keys", "roles"}, root);
  ReadDocumentHeader(reader, body, kRootType, root);

  TrustRootBody out;
  if (auto version = reader.Integer(body, "version", Child(root, "version"))) {
    if (*version < 1) {
      reader.Problem(Child(root, "version"),
                     "expected an integer >= 1, found " + std::to_string(*version));
    } else {
      out.version = static_cast<std::uint64_t>(*version);
    }
  }
  if (auto expires = ReadTimestamp(reader, body, "expires", Child(root, "expires"))) {
    out.expires = *expires;
  }

  if (const auto* keys = reader.Object(body, "keys", Child(root, "keys"))) {
    const std::string keys_path = Child(root, "keys");
    if (keys->empty()) reader.Problem(keys_path, "expected at least 1 key, found none");
    for (const auto& [keyid, entry] : keys->items()) {
      const std::string path = Child(keys_path, keyid);
      if (!IsLowerHex(keyid, 64)) {
        reader.Problem(path, "keyid: " + HexProblem(keyid, 64));
      }
      if (!entry.is_object()) {
        reader.Problem(path,
                       "wrong type, expected object, found " + std::string(JsonTypeName(entry)));
        continue;
      }
      reader.RejectUnknown(entry, {"keytype", "public"}, path);
      if (auto keytype = reader.String(entry, "keytype", Child(path, "keytype"));
          keytype && *keytype != "ed25519") {
        reader.Problem(Child(path, "keytype"),
                       "expected \"ed25519\", found " + QuoteForMessage(*keytype));
      }
      const auto public_hex = reader.String(entry, "public", Child(path, "public"));
      if (!public_hex) continue;
      auto key = PublicKey::FromHex(*public_hex);
      if (!key) {
        reader.Problem(Child(path, "public"), key.error().message);
        continue;
      }
      // The keyid is the hash of the key so no one can file a key under another key's name.
      if (key->KeyId() != keyid) {
        reader.Problem(path, "expected the keyid to be the SHA-256 of its public key (" +
                                 key->KeyId() + "), found " + QuoteForMessage(keyid));
        continue;
      }
      out.keys.emplace(keyid, std::move(key).value());
    }
  }

  if (const auto* roles = reader.Object(body, "roles", Child(root, "roles"))) {
    const std::string roles_path = Child(root, "roles");
    reader.RejectUnknown(*roles, {"root", "release", "deploy"}, roles_path);
    for (Role role : kAllRoles) {
      const std::string path = Child(roles_path, ToString(role));
      const auto* entry = reader.Object(*roles, ToString(role), path);
      if (entry == nullptr) continue;
      reader.RejectUnknown(*entry, {"keyids", "threshold"}, path);
      RoleKeys role_keys;
      std::set<std::string> seen;
      if (const auto* keyids = reader.Array(*entry, "keyids", Child(path, "keyids"))) {
        for (std::size_t i = 0; i < keyids->size(); ++i) {
          const std::string item_path = Index(Child(path, "keyids"), i);
          const auto& item = (*keyids)[i];
          if (!item.is_string()) {
            reader.Problem(item_path,
                           "wrong type, expected string, found " + std::string(JsonTypeName(item)));
            continue;
          }
          const auto& keyid = item.get_ref<const std::string&>();
          if (!seen.insert(keyid).second) {
            reader.Problem(item_path,
                           "expected unique keyids, found " + QuoteForMessage(keyid) + " again");
            continue;
          }
          if (!KeyListed(body, keyid)) {
            reader.Problem(item_path, "expected a keyid listed in signed.keys, found " +
                                          QuoteForMessage(keyid));
            continue;
          }
          role_keys.keyids.push_back(keyid);
        }
      }
      if (auto threshold = reader.Integer(*entry, "threshold", Child(path, "threshold"))) {
        const auto count = static_cast<std::int64_t>(seen.size());
        if (*threshold < 1 || *threshold > count) {
          reader.Problem(Child(path, "threshold"),
                         "expected an integer from 1 to the number of keyids (" +
                             std::to_string(count) + "), found " + std::to_string(*threshold));
        } else {
          role_keys.threshold = static_cast<int>(*threshold);
        }
      }
      out.roles.emplace(role, std::move(role_keys));
    }
  }
  for (const auto& [key, value] : body.items()) {
    if (key.starts_with("x-")) out.extensions[key] = value;
  }
  EF_RETURN_IF_ERROR(reader.ToStatus());
  return out;
}

nlohmann::json TrustRootBody::ToJson() const {
  nlohmann::json keys_json = nlohmann::json::object();
  for (const auto& [keyid, key] : keys) {
    keys_json[keyid] = {{"keytype", "ed25519"}, {"public", key.Hex()}};
  }
  nlohmann::json roles_json = nlohmann::json::object();
  for (const auto& [role, role_keys] : roles) {
    roles_json[std::string(ToString(role))] = {{"keyids", role_keys.keyids},
                                               {"threshold", role_keys.threshold}};
  }
  nlohmann::json out = {{"type", kRootType},
                        {"spec_version", 1},
                        {"version", version},
                        {"expires", FormatTimestamp(expires)},
                        {"keys", std::move(keys_json)},
                        {"roles", std::move(roles_json)}};
  for (const auto& [key, value] : extensions.items()) out[key] = value;
  return out;
}

Result<TrustRoot> TrustRoot::FromEnvelope(const SignedEnvelope& envelope, Timestamp now,
                                          std::string_view source) {
  EF_ASSIGN_OR_RETURN(TrustRootBody body, ParseBody(envelope.signed_body, source));
  if (auto status = VerifyWith(body, envelope, Role::kRoot); !status) {
    return Unexpected(status.error().Wrap(std::string(source) + ": self-signature"));
  }
  EF_RETURN_IF_ERROR(CheckNotExpired(body.expires, now, source));
  return TrustRoot(std::move(body), envelope);
}

Result<TrustRoot> TrustRoot::Load(const std::filesystem::path& path, Timestamp now) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, path.string() + ": cannot open");
  // Read at most one byte past the cap: enough to know the file is too large.
  std::string text(kMaxRootBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return Fail(ErrorCode::kIo, path.string() + ": read failed");
  text.resize(static_cast<std::size_t>(in.gcount()));
  EF_ASSIGN_OR_RETURN(SignedEnvelope envelope,
                      SignedEnvelope::FromText(text, path.string(), kMaxRootBytes));
  return FromEnvelope(envelope, now, path.string());
}

Status TrustRoot::Verify(const SignedEnvelope& envelope, Role role) const {
  return VerifyWith(body_, envelope, role);
}

Result<TrustRoot> TrustRoot::Rotate(const SignedEnvelope& next, Timestamp now) const {
  const std::string source = "new root";
  EF_ASSIGN_OR_RETURN(TrustRootBody body, ParseBody(next.signed_body, source));
  // Exactly the next version: an older one would be a rollback, a gap would let an attacker who
  // holds an old root's keys skip the rotation that revoked them.
  if (body.version != version() + 1) {
    return Fail(ErrorCode::kInvalidArgument,
                source + ": signed.version: expected exactly " + std::to_string(version() + 1) +
                    " (the current root is version " + std::to_string(version()) + "), found " +
                    std::to_string(body.version));
  }
  // Signed by the old root threshold (it authorizes the change) AND the new root threshold
  // (the new keys prove possession, so a typo in the new key list cannot brick the fleet).
  if (auto status = VerifyWith(body_, next, Role::kRoot); !status) {
    return Unexpected(status.error().Wrap(source + ": signatures by the current root (version " +
                                          std::to_string(version()) + ")"));
  }
  if (auto status = VerifyWith(body, next, Role::kRoot); !status) {
    return Unexpected(status.error().Wrap(source + ": signatures by the new root (version " +
                                          std::to_string(body.version) + ")"));
  }
  EF_RETURN_IF_ERROR(CheckNotExpired(body.expires, now, source));
  return TrustRoot(std::move(body), next);
}

}  // namespace edgefleet::manifests
