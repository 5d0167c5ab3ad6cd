// Sample documents shared by the manifests tests and the schema example writer.
//
// Each function returns a complete, valid document body so a test can change one field and
// assert on exactly the problem that change causes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/time.hpp"
#include "manifests/trust.hpp"

namespace edgefleet::manifests::testing {

inline const std::string kHexA(64, 'a');
inline const std::string kHexB(64, 'b');

// The manifest from the brief, with every optional field present.
inline nlohmann::json SampleManifestBody() {
  return nlohmann::json::parse(R"({
    "type": "edgefleet/manifest", "spec_version": 1, "name": "digits", "version": "1.0.0",
    "created": "2026-11-21T05:00:00Z", "description": "8x8 digits classifier",
    "files": [
      {"path": "model/digits_op10.onnx", "size": 1234, "sha256": ")" +
                               kHexA + R"("},
      {"path": "golden/heldout/input_0.pb", "size": 300, "sha256": ")" +
                               kHexB + R"("},
      {"path": "golden/heldout/output_0.pb", "size": 60, "sha256": ")" +
                               kHexA + R"("},
      {"path": "golden/labels.json", "size": 20, "sha256": ")" +
                               kHexB + R"("}
    ],
    "variants": [{
      "id": "onnx-op10", "file": "model/digits_op10.onnx", "format": "onnx", "opset": 10,
      "operators": ["Conv", "Relu", "Gemm"],
      "backends": [{"name": "opencv", "version": ">=4.5.0 <5.0.0"}],
      "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}],
      "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}]
    }],
    "preprocessing": {"layout": "NCHW", "color": "GRAY", "height": 8, "width": 8,
                      "scale": 0.00392156862745098, "mean": [0.0], "std": [1.0]},
    "golden": [{"name": "heldout", "inputs": ["golden/heldout/input_0.pb"],
                "outputs": ["golden/heldout/output_0.pb"]}],
    "labels": "golden/labels.json",
    "parity": {"atol": 1e-4, "rtol": 1e-3, "min_top1_agreement": 0.99, "min_accuracy": 0.9,
               "max_latency_factor": 2.0},
    "watch": {"window_s": 60, "min_requests": 50, "max_error_rate": 0.01,
              "max_p95_latency_factor": 2.0, "min_online_accuracy": 0.9},
    "x-team": {"owner": "vision"}
  })");
}

// Only the required fields (optional objects' fields left to their defaults).
inline nlohmann::json MinimalManifestBody() {
  nlohmann::json body = SampleManifestBody();
  body.erase("description");
  body.erase("preprocessing");
  body.erase("labels");
  body.erase("x-team");
  body["files"].erase(3);
  body["parity"] = nlohmann::json::object();
  body["watch"] = nlohmann::json::object();
  return body;
}

inline nlohmann::json SampleDesiredStateBody() {
  nlohmann::json body = nlohmann::json::parse(R"({
    "type": "edgefleet/desired-state", "spec_version": 1, "fleet": "demo",
    "target": {"group": "lab"}, "serial": 7,
    "created": "2026-11-21T05:00:00Z", "expires": "2026-12-21T05:00:00Z",
    "models": [{
      "name": "digits", "version": "1.1.0",
      "bundle": {"url": "https://bundles.example/digits-1.1.0.efb", "size": 4096,
                 "sha256": ")" + kHexA + R"("},
      "allow_downgrade": true,
      "requirements": []
    }],
    "x-rollout": "wave-1"
  })");
  nlohmann::json requirement = SampleManifestBody()["variants"][0];
  requirement.erase("file");
  body["models"][0]["requirements"].push_back(requirement);
  return body;
}

// A root body naming each key in `root`, `release` and `deploy` with the given thresholds.
inline TrustRootBody MakeRootBody(std::uint64_t version, const std::vector<PrivateKey>& root,
                                  int root_threshold, const std::vector<PrivateKey>& release,
                                  int release_threshold, const std::vector<PrivateKey>& deploy,
                                  Timestamp expires) {
  TrustRootBody body;
  body.version = version;
  body.expires = expires;
  const auto add = [&](Role role, const std::vector<PrivateKey>& keys, int threshold) {
    RoleKeys role_keys;
    role_keys.threshold = threshold;
    for (const auto& k : keys) {
      body.keys.emplace(k.KeyId(), k.Public());
      role_keys.keyids.push_back(k.KeyId());
    }
    body.roles[role] = role_keys;
  };
  add(Role::kRoot, root, root_threshold);
  add(Role::kRelease, release, release_threshold);
  add(Role::kDeploy, deploy, 1);
  return body;
}

// Deterministic keys so example documents are reproducible.
inline PrivateKey KeyFromByte(unsigned char b) {
  std::string hex;
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 0x0f];
  }
  return PrivateKey::FromHex(hex).value();
}

inline Timestamp At(std::string_view text) { return ParseTimestamp(text).value(); }

}  // namespace edgefleet::manifests::testing
