// MediaPipe's short-range face detector (face_detection_short_range.tflite, npm
// @mediapipe/face_detection) as its graph uses it, for the tests that run it through the tflite
// plugin and the agent: the input tensor made from a 128x128 image, and the detections decoded
// from its two outputs (SsdAnchorsCalculator's anchors, TensorsToDetectionsCalculator's box
// scale and sigmoid scores).
#pragma once

#include <filesystem>
#include <span>
#include <vector>

#include "manifests/manifest.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::testing {

inline constexpr int kFaceInputSize = 128;    // 128x128 RGB in [-1, 1], NHWC
inline constexpr int kFaceAnchors = 896;      // 16x16 cells x 2 (stride 8) + 8x8 x 6 (stride 16)
inline constexpr int kFaceCoords = 16;        // box (4) and six keypoints (12) per anchor
inline constexpr double kFaceMinScore = 0.5;  // the graph's min_score_thresh

// The face models' images and the Haar cascade's boxes (tests/data/make_face_images.py).
std::filesystem::path FaceImagesDir();
// face_detection_short_range.tflite where scripts/install-deps.sh put it.
std::filesystem::path FaceDetectorModel();

// The detector's variant as a bundle declares it: input "input" [1,128,128,3], outputs
// "regressors" [1,896,16] and "classificators" [1,896,1], float32.
manifests::Variant FaceDetectorVariant();

struct FaceBox {
  double x = 0, y = 0, w = 0, h = 0;  // top-left and size, as fractions of the image
  double score = 0;
};

// The 128x128 PNG `png` as the detector's input tensor "input" [1,128,128,3]; a gtest failure
// and an empty tensor when it is not such an image.
runtime::Tensor FaceInput(const std::filesystem::path& png);

// Detections with a score of at least kFaceMinScore, best first.
std::vector<FaceBox> DecodeFaces(std::span<const float> regressors, std::span<const float> scores);

// The faces OpenCV's Haar cascade found in `png` (faces.json).
std::vector<FaceBox> HaarFaces(const std::string& png);

double Iou(const FaceBox& a, const FaceBox& b);

}  // namespace edgefleet::testing
