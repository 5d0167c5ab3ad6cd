// Fuzzes a bundle's manifest.json as the updater reads it: the signed envelope
// (SignedEnvelope::FromText with the manifest cap), the release signatures against the fixed
// trust root, then Manifest::FromJson. A manifest that parses must survive ToJson -> FromJson.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "manifests/envelope.hpp"
#include "manifests/manifest.hpp"
#include "tests/fuzz/fuzz_keys.hpp"

namespace manifests = edgefleet::manifests;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto envelope =
      manifests::SignedEnvelope::FromText(text, "manifest.json", manifests::kMaxManifestBytes);
  if (!envelope) return 0;
  (void)edgefleet::fuzz::FixedTrustRoot().Verify(*envelope, manifests::Role::kRelease);
  auto manifest = manifests::Manifest::FromJson(envelope->signed_body, "manifest.json");
  if (!manifest) return 0;
  auto again = manifests::Manifest::FromJson(manifest->ToJson(), "manifest.json (again)");
  if (!again) {
    std::fprintf(stderr, "a parsed manifest does not parse after ToJson: %s\n",
                 again.error().message.c_str());
    std::abort();
  }
  return 0;
}
