// Canonical JSON (see manifests/canonical.hpp).
#include "manifests/canonical.hpp"

namespace edgefleet::manifests {

std::string Canonical(const nlohmann::json& value) {
  // nlohmann's object is a std::map, so dump() already sorts keys. The replace handler only
  // matters for strings that are not valid UTF-8: parsed documents never hold such strings (the
  // parser refuses them), and for values built in code it keeps this function from throwing;
  // the result then simply will not verify against a strict signer.
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace edgefleet::manifests
