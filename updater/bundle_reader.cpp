#include "updater/bundle_reader.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "manifests/bundle_layout.hpp"
#include "manifests/crypto.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::updater {
namespace {

using manifests::FileEntry;
using manifests::kManifestFile;
using manifests::kMaxManifestBytes;

using manifests::QuoteName;

// Counts the bytes on their way from the real source to the archive reader.
class CountingSource final : public ByteSource {
 public:
  explicit CountingSource(ByteSource& inner) : inner_(inner) {}
  Result<std::size_t> Read(std::span<std::byte> buffer) override {
    Result<std::size_t> n = inner_.Read(buffer);
    if (n) count_ += *n;
    return n;
  }
  std::uint64_t count() const { return count_; }

 private:
  ByteSource& inner_;
  std::uint64_t count_ = 0;
};

// Checks the bundle entry by entry as the safe reader streams it. The manifest comes first, so
// every later entry is judged against signed sizes and hashes before (size) or as (hash) its
// bytes arrive.
class BundleVisitor final : public EntryVisitor {
 public:
  // Without `trust` the manifest is not verified (ReadBundleManifest); with `whole` false only
  // the manifest is read (ReadBundleManifest, ReadVerifiedManifest).
  BundleVisitor(std::string_view source_name, const manifests::TrustRoot* trust, bool whole,
                const ArchiveLimits& limits, FileSink* sink)
      : name_(source_name), trust_(trust), whole_(whole), limits_(limits), sink_(sink) {}

  // A directory is only ever a parent of listed files: `edgefleet bundle create` writes none,
  // `tar -C dir .` writes those. Anything else is content the manifest does not describe, and one
  // before manifest.json would let entries pass before the rules are known.
  Status Directory(std::string_view path) override {
    const std::string shown = std::string(path) + "/";
    if (!manifest_) return NotFirst(shown);
    if (!parents_.contains(path)) {
      return Fail(ErrorCode::kIntegrity, name_ +
                                             ": directory not in manifest: " + QuoteName(shown) +
                                             " (it is the parent of no listed file)");
    }
    return Ok();
  }

  Status BeginFile(std::string_view path, std::uint64_t size) override {
    payload_bytes_ += size;
    if (!manifest_) return BeginManifest(path, size);
    const auto it = index_.find(path);
    if (it == index_.end()) {
      return Fail(ErrorCode::kIntegrity,
                  name_ + ": extra file not in manifest: " + QuoteName(path));
    }
    const FileEntry& entry = manifest_->files[it->second];
    // Refused here, before the data: an entry larger than signed is the endless-data attack.
    if (size != entry.size) {
      return Fail(ErrorCode::kIntegrity,
                  name_ + ": entry " + QuoteName(path) + " is " + std::to_string(size) +
                      " bytes, the manifest declares " + std::to_string(entry.size));
    }
    current_ = it->second;
    seen_[it->second] = true;
    if (sink_ != nullptr) {
      EF_RETURN_IF_ERROR(sink_->Begin(path, size));
      sink_open_ = true;
    }
    return Ok();
  }

  Status Data(std::span<const std::byte> chunk) override {
    if (!manifest_) {
      manifest_text_.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
      return Ok();
    }
    hash_.Update(chunk);
    if (sink_ != nullptr) return sink_->Write(chunk);
    return Ok();
  }

  Status EndFile() override {
    if (!manifest_) return EndManifest();
    const FileEntry& entry = manifest_->files[*current_];
    current_.reset();
    const std::string found = hash_.FinishHex();
    const bool ok = found == entry.sha256;
    if (sink_ != nullptr) {
      sink_open_ = false;
      Status sink_status = sink_->End(ok);
      if (ok && !sink_status) return sink_status;
    }
    if (!ok) {
      return Fail(ErrorCode::kIntegrity, name_ + ": " + QuoteName(entry.path) +
                                             ": sha256 expected " + entry.sha256 + ", found " +
                                             found);
    }
    return Ok();
  }

  // ReadBundleManifest and ReadVerifiedManifest need nothing after manifest.json.
  bool WantsMore() const override { return whole_ || !manifest_; }

  // After the whole archive: the manifest was there and nothing it lists is missing.
  Status Finish() const {
    if (!manifest_) {
      return Fail(ErrorCode::kIntegrity,
                  name_ + ": no " + std::string(kManifestFile) + " (the archive holds no files)");
    }
    if (!whole_) return Ok();
    std::size_t missing = 0;
    const FileEntry* first = nullptr;
    for (std::size_t i = 0; i < seen_.size(); ++i) {
      if (seen_[i]) continue;
      if (first == nullptr) first = &manifest_->files[i];
      ++missing;
    }
    if (first == nullptr) return Ok();
    std::string message = name_ + ": missing file listed in manifest: " + QuoteName(first->path);
    if (missing > 1) message += " (and " + std::to_string(missing - 1) + " more)";
    return Fail(ErrorCode::kIntegrity, std::move(message));
  }

  // Tells the sink to drop a file it was given no End for, when the read failed midway.
  void AbortOpenFile() {
    if (sink_ != nullptr && sink_open_) {
      sink_open_ = false;
      (void)sink_->End(false);  // the read's own error is the one worth reporting
    }
  }

  BundleContents Take(std::uint64_t archive_bytes) && {
    BundleContents contents{std::move(*envelope_), std::move(*manifest_), archive_bytes,
                            payload_bytes_};
    return contents;
  }

 private:
  Status NotFirst(std::string_view found) const {
    return Fail(ErrorCode::kIntegrity, name_ + ": " + std::string(kManifestFile) +
                                           " must be the first entry, found " + QuoteName(found));
  }

  Status BeginManifest(std::string_view path, std::uint64_t size) {
    if (path != kManifestFile) return NotFirst(path);
    // Checked from the header, so an oversized manifest is never buffered.
    if (size > kMaxManifestBytes) {
      return Fail(ErrorCode::kLimit, name_ + ": " + std::string(kManifestFile) + " is " +
                                         std::to_string(size) + " bytes, the limit is " +
                                         std::to_string(kMaxManifestBytes));
    }
    manifest_text_.reserve(static_cast<std::size_t>(size));
    manifest_size_ = size;
    return Ok();
  }

  Status EndManifest() {
    const std::string manifest_name(kManifestFile);
    Result<manifests::SignedEnvelope> envelope =
        manifests::SignedEnvelope::FromText(manifest_text_, manifest_name, kMaxManifestBytes);
    if (!envelope) return envelope.error().Wrap(name_);
    if (trust_ != nullptr) {
      if (envelope->signatures.empty()) {
        return Fail(ErrorCode::kSignature, name_ + ": " + manifest_name + " is not signed");
      }
      // Before the body is interpreted: nothing unsigned gets further than the envelope parse.
      Status verified = trust_->Verify(*envelope, manifests::Role::kRelease);
      if (!verified) return verified.error().Wrap(name_ + ": " + manifest_name);
    }
    Result<manifests::Manifest> manifest =
        manifests::Manifest::FromJson(envelope->signed_body, manifest_name);
    if (!manifest) return manifest.error().Wrap(name_);
    // A verified manifest declares every entry and size, so a bundle that cannot fit the limits
    // is refused here, before a single file reaches the sink (not after thousands were written).
    if (trust_ != nullptr) EF_RETURN_IF_ERROR(CheckLimits(*manifest));

    for (std::size_t i = 0; i < manifest->files.size(); ++i) {
      const std::string& path = manifest->files[i].path;
      index_.emplace(path, i);
      for (std::size_t slash = path.find('/'); slash != std::string::npos;
           slash = path.find('/', slash + 1)) {
        parents_.insert(path.substr(0, slash));
      }
    }
    seen_.assign(manifest->files.size(), false);
    envelope_ = std::move(*envelope);
    manifest_ = std::move(*manifest);
    // The slot gets the manifest too (it describes what the slot holds), only once verified.
    if (sink_ != nullptr && trust_ != nullptr) {
      EF_RETURN_IF_ERROR(sink_->OnManifest(*manifest_, manifest_size_));
      EF_RETURN_IF_ERROR(sink_->Begin(kManifestFile, manifest_size_));
      sink_open_ = true;
      EF_RETURN_IF_ERROR(sink_->Write(std::as_bytes(std::span(manifest_text_))));
      sink_open_ = false;
      EF_RETURN_IF_ERROR(sink_->End(true));
    }
    std::string().swap(manifest_text_);
    return Ok();
  }

  Status CheckLimits(const manifests::Manifest& manifest) const {
    const std::string manifest_name(kManifestFile);
    const std::size_t entries = manifest.files.size() + 1;  // manifest.json is an entry too
    if (entries > limits_.max_entries) {
      return Fail(ErrorCode::kLimit,
                  name_ + ": " + manifest_name + " lists " + std::to_string(manifest.files.size()) +
                      " files; with " + manifest_name + " that is " + std::to_string(entries) +
                      " entries, the limit is " + std::to_string(limits_.max_entries));
    }
    std::uint64_t total = manifest_size_;
    for (std::size_t i = 0; i < manifest.files.size(); ++i) {
      const FileEntry& file = manifest.files[i];
      const std::string field = name_ + ": " + manifest_name + ": signed.files[" +
                                std::to_string(i) + "] " + QuoteName(file.path);
      if (file.size > limits_.max_file_bytes) {
        return Fail(ErrorCode::kLimit, field + " is " + std::to_string(file.size) +
                                           " bytes, the limit is " +
                                           std::to_string(limits_.max_file_bytes));
      }
      // Saturating, so that no list of sizes wraps around to a small total.
      total = file.size > UINT64_MAX - total ? UINT64_MAX : total + file.size;
    }
    if (total > limits_.max_total_bytes) {
      return Fail(ErrorCode::kLimit, name_ + ": " + manifest_name + ": the listed files and " +
                                         manifest_name + " total " + std::to_string(total) +
                                         " bytes, the limit is " +
                                         std::to_string(limits_.max_total_bytes));
    }
    return Ok();
  }

  std::string name_;
  const manifests::TrustRoot* trust_;
  bool whole_;
  const ArchiveLimits& limits_;
  FileSink* sink_;

  std::string manifest_text_;  // only manifest.json is buffered, and only up to its cap
  std::uint64_t manifest_size_ = 0;
  std::optional<manifests::SignedEnvelope> envelope_;
  std::optional<manifests::Manifest> manifest_;
  // Views into manifest_->files, which is not modified after it is set.
  std::unordered_map<std::string_view, std::size_t> index_;
  std::set<std::string, std::less<>> parents_;  // every parent directory of a listed file
  std::vector<bool> seen_;

  std::optional<std::size_t> current_;  // index of the file being read
  manifests::Sha256 hash_;
  bool sink_open_ = false;
  std::uint64_t payload_bytes_ = 0;
};

Result<BundleContents> Run(ByteSource& source, std::string_view source_name,
                           const manifests::TrustRoot* trust, bool whole,
                           const ArchiveLimits& limits, FileSink* sink) {
  CountingSource counting(source);
  BundleVisitor visitor(source_name, trust, whole, limits, sink);
  Status status = ReadSafeArchive(counting, limits, visitor, source_name);
  if (status) status = visitor.Finish();
  if (!status) {
    visitor.AbortOpenFile();
    return status.error();
  }
  return std::move(visitor).Take(counting.count());
}

}  // namespace

Result<BundleContents> VerifyBundle(ByteSource& source, std::string_view source_name,
                                    const manifests::TrustRoot& trust, const ArchiveLimits& limits,
                                    FileSink* sink) {
  return Run(source, source_name, &trust, true, limits, sink);
}

Result<BundleContents> VerifyBundleFile(const std::filesystem::path& path,
                                        const manifests::TrustRoot& trust,
                                        const ArchiveLimits& limits, FileSink* sink) {
  EF_ASSIGN_OR_RETURN(FileByteSource source, FileByteSource::Open(path));
  return Run(source, path.filename().string(), &trust, true, limits, sink);
}

Result<BundleContents> ReadBundleManifest(const std::filesystem::path& path,
                                          const ArchiveLimits& limits) {
  EF_ASSIGN_OR_RETURN(FileByteSource source, FileByteSource::Open(path));
  return Run(source, path.filename().string(), nullptr, false, limits, nullptr);
}

Result<BundleContents> ReadVerifiedManifest(const std::filesystem::path& path,
                                            const manifests::TrustRoot& trust,
                                            const ArchiveLimits& limits) {
  EF_ASSIGN_OR_RETURN(FileByteSource source, FileByteSource::Open(path));
  return Run(source, path.filename().string(), &trust, false, limits, nullptr);
}

}  // namespace edgefleet::updater
