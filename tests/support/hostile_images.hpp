// Hostile PNG and JPEG bytes for the image decoder's tests, unit and end to end: small files
// whose headers claim far more than they hold, built byte by byte (PNG CRCs by zlib's crc32) so
// a reader sees exactly what each one is, and small honest PNGs to compare with.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgefleet::testing {

// One PNG chunk: length, type, data, CRC over type and data.
std::string PngChunk(std::string_view type, std::string_view data);

// The PNG signature and an IHDR chunk (33 bytes): not interlaced.
std::string PngSignatureAndIhdr(std::uint32_t width, std::uint32_t height, int bit_depth,
                                int color_type);

// 41 bytes: a 1x1 8-bit gray PNG's signature and IHDR, then the header of a chunk of `type`
// (iTXt, zTXt, eXIf, sPLT, ...) declaring 0x7fffffff bytes of data, and nothing after it.
std::string PngWithHugeChunk(std::string_view type);

// 45 bytes: signature, IHDR, IEND; no image data at all.
std::string PngWithoutData(std::uint32_t width, std::uint32_t height, int bit_depth,
                           int color_type);

// A valid 8-bit gray PNG of width x height pixels, all `value`, compressed at zlib level 9
// (the most compressible image there is: about 1000:1).
std::string FlatGrayPng(std::uint32_t width, std::uint32_t height, unsigned char value = 0);

// A progressive JPEG (SOF2) of 1 or 3 components that declares width x height and holds almost
// nothing: SOI, a quantisation table, the frame, a DC Huffman table, the header of the first DC
// scan, four entropy bytes, EOI. About 110 bytes.
std::string ProgressiveJpegWithoutData(std::uint16_t width, std::uint16_t height, int components);

}  // namespace edgefleet::testing
