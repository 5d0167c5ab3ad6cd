// PNG and JPEG bytes to pixels, through libpng and libjpeg-turbo directly.
//
// The pixels are exactly what cv::imdecode(bytes, cv::IMREAD_UNCHANGED) of OpenCV 4.6 gives for
// the same well-formed image (tests/runtime/image_decode_test.cpp compares them byte for byte),
// so preprocessing downstream does not change; the agent just no longer loads
// libopencv_imgcodecs, whose Debian build drags in about 140 shared libraries (GDAL, GDCM,
// poppler, OpenEXR, ...) for formats we refuse anyway. OpenCV's conventions kept here:
//   - colour is BGR / BGRA; gray PNGs and 1-component JPEGs stay one channel;
//   - PNG gray+alpha, RGBA, and RGB or palette images with a tRNS chunk become BGRA (gray+alpha
//     as B = G = R = gray); palette images without tRNS become BGR; 1/2/4-bit gray becomes 8-bit;
//   - 16-bit PNGs stay 16-bit (native byte order); JPEG is always 8-bit;
//   - CMYK/YCCK JPEGs become BGR with OpenCV's inverted-CMYK formula;
//   - EXIF orientation is ignored (IMREAD_UNCHANGED ignores it too).
// Where imdecode accepted broken input and returned partly made-up pixels (a JPEG cut short, a
// JPEG whose entropy data is corrupt), this decoder refuses it instead.
//
// Thread safety: a free function without shared state (libpng and libjpeg keep all their state
// in per-call structures).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::runtime {

struct DecodedImage {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  int channels = 0;          // 1 gray, 3 BGR, 4 BGRA
  int bytes_per_sample = 0;  // 1, or 2 for 16-bit PNGs (samples in native byte order)
  // Rows top to bottom, each width * channels * bytes_per_sample bytes, without padding.
  std::vector<std::uint8_t> pixels;
};

// What one decode may cost, in bytes: the decoded pixels (width x height x channels x bytes per
// sample) plus, for a progressive or multi-scan JPEG, libjpeg's whole-image coefficient buffer
// (2 bytes per DCT coefficient, about width x height x components x 2 before chroma
// subsampling). The default fits the agent's 40 MiB memory budget and still takes a 1920x1080
// RGB frame (6.2 MB; 12.4 MB as a progressive 4:2:0 JPEG); the agent reads it from
// api.max_image_bytes (agent/SPEC.md).
inline constexpr std::size_t kDefaultMaxImageBytes = std::size_t{16} << 20;

struct ImageLimits {
  std::size_t max_bytes = kDefaultMaxImageBytes;
};

// Decodes a PNG or JPEG. What the image will cost is computed from its header and checked
// against `limits.max_bytes` before any pixel memory is allocated, so a small file claiming a
// huge image costs a few bytes of parsing; a PNG must also hold enough compressed data for its
// declared size (deflate expands at most 1032:1), and every PNG chunk must fit in the bytes
// given. Ancillary PNG chunks other than tRNS (text, EXIF, ICC profiles, suggested palettes,
// unknown chunks) are skipped unread: they never change the pixels.
// Fails with kInvalidArgument when the bytes are neither PNG nor JPEG, when the image is empty
// or over the budget (the message names the dimensions, the bytes needed and the budget), when
// a PNG chunk declares more bytes than follow it (the message names the chunk and the length),
// or when the data is corrupt or truncated (the message names the reason, e.g. libpng's or
// libjpeg's); with kLimit when the pixels cannot be allocated; with kInternal when a library
// lays out rows other than expected (a bug).
Result<DecodedImage> DecodeImage(std::string_view bytes, const ImageLimits& limits);

}  // namespace edgefleet::runtime
