// runtime/image_decode against the decoder it replaces, cv::imdecode(IMREAD_UNCHANGED): the same
// Mat (type, size, every byte) for every held-out PNG and for generated images of every kind
// the API accepts (cv::imencode where OpenCV can write the kind, libpng and libjpeg directly
// where it cannot: gray+alpha, palettes, low bit depths, tRNS, interlacing, CMYK, YCCK,
// arithmetic coding, chroma subsamplings). Hostile bytes (cut at every length, every byte
// flipped, lying headers) are refused with a reason and never crash or read out of bounds (the
// sanitizer build runs this too).
#include "runtime/image_decode.hpp"

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cstdio>  // before jpeglib.h

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/hostile_images.hpp"

namespace edgefleet::runtime {
namespace {

const std::filesystem::path kDigits = std::filesystem::path(EDGEFLEET_TEST_DATA_DIR) / "digits";
const ImageLimits kLimits{};  // the default budget, 16 MiB

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

cv::Mat Imdecode(std::string_view bytes) {
  // imdecode only reads the buffer; cv::Mat has no const constructor.
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
  return cv::imdecode(raw, cv::IMREAD_UNCHANGED);
}

cv::Mat ToMat(const DecodedImage& image) {
  const int depth = image.bytes_per_sample == 2 ? CV_16U : CV_8U;
  return cv::Mat(static_cast<int>(image.height), static_cast<int>(image.width),
                 CV_MAKETYPE(depth, image.channels), const_cast<std::uint8_t*>(image.pixels.data()))
      .clone();
}

std::string TypeName(int type) { return cv::typeToString(type); }

// Both decoders accept `bytes` and give identical Mats.
void ExpectSameAsImdecode(std::string_view bytes, const std::string& what,
                          std::optional<int> want_type = std::nullopt) {
  SCOPED_TRACE(what);
  const cv::Mat want = Imdecode(bytes);
  ASSERT_FALSE(want.empty()) << "imdecode refused the test image";
  if (want_type) {
    EXPECT_EQ(TypeName(want.type()), TypeName(*want_type)) << "imdecode's type changed";
  }
  auto got = DecodeImage(bytes, kLimits);
  ASSERT_TRUE(got) << got.error().message;
  const cv::Mat mat = ToMat(*got);
  ASSERT_EQ(TypeName(mat.type()), TypeName(want.type()));
  ASSERT_EQ(mat.size(), want.size());
  ASSERT_TRUE(want.isContinuous());
  ASSERT_EQ(got->pixels.size(), want.total() * want.elemSize());
  EXPECT_EQ(std::memcmp(got->pixels.data(), want.data, got->pixels.size()), 0)
      << "pixels differ; first at byte "
      << std::mismatch(got->pixels.begin(), got->pixels.end(), want.data).first -
             got->pixels.begin();
}

// Deterministic noise with some structure (gradients) so that compressors and filters work.
cv::Mat Pattern(int rows, int cols, int type, unsigned seed) {
  cv::Mat m(rows, cols, type);
  std::mt19937 rng(seed);
  const int depth = CV_MAT_DEPTH(type);
  const int channels = CV_MAT_CN(type);
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols * channels; ++x) {
      const unsigned noise = rng() % 64;
      if (depth == CV_16U) {
        m.ptr<std::uint16_t>(y)[x] = static_cast<std::uint16_t>((x * 977 + y * 1301) + noise * 37);
      } else {
        m.ptr<std::uint8_t>(y)[x] = static_cast<std::uint8_t>((x * 5 + y * 3) + noise);
      }
    }
  }
  return m;
}

std::string Imencode(const cv::Mat& m, const std::string& ext,
                     const std::vector<int>& params = {}) {
  std::vector<unsigned char> out;
  EXPECT_TRUE(cv::imencode(ext, m, out, params)) << ext;
  return {out.begin(), out.end()};
}

// ---- A libpng writer for the PNG kinds cv::imencode cannot make ----

struct PngSpec {
  PngSpec(png_uint_32 width_, png_uint_32 height_, int bit_depth_, int color_type_,
          bool interlaced_ = false, std::vector<png_color> palette_ = {},
          std::vector<png_byte> trans_alpha_ = {},
          std::optional<png_color_16> trans_colour_ = std::nullopt)
      : width(width_),
        height(height_),
        bit_depth(bit_depth_),
        color_type(color_type_),
        interlaced(interlaced_),
        palette(std::move(palette_)),
        trans_alpha(std::move(trans_alpha_)),
        trans_colour(trans_colour_) {}

  png_uint_32 width;
  png_uint_32 height;
  int bit_depth;
  int color_type;
  bool interlaced;
  std::vector<png_color> palette;
  std::vector<png_byte> trans_alpha;         // tRNS for palette images
  std::optional<png_color_16> trans_colour;  // tRNS for gray and RGB images
};

void AppendToString(png_structp png, png_bytep data, std::size_t length) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), length);
}
void NoFlush(png_structp) {}

// No C++ objects with destructors in this frame: libpng longjmps here on error.
bool WritePngStep(png_structp png, png_infop info, const PngSpec* spec, png_bytepp rows,
                  std::string* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, AppendToString, NoFlush);
  png_set_IHDR(png, info, spec->width, spec->height, spec->bit_depth, spec->color_type,
               spec->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!spec->palette.empty()) {
    png_set_PLTE(png, info, spec->palette.data(), static_cast<int>(spec->palette.size()));
  }
  if (!spec->trans_alpha.empty()) {
    png_set_tRNS(png, info, spec->trans_alpha.data(), static_cast<int>(spec->trans_alpha.size()),
                 nullptr);
  } else if (spec->trans_colour) {
    png_set_tRNS(png, info, nullptr, 0, &*spec->trans_colour);
  }
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

// Pixels come as PNG stores them: samples packed into bytes, 16-bit big-endian. The row bytes
// are filled with deterministic noise; palette indices are taken modulo the palette size.
std::string WritePng(const PngSpec& spec, unsigned seed) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  const int samples = spec.color_type == PNG_COLOR_TYPE_GRAY_ALPHA  ? 2
                      : spec.color_type == PNG_COLOR_TYPE_RGB       ? 3
                      : spec.color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                                                                    : 1;
  const std::size_t row_bytes =
      (spec.width * static_cast<std::size_t>(samples * spec.bit_depth) + 7) / 8;
  std::vector<png_byte> pixels(row_bytes * spec.height);
  std::mt19937 rng(seed);
  for (auto& b : pixels) b = static_cast<png_byte>(rng());
  if (spec.color_type == PNG_COLOR_TYPE_PALETTE && spec.bit_depth == 8) {
    for (auto& b : pixels) b = static_cast<png_byte>(b % spec.palette.size());
  }
  std::vector<png_bytep> rows(spec.height);
  for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = pixels.data() + y * row_bytes;
  std::string out;
  const bool ok = WritePngStep(png, info, &spec, rows.data(), &out);
  png_destroy_write_struct(&png, &info);
  EXPECT_TRUE(ok) << "libpng could not write the test image";
  return out;
}

std::vector<png_color> Palette(std::size_t size) {
  std::vector<png_color> palette(size);
  for (std::size_t i = 0; i < size; ++i) {
    palette[i] = {static_cast<png_byte>(i * 37), static_cast<png_byte>(255 - i * 11),
                  static_cast<png_byte>(i * i)};
  }
  return palette;
}

// ---- A libjpeg writer for the JPEG kinds cv::imencode cannot make ----

struct JpegSpec {
  JpegSpec(JDIMENSION width_, JDIMENSION height_, int components_, J_COLOR_SPACE in_space_,
           J_COLOR_SPACE jpeg_space_, int luma_h_, int luma_v_, bool arithmetic_ = false,
           bool progressive_ = false)
      : width(width_),
        height(height_),
        components(components_),
        in_space(in_space_),
        jpeg_space(jpeg_space_),
        luma_h(luma_h_),
        luma_v(luma_v_),
        arithmetic(arithmetic_),
        progressive(progressive_) {}

  JDIMENSION width;
  JDIMENSION height;
  int components;
  J_COLOR_SPACE in_space;
  J_COLOR_SPACE jpeg_space;
  int luma_h;  // sampling factors of the first component; the others stay 1x1
  int luma_v;
  bool arithmetic;
  bool progressive;
  std::vector<jpeg_scan_info> scans;  // a custom progressive scan script when not empty
};

struct JpegWriter {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr error;
  std::jmp_buf jump;
};

[[noreturn]] void JpegWriterError(j_common_ptr cinfo) {
  std::longjmp(static_cast<JpegWriter*>(cinfo->client_data)->jump, 1);
}

// No C++ objects with destructors in this frame: the error handler longjmps here.
bool WriteJpegStep(JpegWriter* w, const JpegSpec* spec, const unsigned char* pixels,
                   unsigned char** out, unsigned long* out_size) {
  if (setjmp(w->jump)) return false;
  jpeg_compress_struct& c = w->cinfo;
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, out, out_size);
  c.image_width = spec->width;
  c.image_height = spec->height;
  c.input_components = spec->components;
  c.in_color_space = spec->in_space;
  jpeg_set_defaults(&c);
  jpeg_set_colorspace(&c, spec->jpeg_space);
  c.comp_info[0].h_samp_factor = spec->luma_h;
  c.comp_info[0].v_samp_factor = spec->luma_v;
  jpeg_set_quality(&c, 90, TRUE);
  c.arith_code = spec->arithmetic ? TRUE : FALSE;
  if (spec->progressive) jpeg_simple_progression(&c);
  if (!spec->scans.empty()) {
    c.scan_info = spec->scans.data();
    c.num_scans = static_cast<int>(spec->scans.size());
  }
  jpeg_start_compress(&c, TRUE);
  const std::size_t stride = std::size_t{spec->width} * static_cast<std::size_t>(spec->components);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<unsigned char*>(pixels) + c.next_scanline * stride;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  return true;
}

std::string WriteJpeg(const JpegSpec& spec, unsigned seed) {
  std::vector<unsigned char> pixels(std::size_t{spec.width} * spec.height *
                                    static_cast<std::size_t>(spec.components));
  std::mt19937 rng(seed);
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    pixels[i] = static_cast<unsigned char>(i % 251 + rng() % 32);
  }
  JpegWriter w{};
  w.cinfo.err = jpeg_std_error(&w.error);
  w.error.error_exit = JpegWriterError;
  w.cinfo.client_data = &w;
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  const bool ok = WriteJpegStep(&w, &spec, pixels.data(), &out, &out_size);
  jpeg_destroy_compress(&w.cinfo);
  std::string bytes = ok ? std::string(reinterpret_cast<char*>(out), out_size) : std::string();
  std::free(out);
  EXPECT_TRUE(ok) << "libjpeg could not write the test image";
  return bytes;
}

// An APP1 Exif segment whose IFD0 says orientation 6 (rotate 90 degrees clockwise), inserted
// after SOI. imdecode with IMREAD_UNCHANGED ignores it, so must we.
std::string WithExifOrientation6(const std::string& jpeg) {
  const std::string tiff(
      "MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
      "\x00\x06\x00\x00\x00\x00\x00\x00",
      26);
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  const std::size_t length = payload.size() + 2;
  std::string app1 = "\xff\xe1";
  app1.push_back(static_cast<char>(length >> 8));
  app1.push_back(static_cast<char>(length & 0xFF));
  return jpeg.substr(0, 2) + app1 + payload + jpeg.substr(2);
}

// ---- Equality ----

TEST(ImageDecode, HeldOutPngsSameAsImdecode) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kDigits / "heldout_png")) {
    ExpectSameAsImdecode(ReadBytes(entry.path()), entry.path().filename().string());
    ++files;
  }
  EXPECT_EQ(files, 360);
}

TEST(ImageDecode, ImencodePngsSameAsImdecode) {
  const struct {
    int type;
    const char* what;
  } kinds[] = {{CV_8UC1, "gray 8"},   {CV_8UC3, "BGR 8"},   {CV_8UC4, "BGRA 8"},
               {CV_16UC1, "gray 16"}, {CV_16UC3, "BGR 16"}, {CV_16UC4, "BGRA 16"}};
  unsigned seed = 1;
  for (const auto& kind : kinds) {
    for (const cv::Size size : {cv::Size(1, 1), cv::Size(37, 23), cv::Size(64, 48)}) {
      const cv::Mat m = Pattern(size.height, size.width, kind.type, seed++);
      ExpectSameAsImdecode(Imencode(m, ".png"),
                           std::string(kind.what) + " " + std::to_string(size.width) + "x" +
                               std::to_string(size.height),
                           kind.type);
      ExpectSameAsImdecode(Imencode(m, ".png", {cv::IMWRITE_PNG_COMPRESSION, 9}),
                           std::string(kind.what) + " compression 9");
    }
  }
  cv::Mat bilevel = Pattern(23, 37, CV_8UC1, 99) > 128;  // 0 or 255: a 1-bit gray PNG
  ExpectSameAsImdecode(Imencode(bilevel, ".png", {cv::IMWRITE_PNG_BILEVEL, 1}), "1-bit gray",
                       CV_8UC1);
}

TEST(ImageDecode, LibpngKindsSameAsImdecode) {
  struct Case {
    const char* what;
    PngSpec spec;
    int want_type;
  };
  png_color_16 gray_key{};
  gray_key.gray = 7;
  png_color_16 rgb_key{};
  rgb_key.red = 1;
  rgb_key.green = 2;
  rgb_key.blue = 3;
  std::vector<Case> cases = {
      {"gray+alpha 8 (BGRA, B=G=R)", {37, 23, 8, PNG_COLOR_TYPE_GRAY_ALPHA}, CV_8UC4},
      {"gray+alpha 16", {37, 23, 16, PNG_COLOR_TYPE_GRAY_ALPHA}, CV_16UC4},
      {"palette 8", {37, 23, 8, PNG_COLOR_TYPE_PALETTE, false, Palette(200)}, CV_8UC3},
      {"palette 8 with tRNS (BGRA)",
       {37, 23, 8, PNG_COLOR_TYPE_PALETTE, false, Palette(200), {0, 10, 128, 255}},
       CV_8UC4},
      {"palette 4", {37, 23, 4, PNG_COLOR_TYPE_PALETTE, false, Palette(16)}, CV_8UC3},
      {"palette 2", {37, 23, 2, PNG_COLOR_TYPE_PALETTE, false, Palette(4)}, CV_8UC3},
      {"palette 1 with tRNS", {37, 23, 1, PNG_COLOR_TYPE_PALETTE, false, Palette(2), {0}}, CV_8UC4},
      {"gray 1", {37, 23, 1, PNG_COLOR_TYPE_GRAY}, CV_8UC1},
      {"gray 2", {37, 23, 2, PNG_COLOR_TYPE_GRAY}, CV_8UC1},
      {"gray 4", {37, 23, 4, PNG_COLOR_TYPE_GRAY}, CV_8UC1},
      {"gray 8 with tRNS (stays gray)",
       {37, 23, 8, PNG_COLOR_TYPE_GRAY, false, {}, {}, gray_key},
       CV_8UC1},
      {"RGB 8 with tRNS (BGRA)", {37, 23, 8, PNG_COLOR_TYPE_RGB, false, {}, {}, rgb_key}, CV_8UC4},
      {"RGB 16 with tRNS", {37, 23, 16, PNG_COLOR_TYPE_RGB, false, {}, {}, rgb_key}, CV_16UC4},
      {"RGBA 8", {37, 23, 8, PNG_COLOR_TYPE_RGB_ALPHA}, CV_8UC4},
      {"interlaced RGB 8", {37, 23, 8, PNG_COLOR_TYPE_RGB, true}, CV_8UC3},
      {"interlaced RGBA 16", {37, 23, 16, PNG_COLOR_TYPE_RGB_ALPHA, true}, CV_16UC4},
      {"interlaced gray 2", {37, 23, 2, PNG_COLOR_TYPE_GRAY, true}, CV_8UC1},
      {"interlaced palette 4 with tRNS",
       {37, 23, 4, PNG_COLOR_TYPE_PALETTE, true, Palette(16), {1, 2, 3}},
       CV_8UC4},
      {"interlaced 3x2 gray+alpha (empty passes)",
       {3, 2, 8, PNG_COLOR_TYPE_GRAY_ALPHA, true},
       CV_8UC4},
  };
  unsigned seed = 100;
  for (const Case& c : cases) ExpectSameAsImdecode(WritePng(c.spec, seed++), c.what, c.want_type);
}

TEST(ImageDecode, ImencodeJpegsSameAsImdecode) {
  unsigned seed = 200;
  for (const cv::Size size : {cv::Size(1, 1), cv::Size(37, 23), cv::Size(64, 48)}) {
    const std::string dims = std::to_string(size.width) + "x" + std::to_string(size.height);
    const cv::Mat gray = Pattern(size.height, size.width, CV_8UC1, seed++);
    const cv::Mat bgr = Pattern(size.height, size.width, CV_8UC3, seed++);
    ExpectSameAsImdecode(Imencode(gray, ".jpg"), "gray " + dims, CV_8UC1);
    ExpectSameAsImdecode(Imencode(bgr, ".jpg"), "colour " + dims, CV_8UC3);
    ExpectSameAsImdecode(Imencode(bgr, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 40}),
                         "colour quality 40 " + dims);
    ExpectSameAsImdecode(Imencode(bgr, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}),
                         "progressive " + dims);
    ExpectSameAsImdecode(Imencode(gray, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}),
                         "progressive gray " + dims);
    ExpectSameAsImdecode(
        Imencode(bgr, ".jpg", {cv::IMWRITE_JPEG_OPTIMIZE, 1, cv::IMWRITE_JPEG_RST_INTERVAL, 1}),
        "optimized Huffman, restart markers " + dims);
    ExpectSameAsImdecode(
        Imencode(bgr, ".jpg",
                 {cv::IMWRITE_JPEG_LUMA_QUALITY, 90, cv::IMWRITE_JPEG_CHROMA_QUALITY, 50}),
        "4:4:4 (separate chroma quality) " + dims);
    // EXIF orientation is not applied: same Mat as imdecode, width and height not swapped.
    const std::string rotated = WithExifOrientation6(Imencode(bgr, ".jpg"));
    ExpectSameAsImdecode(rotated, "EXIF orientation 6 " + dims);
    auto got = DecodeImage(rotated, kLimits);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(got->width, static_cast<std::uint32_t>(size.width));
    if (size.width != size.height) {  // the tag is real: IMREAD_COLOR does rotate
      const cv::Mat raw(1, static_cast<int>(rotated.size()), CV_8U,
                        const_cast<char*>(rotated.data()));
      EXPECT_EQ(cv::imdecode(raw, cv::IMREAD_COLOR).cols, size.height);
    }
  }
}

TEST(ImageDecode, LibjpegKindsSameAsImdecode) {
  const struct {
    const char* what;
    JpegSpec spec;
  } cases[] = {
      {"CMYK (Adobe)", {37, 23, 4, JCS_CMYK, JCS_CMYK, 1, 1}},
      {"YCCK (Adobe)", {37, 23, 4, JCS_CMYK, JCS_YCCK, 2, 2}},
      {"RGB stored as RGB", {37, 23, 3, JCS_RGB, JCS_RGB, 1, 1}},
      {"4:2:2", {37, 23, 3, JCS_RGB, JCS_YCbCr, 2, 1}},
      {"4:4:0", {37, 23, 3, JCS_RGB, JCS_YCbCr, 1, 2}},
      {"4:1:1", {37, 23, 3, JCS_RGB, JCS_YCbCr, 4, 1}},
      {"arithmetic coding", {37, 23, 3, JCS_RGB, JCS_YCbCr, 2, 2, true}},
      {"arithmetic progressive gray", {37, 23, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 1, 1, true, true}},
      {"progressive CMYK", {37, 23, 4, JCS_CMYK, JCS_CMYK, 1, 1, false, true}},
  };
  unsigned seed = 300;
  for (const auto& c : cases) {
    ExpectSameAsImdecode(WriteJpeg(c.spec, seed++), c.what,
                         c.spec.components == 1 ? CV_8UC1 : CV_8UC3);
  }
}

// ---- Hostile input ----

void ExpectRefused(std::string_view bytes, const std::string& needle, const std::string& what,
                   const ImageLimits& limits = kLimits) {
  auto got = DecodeImage(bytes, limits);
  ASSERT_FALSE(got) << what << ": accepted; wanted " << needle;
  EXPECT_EQ(got.error().code, ErrorCode::kInvalidArgument) << what << ": " << got.error().message;
  EXPECT_NE(got.error().message.find(needle), std::string::npos)
      << what << ": " << got.error().message;
}

std::string Corrupted(const std::string& format, const std::string& reason) {
  return "not a decodable image (" + format + " data is corrupt or truncated: " + reason;
}

// Every prefix of a file is refused: the PNG needs its IEND, the JPEG its last scanline (imdecode
// returned made-up rows for a cut JPEG). A prefix that still yields all scanlines (the JPEG's
// EOI marker cut off) must give exactly the full image.
TEST(ImageDecode, EveryTruncationRefused) {
  const cv::Mat bgr = Pattern(23, 37, CV_8UC3, 400);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"PNG", Imencode(bgr, ".png")},
      {"PNG interlaced", WritePng({37, 23, 8, PNG_COLOR_TYPE_RGB, true}, 401)},
      {"JPEG", Imencode(bgr, ".jpg")},
      {"JPEG progressive", Imencode(bgr, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1})},
      {"JPEG arithmetic", WriteJpeg({37, 23, 3, JCS_RGB, JCS_YCbCr, 2, 2, true}, 402)},
  };
  for (const auto& [what, file] : files) {
    auto full = DecodeImage(file, kLimits);
    ASSERT_TRUE(full) << what << ": " << full.error().message;
    for (std::size_t n = 0; n < file.size(); ++n) {
      const std::string_view prefix(file.data(), n);
      auto got = DecodeImage(prefix, kLimits);
      if (got) {
        EXPECT_GE(n, file.size() - 2) << what << " cut at " << n << " of " << file.size();
        EXPECT_EQ(got->pixels, full->pixels) << what << " cut at " << n;
        continue;
      }
      EXPECT_EQ(got.error().code, ErrorCode::kInvalidArgument) << got.error().message;
      EXPECT_NE(got.error().message.find("not a decodable image"), std::string::npos)
          << what << " cut at " << n << ": " << got.error().message;
    }
  }
  const std::string png = Imencode(bgr, ".png");
  ExpectRefused(png.substr(0, png.size() - 12), Corrupted("PNG", "the data ends early"),
                "PNG without IEND");
  const std::string jpeg = Imencode(bgr, ".jpg");
  ExpectRefused(jpeg.substr(0, jpeg.size() / 2), Corrupted("JPEG", "the data ends early"),
                "half a JPEG");
}

// Every byte of a PNG flipped in turn is refused (CRCs and zlib's Adler-32 cover everything).
// A flipped JPEG byte may still decode (JPEG has no checksums), but never crashes, and a refusal
// names the reason.
TEST(ImageDecode, FlippedBytesNeverCrash) {
  const cv::Mat bgr = Pattern(16, 24, CV_8UC3, 500);
  const std::string png = Imencode(bgr, ".png");
  for (std::size_t i = 0; i < png.size(); ++i) {
    std::string bad = png;
    bad[i] = static_cast<char>(bad[i] ^ 0x55);
    auto got = DecodeImage(bad, kLimits);
    EXPECT_FALSE(got) << "PNG with byte " << i << " flipped was accepted";
    if (!got) {
      EXPECT_EQ(got.error().code, ErrorCode::kInvalidArgument) << got.error().message;
    }
  }
  int refused = 0;
  for (const std::string& jpeg :
       {Imencode(bgr, ".jpg"), Imencode(bgr, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1})}) {
    for (std::size_t i = 0; i < jpeg.size(); ++i) {
      for (const char mask : {'\x01', '\x55', '\xff'}) {
        std::string bad = jpeg;
        bad[i] = static_cast<char>(bad[i] ^ mask);
        auto got = DecodeImage(bad, kLimits);
        if (got) {
          EXPECT_EQ(got->pixels.size(), std::size_t{got->width} * got->height * 3u);
          continue;
        }
        ++refused;
        EXPECT_EQ(got.error().code, ErrorCode::kInvalidArgument) << got.error().message;
        EXPECT_NE(got.error().message.find("not a decodable image"), std::string::npos)
            << got.error().message;
      }
    }
  }
  EXPECT_GT(refused, 0);
}

void Put16(std::string& s, std::size_t at, std::uint32_t v) {
  s[at] = static_cast<char>(v >> 8);
  s[at + 1] = static_cast<char>(v & 0xFF);
}

// Rewrites the PNG's IHDR width and height and fixes the chunk's CRC, so only the image data
// can give the lie away.
std::string LyingPng(std::string png, std::uint32_t width, std::uint32_t height) {
  for (int k = 0; k < 4; ++k) {
    png[16 + static_cast<std::size_t>(k)] = static_cast<char>(width >> (24 - 8 * k));
    png[20 + static_cast<std::size_t>(k)] = static_cast<char>(height >> (24 - 8 * k));
  }
  const auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(png.data()) + 12, 17));  // "IHDR" + 13 data bytes
  for (int k = 0; k < 4; ++k) {
    png[29 + static_cast<std::size_t>(k)] = static_cast<char>(crc >> (24 - 8 * k));
  }
  return png;
}

// Rewrites the JPEG's SOF0 (baseline) or SOF2 (progressive) height and width (there is no
// checksum to fix).
std::string LyingJpeg(std::string jpeg, std::uint32_t width, std::uint32_t height) {
  std::size_t sof = jpeg.find("\xff\xc0");
  if (sof == std::string::npos) sof = jpeg.find("\xff\xc2");
  EXPECT_NE(sof, std::string::npos);
  Put16(jpeg, sof + 5, height);
  Put16(jpeg, sof + 7, width);
  return jpeg;
}

TEST(ImageDecode, LyingHeaders) {
  const cv::Mat bgr = Pattern(23, 37, CV_8UC3, 600);
  const std::string png = Imencode(bgr, ".png");
  ExpectRefused(LyingPng(png, 37, 40), Corrupted("PNG", ""), "PNG claiming more rows");
  ExpectRefused(LyingPng(png, 50, 23), Corrupted("PNG", ""), "PNG claiming wider rows");
  // Fewer rows than the data holds: libpng reads what the header says and warns about the
  // extra data; imdecode accepts that too, with the same pixels.
  ExpectSameAsImdecode(LyingPng(png, 37, 10), "PNG claiming fewer rows");

  const std::string jpeg = Imencode(bgr, ".jpg");
  ExpectRefused(LyingJpeg(jpeg, 37, 60), Corrupted("JPEG", ""), "JPEG claiming more rows");
  ExpectRefused(LyingJpeg(jpeg, 80, 23), Corrupted("JPEG", ""), "JPEG claiming wider rows");

  // Bombs: refused from the header bytes, before a decoder or any pixel memory exists.
  ExpectRefused(LyingPng(png, 100000, 100000),
                "image is 100000x100000 pixels of 3 channels x 1 byte: decoding needs "
                "30000000000 bytes, over the budget of 16777216 bytes (header)",
                "PNG bomb");
  ExpectRefused(LyingJpeg(jpeg, 60000, 50000),
                "image is 60000x50000 pixels of 3 channels x 1 byte: decoding needs 9000000000 "
                "bytes, over the budget of 16777216 bytes (header)",
                "JPEG bomb");
  // The budget is in bytes: 37 x 23 x 3 = 2553.
  ExpectRefused(png,
                "image is 37x23 pixels of 3 channels x 1 byte: decoding needs 2553 bytes, over the "
                "budget of 2552 bytes (header)",
                "small limit", {2552});
  auto exact = DecodeImage(png, {2553});
  EXPECT_TRUE(exact) << exact.error().message;
  ExpectRefused(LyingPng(png, 0, 23), "image is 0x23 pixels", "PNG of width 0");
  ExpectRefused(LyingJpeg(jpeg, 37, 0), "image is 37x0 pixels", "JPEG of height 0");
}

// A progressive JPEG can hold hundreds of scans, each a pass over every coefficient: a CPU bomb
// in a few KB. Refused after 500 scans, as libjpeg-turbo's own tools do.
TEST(ImageDecode, TooManyProgressiveScansRefused) {
  JpegSpec spec{37, 23, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 1, 1};
  spec.scans.push_back({1, {0}, 0, 0, 0, 0});  // DC
  for (int k = 1; k < 64; ++k) {               // each AC coefficient alone, one bit at a time
    spec.scans.push_back({1, {0}, k, k, 0, 10});
    for (int al = 9; al >= 0; --al) spec.scans.push_back({1, {0}, k, k, al + 1, al});
  }
  ASSERT_GT(spec.scans.size(), 500u);
  const std::string jpeg = WriteJpeg(spec, 700);
  ExpectRefused(jpeg, Corrupted("JPEG", "more than 500 progressive scans"), "694 scans");
  // The same image with a sane script decodes.
  spec.scans.clear();
  spec.progressive = true;
  ExpectSameAsImdecode(WriteJpeg(spec, 700), "progressive gray, standard script");
}

// ---- Memory: what an image may cost is known before anything is allocated ----

using testing::FlatGrayPng;
using testing::PngChunk;
using testing::PngWithHugeChunk;
using testing::PngWithoutData;
using testing::ProgressiveJpegWithoutData;

// The fuzzer's 41-byte PNG: a 1x1 header, then a text (or EXIF, or suggested-palette) chunk
// declaring 2 GiB. libpng 1.6.39 caps chunk buffers only by a "benign error", a warning on a
// read struct, and allocated and zeroed the declared length before finding the data missing.
// Refused from the chunk walk, naming the chunk; the same chunk after the image data too.
TEST(ImageDecode, ChunksDeclaringMoreThanTheFileHoldsRefused) {
  for (const char* type : {"iTXt", "zTXt", "tEXt", "eXIf", "sPLT", "iCCP", "prVt"}) {
    const std::string png = PngWithHugeChunk(type);
    ASSERT_EQ(png.size(), 41u);
    ExpectRefused(png,
                  Corrupted("PNG", std::string("chunk ") + type +
                                       " declares 2147483647 bytes of data, only 0 bytes follow"),
                  type);
  }
  // A type that is not four letters is named in hex: the bytes are the client's.
  ExpectRefused(PngWithHugeChunk(std::string("\x1b[2J", 4)),
                "chunk 0x1b5b324a declares 2147483647 bytes", "escape sequence as a type");
  const std::string good = Imencode(Pattern(23, 37, CV_8UC3, 800), ".png");
  // IEND is the last 12 bytes; the 2 GiB iTXt goes in its place, with 100 bytes after it.
  const std::string after_image = good.substr(0, good.size() - 12) +
                                  std::string("\x7f\xff\xff\xffiTXt", 8) + std::string(100, 'x');
  ExpectRefused(after_image, "chunk iTXt declares 2147483647 bytes of data, only 100 bytes follow",
                "iTXt after IDAT");
  // An IDAT cut one byte short (with its CRC and IEND) is refused the same way.
  ExpectRefused(good.substr(0, good.size() - 17), "chunk IDAT declares", "IDAT cut short");
}

// Honest ancillary chunks, however large, are skipped unread: the pixels are imdecode's.
TEST(ImageDecode, LargeAncillaryChunksSkippedPixelsUnchanged) {
  const std::string good = Imencode(Pattern(23, 37, CV_8UC4, 801), ".png");
  const std::string big(300000, 'x');
  std::string png = good.substr(0, 33);  // signature and IHDR
  png += PngChunk("tEXt", std::string("Comment\0", 8) + "hello");
  png += PngChunk("iTXt", std::string("XML:com.adobe.xmp\0\0\0\0\0", 22) + big);
  png += PngChunk("zTXt", std::string("Raw profile\0\0", 13) + big);
  png += PngChunk("sPLT", std::string("palette\0\x08", 9) + std::string(600, '\x01'));
  png += PngChunk("prVt", big);  // unknown, safe to copy
  png += good.substr(33, good.size() - 33 - 12);
  png += PngChunk("tEXt", std::string("Author\0", 7) + big);  // after the image data
  png += good.substr(good.size() - 12);
  ExpectSameAsImdecode(png, "1.2 MB of ancillary chunks");
  auto plain = DecodeImage(good, kLimits);
  auto padded = DecodeImage(png, kLimits);
  ASSERT_TRUE(plain && padded);
  EXPECT_EQ(padded->pixels, plain->pixels);
}

// The fuzzer's 45-byte PNG: 8192x8192 RGBA at 16 bits, no image data. Within the old pixel cap
// (64 Mi pixels) it cost a 512 MiB pixel buffer; now the budget refuses it from the header.
TEST(ImageDecode, HeaderOnlyPngsRefusedBeforeTheirPixels) {
  const std::string rgba16 = PngWithoutData(8192, 8192, 16, PNG_COLOR_TYPE_RGB_ALPHA);
  ASSERT_EQ(rgba16.size(), 45u);
  ExpectRefused(rgba16,
                "image is 8192x8192 pixels of 4 channels x 2 bytes: decoding needs 536870912 "
                "bytes, over the budget of 16777216 bytes (header)",
                "8192x8192 RGBA-16");
  // Within the budget (8 MiB of pixels) but without the data: 0 bytes of IDAT cannot inflate to
  // 2048 x 1024 x 4 bytes plus a filter byte a row.
  ExpectRefused(PngWithoutData(2048, 1024, 8, PNG_COLOR_TYPE_RGB_ALPHA),
                "image is 2048x1024 pixels, whose rows need 8389632 bytes of image data, but its "
                "0 bytes of compressed data (IDAT) inflate to at most 0 (deflate expands at most "
                "1032:1)",
                "2048x1024 RGBA, no IDAT");
  // A genuine 500-byte IDAT is not enough for 8 MiB either.
  std::string thin = FlatGrayPng(64, 64);
  thin = LyingPng(thin, 2896, 2896);
  ExpectRefused(thin, "bytes of compressed data (IDAT) inflate to at most", "2896x2896 gray");
}

// The most compressible image there is (all zero, zlib level 9, about 1030:1) is within the
// deflate bound, and the default budget takes exactly 16 MiB of pixels.
TEST(ImageDecode, FlatImagesAtTheBudgetDecode) {
  const std::string small = FlatGrayPng(300, 200, 7);
  ExpectSameAsImdecode(small, "flat 300x200");
  const std::string at_budget = FlatGrayPng(4096, 4096);
  ASSERT_LT(at_budget.size(), 20000u);
  auto got = DecodeImage(at_budget, kLimits);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->pixels.size(), std::size_t{16} << 20);
  EXPECT_EQ(std::count(got->pixels.begin(), got->pixels.end(), 0), std::ptrdiff_t{16} << 20);
  ExpectRefused(FlatGrayPng(4097, 4096), "decoding needs 16781312 bytes, over the budget",
                "one column over");
}

// A progressive (or multi-scan) JPEG makes libjpeg allocate and zero a coefficient buffer for
// the whole image, 2 bytes per coefficient, before the first scan is decoded: counted in the
// budget from libjpeg's header, before jpeg_start_decompress.
TEST(ImageDecode, ProgressiveJpegsPayForTheirCoefficients) {
  const std::string huge = ProgressiveJpegWithoutData(8192, 8192, 1);
  ASSERT_LT(huge.size(), 200u);
  ExpectRefused(huge,
                "image is 8192x8192 pixels of 1 channel x 1 byte: decoding needs 67108864 bytes, "
                "over the budget of 16777216 bytes (header)",
                "8192x8192 progressive");
  // 5.76 MB of pixels fit the budget; with 11.52 MB of coefficients they do not.
  ExpectRefused(ProgressiveJpegWithoutData(2400, 2400, 1),
                "image is 2400x2400 pixels of 1 channel x 1 byte: decoding needs 17280000 bytes "
                "(5760000 for the pixels, 11520000 for libjpeg's coefficients of a progressive or "
                "multi-scan JPEG), over the budget of 16777216 bytes (decoder)",
                "2400x2400 progressive, built by hand");
  JpegSpec spec{64, 48, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 1, 1, false, true};
  const std::string real = WriteJpeg(spec, 900);
  ExpectSameAsImdecode(real, "progressive 64x48");
  ExpectRefused(LyingJpeg(real, 2400, 2400), "decoding needs 17280000 bytes",
                "2400x2400 progressive, written by libjpeg");
  // The same lie in a baseline JPEG costs only its pixels: refused for its missing data.
  spec.progressive = false;
  ExpectRefused(LyingJpeg(WriteJpeg(spec, 901), 2400, 2400), Corrupted("JPEG", ""),
                "2400x2400 baseline");
  // A 1920x1080 4:2:0 progressive frame (6.2 MB of pixels, 6.3 MB of coefficients) fits.
  JpegSpec frame{64, 48, 3, JCS_RGB, JCS_YCbCr, 2, 2, false, true};
  ExpectRefused(LyingJpeg(WriteJpeg(frame, 902), 1920, 1080), Corrupted("JPEG", ""),
                "1920x1080 progressive 4:2:0, data missing");
}

}  // namespace
}  // namespace edgefleet::runtime
