// Names and caps of the bundle archive (*.efb: tar, optionally zstd- or gzip-compressed).
//
//   manifest.json            the signed manifest envelope; MUST be the first entry, so that a
//                            reader knows every declared size and hash before the data arrives
//   model/<file>             one or more variants of the model
//   golden/<set>/input_N.pb  ONNX TensorProto inputs (ONNX's own test-data layout)
//   golden/<set>/output_N.pb expected outputs
//   golden/labels.json       optional: {"<set>": [label, ...]} ground truth per golden set
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace edgefleet::manifests {

inline constexpr std::string_view kManifestFile = "manifest.json";
inline constexpr std::string_view kModelDir = "model/";
inline constexpr std::string_view kGoldenDir = "golden/";
inline constexpr std::string_view kLabelsFile = "golden/labels.json";
inline constexpr std::string_view kBundleExtension = ".efb";

// Default caps on what a bundle may hold; the reader takes its limits as parameters.
inline constexpr std::size_t kDefaultMaxEntries = 4096;
inline constexpr std::uint64_t kDefaultMaxFileBytes = 8ULL << 30;    // 8 GiB
inline constexpr std::uint64_t kDefaultMaxTotalBytes = 16ULL << 30;  // 16 GiB
inline constexpr std::size_t kMaxPathBytes = 255;

}  // namespace edgefleet::manifests
