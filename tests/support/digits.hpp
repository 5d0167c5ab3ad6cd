// The committed digits test models (tests/data/digits/{v1,v2,broken}) as manifests.
//
// Each version directory holds bundle.json, the manifest body without the fields that
// `edgefleet bundle create` fills in; LoadBundleManifest fills them the same way so tests can
// use the directory as an unpacked bundle.
#pragma once

#include <filesystem>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"

namespace edgefleet::testing {

// Reads `dir`/bundle.json, adds type, spec_version, created and files (path, size and SHA-256
// of every file the body names: variant files, golden inputs and outputs, labels) and parses
// the result. Fails with the parser's or the file system's error.
Result<manifests::Manifest> LoadBundleManifest(const std::filesystem::path& dir);

}  // namespace edgefleet::testing
