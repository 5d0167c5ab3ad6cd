// Raw image bytes to the model's input tensor (see runtime/preprocess.hpp).
//
// Only PNG and JPEG are accepted (runtime/image_decode.hpp decodes them through libpng and
// libjpeg-turbo, with the pixels cv::imdecode would give): the bytes come from applications over
// the local API, and every extra decoder is extra attack surface that no manifest asks for.
// What an image costs to decode is computed from its PNG/JPEG header and checked against the
// budget (ImageLimits) before anything is decoded, so a 100000x100000 "bomb" costs a few bytes
// of parsing, not gigabytes of pixels.
#include "runtime/preprocess.hpp"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdint>
#include <string>

#include "manifests/log_value.hpp"
#include "runtime/image_decode.hpp"

namespace edgefleet::runtime {
namespace {

int Channels(std::string_view color) { return color == "GRAY" ? 1 : 3; }

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
  const int channels = Channels(pre.color);
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

// Decoded image (gray, BGR or BGRA as DecodeImage gives them, 8 or 16 bit) to `color` as
// 8-bit-range float32. 16-bit images are divided by 257 so that the manifest's scale, written
// for 8-bit pixels (1/255), means the same for them. Alpha is dropped, not composited: the models
// we serve are trained on opaque images. (Gray + alpha arrives as BGRA with B = G = R.)
Result<cv::Mat> ToColor(const cv::Mat& decoded, std::string_view color) {
  cv::Mat img = decoded;
  double to_8bit = 1.0;
  if (img.depth() == CV_16U) {
    to_8bit = 1.0 / 257.0;
  } else if (img.depth() != CV_8U) {
    return Fail(ErrorCode::kInvalidArgument,
                "unsupported pixel depth (OpenCV depth " + std::to_string(img.depth()) + ")");
  }
  int code = -1;
  switch (img.channels()) {
    case 1:
      if (color != "GRAY") code = cv::COLOR_GRAY2BGR;  // same bytes as GRAY2RGB
      break;
    case 3:  // DecodeImage gives colour as BGR, like OpenCV
      if (color == "GRAY") code = cv::COLOR_BGR2GRAY;
      if (color == "RGB") code = cv::COLOR_BGR2RGB;
      break;
    case 4:
      code = color == "GRAY"  ? cv::COLOR_BGRA2GRAY
             : color == "RGB" ? cv::COLOR_BGRA2RGB
                              : cv::COLOR_BGRA2BGR;
      break;
    default:
      return Fail(ErrorCode::kInvalidArgument,
                  "unsupported channel count " + std::to_string(img.channels()));
  }
  cv::Mat converted;
  if (code >= 0) {
    cv::cvtColor(img, converted, code);
  } else {
    converted = img;
  }
  cv::Mat out;
  converted.convertTo(out, CV_32F, to_8bit);
  return out;
}

}  // namespace

Result<Tensor> PreprocessImage(std::string_view image, const manifests::Preprocessing& pre,
                               const TensorInfo& input, const ImageLimits& limits) {
  EF_ASSIGN_OR_RETURN(const int channels, CheckSpec(pre, input));
  EF_ASSIGN_OR_RETURN(const auto mean, PerChannel(pre.mean, channels, 0.0, "mean"));
  EF_ASSIGN_OR_RETURN(const auto stdev, PerChannel(pre.std, channels, 1.0, "std"));

  EF_ASSIGN_OR_RETURN(DecodedImage image_pixels, DecodeImage(image, limits));

  try {
    // A header over the decoded pixels (no copy); image_pixels outlives every use of it.
    const int depth = image_pixels.bytes_per_sample == 2 ? CV_16U : CV_8U;
    const cv::Mat decoded(static_cast<int>(image_pixels.height),
                          static_cast<int>(image_pixels.width),
                          CV_MAKETYPE(depth, image_pixels.channels), image_pixels.pixels.data());
    EF_ASSIGN_OR_RETURN(cv::Mat img, ToColor(decoded, pre.color));

    // INTER_LINEAR (bilinear, what cv2.resize and blobFromImage use), on float pixels so no
    // rounding happens before scale/mean/std. It does not antialias: PIL's BILINEAR does when
    // shrinking, so a model trained through PIL with large downscales sees slightly smoother
    // pixels. Same-size images are not resampled at all.
    const int h = static_cast<int>(pre.height);
    const int w = static_cast<int>(pre.width);
    if (img.rows != h || img.cols != w) {
      cv::Mat resized;
      cv::resize(img, resized, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
      img = resized;
    }
    if (!img.isContinuous()) img = img.clone();

    Tensor tensor;
    tensor.name = input.name;
    tensor.dtype = DType::kFloat32;
    tensor.shape = pre.layout == "NCHW" ? std::vector<std::int64_t>{1, channels, h, w}
                                        : std::vector<std::int64_t>{1, h, w, channels};
    const std::size_t plane = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
    tensor.data.resize(plane * static_cast<std::size_t>(channels) * sizeof(float));
    float* out = tensor.AsMutable<float>().data();
    const float* px = img.ptr<float>();
    const auto c_count = static_cast<std::size_t>(channels);
    const bool nchw = pre.layout == "NCHW";
    for (std::size_t p = 0; p < plane; ++p) {
      for (std::size_t c = 0; c < c_count; ++c) {
        const double v = (px[p * c_count + c] * pre.scale - mean[c]) / stdev[c];
        out[nchw ? c * plane + p : p * c_count + c] = static_cast<float>(v);
      }
    }
    return tensor;
  } catch (const cv::Exception& e) {
    // Colour conversion and resize on a well-formed Mat: a failure is ours, not the client's.
    return Fail(ErrorCode::kInternal, "preprocessing failed (opencv: " +
                                          (e.err.empty() ? std::string(e.what()) : e.err) + ")");
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kInternal, std::string("preprocessing failed: ") + e.what());
  }
}

}  // namespace edgefleet::runtime
