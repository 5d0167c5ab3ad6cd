#include "tests/support/hostile_images.hpp"

#include <zlib.h>

#include <vector>

namespace edgefleet::testing {
namespace {

void Put32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}
void Put16(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

std::string Ihdr(std::uint32_t width, std::uint32_t height, int bit_depth, int color_type) {
  std::string data;
  Put32(data, width);
  Put32(data, height);
  data.push_back(static_cast<char>(bit_depth));
  data.push_back(static_cast<char>(color_type));
  data.append(3, '\0');  // deflate, adaptive filtering, not interlaced
  return data;
}

// A marker segment: marker, length (counting itself), payload.
std::string Segment(unsigned char marker, const std::string& payload) {
  std::string out = {'\xff', static_cast<char>(marker)};
  Put16(out, static_cast<std::uint32_t>(payload.size() + 2));
  return out + payload;
}

}  // namespace

std::string PngChunk(std::string_view type, std::string_view data) {
  std::string out;
  Put32(out, static_cast<std::uint32_t>(data.size()));
  out.append(type);
  out.append(data);
  const std::string_view covered(out.data() + 4, out.size() - 4);
  Put32(out, static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(covered.data()),
                                              static_cast<uInt>(covered.size()))));
  return out;
}

std::string PngSignatureAndIhdr(std::uint32_t width, std::uint32_t height, int bit_depth,
                                int color_type) {
  return std::string("\x89PNG\r\n\x1a\n", 8) +
         PngChunk("IHDR", Ihdr(width, height, bit_depth, color_type));
}

std::string PngWithHugeChunk(std::string_view type) {
  std::string out = PngSignatureAndIhdr(1, 1, 8, 0);
  Put32(out, 0x7fffffffu);
  out.append(type);
  return out;
}

std::string PngWithoutData(std::uint32_t width, std::uint32_t height, int bit_depth,
                           int color_type) {
  return PngSignatureAndIhdr(width, height, bit_depth, color_type) + PngChunk("IEND", "");
}

std::string FlatGrayPng(std::uint32_t width, std::uint32_t height, unsigned char value) {
  // Each row: filter type 0 (none), then the samples.
  std::string raw;
  raw.reserve((std::size_t{width} + 1) * height);
  for (std::uint32_t y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(width, static_cast<char>(value));
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::vector<Bytef> packed(size);
  compress2(packed.data(), &size, reinterpret_cast<const Bytef*>(raw.data()),
            static_cast<uLong>(raw.size()), 9);
  return PngSignatureAndIhdr(width, height, 8, 0) +
         PngChunk("IDAT", std::string_view(reinterpret_cast<const char*>(packed.data()), size)) +
         PngChunk("IEND", "");
}

std::string ProgressiveJpegWithoutData(std::uint16_t width, std::uint16_t height, int components) {
  std::string out = "\xff\xd8";
  out += Segment(0xDB, std::string(1, '\0') + std::string(64, '\x01'));  // table 0, all ones
  std::string frame(1, '\x08');                                          // 8-bit samples
  Put16(frame, height);
  Put16(frame, width);
  frame.push_back(static_cast<char>(components));
  for (int c = 1; c <= components; ++c) {
    frame += {static_cast<char>(c), '\x11', '\0'};  // id, 1x1 sampling, table 0
  }
  out += Segment(0xC2, frame);
  std::string dht(1, '\0');  // DC table 0: one code of length 1, for category 0
  dht += '\x01';
  dht.append(15, '\0');
  dht += '\0';
  out += Segment(0xC4, dht);
  std::string scan(1, static_cast<char>(components));
  for (int c = 1; c <= components; ++c) scan += {static_cast<char>(c), '\0'};
  scan += {'\0', '\0', '\0'};  // DC only (Ss = Se = 0), first pass (Ah = Al = 0)
  out += Segment(0xDA, scan);
  out += std::string(4, '\0');
  out += "\xff\xd9";
  return out;
}

}  // namespace edgefleet::testing
