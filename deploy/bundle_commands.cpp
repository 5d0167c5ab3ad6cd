// bundle create, sign, verify, inspect.
#include <chrono>
#include <iomanip>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "deploy/bundle_lower.hpp"
#include "deploy/commands.hpp"
#include "deploy/common/files.hpp"
#include "deploy/variant_inspect.hpp"
#include "manifests/bundle_layout.hpp"
#include "manifests/canonical.hpp"
#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/json_fields.hpp"
#include "manifests/log_value.hpp"
#include "manifests/manifest.hpp"
#include "manifests/trust.hpp"
#include "updater/bundle_reader.hpp"
#include "updater/safe_archive.hpp"

namespace edgefleet::deploy {
namespace {

using nlohmann::json;

constexpr std::string_view kSpecFile = "bundle.json";

std::string HumanBytes(std::uint64_t bytes) {
  std::ostringstream s;
  if (bytes < 10 * 1024) {
    s << bytes << " B";
  } else if (bytes < 10ULL * 1024 * 1024) {
    s << (bytes / 1024) << " KiB";
  } else {
    s << std::fixed << std::setprecision(1) << (static_cast<double>(bytes) / (1024.0 * 1024.0))
      << " MiB";
  }
  return s.str();
}

// The files a bundle spec names, in a stable order: variants, golden sets, labels.
std::vector<std::string> ReferencedFiles(const json& spec) {
  std::vector<std::string> files;
  std::set<std::string> seen;
  auto add = [&](const json& value) {
    if (value.is_string() && seen.insert(value.get<std::string>()).second) {
      files.push_back(value.get<std::string>());
    }
  };
  if (spec.contains("variants") && spec["variants"].is_array()) {
    for (const auto& v : spec["variants"]) {
      if (v.is_object() && v.contains("file")) add(v["file"]);
    }
  }
  if (spec.contains("golden") && spec["golden"].is_array()) {
    for (const auto& set : spec["golden"]) {
      if (!set.is_object()) continue;
      for (const char* key : {"inputs", "outputs"}) {
        if (set.contains(key) && set[key].is_array()) {
          for (const auto& f : set[key]) add(f);
        }
      }
    }
  }
  if (spec.contains("labels")) add(spec["labels"]);
  return files;
}

Result<std::vector<manifests::PrivateKey>> LoadKeys(
    const std::vector<std::filesystem::path>& paths) {
  std::vector<manifests::PrivateKey> keys;
  for (const auto& path : paths) {
    EF_ASSIGN_OR_RETURN(auto key, manifests::LoadPrivateKey(path));
    keys.push_back(std::move(key));
  }
  return keys;
}

// Copies the entries of an existing bundle into a writer, checking each against the manifest
// (listed, declared size, SHA-256) so a re-signed bundle is never one whose contents drifted.
class CheckedCopy final : public updater::EntryVisitor {
 public:
  CheckedCopy(const manifests::Manifest& manifest, BundleWriter& writer, std::string source)
      : manifest_(manifest), writer_(writer), source_(std::move(source)) {}

  Status BeginFile(std::string_view path, std::uint64_t size) override {
    skip_ = (index_++ == 0);  // the old manifest.json: the caller wrote the new one first
    if (skip_) return Ok();
    current_ = manifest_.FindFile(path);
    if (current_ == nullptr) {
      return Fail(ErrorCode::kIntegrity,
                  source_ + ": extra file not in manifest: " + manifests::QuoteName(path));
    }
    if (size != current_->size) {
      return Fail(ErrorCode::kIntegrity, source_ + ": entry " + manifests::QuoteName(path) +
                                             " is " + std::to_string(size) +
                                             " bytes, the manifest declares " +
                                             std::to_string(current_->size));
    }
    seen_.insert(current_->path);
    return writer_.Begin(path, size);
  }
  Status Data(std::span<const std::byte> chunk) override {
    if (skip_) return Ok();
    hash_.Update(chunk);
    return writer_.Write(chunk);
  }
  Status EndFile() override {
    if (skip_) return Ok();
    auto found = hash_.FinishHex();
    if (found != current_->sha256) {
      return Fail(ErrorCode::kIntegrity, source_ + ": " + manifests::QuoteName(current_->path) +
                                             ": sha256 expected " + current_->sha256 + ", found " +
                                             found);
    }
    return Ok();
  }
  Status CheckNothingMissing() const {
    for (const auto& file : manifest_.files) {
      if (!seen_.contains(file.path)) {
        return Fail(ErrorCode::kIntegrity, source_ + ": missing file listed in manifest: " +
                                               manifests::QuoteName(file.path));
      }
    }
    return Ok();
  }

 private:
  const manifests::Manifest& manifest_;
  BundleWriter& writer_;
  std::string source_;
  const manifests::FileEntry* current_ = nullptr;
  manifests::Sha256 hash_;
  std::set<std::string> seen_;
  std::size_t index_ = 0;
  bool skip_ = false;
};

json Summary(const updater::BundleContents& contents) {
  const auto& m = contents.manifest;
  json variants = json::array();
  for (const auto& v : m.variants) {
    json backends = json::array();
    for (const auto& b : v.backends) backends.push_back(b.name + " " + b.version.text());
    variants.push_back({{"id", v.id},
                        {"file", v.file},
                        {"format", v.format},
                        {"opset", v.opset},
                        {"operators", v.operators.size()},
                        {"backends", backends}});
  }
  return {{"name", m.name},
          {"version", m.version.ToString()},
          {"files", m.files.size()},
          {"payload_bytes", contents.payload_bytes},
          {"archive_bytes", contents.archive_bytes},
          {"variants", variants}};
}

}  // namespace

Status BundleCreate(const BundleCreateOptions& options, std::ostream& out) {
  const auto spec_path = options.source_dir / kSpecFile;
  EF_ASSIGN_OR_RETURN(auto text, ReadSmallFile(spec_path, manifests::kMaxManifestBytes));
  EF_ASSIGN_OR_RETURN(
      json spec, manifests::ParseJsonText(text, spec_path.string(), manifests::kMaxManifestBytes));
  if (!spec.is_object()) {
    return Fail(ErrorCode::kParse, spec_path.string() + ": expected an object, found " +
                                       std::string(manifests::JsonTypeName(spec)));
  }
  for (const char* filled : {"type", "spec_version", "files", "created"}) {
    if (spec.contains(filled)) {
      return Fail(ErrorCode::kParse, spec_path.string() + ": " + filled +
                                         ": expected absent (bundle create fills it in), found a "
                                         "value");
    }
  }
  if (options.version) spec["version"] = *options.version;
  std::optional<ScratchDir> scratch;
  std::map<std::string, std::filesystem::path> generated;  // bundle path -> lowered file
  if (!options.lower.empty()) {
    EF_ASSIGN_OR_RETURN(auto dir, ScratchDir::Create());
    scratch.emplace(std::move(dir));
    EF_RETURN_IF_ERROR(AddLoweredVariants(spec, options.source_dir, spec_path, options.lower,
                                          options.backends_dir, *scratch, generated, out));
  }
  EF_RETURN_IF_ERROR(FillVariantsFromFiles(spec, options.source_dir, spec_path, out, generated));

  const auto now = manifests::Now();
  json files = json::array();
  std::vector<std::pair<std::string, std::filesystem::path>> sources;
  for (const auto& name : ReferencedFiles(spec)) {
    if (!manifests::IsSafeRelativePath(name)) continue;  // the manifest parser names it below
    const auto made = generated.find(name);
    auto path = made == generated.end() ? options.source_dir / name : made->second;
    std::error_code ec;
    auto status = std::filesystem::symlink_status(path, ec);
    if (ec || !std::filesystem::is_regular_file(status)) {
      return Fail(ErrorCode::kNotFound,
                  spec_path.string() + ": names '" + name + "', expected a regular file at " +
                      path.string() + ", found " + (ec ? ec.message() : "another kind of file"));
    }
    EF_ASSIGN_OR_RETURN(auto sha, manifests::Sha256File(path));
    files.push_back({{"path", name}, {"size", std::filesystem::file_size(path)}, {"sha256", sha}});
    sources.emplace_back(name, path);
  }
  json body = spec;
  body["type"] = manifests::kManifestType;
  body["spec_version"] = 1;
  body["created"] = manifests::FormatTimestamp(now);
  body["files"] = files;
  EF_ASSIGN_OR_RETURN(auto manifest, manifests::Manifest::FromJson(body, spec_path.string()));

  manifests::SignedEnvelope envelope;
  envelope.signed_body = manifest.ToJson();
  EF_ASSIGN_OR_RETURN(auto keys, LoadKeys(options.keys));
  for (const auto& key : keys) EF_RETURN_IF_ERROR(envelope.Sign(key));

  EF_ASSIGN_OR_RETURN(auto writer, BundleWriter::Create(options.output, options.compression,
                                                        now.time_since_epoch().count()));
  EF_RETURN_IF_ERROR(writer.AddBytes(manifests::kManifestFile, envelope.ToJson().dump(2) + "\n"));
  std::uint64_t payload = 0;
  for (const auto& [name, path] : sources) {
    EF_ASSIGN_OR_RETURN(auto sha, writer.AddFile(name, path));
    const auto* entry = manifest.FindFile(name);
    if (sha != entry->sha256) {
      return Fail(ErrorCode::kIntegrity, path.string() + ": changed while bundling (sha256 was " +
                                             entry->sha256 + ", now " + sha + ")");
    }
    payload += entry->size;
    out << "  + " << std::left << std::setw(36) << name << " " << std::right << std::setw(10)
        << HumanBytes(entry->size) << "  sha256 " << entry->sha256.substr(0, 16) << "…\n";
  }
  EF_RETURN_IF_ERROR(writer.Commit());
  out << "bundle create: " << manifest.name << " " << manifest.version.ToString() << ", "
      << manifest.files.size() << " files (" << HumanBytes(payload) << "), "
      << manifest.variants.size() << " variant(s), " << ToString(options.compression) << ", "
      << envelope.signatures.size() << " signature(s) -> " << options.output.string() << " ("
      << HumanBytes(std::filesystem::file_size(options.output)) << ")\n";
  return Ok();
}

Status BundleSign(const BundleSignOptions& options, std::ostream& out) {
  if (options.keys.empty()) return Fail(ErrorCode::kInvalidArgument, "--key: at least one key");
  EF_ASSIGN_OR_RETURN(auto contents, updater::ReadBundleManifest(options.bundle));
  EF_ASSIGN_OR_RETURN(auto keys, LoadKeys(options.keys));
  for (const auto& key : keys) {
    EF_RETURN_IF_ERROR(contents.envelope.Sign(key));
    out << "bundle sign: signed by " << key.KeyId() << "\n";
  }
  EF_ASSIGN_OR_RETURN(auto compression, DetectCompression(options.bundle));
  const auto output = options.output.value_or(options.bundle);
  auto mtime =
      std::chrono::floor<std::chrono::seconds>(contents.manifest.created.time_since_epoch());
  EF_ASSIGN_OR_RETURN(auto writer, BundleWriter::Create(output, compression, mtime.count()));
  EF_RETURN_IF_ERROR(
      writer.AddBytes(manifests::kManifestFile, contents.envelope.ToJson().dump(2) + "\n"));
  EF_ASSIGN_OR_RETURN(auto source, updater::FileByteSource::Open(options.bundle));
  CheckedCopy copy(contents.manifest, writer, options.bundle.string());
  EF_RETURN_IF_ERROR(updater::ReadSafeArchive(source, {}, copy, options.bundle.string()));
  EF_RETURN_IF_ERROR(copy.CheckNothingMissing());
  EF_RETURN_IF_ERROR(writer.Commit());
  out << "bundle sign: " << contents.manifest.name << " " << contents.manifest.version.ToString()
      << " now carries " << contents.envelope.signatures.size() << " signature(s) -> "
      << output.string() << "\n";
  return Ok();
}

Status BundleVerify(const BundleVerifyOptions& options, std::ostream& out) {
  EF_ASSIGN_OR_RETURN(auto trust, manifests::TrustRoot::Load(options.trust, manifests::Now()));
  const auto started = std::chrono::steady_clock::now();
  EF_ASSIGN_OR_RETURN(auto contents, updater::VerifyBundleFile(options.bundle, trust));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto& role = trust.body().roles.at(manifests::Role::kRelease);
  if (options.json) {
    json report = Summary(contents);
    report["ok"] = true;
    report["bundle"] = options.bundle.string();
    report["trust_version"] = trust.version();
    report["release_threshold"] = role.threshold;
    report["seconds"] = seconds;
    out << report.dump(2) << "\n";
    return Ok();
  }
  out << "bundle verify: OK " << options.bundle.string() << "\n"
      << "  model      " << contents.manifest.name << " " << contents.manifest.version.ToString()
      << "\n"
      << "  signatures release role of trust root v" << trust.version() << ", threshold "
      << role.threshold << " met\n"
      << "  files      " << contents.manifest.files.size() << " listed, all present, sizes and "
      << "sha256 match, nothing extra, every entry safe\n"
      << "  read       " << HumanBytes(contents.archive_bytes) << " archive, "
      << HumanBytes(contents.payload_bytes) << " payload in " << std::fixed << std::setprecision(2)
      << seconds << " s\n";
  return Ok();
}

Status BundleInspect(const BundleInspectOptions& options, std::ostream& out) {
  EF_ASSIGN_OR_RETURN(auto contents, updater::ReadBundleManifest(options.bundle));
  EF_ASSIGN_OR_RETURN(auto compression, DetectCompression(options.bundle));
  const auto& m = contents.manifest;
  if (options.json) {
    json report = contents.envelope.ToJson();
    report["bundle"] = {{"path", options.bundle.string()},
                        {"bytes", std::filesystem::file_size(options.bundle)},
                        {"compression", ToString(compression)}};
    out << report.dump(2) << "\n";
    return Ok();
  }
  out << "bundle      " << options.bundle.string() << " ("
      << HumanBytes(std::filesystem::file_size(options.bundle)) << ", tar+" << ToString(compression)
      << ")\n"
      << "model       " << m.name << " " << m.version.ToString() << ", created "
      << manifests::FormatTimestamp(m.created) << "\n";
  if (!m.description.empty()) out << "description " << m.description << "\n";
  out << "signatures  " << contents.envelope.signatures.size() << " (not checked here; use "
      << "bundle verify --trust)\n";
  for (const auto& sig : contents.envelope.signatures) out << "  keyid " << sig.keyid << "\n";
  out << "files       " << m.files.size() << "\n";
  for (const auto& f : m.files) {
    out << "  " << std::left << std::setw(36) << f.path << " " << std::right << std::setw(10)
        << HumanBytes(f.size) << "  " << f.sha256 << "\n";
  }
  out << "variants    " << m.variants.size() << "\n";
  for (const auto& v : m.variants) {
    out << "  " << v.id << ": " << v.format << " opset " << v.opset << ", " << v.file << ", "
        << v.operators.size() << " operator kinds, backends:";
    for (const auto& b : v.backends) out << " " << b.name << " " << b.version.text();
    out << "\n";
    for (const auto& t : v.inputs) {
      out << "    input  " << t.name << " " << t.dtype << " " << json(t.shape).dump() << "\n";
    }
    for (const auto& t : v.outputs) {
      out << "    output " << t.name << " " << t.dtype << " " << json(t.shape).dump() << "\n";
    }
  }
  if (m.preprocessing) {
    const auto& p = *m.preprocessing;
    out << "preprocess  " << p.color << " " << p.height << "x" << p.width << " " << p.layout
        << ", scale " << p.scale << ", mean " << json(p.mean).dump() << ", std "
        << json(p.std).dump() << "\n";
  }
  out << "golden      ";
  for (const auto& g : m.golden) {
    out << g.name << " (" << g.inputs.size() << " in, " << g.outputs.size() << " out) ";
  }
  out << (m.labels ? "labels " + *m.labels : "no labels") << "\n";
  out << "parity      atol " << m.parity.atol << ", rtol " << m.parity.rtol
      << ", top-1 agreement >= " << m.parity.min_top1_agreement;
  if (m.parity.min_accuracy) out << ", accuracy >= " << *m.parity.min_accuracy;
  out << ", latency <= " << m.parity.max_latency_factor << "x active\n";
  out << "watch       " << m.watch.window_s << " s / >= " << m.watch.min_requests
      << " requests, error rate <= " << m.watch.max_error_rate
      << ", p95 <= " << m.watch.max_p95_latency_factor << "x previous";
  if (m.watch.min_online_accuracy) out << ", online accuracy >= " << *m.watch.min_online_accuracy;
  out << "\n";
  return Ok();
}

}  // namespace edgefleet::deploy
