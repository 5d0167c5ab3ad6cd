// Verifying a bundle and unpacking it into a model's inactive slot in one streamed pass.
//
// The bytes come from any ByteSource: a finished file (offline install, a download read again)
// or a GrowingFileSource that follows a download while it is written. Staging starts only once
// manifest.json is verified (release role) and `on_verified` accepted it, and only when the signed
// total (every file plus manifest.json) plus `extra_bytes` and the reserve fit on disk: a refusal
// before that point leaves nothing on disk. The result holds the staging sink with every file
// written and hash-checked; the caller commits it (StagingSink::Commit) or drops it, which
// discards the staging directory.
//
// Thread safety: a call is self-contained and may run on any thread; it uses `slots` (a plain
// value) and calls `on_verified` on that thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "manifests/trust.hpp"
#include "updater/bundle_reader.hpp"
#include "updater/safe_archive.hpp"
#include "updater/slots.hpp"

namespace edgefleet::updater {

struct UnpackTarget {
  std::string model;
  Slot slot = Slot::kA;
  std::optional<Slot> active;  // never staged into
  std::uint64_t reserve_bytes = 0;
  // Space needed besides the unpacked files (e.g. the rest of a download still arriving).
  std::uint64_t extra_bytes = 0;
  // Called with the verified manifest before anything is written; an error refuses the bundle
  // (e.g. it names another model or version than the deployment).
  std::function<Status(const manifests::Manifest&)> on_verified;
};

struct Unpacked {
  BundleContents contents;
  std::unique_ptr<StagingSink> staging;  // every file written and verified; not yet committed
};

// Verifies the bundle from `source` (VerifyBundle's checks) into the target's staging. Returns
// the first error: VerifyBundle's, on_verified's, or BeginStaging's (kIo naming free, needed and
// reserve when the signed total does not fit).
Result<Unpacked> UnpackBundle(ByteSource& source, std::string_view source_name,
                              const manifests::TrustRoot& trust, const SlotStore& slots,
                              const UnpackTarget& target, const ArchiveLimits& limits = {});

// What unpacking writes for `manifest` (saturating: the sizes are the bundle's claims).
std::uint64_t UnpackedBytes(const manifests::Manifest& manifest, std::uint64_t manifest_bytes);

}  // namespace edgefleet::updater
