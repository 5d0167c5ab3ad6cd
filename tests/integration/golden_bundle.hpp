// End-to-end helpers for the engine plugins (torch, onnxruntime) on the classifier models the
// build generates with golden data (tests/data/make_torchscript.py, make_onnx_zoo.py): make a
// one-variant bundle of such a model with the real CLI, and check what the real agent answers
// for the golden input.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/tensor.hpp"
#include "tests/integration/agent_harness.hpp"

namespace edgefleet::testing {

// A generated model: <dir>/<model file> and <dir>/golden/input_0.pb, output_0.pb (and
// output_1.pb, ... for a model with more outputs); the classifiers' input "input" is float32
// [2,3,224,224], their output "logits" float32 [2,1000].
struct GoldenModel {
  std::filesystem::path dir;
  std::string file;  // "model.pt", "model.onnx"
};

// A bundle named `name`, version 1.0.0, whose one variant (`variant` without "file", which is
// set here) is the model's file, with its golden pair and parity at atol/rtol, made by
// `edgefleet bundle create` in `work` (`extra_args` appended).
Bundle MakeGoldenBundle(const Fleet& fleet, const std::filesystem::path& work,
                        const GoldenModel& model, const std::string& name, nlohmann::json variant,
                        double atol, double rtol, const std::vector<std::string>& extra_args = {});

// POSTs golden row 0 as a JSON FP32 tensor to the agent's infer route for `name` on `port` and
// checks the logits against golden row 0 (gtest assertions).
void ExpectAgentServesGolden(int port, const std::string& name, const GoldenModel& model,
                             double atol, double rtol);

}  // namespace edgefleet::testing
