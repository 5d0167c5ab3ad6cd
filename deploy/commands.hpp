// The `edgefleet` operator commands. Each returns Ok() after printing what it did to `out`, or an
// error whose message names the file, field and expected vs found; main() prints it and exits 1.
//
// Thread safety: commands are run one at a time from main().
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "deploy/bundle_writer.hpp"
#include "deploy/common/files.hpp"
#include "deploy/serve/bundle_server.hpp"
#include "manifests/result.hpp"
#include "manifests/time.hpp"
#include "runtime/node_cases.hpp"

namespace edgefleet::deploy {

// `--expires` values: an RFC 3339 time or a duration from now (ParseDuration).
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
  // "opencv-4.6": also a variant lowered for that backend beside each ONNX variant it does not
  // run as exported (deploy/bundle_lower.hpp); backends from `backends_dir` (default beside the
  // program).
  std::string lower;
  std::filesystem::path backends_dir;
};
Status BundleCreate(const BundleCreateOptions& options, std::ostream& out);

struct BundleSignOptions {
  std::filesystem::path bundle;
  std::vector<std::filesystem::path> keys;
  std::optional<std::filesystem::path> output;  // default: replace the bundle atomically
};
Status BundleSign(const BundleSignOptions& options, std::ostream& out);

// edgefleet model check: each model through every backend library of `backends_dir` (default:
// runtime::DefaultBackendsDir()): the verdict before download (from the operators and forms the
// file's manifest would list), after download (the graph check), and with `golden` (a directory
// of input_K.pb / output_K.pb) whether loading and running it matches within `tolerance`.
// Prints a report (or JSON); fails with kUnsupported when some model is served by no backend.
struct ModelCheckOptions {
  std::vector<std::filesystem::path> models;
  std::filesystem::path backends_dir;
  std::filesystem::path golden;
  runtime::NodeCaseTolerance tolerance{1e-3, 1e-3};
  bool run_refused = false;  // with golden: also run what the verdicts refuse (false refusals)
  bool json = false;
};
Status ModelCheck(const ModelCheckOptions& options, std::ostream& out);

// edgefleet model lower: rewrites `input` into forms the `target` backend ("opencv-4.6") runs
// (runtime/onnx_lower.hpp), checks the lowered model on that backend against `golden` (a
// directory of input_K.pb / output_K.pb) or, without it, against the original's outputs on the
// `reference` backend for fixed random inputs, and only then writes `output`. Fails naming the
// node, the golden output or the file; writes nothing then.
struct ModelLowerOptions {
  std::filesystem::path input;
  std::filesystem::path output;
  std::string target;
  std::filesystem::path golden;
  std::filesystem::path backends_dir;
  std::string reference = "onnxruntime";
  runtime::NodeCaseTolerance tolerance{1e-3, 1e-3};
};
Status ModelLower(const ModelLowerOptions& options, std::ostream& out);

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

// `edgefleet collect`: subscribes to the fleet's device status, telemetry and events topics,
// stores them in the collector database and serves /metrics and the JSON API
// (deploy/collector/collector_http.hpp) until SIGTERM or SIGINT, then stores what is queued and
// returns Ok(). Fails before serving for bad flags, a database it cannot open or an HTTP address it
// cannot bind.
struct CollectOptions {
  std::string broker;  // HOST:PORT
  std::string fleet;   // a fleet name, or "+" for every fleet
  // A SQLite file, or a PostgreSQL URL (postgresql://...; deploy/collector/pg_db.hpp), which
  // several collectors may share.
  std::filesystem::path db;
  // The spool file's path prefix (CollectorOptions::spool); default <db>.spool for a SQLite
  // file, required for PostgreSQL.
  std::filesystem::path spool;
  // A shared-subscription group: collectors with one group take turns at the fleet's telemetry
  // and events (CollectorOptions::share). Empty: this collector takes every message.
  std::string share;
  std::optional<std::int64_t> batch_wait_ms;  // CollectorOptions::batch_wait_ms; unset: its default
  std::string http;                           // HOST:PORT; port 0 picks a free port
  std::optional<std::filesystem::path> port_file;      // the HTTP port, written once listening
  std::filesystem::path ca_file, cert_file, key_file;  // TLS when ca_file is set
  std::string username, password;
  std::string client_id = "collector";
};
Status Collect(const CollectOptions& options);

// `edgefleet devices`: the fleet as a table (or JSON rows), read from the collector database
// (read-only, while collect runs): per device and model the active version and slot, p50/p99 and
// accuracy over the last `window` of that device's windows, and when it was last seen.
struct DevicesOptions {
  std::filesystem::path db;
  bool json = false;
  std::string window = "5m";
};
Status Devices(const DevicesOptions& options, std::ostream& out);

}  // namespace edgefleet::deploy
