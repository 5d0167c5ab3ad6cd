// Raw image bytes to the model's input tensor (see runtime/preprocess.hpp).
//
// Only PNG and JPEG are accepted (runtime/image_decode.hpp decodes them through libpng and
// libjpeg-turbo, with the pixels cv::imdecode would give): the bytes come from applications over
// the local API, and every extra decoder is extra attack surface that no manifest asks for.
// What an image costs to decode is computed from its PNG/JPEG header and checked against the
// budget (ImageLimits) before anything is decoded, so a 100000x100000 "bomb" costs a few bytes
// of parsing, not gigabytes of pixels.
//
// Colour conversion and resize are plain C++ rather than OpenCV calls, so that the agent does not
// link OpenCV (it belongs to a backend). They give what cv::cvtColor, Mat::convertTo and
// cv::resize(INTER_LINEAR) of OpenCV 4.6 gave, the models' preprocessing until then:
// tests/runtime/preprocess_test.cpp compares the two on random images. They also work row by
// row, straight into the tensor: apart from the decoded pixels and the tensor, preprocessing
// holds three rows of the tensor's width in float32, not a float copy of the whole image.
#include "runtime/preprocess.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "manifests/log_value.hpp"
#include "runtime/image_decode.hpp"

namespace edgefleet::runtime {
namespace {

// The manifest's colour, once CheckSpec has accepted it.
enum class Colour { kGray, kRgb, kBgr };

Colour ParseColour(std::string_view color) {
  return color == "GRAY" ? Colour::kGray : color == "RGB" ? Colour::kRgb : Colour::kBgr;
}

constexpr std::size_t ChannelsOf(Colour colour) { return colour == Colour::kGray ? 1 : 3; }

// The manifest's per-channel values; an empty list means the identity (0 / 1), and one value
// applies to every channel.
Result<std::vector<double>> PerChannel(const std::vector<double>& values, int channels,
                                       double identity, std::string_view what) {
  if (values.empty()) return std::vector<double>(static_cast<std::size_t>(channels), identity);
  if (values.size() == 1) return std::vector<double>(static_cast<std::size_t>(channels), values[0]);
  if (values.size() != static_cast<std::size_t>(channels)) {
    return Fail(ErrorCode::kInvalidArgument,
                "preprocessing." + std::string(what) + " has " + std::to_string(values.size()) +
                    " values, the colour has " + std::to_string(channels) + " channels");
  }
  return values;
}

// Checks the manifest's preprocessing against the input it feeds. Returns the number of
// channels.
Result<int> CheckSpec(const manifests::Preprocessing& pre, const TensorInfo& input) {
  const std::string what = "input " + manifests::QuoteName(input.name, '"');
  if (input.dtype != DType::kFloat32 || input.shape.size() != 4) {
    return Fail(ErrorCode::kUnsupported, what +
                                             ": image preprocessing makes a float32 4-D "
                                             "tensor, the input is " +
                                             std::string(ToString(input.dtype)) + " " +
                                             ShapeToString(input.shape));
  }
  if (pre.layout != "NCHW" && pre.layout != "NHWC") {
    return Fail(ErrorCode::kInvalidArgument,
                "preprocessing.layout: expected NCHW or NHWC, found \"" + pre.layout + "\"");
  }
  if (pre.color != "GRAY" && pre.color != "RGB" && pre.color != "BGR") {
    return Fail(ErrorCode::kInvalidArgument,
                "preprocessing.color: expected GRAY, RGB or BGR, found \"" + pre.color + "\"");
  }
  // The cap keeps a manifest from asking for an absurd tensor; 65536 is far above any vision
  // model's input side.
  if (pre.height < 1 || pre.width < 1 || pre.height > 65536 || pre.width > 65536) {
    return Fail(ErrorCode::kInvalidArgument,
                "preprocessing: height and width must be 1..65536, "
                "found " +
                    std::to_string(pre.height) + "x" + std::to_string(pre.width));
  }
  const auto channels = static_cast<int>(ChannelsOf(ParseColour(pre.color)));
  const std::vector<std::int64_t> expected =
      pre.layout == "NCHW" ? std::vector<std::int64_t>{1, channels, pre.height, pre.width}
                           : std::vector<std::int64_t>{1, pre.height, pre.width, channels};
  if (!ShapeMatches(expected, input.shape)) {
    return Fail(ErrorCode::kInvalidArgument,
                what + ": preprocessing (" + pre.layout + ", " + pre.color + ", " +
                    std::to_string(pre.height) + "x" + std::to_string(pre.width) + ") makes " +
                    ShapeToString(expected) + ", the input expects " + ShapeToString(input.shape));
  }
  for (double s : pre.std) {
    if (!(s > 0)) {
      return Fail(ErrorCode::kInvalidArgument, "preprocessing.std: every value must be > 0");
    }
  }
  return channels;
}

// ---- Colour: decoded samples to the manifest's colour, as float32 in the 8-bit range ----

// BT.601 luma (0.299 R + 0.587 G + 0.114 B) with 15-bit fixed-point weights that sum to 1 << 15,
// rounded half up: OpenCV 4.6's BGR2GRAY and BGRA2GRAY compute exactly this for 8-bit and 16-bit
// samples, so gray pixels are the integers OpenCV gave; float luma rounded to an integer differs
// by one for some colours. The sum stays below 2^31 for 16-bit samples.
constexpr std::uint32_t kLumaB = 3735;
constexpr std::uint32_t kLumaG = 19235;
constexpr std::uint32_t kLumaR = 9798;
constexpr int kLumaShift = 15;
static_assert(kLumaB + kLumaG + kLumaR == 1u << kLumaShift);

std::uint32_t Luma(std::uint32_t b, std::uint32_t g, std::uint32_t r) {
  return (b * kLumaB + g * kLumaG + r * kLumaR + (1u << (kLumaShift - 1))) >> kLumaShift;
}

// 16-bit samples are divided by 257 so that the manifest's scale, written for 8-bit pixels
// (1/255), means the same for them; as a multiplication by the float nearest 1/257, the product
// rounded once to float, which is what convertTo(CV_32F, 1.0 / 257) gave.
constexpr float kSixteenTo8Bit = static_cast<float>(1.0 / 257.0);

template <typename Sample>
std::uint32_t LoadSample(const std::uint8_t* pixel, std::size_t index) {
  Sample s;  // memcpy: 16-bit samples sit in a byte vector, in native byte order
  std::memcpy(&s, pixel + index * sizeof(Sample), sizeof(Sample));
  return s;
}

// Pixel `x` of a decoded row with `kIn` channels (1 gray, 3 BGR, 4 BGRA, like OpenCV) to `kOut`.
// Alpha is dropped, not composited: the models we serve are trained on opaque images. (Gray +
// alpha arrives as BGRA with B = G = R.)
template <typename Sample, std::size_t kIn, Colour kOut>
void ConvertPixel(const std::uint8_t* row, std::size_t x, float* out) {
  constexpr float k = sizeof(Sample) == 2 ? kSixteenTo8Bit : 1.0f;
  const std::uint8_t* pixel = row + x * kIn * sizeof(Sample);
  if constexpr (kIn == 1) {
    const float v = static_cast<float>(LoadSample<Sample>(pixel, 0)) * k;
    for (std::size_t c = 0; c < ChannelsOf(kOut); ++c) out[c] = v;
  } else {
    const std::uint32_t b = LoadSample<Sample>(pixel, 0);
    const std::uint32_t g = LoadSample<Sample>(pixel, 1);
    const std::uint32_t r = LoadSample<Sample>(pixel, 2);
    if constexpr (kOut == Colour::kGray) {
      out[0] = static_cast<float>(Luma(b, g, r)) * k;
    } else {
      out[0] = static_cast<float>(kOut == Colour::kRgb ? r : b) * k;
      out[1] = static_cast<float>(g) * k;
      out[2] = static_cast<float>(kOut == Colour::kRgb ? b : r) * k;
    }
  }
}

// ---- Resize: bilinear, as cv::resize(INTER_LINEAR) on float32 images ----

// One output position along one axis: out = in[first] * w_first + in[second] * w_second.
struct Tap {
  std::size_t first = 0;
  std::size_t second = 0;
  float w_first = 1;
  float w_second = 0;
};

// Half-pixel centres: output d samples the input at (d + 0.5) * in / out - 0.5, without
// antialiasing (PIL's BILINEAR antialiases when shrinking, so a model trained through PIL with
// large downscales saw slightly smoother pixels). A position left of the first centre takes the
// first pixel, one at or right of the last centre the last pixel. Positions and weights are
// OpenCV's to the last bit: the step computed as 1 / (out / in) in double, the position rounded
// to float, the weights 1 - f and f in float. Equal sizes give the identity (weights 1 and 0).
// What can differ is the last bit of a sum: OpenCV, dispatched to AVX2, fuses some of its
// multiply-adds, and computes an exact 2x reduction on both axes as the mean of 2x2 blocks
// (INTER_AREA), the same weights of 1/2 added in another order.
std::vector<Tap> LinearTaps(std::size_t in, std::size_t out) {
  std::vector<Tap> taps(out);
  const double step = 1.0 / (static_cast<double>(out) / static_cast<double>(in));
  const auto last = static_cast<std::int64_t>(in) - 1;
  for (std::size_t d = 0; d < out; ++d) {
    const auto position = static_cast<float>((static_cast<double>(d) + 0.5) * step - 0.5);
    const float floor = std::floor(position);
    auto first = static_cast<std::int64_t>(floor);
    float f = position - floor;
    if (first < 0) {
      first = 0;
      f = 0;
    }
    if (first >= last) {
      first = last;
      f = 0;
    }
    const auto i = static_cast<std::size_t>(first);
    taps[d] = {i, f == 0 ? i : i + 1, 1.0f - f, f};
  }
  return taps;
}

// One decoded row to the manifest's colour, resized along x by `taps` (nullptr: the width
// stays, `width` pixels): float pixels of 1 or 3 channels. Pixels are converted where the taps
// read them, with no float copy of the source row.
using RowFn = void (*)(const std::uint8_t* row, std::size_t width, const std::vector<Tap>* taps,
                       float* out);

template <typename Sample, std::size_t kIn, Colour kOut>
void ConvertRow(const std::uint8_t* row, std::size_t width, const std::vector<Tap>* taps,
                float* out) {
  constexpr std::size_t kC = ChannelsOf(kOut);
  if (taps == nullptr) {
    for (std::size_t x = 0; x < width; ++x) ConvertPixel<Sample, kIn, kOut>(row, x, out + x * kC);
    return;
  }
  for (const Tap& t : *taps) {
    std::array<float, kC> a;
    std::array<float, kC> b;
    ConvertPixel<Sample, kIn, kOut>(row, t.first, a.data());
    ConvertPixel<Sample, kIn, kOut>(row, t.second, b.data());
    for (std::size_t c = 0; c < kC; ++c) out[c] = a[c] * t.w_first + b[c] * t.w_second;
    out += kC;
  }
}

template <typename Sample, std::size_t kIn>
RowFn PickRowFn(Colour out) {
  switch (out) {
    case Colour::kGray:
      return &ConvertRow<Sample, kIn, Colour::kGray>;
    case Colour::kRgb:
      return &ConvertRow<Sample, kIn, Colour::kRgb>;
    case Colour::kBgr:
      break;
  }
  return &ConvertRow<Sample, kIn, Colour::kBgr>;
}

// `channels` is 1, 3 or 4.
template <typename Sample>
RowFn PickRowFn(int channels, Colour out) {
  return channels == 1   ? PickRowFn<Sample, 1>(out)
         : channels == 3 ? PickRowFn<Sample, 3>(out)
                         : PickRowFn<Sample, 4>(out);
}

// The decoded image, converted and resized to taps_y.size() rows of taps_x.size() pixels of
// `channels` (1 or 3) floats; each finished row goes to `emit(y, row)`. Like OpenCV, it resizes
// horizontally first: each source row that an output row needs is converted and resized once,
// into one of two slots (output rows advance through the source, so two suffice).
template <typename Emit>
void ConvertAndResize(const DecodedImage& image, RowFn convert, std::size_t channels,
                      const std::vector<Tap>& taps_x, const std::vector<Tap>& taps_y, Emit emit) {
  const std::size_t width = image.width;
  const std::size_t row_bytes = width * static_cast<std::size_t>(image.channels) *
                                static_cast<std::size_t>(image.bytes_per_sample);
  const std::size_t row_floats = taps_x.size() * channels;
  const std::vector<Tap>* resample_x = taps_x.size() == width ? nullptr : &taps_x;
  std::array<std::vector<float>, 2> slots = {std::vector<float>(row_floats),
                                             std::vector<float>(row_floats)};
  std::array<std::int64_t, 2> slot_y = {-1, -1};
  // The slot holding source row `y`, filling the other one than `keep` (or the older) if needed.
  const auto fetch = [&](std::size_t y, int keep) {
    for (int s = 0; s < 2; ++s) {
      if (slot_y[static_cast<std::size_t>(s)] == static_cast<std::int64_t>(y)) return s;
    }
    const int s = keep >= 0 ? 1 - keep : (slot_y[0] <= slot_y[1] ? 0 : 1);
    convert(image.pixels.data() + y * row_bytes, width, resample_x,
            slots[static_cast<std::size_t>(s)].data());
    slot_y[static_cast<std::size_t>(s)] = static_cast<std::int64_t>(y);
    return s;
  };
  std::vector<float> blended(row_floats);
  for (std::size_t y = 0; y < taps_y.size(); ++y) {
    const Tap& t = taps_y[y];
    const int first = fetch(t.first, -1);
    const float* a = slots[static_cast<std::size_t>(first)].data();
    if (t.w_second == 0) {  // a * 1 + b * 0 is a: no blend, and no second row to fetch
      emit(y, a);
      continue;
    }
    const float* b = slots[static_cast<std::size_t>(fetch(t.second, first))].data();
    const float wa = t.w_first;  // locals: no store below can change them
    const float wb = t.w_second;
    for (std::size_t i = 0; i < row_floats; ++i) blended[i] = a[i] * wa + b[i] * wb;
    emit(y, blended.data());
  }
}

}  // namespace

Result<Tensor> PreprocessImage(std::string_view image, const manifests::Preprocessing& pre,
                               const TensorInfo& input, const ImageLimits& limits) {
  EF_ASSIGN_OR_RETURN(const int channels, CheckSpec(pre, input));
  EF_ASSIGN_OR_RETURN(const auto mean, PerChannel(pre.mean, channels, 0.0, "mean"));
  EF_ASSIGN_OR_RETURN(const auto stdev, PerChannel(pre.std, channels, 1.0, "std"));

  EF_ASSIGN_OR_RETURN(const DecodedImage decoded, DecodeImage(image, limits));
  if (decoded.bytes_per_sample != 1 && decoded.bytes_per_sample != 2) {
    return Fail(ErrorCode::kInvalidArgument,
                "unsupported sample size (" + std::to_string(decoded.bytes_per_sample) + " bytes)");
  }
  if (decoded.channels != 1 && decoded.channels != 3 && decoded.channels != 4) {
    return Fail(ErrorCode::kInvalidArgument,
                "unsupported channel count " + std::to_string(decoded.channels));
  }
  const std::size_t row_bytes = std::size_t{decoded.width} *
                                static_cast<std::size_t>(decoded.channels) *
                                static_cast<std::size_t>(decoded.bytes_per_sample);
  if (row_bytes == 0 || decoded.pixels.size() != row_bytes * decoded.height) {
    // DecodeImage refuses empty images and lays rows out without padding: a mismatch is ours.
    return Fail(ErrorCode::kInternal,
                "preprocessing failed: decoded " + std::to_string(decoded.width) + "x" +
                    std::to_string(decoded.height) + " image has " +
                    std::to_string(decoded.pixels.size()) + " bytes of pixels");
  }
  const Colour colour = ParseColour(pre.color);
  const RowFn convert = decoded.bytes_per_sample == 2
                            ? PickRowFn<std::uint16_t>(decoded.channels, colour)
                            : PickRowFn<std::uint8_t>(decoded.channels, colour);

  try {
    const auto h = static_cast<std::size_t>(pre.height);
    const auto w = static_cast<std::size_t>(pre.width);
    const auto c_count = static_cast<std::size_t>(channels);
    Tensor tensor;
    tensor.name = input.name;
    tensor.dtype = DType::kFloat32;
    tensor.shape = pre.layout == "NCHW"
                       ? std::vector<std::int64_t>{1, channels, pre.height, pre.width}
                       : std::vector<std::int64_t>{1, pre.height, pre.width, channels};
    const std::size_t plane = h * w;
    tensor.data.resize(plane * c_count * sizeof(float));
    float* out = tensor.AsMutable<float>().data();
    const bool nchw = pre.layout == "NCHW";
    // x * scale, then (x - mean) / std, in double as the OpenCV version did; NCHW puts each
    // channel in its own plane, NHWC keeps them interleaved.
    const std::size_t stride = nchw ? 1 : c_count;
    const auto emit = [&](std::size_t y, const float* row) {
      for (std::size_t c = 0; c < c_count; ++c) {
        const double scale = pre.scale;
        const double m = mean[c];
        const double s = stdev[c];
        float* dst = out + (nchw ? c * plane + y * w : y * w * c_count + c);
        for (std::size_t x = 0; x < w; ++x) {
          dst[x * stride] = static_cast<float>((row[x * c_count + c] * scale - m) / s);
        }
      }
    };
    ConvertAndResize(decoded, convert, c_count, LinearTaps(decoded.width, w),
                     LinearTaps(decoded.height, h), emit);
    return tensor;
  } catch (const std::exception& e) {  // std::bad_alloc for a tensor that does not fit
    return Fail(ErrorCode::kInternal, std::string("preprocessing failed: ") + e.what());
  }
}

}  // namespace edgefleet::runtime
