// Image preprocessing: the committed held-out PNGs must become the golden input rows (within
// the 1/255 rounding of 8-bit PNGs) and be classified by the digits model; colour orders,
// layouts, normalisation, resize, alpha and 16-bit images on hand-made PNGs with known pixels;
// refusals of non-images, corrupt data, pixel bombs (before decoding) and mismatched specs.
#include "runtime/preprocess.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "manifests/json_fields.hpp"
#include "tests/support/opencv_plugin.hpp"

namespace edgefleet::runtime {
namespace {

using namespace std::string_literals;  // binary literals with embedded NULs

const std::filesystem::path kDigits = std::filesystem::path(EDGEFLEET_TEST_DATA_DIR) / "digits";

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

nlohmann::json BundleJson() {
  return nlohmann::json::parse(ReadBytes(kDigits / "v1" / "bundle.json"));
}

// bundle.json's preprocessing block, field by field.
manifests::Preprocessing DigitsPreprocessing() {
  const auto j = BundleJson().at("preprocessing");
  manifests::Preprocessing pre;
  pre.layout = j.at("layout");
  pre.color = j.at("color");
  pre.height = j.at("height");
  pre.width = j.at("width");
  pre.scale = j.at("scale");
  pre.mean = j.at("mean").get<std::vector<double>>();
  pre.std = j.at("std").get<std::vector<double>>();
  return pre;
}

const TensorInfo kDigitsInput{"input", DType::kFloat32, {-1, 1, 8, 8}};

// A minimal PNG encoder (stored deflate blocks, no compression) so tests can make images with
// exactly known pixels of any PNG colour type and bit depth, and corrupt them on purpose.
std::uint32_t Crc32(std::string_view data) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void Put32(std::string& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xFF));
}

void Chunk(std::string& png, std::string_view type, std::string_view data) {
  Put32(png, static_cast<std::uint32_t>(data.size()));
  std::string body(type);
  body.append(data);
  png.append(body);
  Put32(png, Crc32(body));
}

// `samples`: row-major, `channels` per pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), each
// 0..255 (depth 8) or 0..65535 (depth 16).
std::string MakePng(std::uint32_t width, std::uint32_t height, int channels,
                    const std::vector<std::uint16_t>& samples, int depth = 8) {
  static constexpr std::array<int, 5> kColorType = {0, 0, 4, 2, 6};
  std::string raw;
  std::size_t i = 0;
  for (std::uint32_t y = 0; y < height; ++y) {
    raw.push_back('\0');  // filter: none
    for (std::uint32_t x = 0; x < width * static_cast<std::uint32_t>(channels); ++x) {
      const std::uint16_t v = samples[i++];
      if (depth == 16) raw.push_back(static_cast<char>(v >> 8));
      raw.push_back(static_cast<char>(v & 0xFF));
    }
  }
  std::string z = "\x78\x01";
  for (std::size_t pos = 0; pos < raw.size() || pos == 0; pos += 65535) {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    z.push_back(pos + n >= raw.size() ? '\x01' : '\x00');
    z.push_back(static_cast<char>(n & 0xFF));
    z.push_back(static_cast<char>(n >> 8));
    z.push_back(static_cast<char>(~n & 0xFF));
    z.push_back(static_cast<char>((~n >> 8) & 0xFF));
    z.append(raw, pos, n);
    if (raw.empty()) break;
  }
  std::uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  Put32(z, b << 16 | a);

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  Put32(ihdr, width);
  Put32(ihdr, height);
  ihdr.push_back(static_cast<char>(depth));
  ihdr.push_back(static_cast<char>(kColorType[static_cast<std::size_t>(channels)]));
  ihdr.append(3, '\0');
  Chunk(png, "IHDR", ihdr);
  Chunk(png, "IDAT", z);
  Chunk(png, "IEND", "");
  return png;
}

manifests::Preprocessing Spec(std::string color, std::string layout, int h, int w,
                              double scale = 1.0) {
  manifests::Preprocessing pre;
  pre.color = std::move(color);
  pre.layout = std::move(layout);
  pre.height = h;
  pre.width = w;
  pre.scale = scale;
  return pre;
}

std::vector<float> Values(const Tensor& t) { return {t.As<float>().begin(), t.As<float>().end()}; }

// Acceptance: every held-out PNG equals its golden row within the PNG's 8-bit rounding, and the
// op10 model classifies at least 95 % of them by their label (the NNN_L file name).
TEST(Preprocess, HeldOutPngsMatchGoldenAndClassify) {
  const auto pre = DigitsPreprocessing();
  auto golden = ReadTensorProto(kDigits / "v1" / "golden" / "heldout" / "input_0.pb");
  ASSERT_TRUE(golden) << golden.error().message;
  const auto rows = golden->As<float>();

  auto backend = testing::LoadOpenCvPlugin();
  ASSERT_TRUE(backend);
  manifests::Variant variant;
  const auto bundle = BundleJson();  // kept alive: the loop below refers into it
  for (const auto& v : bundle.at("variants")) {
    if (v.at("id").get<std::string>() != "onnx-op10") continue;
    manifests::FieldReader reader("bundle.json");
    variant = manifests::ReadVariant(reader, v, "variants[0]", true).value();
  }
  auto session = (*backend)->Load(kDigits / "v1" / variant.file, variant, {});
  ASSERT_TRUE(session) << session.error().message;

  int files = 0, correct = 0;
  float max_diff = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kDigits / "heldout_png")) {
    const std::string stem = entry.path().stem().string();  // NNN_L
    ASSERT_EQ(stem.size(), 5u) << stem;
    const int row = std::stoi(stem.substr(0, 3));
    const int label = std::stoi(stem.substr(4));
    ASSERT_LT(row, 360);
    ++files;

    auto t = PreprocessImage(ReadBytes(entry.path()), pre, (*session)->inputs()[0]);
    ASSERT_TRUE(t) << stem << ": " << t.error().message;
    EXPECT_EQ(t->name, "input");
    ASSERT_EQ(t->shape, (std::vector<std::int64_t>{1, 1, 8, 8}));
    const auto got = t->As<float>();
    for (std::size_t i = 0; i < 64; ++i) {
      const float diff = std::abs(got[i] - rows[static_cast<std::size_t>(row) * 64 + i]);
      max_diff = std::max(max_diff, diff);
      ASSERT_LE(diff, 1.0f / 255) << stem << " pixel " << i;
    }
    auto out = (*session)->Run({*t});
    ASSERT_TRUE(out) << out.error().message;
    const auto logits = (*out)[0].As<float>();
    correct += std::max_element(logits.begin(), logits.end()) - logits.begin() == label;
  }
  EXPECT_EQ(files, 360);
  EXPECT_GE(correct * 100, files * 95) << correct << "/" << files;
  RecordProperty("correct", correct);
  RecordProperty("max_abs_diff", std::to_string(max_diff));
}

// A 2x1 RGB image: red (200,10,20) and blue (0,50,250).
const std::vector<std::uint16_t> kTwoPixels = {200, 10, 20, 0, 50, 250};

TEST(Preprocess, ColourOrdersAndLayouts) {
  const std::string png = MakePng(2, 1, 3, kTwoPixels);
  const TensorInfo any_nchw{"x", DType::kFloat32, {1, -1, -1, -1}};

  auto rgb = PreprocessImage(png, Spec("RGB", "NCHW", 1, 2), any_nchw);
  ASSERT_TRUE(rgb) << rgb.error().message;
  EXPECT_EQ(rgb->name, "x");
  EXPECT_EQ(rgb->shape, (std::vector<std::int64_t>{1, 3, 1, 2}));
  EXPECT_EQ(Values(*rgb), (std::vector<float>{200, 0, 10, 50, 20, 250}));  // planes R, G, B

  auto bgr = PreprocessImage(png, Spec("BGR", "NCHW", 1, 2), any_nchw);
  ASSERT_TRUE(bgr) << bgr.error().message;
  EXPECT_EQ(Values(*bgr), (std::vector<float>{20, 250, 10, 50, 200, 0}));

  const TensorInfo nhwc{"x", DType::kFloat32, {-1, 1, 2, 3}};
  auto interleaved = PreprocessImage(png, Spec("RGB", "NHWC", 1, 2), nhwc);
  ASSERT_TRUE(interleaved) << interleaved.error().message;
  EXPECT_EQ(interleaved->shape, (std::vector<std::int64_t>{1, 1, 2, 3}));
  EXPECT_EQ(Values(*interleaved), (std::vector<float>{200, 10, 20, 0, 50, 250}));

  // ITU-R 601 luma, rounded to 8 bits like OpenCV and PIL: 0.299 R + 0.587 G + 0.114 B.
  auto gray =
      PreprocessImage(png, Spec("GRAY", "NCHW", 1, 2), {"x", DType::kFloat32, {1, 1, 1, 2}});
  ASSERT_TRUE(gray) << gray.error().message;
  EXPECT_EQ(Values(*gray), (std::vector<float>{std::round(0.299f * 200 + 0.587f * 10 + 0.114f * 20),
                                               std::round(0.587f * 50 + 0.114f * 250)}));

  // A gray image asked for as RGB has three equal planes.
  auto from_gray = PreprocessImage(MakePng(1, 1, 1, {77}), Spec("RGB", "NCHW", 1, 1), any_nchw);
  ASSERT_TRUE(from_gray) << from_gray.error().message;
  EXPECT_EQ(Values(*from_gray), (std::vector<float>{77, 77, 77}));
}

TEST(Preprocess, ScaleMeanStdPerChannel) {
  auto pre = Spec("RGB", "NCHW", 1, 2, 1.0 / 255);
  pre.mean = {0.485, 0.456, 0.406};
  pre.std = {0.229, 0.224, 0.225};
  auto t = PreprocessImage(MakePng(2, 1, 3, kTwoPixels), pre, {"x", DType::kFloat32, {1, 3, 1, 2}});
  ASSERT_TRUE(t) << t.error().message;
  const std::vector<double> rgb_planes = {200, 0, 10, 50, 20, 250};
  const auto got = t->As<float>();
  for (std::size_t i = 0; i < 6; ++i) {
    const std::size_t c = i / 2;
    const double want = (rgb_planes[i] / 255 - pre.mean[c]) / pre.std[c];
    EXPECT_NEAR(got[i], want, 1e-6) << i;
  }
  // One value applies to every channel.
  pre.mean = {0.5};
  pre.std = {0.5};
  auto one =
      PreprocessImage(MakePng(2, 1, 3, kTwoPixels), pre, {"x", DType::kFloat32, {1, 3, 1, 2}});
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_NEAR(one->As<float>()[0], (200.0 / 255 - 0.5) / 0.5, 1e-6);
}

TEST(Preprocess, ResizeBilinear) {
  // A uniform image stays uniform at any size; a 2x1 ramp upsampled to 4x1 follows OpenCV's
  // INTER_LINEAR half-pixel-centre grid: 0, 0.25, 0.75, 1 of the way from left to right.
  std::vector<std::uint16_t> flat(6 * 4, 90);
  auto up = PreprocessImage(MakePng(6, 4, 1, flat), Spec("GRAY", "NCHW", 9, 13),
                            {"x", DType::kFloat32, {1, 1, 9, 13}});
  ASSERT_TRUE(up) << up.error().message;
  for (float v : up->As<float>()) ASSERT_FLOAT_EQ(v, 90);
  auto ramp = PreprocessImage(MakePng(2, 1, 1, {0, 200}), Spec("GRAY", "NCHW", 1, 4),
                              {"x", DType::kFloat32, {1, 1, 1, 4}});
  ASSERT_TRUE(ramp) << ramp.error().message;
  EXPECT_EQ(Values(*ramp), (std::vector<float>{0, 50, 150, 200}));
}

TEST(Preprocess, AlphaAndSixteenBit) {
  // RGBA: alpha is dropped.
  auto rgba = PreprocessImage(MakePng(1, 1, 4, {10, 20, 30, 0}), Spec("RGB", "NCHW", 1, 1),
                              {"x", DType::kFloat32, {1, 3, 1, 1}});
  ASSERT_TRUE(rgba) << rgba.error().message;
  EXPECT_EQ(Values(*rgba), (std::vector<float>{10, 20, 30}));
  auto gray_alpha = PreprocessImage(MakePng(1, 1, 2, {99, 7}), Spec("GRAY", "NCHW", 1, 1),
                                    {"x", DType::kFloat32, {1, 1, 1, 1}});
  ASSERT_TRUE(gray_alpha) << gray_alpha.error().message;
  EXPECT_EQ(Values(*gray_alpha), (std::vector<float>{99}));
  // 16-bit: scaled to the 8-bit range the manifest's scale is written for.
  auto deep =
      PreprocessImage(MakePng(2, 1, 1, {65535, 257 * 16}, 16),
                      Spec("GRAY", "NCHW", 1, 2, 1.0 / 255), {"x", DType::kFloat32, {1, 1, 1, 2}});
  ASSERT_TRUE(deep) << deep.error().message;
  EXPECT_NEAR(deep->As<float>()[0], 1.0, 1e-6);
  EXPECT_NEAR(deep->As<float>()[1], 16.0 / 255, 1e-6);
}

void ExpectRefused(std::string_view image, const std::string& needle,
                   ErrorCode code = ErrorCode::kInvalidArgument, const ImageLimits& limits = {},
                   const manifests::Preprocessing& pre = DigitsPreprocessing(),
                   const TensorInfo& input = kDigitsInput) {
  auto t = PreprocessImage(image, pre, input, limits);
  ASSERT_FALSE(t) << "accepted; wanted: " << needle;
  EXPECT_EQ(t.error().code, code) << t.error().message;
  EXPECT_NE(t.error().message.find(needle), std::string::npos) << t.error().message;
}

TEST(Preprocess, RefusesBadImages) {
  const std::string good = ReadBytes(kDigits / "heldout_png" / "000_1.png");
  ASSERT_TRUE(PreprocessImage(good, DigitsPreprocessing(), kDigitsInput));

  ExpectRefused("", "expected PNG or JPEG, 0 bytes");
  ExpectRefused("GIF89a........", "expected PNG or JPEG");
  ExpectRefused("BM\x36\x00\x00\x00"s, "expected PNG or JPEG");  // BMP: decodable, not accepted
  ExpectRefused(good.substr(0, 20), "bad PNG header");
  ExpectRefused(good.substr(0, good.size() / 2), "corrupt or truncated");
  std::string flipped = good;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x55);
  ExpectRefused(flipped, "not a decodable image");
  ExpectRefused("\xff\xd8\xff\xe0\x00\x10JFIF\x00garbage"s, "not a decodable image");

  // Over the decode budget: refused from the header, before decoding.
  ExpectRefused(good,
                "image is 8x8 pixels of 1 channel x 1 byte: decoding needs 64 bytes, over the "
                "budget of 63 bytes (header)",
                ErrorCode::kInvalidArgument, {63});
  ASSERT_TRUE(PreprocessImage(good, DigitsPreprocessing(), kDigitsInput, {64}));
  // A PNG header claiming 100000x100000 pixels with almost no data behind it.
  std::string bomb = MakePng(1, 1, 1, {0});
  const std::string huge = "\x00\x01\x86\xa0\x00\x01\x86\xa0"s;
  bomb.replace(16, 8, huge);
  ExpectRefused(bomb,
                "image is 100000x100000 pixels of 1 channel x 1 byte: decoding needs 10000000000 "
                "bytes, over the budget of 16777216 bytes (header)");
  // The same for a JPEG: SOI, an APP0 segment, then SOF0 saying 60000x50000.
  const std::string jpeg_bomb = std::string("\xff\xd8\xff\xe0\x00\x04\x00\x00", 8) +
                                std::string("\xff\xc0\x00\x11\x08\xc3\x50\xea\x60\x03", 10) +
                                std::string(15, '\0');
  ExpectRefused(jpeg_bomb, "image is 60000x50000 pixels of 3 channels x 1 byte: decoding needs");
  ExpectRefused(MakePng(0, 0, 1, {}), "image is 0x0 pixels");
}

TEST(Preprocess, RefusesSpecsThatDoNotFitTheInput) {
  const std::string png = MakePng(2, 1, 3, kTwoPixels);
  ExpectRefused(png, "makes a float32 4-D tensor, the input is int64 [1,3,1,2]",
                ErrorCode::kUnsupported, {}, Spec("RGB", "NCHW", 1, 2),
                {"x", DType::kInt64, {1, 3, 1, 2}});
  ExpectRefused(png, "the input is float32 [3,1,2]", ErrorCode::kUnsupported, {},
                Spec("RGB", "NCHW", 1, 2), {"x", DType::kFloat32, {3, 1, 2}});
  ExpectRefused(png,
                "input \"x\": preprocessing (NCHW, GRAY, 1x2) makes [1,1,1,2], the input expects "
                "[1,3,1,2]",
                ErrorCode::kInvalidArgument, {}, Spec("GRAY", "NCHW", 1, 2),
                {"x", DType::kFloat32, {1, 3, 1, 2}});
  ExpectRefused(png, "expects [1,3,1,2]", ErrorCode::kInvalidArgument, {},
                Spec("RGB", "NHWC", 1, 2), {"x", DType::kFloat32, {1, 3, 1, 2}});
  ExpectRefused(png, "preprocessing.color: expected GRAY, RGB or BGR, found \"YUV\"",
                ErrorCode::kInvalidArgument, {}, Spec("YUV", "NCHW", 1, 2),
                {"x", DType::kFloat32, {1, 3, 1, 2}});
  ExpectRefused(png, "preprocessing.layout", ErrorCode::kInvalidArgument, {},
                Spec("RGB", "CHW", 1, 2), {"x", DType::kFloat32, {1, 3, 1, 2}});
  ExpectRefused(png, "height and width must be 1..65536", ErrorCode::kInvalidArgument, {},
                Spec("RGB", "NCHW", 0, 2), {"x", DType::kFloat32, {1, 3, -1, -1}});
  auto pre = Spec("RGB", "NCHW", 1, 2);
  pre.mean = {0.1, 0.2};
  ExpectRefused(png, "preprocessing.mean has 2 values, the colour has 3 channels",
                ErrorCode::kInvalidArgument, {}, pre, {"x", DType::kFloat32, {1, 3, 1, 2}});
  pre.mean = {};
  pre.std = {1, 0, 1};
  ExpectRefused(png, "preprocessing.std: every value must be > 0", ErrorCode::kInvalidArgument, {},
                pre, {"x", DType::kFloat32, {1, 3, 1, 2}});
}

}  // namespace
}  // namespace edgefleet::runtime
