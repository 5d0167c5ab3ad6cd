// The `edgefleet` operator commands. Each returns Ok() after printing what it did to `out`, or an
// error whose message names the file, field and expected vs found; main() prints it and exits 1.
//
// Thread safety: commands are run one at a time from main().
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "deploy/bundle_writer.hpp"
#include "manifests/result.hpp"
#include "manifests/time.hpp"

namespace edgefleet::deploy {

// `--expires` values: an RFC 3339 time or a duration from now ("90d", "12h", "30m", "45s").
Result<manifests::Timestamp> ParseExpiry(const std::string& text, manifests::Timestamp now);

struct KeygenOptions {
  std::filesystem::path out;  // writes <out>.key (0600) and <out>.pub
  bool force = false;
};
Status Keygen(const KeygenOptions& options, std::ostream& out);

struct TrustInitOptions {
  std::vector<std::filesystem::path> root_keys;     // private: they sign the new root
  std::vector<std::filesystem::path> release_keys;  // public or private key files
  std::vector<std::filesystem::path> deploy_keys;
  int root_threshold = 1;
  int release_threshold = 1;
  int deploy_threshold = 1;
  std::uint64_t version = 1;
  std::string expires = "365d";
  std::filesystem::path output;
};
Status TrustInit(const TrustInitOptions& options, std::ostream& out);

struct TrustSignOptions {
  std::filesystem::path document;  // any signed envelope (root, desired state, manifest json)
  std::vector<std::filesystem::path> keys;
};
Status TrustSign(const TrustSignOptions& options, std::ostream& out);

struct BundleCreateOptions {
  std::filesystem::path source_dir;  // holds bundle.json and the files it names
  std::filesystem::path output;
  std::optional<std::string> version;  // overrides bundle.json's version
  Compression compression = Compression::kZstd;
  std::vector<std::filesystem::path> keys;  // sign right away (optional)
};
Status BundleCreate(const BundleCreateOptions& options, std::ostream& out);

struct BundleSignOptions {
  std::filesystem::path bundle;
  std::vector<std::filesystem::path> keys;
  std::optional<std::filesystem::path> output;  // default: replace the bundle atomically
};
Status BundleSign(const BundleSignOptions& options, std::ostream& out);

struct BundleVerifyOptions {
  std::filesystem::path bundle;
  std::filesystem::path trust;
  bool json = false;
};
Status BundleVerify(const BundleVerifyOptions& options, std::ostream& out);

struct BundleInspectOptions {
  std::filesystem::path bundle;
  bool json = false;
};
Status BundleInspect(const BundleInspectOptions& options, std::ostream& out);

}  // namespace edgefleet::deploy
