#include "tests/support/face_detection.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "runtime/image_decode.hpp"

namespace edgefleet::testing {

namespace fs = std::filesystem;

namespace {

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Anchors' centers, in the detector's output order: fixed size 1, at the cells' middles.
std::vector<std::pair<double, double>> Anchors() {
  std::vector<std::pair<double, double>> out;
  for (const auto& [stride, per_cell] : {std::pair{8, 2}, std::pair{16, 6}}) {
    const int cells = kFaceInputSize / stride;
    for (int y = 0; y < cells; ++y) {
      for (int x = 0; x < cells; ++x) {
        for (int k = 0; k < per_cell; ++k) out.emplace_back((x + 0.5) / cells, (y + 0.5) / cells);
      }
    }
  }
  return out;
}

}  // namespace

fs::path FaceImagesDir() { return fs::path(EDGEFLEET_TEST_DATA_DIR) / "mediapipe"; }

fs::path FaceDetectorModel() {
  return fs::path(EDGEFLEET_MEDIAPIPE_MODELS_DIR) / "face_detection_short_range.tflite";
}

manifests::Variant FaceDetectorVariant() {
  manifests::Variant v;
  v.id = "tflite";
  v.file = "model/face_detection_short_range.tflite";
  v.format = "tflite";
  v.opset = 3;
  v.inputs = {{"input", "float32", {1, kFaceInputSize, kFaceInputSize, 3}}};
  v.outputs = {{"regressors", "float32", {1, kFaceAnchors, kFaceCoords}},
               {"classificators", "float32", {1, kFaceAnchors, 1}}};
  return v;
}

runtime::Tensor FaceInput(const fs::path& png) {
  auto image = runtime::DecodeImage(ReadFile(png), {});
  if (!image) {
    ADD_FAILURE() << png << ": " << image.error().message;
    return {};
  }
  if (image->width != kFaceInputSize || image->height != kFaceInputSize || image->channels != 3 ||
      image->bytes_per_sample != 1) {
    ADD_FAILURE() << png << ": expected a 128x128 8-bit RGB image";
    return {};
  }
  std::vector<float> values;
  values.reserve(image->pixels.size());
  for (std::size_t p = 0; p + 2 < image->pixels.size(); p += 3) {
    for (std::size_t c = 3; c-- > 0;) {  // BGR to RGB
      values.push_back(static_cast<float>(image->pixels[p + c]) / 127.5F - 1.0F);
    }
  }
  auto t = runtime::Tensor::FromFloats("input", {1, kFaceInputSize, kFaceInputSize, 3}, values);
  EXPECT_TRUE(t) << t.error().message;
  return t ? *t : runtime::Tensor{};
}

std::vector<FaceBox> DecodeFaces(std::span<const float> regressors, std::span<const float> scores) {
  EXPECT_EQ(regressors.size(), static_cast<std::size_t>(kFaceAnchors * kFaceCoords));
  EXPECT_EQ(scores.size(), static_cast<std::size_t>(kFaceAnchors));
  const auto anchors = Anchors();
  std::vector<FaceBox> found;
  for (std::size_t i = 0;
       i < anchors.size() && i < scores.size() && (i + 1) * kFaceCoords <= regressors.size(); ++i) {
    const double logit = std::clamp(static_cast<double>(scores[i]), -100.0, 100.0);
    const double score = 1.0 / (1.0 + std::exp(-logit));
    if (score < kFaceMinScore) continue;
    const float* r = &regressors[i * kFaceCoords];
    const double cx = r[0] / kFaceInputSize + anchors[i].first;
    const double cy = r[1] / kFaceInputSize + anchors[i].second;
    const double w = r[2] / kFaceInputSize;
    const double h = r[3] / kFaceInputSize;
    found.push_back({cx - w / 2, cy - h / 2, w, h, score});
  }
  std::sort(found.begin(), found.end(),
            [](const FaceBox& a, const FaceBox& b) { return a.score > b.score; });
  return found;
}

std::vector<FaceBox> HaarFaces(const std::string& png) {
  const auto faces = nlohmann::json::parse(ReadFile(FaceImagesDir() / "faces.json"));
  std::vector<FaceBox> out;
  for (const auto& b : faces.at(png)) out.push_back({b[0], b[1], b[2], b[3], 1.0});
  return out;
}

double Iou(const FaceBox& a, const FaceBox& b) {
  const double ix = std::max(0.0, std::min(a.x + a.w, b.x + b.w) - std::max(a.x, b.x));
  const double iy = std::max(0.0, std::min(a.y + a.h, b.y + b.h) - std::max(a.y, b.y));
  const double inter = ix * iy;
  return inter / (a.w * a.h + b.w * b.h - inter);
}

}  // namespace edgefleet::testing
