// keygen, trust init, trust sign.
#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "deploy/commands.hpp"
#include "deploy/common/files.hpp"
#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/trust.hpp"

namespace edgefleet::deploy {

Result<manifests::Timestamp> ParseExpiry(const std::string& text, manifests::Timestamp now) {
  if (auto duration = ParseDuration(text)) return now + *duration;
  auto parsed = manifests::ParseTimestamp(text);
  if (!parsed) {
    return Fail(ErrorCode::kInvalidArgument,
                "--expires: expected a duration like 90d/12h/30m/45s or an RFC 3339 time like "
                "2027-01-01T00:00:00Z, found '" +
                    text + "'");
  }
  return *parsed;
}

Status Keygen(const KeygenOptions& options, std::ostream& out) {
  auto private_path = std::filesystem::path(options.out.string() + ".key");
  auto public_path = std::filesystem::path(options.out.string() + ".pub");
  if (!options.force) {
    for (const auto& p : {private_path, public_path}) {
      if (std::filesystem::exists(p)) {
        return Fail(ErrorCode::kInvalidArgument,
                    p.string() + ": already exists; refusing to overwrite a key (use --force)");
      }
    }
  }
  EF_ASSIGN_OR_RETURN(auto key, manifests::PrivateKey::Generate());
  EF_RETURN_IF_ERROR(manifests::SavePrivateKey(key, private_path));
  EF_RETURN_IF_ERROR(manifests::SavePublicKey(key.Public(), public_path));
  out << "keygen: ed25519 key " << key.KeyId() << "\n"
      << "  private " << private_path.string() << " (mode 0600, keep it offline)\n"
      << "  public  " << public_path.string() << "\n";
  return Ok();
}

namespace {

Result<manifests::RoleKeys> CollectRole(std::string_view role,
                                        const std::vector<std::filesystem::path>& files,
                                        int threshold,
                                        std::map<std::string, manifests::PublicKey>& keys) {
  if (files.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "--" + std::string(role) + "-key: at least one key is required");
  }
  manifests::RoleKeys role_keys;
  role_keys.threshold = threshold;
  std::set<std::string> seen;
  for (const auto& file : files) {
    EF_ASSIGN_OR_RETURN(auto key, manifests::LoadPublicKey(file));
    if (!seen.insert(key.KeyId()).second) {
      return Fail(ErrorCode::kInvalidArgument, file.string() + ": key " + key.KeyId() +
                                                   " is named twice for the " + std::string(role) +
                                                   " role (each key counts once)");
    }
    role_keys.keyids.push_back(key.KeyId());
    keys.emplace(key.KeyId(), key);
  }
  if (threshold < 1 || static_cast<std::size_t>(threshold) > role_keys.keyids.size()) {
    return Fail(ErrorCode::kInvalidArgument, "--" + std::string(role) + "-threshold: expected 1.." +
                                                 std::to_string(role_keys.keyids.size()) +
                                                 ", found " + std::to_string(threshold));
  }
  return role_keys;
}

}  // namespace

Status TrustInit(const TrustInitOptions& options, std::ostream& out) {
  const auto now = manifests::Now();
  EF_ASSIGN_OR_RETURN(auto expires, ParseExpiry(options.expires, now));
  manifests::TrustRootBody body;
  body.version = options.version;
  body.expires = expires;
  EF_ASSIGN_OR_RETURN(body.roles[manifests::Role::kRoot],
                      CollectRole("root", options.root_keys, options.root_threshold, body.keys));
  EF_ASSIGN_OR_RETURN(
      body.roles[manifests::Role::kRelease],
      CollectRole("release", options.release_keys, options.release_threshold, body.keys));
  EF_ASSIGN_OR_RETURN(
      body.roles[manifests::Role::kDeploy],
      CollectRole("deploy", options.deploy_keys, options.deploy_threshold, body.keys));
  manifests::SignedEnvelope envelope;
  envelope.signed_body = body.ToJson();
  for (const auto& file : options.root_keys) {
    EF_ASSIGN_OR_RETURN(auto key, manifests::LoadPrivateKey(file));
    EF_RETURN_IF_ERROR(envelope.Sign(key));
  }
  EF_RETURN_IF_ERROR(WriteFileAtomically(options.output, envelope.ToJson().dump(2) + "\n"));
  out << "trust init: root v" << body.version << " expires " << manifests::FormatTimestamp(expires)
      << ", " << body.keys.size() << " key(s), " << envelope.signatures.size()
      << " root signature(s) -> " << options.output.string() << "\n";
  for (const auto& [role, keys] : body.roles) {
    out << "  " << manifests::ToString(role) << ": threshold " << keys.threshold << " of "
        << keys.keyids.size() << "\n";
  }
  return Ok();
}

Status TrustSign(const TrustSignOptions& options, std::ostream& out) {
  if (options.keys.empty()) return Fail(ErrorCode::kInvalidArgument, "--key: at least one key");
  EF_ASSIGN_OR_RETURN(auto text, ReadSmallFile(options.document, manifests::kMaxManifestBytes));
  EF_ASSIGN_OR_RETURN(auto envelope,
                      manifests::SignedEnvelope::FromText(text, options.document.string(),
                                                          manifests::kMaxManifestBytes));
  for (const auto& file : options.keys) {
    EF_ASSIGN_OR_RETURN(auto key, manifests::LoadPrivateKey(file));
    EF_RETURN_IF_ERROR(envelope.Sign(key));
    out << "trust sign: signed by " << key.KeyId() << "\n";
  }
  EF_RETURN_IF_ERROR(WriteFileAtomically(options.document, envelope.ToJson().dump(2) + "\n"));
  out << "trust sign: " << options.document.string() << " now carries "
      << envelope.signatures.size() << " signature(s)\n";
  return Ok();
}

}  // namespace edgefleet::deploy
