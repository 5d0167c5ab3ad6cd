// Fuzzes a desired-state document as the agent reads it from a file, URL or retained MQTT
// message: the signed envelope (FromText with the desired-state cap), the deploy signatures
// against the fixed trust root, then DesiredState::FromJson. A document that parses must survive
// ToJson -> FromJson.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "manifests/desired_state.hpp"
#include "manifests/envelope.hpp"
#include "tests/fuzz/fuzz_keys.hpp"

namespace manifests = edgefleet::manifests;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto envelope =
      manifests::SignedEnvelope::FromText(text, "desired.json", manifests::kMaxDesiredStateBytes);
  if (!envelope) return 0;
  (void)edgefleet::fuzz::FixedTrustRoot().Verify(*envelope, manifests::Role::kDeploy);
  auto state = manifests::DesiredState::FromJson(envelope->signed_body, "desired.json");
  if (!state) return 0;
  auto again = manifests::DesiredState::FromJson(state->ToJson(), "desired.json (again)");
  if (!again) {
    std::fprintf(stderr, "a parsed desired state does not parse after ToJson: %s\n",
                 again.error().message.c_str());
    std::abort();
  }
  return 0;
}
