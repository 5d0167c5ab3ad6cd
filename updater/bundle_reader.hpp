// Reading and verifying model bundles (*.efb) in one streamed pass.
//
// VerifyBundle checks, in order, and stops at the first failure with a message naming the bundle,
// the entry and expected vs found:
//   - the archive is safe (safe_archive.hpp) and manifest.json is its first entry (<= 1 MiB),
//     before any file or directory;
//   - manifest.json is a signed envelope that the trust root's release role accepts (threshold,
//     distinct known keys), and a valid Manifest;
//   - what it lists fits the ArchiveLimits (entries, each file, the total), checked at once, so
//     a bundle that cannot fit is refused before the sink receives anything;
//   - every later file is listed in signed.files, its tar size equals the declared size (an
//     entry larger than declared is refused before its bytes are read), and its SHA-256 matches;
//     every later directory is a parent directory of a listed file;
//   - nothing listed is missing.
// A FileSink, when given, receives each verified-so-far entry's bytes (unpacking into a slot);
// the caller must discard what it wrote when the result is an error, since a file's hash is known
// only after its last byte.
//
// Thread safety: calls are self-contained.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "manifests/envelope.hpp"
#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "manifests/trust.hpp"
#include "updater/safe_archive.hpp"

namespace edgefleet::updater {

// Receives file bytes during VerifyBundle (e.g. writes them under a slot directory).
class FileSink {
 public:
  virtual ~FileSink() = default;
  // Called once, after manifest.json was verified and parsed and before any Begin: a sink may
  // refuse the bundle here (e.g. too little free space for the signed total) or prepare for it.
  // `manifest_bytes` is manifest.json's size.
  virtual Status OnManifest(const manifests::Manifest& manifest, std::uint64_t manifest_bytes) {
    (void)manifest;
    (void)manifest_bytes;
    return Ok();
  }
  virtual Status Begin(std::string_view path, std::uint64_t size) = 0;
  virtual Status Write(std::span<const std::byte> chunk) = 0;
  // `sha256_ok` is false when the hash check of this file failed (the sink should drop it).
  virtual Status End(bool sha256_ok) = 0;
};

struct BundleContents {
  manifests::SignedEnvelope envelope;
  manifests::Manifest manifest;
  std::uint64_t archive_bytes = 0;  // bytes read from the source
  std::uint64_t payload_bytes = 0;  // sum of file sizes, manifest.json included
};

// Full verification (see above). `trust` decides whose signatures count.
Result<BundleContents> VerifyBundle(ByteSource& source, std::string_view source_name,
                                    const manifests::TrustRoot& trust, const ArchiveLimits& limits,
                                    FileSink* sink = nullptr);
Result<BundleContents> VerifyBundleFile(const std::filesystem::path& path,
                                        const manifests::TrustRoot& trust,
                                        const ArchiveLimits& limits = {}, FileSink* sink = nullptr);

// Reads only manifest.json (the first entry) and parses it, checking no signature: for
// `bundle inspect` and `bundle sign`. Fails like VerifyBundle for the parts it checks.
Result<BundleContents> ReadBundleManifest(const std::filesystem::path& path,
                                          const ArchiveLimits& limits = {});

// Reads only manifest.json and checks its signatures against `trust` (release role) before the
// body is interpreted, like VerifyBundle, without reading the files: what the agent learns from
// a bundle (model name, version, sizes) before it writes anything on the bundle's behalf.
Result<BundleContents> ReadVerifiedManifest(const std::filesystem::path& path,
                                            const manifests::TrustRoot& trust,
                                            const ArchiveLimits& limits = {});

}  // namespace edgefleet::updater
