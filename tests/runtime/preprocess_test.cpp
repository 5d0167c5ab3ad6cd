// Image preprocessing: the committed held-out PNGs must become the golden input rows (within
// the 1/255 rounding of 8-bit PNGs) and be classified by the digits model; colour orders,
// layouts, normalisation, resize, alpha and 16-bit images on hand-made PNGs with known pixels;
// the same results as the OpenCV 4.6 calls preprocessing was first written with (cvtColor,
// convertTo, resize INTER_LINEAR) on random images and on every 8-bit colour made gray;
// refusals of non-images, corrupt data, pixel bombs (before decoding) and mismatched specs.
#include "runtime/preprocess.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
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

// What PreprocessImage computed with OpenCV 4.6 before it became plain C++: cvtColor,
// convertTo(CV_32F) and resize(INTER_LINEAR) on DecodeImage's pixels, then scale, mean and std.
// `mean` and `std` are empty (0 and 1) or have one value per output channel.
std::vector<float> OpenCvPreprocess(std::string_view bytes, const manifests::Preprocessing& pre) {
  auto decoded = DecodeImage(bytes, {});
  if (!decoded) {
    ADD_FAILURE() << decoded.error().message;
    return {};
  }
  const int depth = decoded->bytes_per_sample == 2 ? CV_16U : CV_8U;
  const cv::Mat img(static_cast<int>(decoded->height), static_cast<int>(decoded->width),
                    CV_MAKETYPE(depth, decoded->channels), decoded->pixels.data());
  int code = -1;
  if (decoded->channels == 1 && pre.color != "GRAY") code = cv::COLOR_GRAY2BGR;
  if (decoded->channels == 3 && pre.color == "GRAY") code = cv::COLOR_BGR2GRAY;
  if (decoded->channels == 3 && pre.color == "RGB") code = cv::COLOR_BGR2RGB;
  if (decoded->channels == 4) {
    code = pre.color == "GRAY"  ? cv::COLOR_BGRA2GRAY
           : pre.color == "RGB" ? cv::COLOR_BGRA2RGB
                                : cv::COLOR_BGRA2BGR;
  }
  cv::Mat converted = img;
  if (code >= 0) cv::cvtColor(img, converted, code);
  cv::Mat floats;
  converted.convertTo(floats, CV_32F, depth == CV_16U ? 1.0 / 257.0 : 1.0);
  const int h = static_cast<int>(pre.height);
  const int w = static_cast<int>(pre.width);
  if (floats.rows != h || floats.cols != w) {
    cv::Mat resized;
    cv::resize(floats, resized, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
    floats = resized;
  }
  const auto channels = static_cast<std::size_t>(floats.channels());
  const std::size_t plane = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  std::vector<float> out(plane * channels);
  const float* px = floats.ptr<float>();
  for (std::size_t p = 0; p < plane; ++p) {
    for (std::size_t c = 0; c < channels; ++c) {
      const double mean = pre.mean.empty() ? 0.0 : pre.mean.at(c);
      const double stdev = pre.std.empty() ? 1.0 : pre.std.at(c);
      const double v = (px[p * channels + c] * pre.scale - mean) / stdev;
      out[pre.layout == "NCHW" ? c * plane + p : p * channels + c] = static_cast<float>(v);
    }
  }
  return out;
}

// Random samples (8- or 16-bit) for MakePng, with the extremes always among them.
std::vector<std::uint16_t> RandomSamples(std::mt19937& rng, std::size_t count, int depth) {
  const int max = depth == 16 ? 65535 : 255;
  std::uniform_int_distribution<int> sample(0, max);
  std::vector<std::uint16_t> samples(count);
  for (auto& s : samples) s = static_cast<std::uint16_t>(sample(rng));
  samples[0] = 0;
  samples[count - 1] = static_cast<std::uint16_t>(max);
  return samples;
}

// PreprocessImage against OpenCvPreprocess on `png`: the largest absolute difference, and the
// first tensor index where they differ (kSame: nowhere). A failed call or a size mismatch fails
// the test and counts as infinitely different.
constexpr std::size_t kSame = std::numeric_limits<std::size_t>::max();
struct Difference {
  float max = 0;
  std::size_t first = kSame;
};

Difference CompareWithOpenCv(std::string_view png, const manifests::Preprocessing& pre) {
  constexpr Difference kFailed{std::numeric_limits<float>::infinity(), 0};
  auto got = PreprocessImage(png, pre, {"x", DType::kFloat32, {1, -1, -1, -1}});
  if (!got) {
    ADD_FAILURE() << got.error().message;
    return kFailed;
  }
  const auto values = got->As<float>();
  const auto want = OpenCvPreprocess(png, pre);
  if (values.size() != want.size()) {
    ADD_FAILURE() << values.size() << " values, OpenCV made " << want.size();
    return kFailed;
  }
  Difference d;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const float diff = std::abs(values[i] - want[i]);
    if (diff != 0 && d.first == kSame) d.first = i;
    d.max = std::max(d.max, diff);
  }
  return d;
}

// Every decoded form (gray, gray + alpha as BGRA, BGR, BGRA; 8 and 16 bit) to every colour and
// layout, resized up, down by fractions and by exact factors (2x, which OpenCV computes as
// INTER_AREA, and 3x, which it does not), with one side of 1, with equal sizes, and with one axis
// kept: the same numbers as OpenCV within 1e-4 (on values of up to 255: a few float ulps, as
// OpenCV fuses some multiply-adds and sums 2x2 blocks in another order), and bit for bit without
// a resize. Random pixels make every weight and border count: a resize without the half-pixel
// offset or with another border rule is off by whole pixel steps here.
TEST(Preprocess, MatchesOpenCvOnRandomImages) {
  struct Size {
    std::uint32_t src_w, src_h;
    int dst_w, dst_h;
  };
  const std::vector<Size> sizes = {
      {7, 5, 19, 13},        // up, by fractions
      {37, 29, 16, 12},      // down, by fractions
      {32, 24, 16, 12},      // down by exactly 2: OpenCV's INTER_AREA path
      {33, 21, 11, 7},       // down by exactly 3: bilinear
      {32, 10, 16, 23},      // down 2x across, up along
      {1, 17, 5, 9},         // one column
      {23, 1, 4, 3},         // one row
      {9, 7, 1, 1},          // to one pixel
      {1, 1, 3, 2},          // from one pixel
      {12, 8, 12, 8},        // equal: not resampled
      {12, 8, 12, 5},        // one axis kept
      {640, 480, 224, 224},  // a camera frame to a classifier's input
  };
  std::mt19937 rng(20240611);
  int cases = 0, exact_cases = 0;
  float worst = 0;
  for (const Size& size : sizes) {
    for (int depth : {8, 16}) {
      for (int png_channels : {1, 2, 3, 4}) {
        const std::string png = MakePng(
            size.src_w, size.src_h, png_channels,
            RandomSamples(rng, std::size_t{size.src_w} * size.src_h * png_channels, depth), depth);
        for (const char* color : {"GRAY", "RGB", "BGR"}) {
          for (const char* layout : {"NCHW", "NHWC"}) {
            const std::string what = std::to_string(size.src_w) + "x" + std::to_string(size.src_h) +
                                     " " + std::to_string(depth) + "-bit, " +
                                     std::to_string(png_channels) + " PNG channels, to " + color +
                                     " " + layout + " " + std::to_string(size.dst_w) + "x" +
                                     std::to_string(size.dst_h);
            auto pre = Spec(color, layout, size.dst_h, size.dst_w);
            const std::size_t channels = pre.color == "GRAY" ? 1 : 3;
            pre.mean = std::vector<double>(channels, 127.5);
            pre.mean[0] = 100;
            pre.std = std::vector<double>(channels, 1.0);
            SCOPED_TRACE(what);
            const float max_diff = CompareWithOpenCv(png, pre).max;
            EXPECT_LT(max_diff, 1e-4f);
            if (size.src_w == static_cast<std::uint32_t>(size.dst_w) &&
                size.src_h == static_cast<std::uint32_t>(size.dst_h)) {
              EXPECT_EQ(max_diff, 0.0f);
            }
            worst = std::max(worst, max_diff);
            ++cases;
            exact_cases += max_diff == 0;
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 12 * 2 * 4 * 3 * 2);
  RecordProperty("exact_cases", exact_cases);
  RecordProperty("max_abs_diff", std::to_string(worst));
}

// Gray from colour is OpenCV's fixed-point luma (15-bit weights, rounded half up), not a rounded
// float sum: the same integer for every one of the 2^24 8-bit colours, and for random and extreme
// 16-bit colours (before the division by 257).
TEST(Preprocess, GrayIsOpenCvsLumaForEveryColour) {
  const auto pre = Spec("GRAY", "NCHW", 256, 256);
  std::vector<std::uint16_t> rgb(256 * 256 * 3);
  for (int r = 0; r < 256; ++r) {
    for (std::size_t i = 0; i < 256 * 256; ++i) {
      rgb[3 * i] = static_cast<std::uint16_t>(r);
      rgb[3 * i + 1] = static_cast<std::uint16_t>(i >> 8);
      rgb[3 * i + 2] = static_cast<std::uint16_t>(i & 0xFF);
    }
    const std::size_t at = CompareWithOpenCv(MakePng(256, 256, 3, rgb), pre).first;
    ASSERT_EQ(at, kSame) << "R " << r << " G " << (at >> 8) << " B " << (at & 0xFF);
  }

  std::mt19937 rng(7);
  auto deep = RandomSamples(rng, 256 * 256 * 3, 16);
  const std::array<std::uint16_t, 5> extremes = {0, 1, 32767, 32768, 65535};
  std::size_t i = 0;
  for (auto r : extremes) {
    for (auto g : extremes) {
      for (auto b : extremes) {
        deep.at(i++) = r;
        deep.at(i++) = g;
        deep.at(i++) = b;
      }
    }
  }
  const std::size_t at = CompareWithOpenCv(MakePng(256, 256, 3, deep, 16), pre).first;
  ASSERT_EQ(at, kSame) << "RGB " << deep.at(3 * at) << " " << deep.at(3 * at + 1) << " "
                       << deep.at(3 * at + 2);
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
