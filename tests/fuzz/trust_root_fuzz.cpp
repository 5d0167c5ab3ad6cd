// Fuzzes a trust root (root.json) as a box loads one and as it takes a rotation: the signed
// envelope (FromText with the root cap), TrustRootBody::FromJson, TrustRoot::FromEnvelope (self
// signatures, expiry) and the fixed root's Rotate.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "manifests/envelope.hpp"
#include "manifests/trust.hpp"
#include "tests/fuzz/fuzz_keys.hpp"

namespace manifests = edgefleet::manifests;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto envelope = manifests::SignedEnvelope::FromText(text, "root.json", manifests::kMaxRootBytes);
  if (!envelope) return 0;
  (void)manifests::TrustRootBody::FromJson(envelope->signed_body, "root.json");
  const auto now = edgefleet::fuzz::FixedNow();
  (void)manifests::TrustRoot::FromEnvelope(*envelope, now, "root.json");
  (void)edgefleet::fuzz::FixedTrustRoot().Rotate(*envelope, now);
  return 0;
}
