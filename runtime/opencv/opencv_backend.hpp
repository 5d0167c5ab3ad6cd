// The `opencv` backend: ONNX models on OpenCV DNN 4.6 (CPU).
//
// Thread safety: see the Session implementation's comment in opencv_backend.cpp for how
// concurrent Run calls are served (chosen by measurement; bench/RESULTS.md).
#pragma once

#include <memory>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::runtime {

// Creates the backend with its measured operator table (runtime/opencv/supported_ops.*).
Result<std::unique_ptr<Backend>> CreateOpenCvBackend();

}  // namespace edgefleet::runtime
