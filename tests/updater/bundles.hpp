// Bundle material for updater tests: deterministic bytes, keys, and the signed body of a small
// manifest listing given files with their real sizes and hashes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/result.hpp"

namespace edgefleet::updater::test {

using Files = std::vector<std::pair<std::string, std::string>>;

// `size` pseudo-random bytes from `seed` (an LCG: the same bytes on every run).
inline std::string Bytes(std::size_t size, std::uint32_t seed) {
  std::string s(size, '\0');
  for (auto& c : s) {
    seed = seed * 1664525u + 1013904223u;
    c = static_cast<char>(seed >> 24);
  }
  return s;
}

inline manifests::PrivateKey NewKey() {
  Result<manifests::PrivateKey> key = manifests::PrivateKey::Generate();
  EXPECT_TRUE(key);
  return std::move(key).value();
}

// A digits manifest body (one onnx variant model/a.onnx, golden set "set1") listing `files`.
inline nlohmann::json ManifestBody(const Files& files, const std::string& version = "1.2.0") {
  nlohmann::json listed = nlohmann::json::array();
  for (const auto& [path, contents] : files) {
    listed.push_back(
        {{"path", path}, {"size", contents.size()}, {"sha256", manifests::Sha256Hex(contents)}});
  }
  nlohmann::json body = nlohmann::json::parse(R"({
    "type": "edgefleet/manifest", "spec_version": 1, "name": "digits",
    "created": "2026-11-21T05:00:00Z",
    "variants": [{
      "id": "onnx-op10", "file": "model/a.onnx", "format": "onnx", "opset": 10,
      "operators": ["Conv", "Relu", "Gemm"],
      "backends": [{"name": "opencv", "version": ">=4.5.0 <5.0.0"}],
      "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}],
      "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}]
    }],
    "golden": [{"name": "set1", "inputs": ["golden/set1/input_0.pb"],
                "outputs": ["golden/set1/output_0.pb"]}],
    "parity": {}, "watch": {}
  })");
  body["version"] = version;
  body["files"] = std::move(listed);
  return body;
}

}  // namespace edgefleet::updater::test
