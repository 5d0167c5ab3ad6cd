#include "updater/unpack.hpp"

#include <limits>
#include <utility>

namespace edgefleet::updater {
namespace {

std::uint64_t SaturatingAdd(std::uint64_t a, std::uint64_t b) {
  return b > std::numeric_limits<std::uint64_t>::max() - a
             ? std::numeric_limits<std::uint64_t>::max()
             : a + b;
}

// Opens the staging directory only when the verified manifest arrives, then forwards every file.
class DeferredStagingSink final : public FileSink {
 public:
  DeferredStagingSink(const SlotStore& slots, const UnpackTarget& target)
      : slots_(slots), target_(target) {}

  Status OnManifest(const manifests::Manifest& manifest, std::uint64_t manifest_bytes) override {
    if (target_.on_verified) EF_RETURN_IF_ERROR(target_.on_verified(manifest));
    const std::uint64_t needed =
        SaturatingAdd(UnpackedBytes(manifest, manifest_bytes), target_.extra_bytes);
    EF_ASSIGN_OR_RETURN(staging_, slots_.BeginStaging(target_.model, target_.slot, target_.active,
                                                      needed, target_.reserve_bytes));
    return Ok();
  }
  Status Begin(std::string_view path, std::uint64_t size) override {
    if (!staging_) return Fail(ErrorCode::kInternal, "a file before the verified manifest");
    return staging_->Begin(path, size);
  }
  Status Write(std::span<const std::byte> chunk) override { return staging_->Write(chunk); }
  Status End(bool sha256_ok) override { return staging_->End(sha256_ok); }

  std::unique_ptr<StagingSink> Take() && { return std::move(staging_); }

 private:
  const SlotStore& slots_;
  const UnpackTarget& target_;
  std::unique_ptr<StagingSink> staging_;
};

}  // namespace

std::uint64_t UnpackedBytes(const manifests::Manifest& manifest, std::uint64_t manifest_bytes) {
  std::uint64_t total = manifest_bytes;
  for (const auto& file : manifest.files) total = SaturatingAdd(total, file.size);
  return total;
}

Result<Unpacked> UnpackBundle(ByteSource& source, std::string_view source_name,
                              const manifests::TrustRoot& trust, const SlotStore& slots,
                              const UnpackTarget& target, const ArchiveLimits& limits) {
  DeferredStagingSink sink(slots, target);
  EF_ASSIGN_OR_RETURN(BundleContents contents,
                      VerifyBundle(source, source_name, trust, limits, &sink));
  return Unpacked{std::move(contents), std::move(sink).Take()};
}

}  // namespace edgefleet::updater
