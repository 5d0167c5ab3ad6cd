// The signed envelope (see manifests/envelope.hpp).
#include "manifests/envelope.hpp"

#include <algorithm>

#include "manifests/canonical.hpp"
#include "manifests/crypto.hpp"
#include "manifests/json_fields.hpp"

namespace edgefleet::manifests {

Result<SignedEnvelope> SignedEnvelope::FromJson(const nlohmann::json& doc,
                                                std::string_view source) {
  try {
    FieldReader reader{std::string(source)};
    if (!doc.is_object()) {
      reader.Problem("(document)",
                     "wrong type, expected object, found " + std::string(JsonTypeName(doc)));
      return Unexpected(reader.ToStatus().error());
    }
    // Nothing outside `signed` is covered by a signature, so no extensions are allowed here:
    // an unsigned "x-" field next to a signed body would only invite someone to trust it.
    for (const auto& [key, value] : doc.items()) {
      if (key != "signed" && key != "signatures") {
        reader.Problem(key,
                       "unknown field, expected one of signatures, signed, found \"" + key + "\"");
      }
    }
    SignedEnvelope envelope;
    if (const auto* body = reader.Object(doc, "signed", "signed")) envelope.signed_body = *body;
    if (const auto* sigs = reader.Array(doc, "signatures", "signatures")) {
      for (std::size_t i = 0; i < sigs->size(); ++i) {
        const auto& entry = (*sigs)[i];
        const std::string path = Index("signatures", i);
        if (!entry.is_object()) {
          reader.Problem(path,
                         "wrong type, expected object, found " + std::string(JsonTypeName(entry)));
          continue;
        }
        for (const auto& [key, value] : entry.items()) {
          if (key != "keyid" && key != "sig") {
            reader.Problem(Child(path, key), "unknown field, expected one of keyid, sig, found " +
                                                 QuoteForMessage(key));
          }
        }
        Signature sig;
        if (auto keyid = reader.String(entry, "keyid", Child(path, "keyid"))) {
          if (!IsLowerHex(*keyid, 64)) {
            reader.Problem(Child(path, "keyid"), HexProblem(*keyid, 64));
          }
          sig.keyid = std::move(*keyid);
        }
        if (auto value = reader.String(entry, "sig", Child(path, "sig"))) {
          if (!IsLowerHex(*value, 128)) {
            reader.Problem(Child(path, "sig"), HexProblem(*value, 128));
          }
          sig.sig = std::move(*value);
        }
        envelope.signatures.push_back(std::move(sig));
      }
    }
    EF_RETURN_IF_ERROR(reader.ToStatus());
    return envelope;
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kParse, std::string(source) + ": " + e.what());
  }
}

Result<SignedEnvelope> SignedEnvelope::FromText(std::string_view text, std::string_view source,
                                                std::size_t max_bytes) {
  EF_ASSIGN_OR_RETURN(const nlohmann::json doc, ParseJsonText(text, source, max_bytes));
  return FromJson(doc, source);
}

nlohmann::json SignedEnvelope::ToJson() const {
  nlohmann::json sigs = nlohmann::json::array();
  for (const auto& s : signatures) sigs.push_back({{"keyid", s.keyid}, {"sig", s.sig}});
  return {{"signed", signed_body}, {"signatures", std::move(sigs)}};
}

Status SignedEnvelope::Sign(const PrivateKey& key) {
  EF_ASSIGN_OR_RETURN(std::string sig, key.Sign(Canonical(signed_body)));
  // Re-signing (e.g. after the body changed) replaces every earlier entry of this key.
  std::erase_if(signatures, [&](const Signature& s) { return s.keyid == key.KeyId(); });
  signatures.push_back(Signature{key.KeyId(), std::move(sig)});
  return Ok();
}

}  // namespace edgefleet::manifests
