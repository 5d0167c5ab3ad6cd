// A real model teams ship: MediaPipe's short-range face detector (face_detection_short_range.tflite
// from npm's @mediapipe/face_detection, pinned by tests/data/mediapipe/npm/package-lock.json and
// installed by scripts/install-deps.sh) through the tflite plugin on Arm NN. Its weights are
// float16 behind DEQUANTIZE operators, which the plugin folds before Arm NN 20.08 parses it.
//
// There is no reference engine for its outputs here (TensorFlow is not in Debian), so the check is
// functional: decoded the way MediaPipe's graph decodes it, the detector must find the one face
// in scikit-image's `astronaut` photo where OpenCV's Haar cascade found it
// (tests/data/make_face_images.py wrote the 128x128 image and that box), and no face in the
// `coffee` photo, where the cascade found none either.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/plugin_backend.hpp"
#include "runtime/tflite/fp16_fold.hpp"
#include "tests/support/face_detection.hpp"
#include "tests/support/opencv_plugin.hpp"

namespace edgefleet::runtime {
namespace {

using testing::FaceBox;

std::vector<FaceBox> Detect(Session& session, const std::string& png) {
  auto out = session.Run({testing::FaceInput(testing::FaceImagesDir() / png)});
  EXPECT_TRUE(out) << out.error().message;
  if (!out || out->size() != 2) return {};
  return testing::DecodeFaces((*out)[0].As<float>(), (*out)[1].As<float>());
}

TEST(MediaPipeFaceDetection, FindsTheFaceTheHaarCascadeFoundAndNoneInAPhotoWithout) {
  const auto model = testing::FaceDetectorModel();
  ASSERT_TRUE(std::filesystem::exists(model))
      << model << " is missing: run scripts/install-deps.sh";
  auto backend = testing::LoadBuiltPlugin("tflite");
  ASSERT_TRUE(backend) << backend.error().message;
  auto session = (*backend)->Load(model, testing::FaceDetectorVariant(), {});
  ASSERT_TRUE(session) << session.error().message;

  const auto haar = testing::HaarFaces("astronaut_128.png");
  ASSERT_EQ(haar.size(), 1U);
  const auto found = Detect(**session, "astronaut_128.png");
  ASSERT_FALSE(found.empty()) << "no detection above " << testing::kFaceMinScore;
  const FaceBox& best = found.front();
  std::printf(
      "astronaut: best score %.3f box [%.3f %.3f %.3f %.3f], Haar [%.3f %.3f %.3f %.3f], "
      "IoU %.3f, %zu detections\n",
      best.score, best.x, best.y, best.w, best.h, haar[0].x, haar[0].y, haar[0].w, haar[0].h,
      testing::Iou(best, haar[0]), found.size());
  EXPECT_GE(best.score, 0.75);
  EXPECT_GE(testing::Iou(best, haar[0]), 0.5);
  // Every detection above the threshold is that face (overlapping anchors of one face).
  for (const auto& box : found) EXPECT_GE(testing::Iou(box, haar[0]), 0.3) << box.score;

  ASSERT_TRUE(testing::HaarFaces("coffee_128.png").empty());
  const auto none = Detect(**session, "coffee_128.png");
  EXPECT_TRUE(none.empty()) << none.size() << " detection(s) on coffee_128.png";
}

std::vector<std::uint8_t> ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The fold on the real file: every float16 weight's DEQUANTIZE goes (74 in this model), the
// file only grows (the float32 copies are appended), and folding again finds nothing left.
TEST(TfliteFp16Fold, FoldsEveryFloat16WeightOfTheDetectorOnce) {
  auto bytes = ReadBytes(testing::FaceDetectorModel());
  ASSERT_FALSE(bytes.empty()) << testing::FaceDetectorModel() << ": run scripts/install-deps.sh";
  const std::size_t before = bytes.size();
  EXPECT_EQ(tflite::FoldFloat16Weights(bytes).folded, 74U);
  EXPECT_GT(bytes.size(), before);
  EXPECT_EQ(tflite::FoldFloat16Weights(bytes).folded, 0U);
}

// A damaged file is left exactly as it was (or folded consistently), never read out of bounds
// (the sanitizer pass runs this): every truncation point in steps, and single-byte corruptions.
TEST(TfliteFp16Fold, TruncatedOrCorruptFilesAreLeftAsTheyWere) {
  const auto original = ReadBytes(testing::FaceDetectorModel());
  ASSERT_FALSE(original.empty());
  for (std::size_t size = 0; size < original.size(); size += 997) {
    std::vector<std::uint8_t> cut(original.begin(), original.begin() + static_cast<long>(size));
    const auto copy = cut;
    if (tflite::FoldFloat16Weights(cut).folded == 0) {
      EXPECT_EQ(cut, copy) << "size " << size;
    }
  }
  std::uint32_t seed = 12345;
  for (int i = 0; i < 300; ++i) {
    seed = seed * 1664525U + 1013904223U;
    auto damaged = original;
    damaged[seed % damaged.size()] ^= static_cast<std::uint8_t>(1U + (seed >> 24) % 255U);
    const auto copy = damaged;
    if (tflite::FoldFloat16Weights(damaged).folded == 0) {
      EXPECT_EQ(damaged, copy);
    }
  }
}

}  // namespace
}  // namespace edgefleet::runtime
