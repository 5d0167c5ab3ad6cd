// The bundle manifest: what a model bundle holds and what it needs to run.
//
// manifest.json in a bundle is a SignedEnvelope whose `signed` body is a Manifest
// (type "edgefleet/manifest", spec_version 1). The JSON Schema is manifests/schema/
// manifest.schema.json; the README's "Formats" section shows an example.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/result.hpp"
#include "manifests/semver.hpp"
#include "manifests/time.hpp"

namespace edgefleet::manifests {

class FieldReader;

inline constexpr std::string_view kManifestType = "edgefleet/manifest";
inline constexpr std::string_view kDesiredStateType = "edgefleet/desired-state";
inline constexpr std::string_view kRootType = "edgefleet/root";

// Tensor element types named as in ONNX ("float32", "int64", "uint8", ...).
struct TensorSpec {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;  // -1 for a dynamic dimension (e.g. batch)
};

struct BackendRequirement {
  std::string name;      // "opencv"
  VersionRange version;  // e.g. ">=4.5.0 <5.0.0"
};

// One artifact of the model with what it needs from a backend.
struct Variant {
  std::string id;      // unique within the manifest, e.g. "onnx-op10"
  std::string file;    // a path listed in files, under model/
  std::string format;  // "onnx", "tflite", "torchscript"
  int opset = 0;       // ONNX: default-domain opset the graph imports; TFLite: schema version (3)
  // Operators the graph uses: "Conv" for the default domain, "<domain>:<op>" otherwise. TFLite:
  // builtin operators by name ("CONV_2D"), custom ones in domain "custom" ("custom:<name>").
  std::vector<std::string> operators;
  // The node forms the graph uses, "<operator>(<form>)" (runtime/onnx_forms.hpp), sorted and
  // without repeats; optional (empty: the verdict is by operator only). `bundle create` fills it.
  std::vector<std::string> forms;
  std::vector<BackendRequirement> backends;  // in no particular order; any one suffices
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
};

struct FileEntry {
  std::string path;  // relative, '/'-separated, no "." or ".." segments
  std::uint64_t size = 0;
  std::string sha256;  // 64 lowercase hex
};

// How raw images become the input tensor. Applied in this order: decode, colour conversion,
// resize to [height, width], x * scale, (x - mean[c]) / std[c], layout.
struct Preprocessing {
  std::string layout = "NCHW";  // "NCHW" | "NHWC"
  std::string color = "RGB";    // "GRAY" | "RGB" | "BGR"
  std::int64_t height = 0;
  std::int64_t width = 0;
  double scale = 1.0;
  std::vector<double> mean;  // one per channel
  std::vector<double> std;   // one per channel, each > 0
};

struct GoldenSet {
  std::string name;                  // golden/<name>/...
  std::vector<std::string> inputs;   // input_N.pb paths, in the order of the variant's inputs
  std::vector<std::string> outputs;  // output_N.pb paths, in the order of its outputs
};

struct ParityPolicy {
  double atol = 1e-4;
  double rtol = 1e-3;
  double min_top1_agreement = 0.99;    // against golden outputs; agreement with the
                                       // active model is reported, not judged
  std::optional<double> min_accuracy;  // against labels, when labels are present
  double max_latency_factor = 2.0;     // candidate median / active median
};

struct WatchPolicy {
  std::int64_t window_s = 60;
  std::int64_t min_requests = 50;
  double max_error_rate = 0.01;
  double max_p95_latency_factor = 2.0;        // against the previous model
  std::optional<double> min_online_accuracy;  // from feedback, when there is any
};

struct Manifest {
  std::string name;  // [a-z0-9][a-z0-9._-]{0,63}
  SemVer version;
  Timestamp created{};
  std::string description;
  std::vector<FileEntry> files;  // every file of the archive except manifest.json, no duplicates
  std::vector<Variant> variants;
  std::optional<Preprocessing> preprocessing;
  std::vector<GoldenSet> golden;
  std::optional<std::string> labels;  // a file path, usually golden/labels.json
  ParityPolicy parity;
  WatchPolicy watch;
  nlohmann::json extensions = nlohmann::json::object();  // "x-" keys, kept verbatim

  // Field-precise parse of the `signed` body. Checks the schema and the cross references:
  // variant files, golden files and labels must be listed in files; no duplicate file paths or
  // variant ids; paths safe (relative, no "..", no empty or "." segments, no backslashes).
  // Fails with kParse listing every problem, each prefixed by `source` and the JSON path under
  // "signed.".
  static Result<Manifest> FromJson(const nlohmann::json& body, std::string_view source);
  nlohmann::json ToJson() const;

  const FileEntry* FindFile(std::string_view path) const;
};

// True when `path` is a safe relative bundle path (see Manifest::FromJson): also at most
// kMaxPathBytes bytes, no NUL or other control character, and not "manifest.json" itself.
bool IsSafeRelativePath(std::string_view path);

// One variant object at `path` (shared with DesiredState's requirements, which carry no "file":
// with `with_file` false the field is refused as unknown). Records problems in `reader`;
// returns nullopt when any field was unusable.
std::optional<Variant> ReadVariant(FieldReader& reader, const nlohmann::json& obj,
                                   std::string_view path, bool with_file);
nlohmann::json VariantToJson(const Variant& variant, bool with_file);

}  // namespace edgefleet::manifests
