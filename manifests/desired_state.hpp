// The desired-state document: what models (and versions) a device or a group should run.
//
// Travels as a SignedEnvelope signed by the deploy role, published retained on
// edgefleet/v1/<fleet>/device/<device>/desired or .../group/<group>/desired.
// signed = {"type": "edgefleet/desired-state", "spec_version": 1, "fleet": "demo",
//           "target": {"group": "lab"} | {"device": "box-1"}, "serial": 7,
//           "created": "<RFC3339>", "expires": "<RFC3339>",
//           "models": [{"name": "digits", "version": "1.1.0",
//                       "bundle": {"url": "http://...", "size": 123, "sha256": "<hex>"},
//                       "allow_downgrade": false,
//                       "requirements": [<Variant without file>]}]}
// `requirements` copies the variants of the bundle's manifest (without the file field) so the
// agent can pre-check compatibility before downloading a byte.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "manifests/semver.hpp"
#include "manifests/time.hpp"

namespace edgefleet::manifests {

struct BundleRef {
  std::string url;         // http, https or file
  std::uint64_t size = 0;  // exact size of the .efb; downloads stop past it
  std::string sha256;
};

struct DesiredModel {
  std::string name;
  SemVer version;
  BundleRef bundle;
  bool allow_downgrade = false;
  std::vector<Variant> requirements;  // file fields empty
};

struct DesiredState {
  std::string fleet;
  std::string target_kind;   // "device" | "group"
  std::string target;        // device or group name
  std::uint64_t serial = 0;  // strictly increasing per target; replay defence
  Timestamp created{};
  Timestamp expires{};
  std::vector<DesiredModel> models;  // no two with the same name
  nlohmann::json extensions = nlohmann::json::object();

  // Field-precise parse (kParse, every problem). Expiry is not checked here: use
  // CheckNotExpired so the caller decides what "now" is.
  static Result<DesiredState> FromJson(const nlohmann::json& body, std::string_view source);
  nlohmann::json ToJson() const;
};

// kExpired naming the document and both times when expires <= now.
Status CheckNotExpired(Timestamp expires, Timestamp now, std::string_view source);

}  // namespace edgefleet::manifests
