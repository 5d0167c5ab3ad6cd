// Comparing a classifier's logits with golden ones, for the tests of the engine plugins (torch,
// onnxruntime) on the models the build generates (tests/data/make_torchscript.py,
// make_onnx_zoo.py).
#pragma once

#include "runtime/tensor.hpp"

namespace edgefleet::testing {

// Every element within atol + rtol * |expected|, and the same top-1 in every row (gtest
// expectations; the shapes must match).
void ExpectLogitsClose(const runtime::Tensor& got, const runtime::Tensor& expected, double atol,
                       double rtol);

}  // namespace edgefleet::testing
