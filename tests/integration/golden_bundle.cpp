#include "tests/integration/golden_bundle.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

namespace edgefleet::testing {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::string OutputFile(int i) { return "output_" + std::to_string(i) + ".pb"; }
}  // namespace

Bundle MakeGoldenBundle(const Fleet& fleet, const fs::path& work, const GoldenModel& model,
                        const std::string& name, json variant, double atol, double rtol,
                        const std::vector<std::string>& extra_args) {
  return MakeBundle(
      fleet, "v1", work,
      [&](json& body, const fs::path& dir) {
        fs::remove_all(dir / "model");
        fs::remove_all(dir / "golden");
        fs::create_directories(dir / "model");
        fs::create_directories(dir / "golden" / "g");
        const std::string file = name + fs::path(model.file).extension().string();
        fs::copy_file(model.dir / model.file, dir / "model" / file);
        // input_0.pb and output_0.pb, output_1.pb, ... (one per model output).
        json outputs = json::array();
        fs::copy_file(model.dir / "golden" / "input_0.pb", dir / "golden" / "g" / "input_0.pb");
        for (int i = 0; i == 0 || fs::exists(model.dir / "golden" / OutputFile(i)); ++i) {
          fs::copy_file(model.dir / "golden" / OutputFile(i), dir / "golden" / "g" / OutputFile(i));
          outputs.push_back("golden/g/" + OutputFile(i));
        }
        variant["file"] = "model/" + file;
        body = {{"name", name},
                {"version", "1.0.0"},
                {"description", model.dir.filename().string() + " (random weights)"},
                {"variants", {variant}},
                {"golden",
                 {{{"name", "g"}, {"inputs", {"golden/g/input_0.pb"}}, {"outputs", outputs}}}},
                {"parity",
                 {{"atol", atol},
                  {"rtol", rtol},
                  {"min_top1_agreement", 1.0},
                  {"max_latency_factor", 3.0}}},
                {"watch", ShortWatch()}};
      },
      extra_args);
}

void ExpectAgentServesGolden(int port, const std::string& name, const GoldenModel& model,
                             double atol, double rtol) {
  const auto input = runtime::ReadTensorProto(model.dir / "golden" / "input_0.pb");
  const auto output = runtime::ReadTensorProto(model.dir / "golden" / "output_0.pb");
  ASSERT_TRUE(input && output);
  const auto x = input->As<float>().subspan(0, 3 * 224 * 224);
  const auto expected = output->As<float>().subspan(0, 1000);
  const json request = {{"inputs",
                         {{{"name", "input"},
                           {"shape", {1, 3, 224, 224}},
                           {"datatype", "FP32"},
                           {"data", std::vector<float>(x.begin(), x.end())}}}}};
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);
  auto r = client.Post("/v2/models/" + name + "/infer", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body.substr(0, 2000);
  const json body = json::parse(r->body);
  const json& logits = body["outputs"][0];
  EXPECT_EQ(logits["name"], "logits");
  EXPECT_EQ(logits["shape"], json({1, 1000}));
  ASSERT_EQ(logits["data"].size(), expected.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double got = logits["data"][i].get<double>();
    if (std::abs(got - expected[i]) > atol + rtol * std::abs(expected[i])) ++bad;
  }
  EXPECT_EQ(bad, 0U) << name;
}

}  // namespace edgefleet::testing
