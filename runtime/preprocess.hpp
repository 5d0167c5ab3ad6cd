// Raw image bytes (PNG, JPEG) to the input tensor, exactly as the manifest's preprocessing says,
// so apps on the box cannot drift from how the model was trained.
//
// Thread safety: free functions without shared state.
#pragma once

#include <string_view>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "runtime/backend.hpp"
#include "runtime/image_decode.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::runtime {

// Decodes `image` and applies, in order: colour conversion, resize to height x width, x * scale,
// (x - mean[c]) / std[c], layout; the result has batch 1, `input`'s name and float32. Fails with
// kInvalidArgument when the bytes are not a decodable image (or would cost more than
// `limits.max_bytes` to decode, see runtime/image_decode.hpp), naming the reason; with
// kUnsupported when `input` is not a float32 4-D tensor.
Result<Tensor> PreprocessImage(std::string_view image, const manifests::Preprocessing& pre,
                               const TensorInfo& input, const ImageLimits& limits = {});

}  // namespace edgefleet::runtime
