// Writes the signed seed inputs of the fuzz targets into <dir>/<target>/ with the fixed keys of
// fuzz_keys.hpp: a manifest, a desired state, trust roots (v1 and a valid rotation to v2) and
// small bundles (plain, gzip, zstd); and the collector's MQTT messages from the telemetry tests'
// samples, in collector_fuzz.cpp's input layout; and two small TFLite models (builtin operators
// only, and one with a custom operator; tests/support/tflite_builder). The output is committed
// under tests/fuzz/corpus/; run this again after a format change:
//   build/fuzz/tests/fuzz/make_fuzz_seeds tests/fuzz/corpus
// Exits 1 naming what failed.
#include <archive.h>
#include <archive_entry.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "telemetry/payloads.hpp"
#include "tests/fuzz/fuzz_keys.hpp"
#include "tests/manifests/samples.hpp"
#include "tests/support/tflite_builder.hpp"
#include "tests/telemetry/samples.hpp"

namespace {

namespace manifests = edgefleet::manifests;
namespace fs = std::filesystem;
using Files = std::vector<std::pair<std::string, std::string>>;

bool WriteFile(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) std::fprintf(stderr, "make_fuzz_seeds: cannot write %s\n", path.c_str());
  return static_cast<bool>(out);
}

std::string Signed(nlohmann::json body, const manifests::PrivateKey& key) {
  manifests::SignedEnvelope envelope;
  envelope.signed_body = std::move(body);
  if (!envelope.Sign(key)) std::abort();
  return envelope.ToJson().dump(1) + "\n";
}

// A pax tar of `files` through libarchive, with the filter libarchive calls `filter` ("none",
// "gzip", "zstd"). Empty on failure.
std::string Tar(const Files& files, const std::string& filter) {
  using Writer = std::unique_ptr<archive, decltype(&archive_write_free)>;
  Writer writer(archive_write_new(), &archive_write_free);
  archive* a = writer.get();
  std::vector<char> buffer(1 << 20);
  std::size_t used = 0;
  int rc = archive_write_set_format_pax_restricted(a);
  if (rc == ARCHIVE_OK && filter != "none")
    rc = archive_write_add_filter_by_name(a, filter.c_str());
  if (rc == ARCHIVE_OK) rc = archive_write_open_memory(a, buffer.data(), buffer.size(), &used);
  for (const auto& [path, contents] : files) {
    if (rc != ARCHIVE_OK) break;
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                        &archive_entry_free);
    archive_entry_set_pathname(entry.get(), path.c_str());
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(contents.size()));
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_mtime(entry.get(), 1764547200, 0);
    rc = archive_write_header(a, entry.get());
    if (rc == ARCHIVE_OK && archive_write_data(a, contents.data(), contents.size()) !=
                                static_cast<la_ssize_t>(contents.size())) {
      rc = ARCHIVE_FATAL;
    }
  }
  if (rc == ARCHIVE_OK) rc = archive_write_close(a);
  if (rc != ARCHIVE_OK) {
    std::fprintf(stderr, "make_fuzz_seeds: libarchive: %s\n", archive_error_string(a));
    return {};
  }
  return std::string(buffer.data(), used);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_seeds <corpus dir>\n");
    return 2;
  }
  const fs::path dir = argv[1];
  bool ok = true;

  // Bundle: the sample manifest listing small files with their real sizes and hashes.
  const Files files = {{"model/digits_op10.onnx", std::string(96, 'm')},
                       {"golden/heldout/input_0.pb", std::string(40, 'i')},
                       {"golden/heldout/output_0.pb", std::string(24, 'o')},
                       {"golden/labels.json", "[0, 1, 2]\n"}};
  nlohmann::json body = manifests::testing::SampleManifestBody();
  body["files"] = nlohmann::json::array();
  for (const auto& [path, contents] : files) {
    body["files"].push_back(
        {{"path", path}, {"size", contents.size()}, {"sha256", manifests::Sha256Hex(contents)}});
  }
  const std::string manifest = Signed(body, edgefleet::fuzz::ReleaseKey());
  ok &= WriteFile(dir / "manifest" / "signed.json", manifest);
  Files bundle = {{"manifest.json", manifest}};
  bundle.insert(bundle.end(), files.begin(), files.end());
  for (const std::string filter : {"none", "gzip", "zstd"}) {
    const std::string tar = Tar(bundle, filter);
    ok &= !tar.empty() && WriteFile(dir / "archive" / ("bundle-" + filter + ".efb"), tar);
  }

  ok &=
      WriteFile(dir / "desired_state" / "signed.json",
                Signed(manifests::testing::SampleDesiredStateBody(), edgefleet::fuzz::DeployKey()));

  manifests::SignedEnvelope root = edgefleet::fuzz::FixedRootEnvelope();
  ok &= WriteFile(dir / "trust_root" / "root-v1.json", root.ToJson().dump(1) + "\n");
  // A valid rotation: version 2 with the same keys, signed by the (old and new) root key.
  root.signed_body["version"] = 2;
  root.signatures.clear();
  ok &= WriteFile(dir / "trust_root" / "root-v2.json",
                  Signed(root.signed_body, edgefleet::fuzz::RootKey()));

  // The collector: a topic selector byte (see collector_fuzz.cpp), then the payload.
  namespace telemetry = edgefleet::telemetry;
  const std::string status = telemetry::EncodeStatus(telemetry::testing::FullStatus());
  const std::pair<const char*, std::string> messages[] = {
      {"status", std::string(1, '\0') + status},
      {"last-will", std::string(1, '\0') + telemetry::EncodeStatus(telemetry::testing::LastWill())},
      {"telemetry", "\1" + telemetry::EncodeTelemetry(telemetry::testing::FullWindow())},
      {"telemetry-minimal", "\1" + telemetry::EncodeTelemetry(telemetry::testing::MinimalWindow())},
      {"event-parity", "\2" + telemetry::EncodeEvent(telemetry::testing::ParityEvent())},
      {"event-rejected", "\2" + telemetry::EncodeEvent(telemetry::testing::RejectedEvent())},
      {"topic-status", "\4edgefleet/v1/demo/device/box-17/status\n" + status}};
  for (const auto& [name, bytes] : messages) {
    ok &= WriteFile(dir / "collector" / (std::string(name) + ".msg"), bytes);
  }

  namespace testing = edgefleet::testing;
  ok &=
      WriteFile(dir / "tflite" / "small.tflite", testing::BuildTflite(testing::SmallTfliteModel()));
  ok &= WriteFile(dir / "tflite" / "custom-op.tflite",
                  testing::BuildTflite(testing::SmallTfliteModel("Fancy")));
  return ok ? 0 : 1;
}
