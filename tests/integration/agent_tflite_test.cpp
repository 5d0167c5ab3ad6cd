// End-to-end: TFLite models served by the real agent through the build's `tflite` backend plugin
// (Arm NN 20.08; issue 12, item 3). Bundles are made by the real CLI:
// - the digits CNN as TFLite (tests/data/make_tflite.py, the ONNX model's weights) installs with
//   the agent's golden parity against torch's logits and answers infer requests like torch;
// - MediaPipe's face detector (npm @mediapipe/face_detection) installs and, through the local
//   API, finds the face in the astronaut photo where OpenCV's Haar cascade finds it. Its golden
//   outputs are the plugin's own, taken only after the same functional check passed on them:
//   there is no other TFLite engine here, so the functional check is the reference;
// - a model with a custom operator is refused from its signed requirements, before download,
//   naming the operator.
#include <httplib.h>

#include "runtime/plugin_backend.hpp"
#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/golden_bundle.hpp"
#include "tests/support/face_detection.hpp"
#include "tests/support/opencv_plugin.hpp"

namespace edgefleet {
namespace {

const fs::path kData = EDGEFLEET_TEST_DATA_DIR;

// Torch ran the same weights in NCHW; this covers layout and summation order.
constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-3;

json Spec(const std::string& name, const std::vector<std::int64_t>& shape) {
  return {{"name", name}, {"dtype", "float32"}, {"shape", shape}};
}

json TfliteVariant(const std::vector<std::string>& operators, json inputs, json outputs) {
  return {{"id", "tflite"},
          {"format", "tflite"},
          {"opset", 3},
          {"operators", operators},
          {"backends", {{{"name", "tflite"}, {"version", ">=22.0.0 <23.0.0"}}}},
          {"inputs", std::move(inputs)},
          {"outputs", std::move(outputs)}};
}

void WriteBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

json PostInfer(int port, const std::string& model, const json& request) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);
  auto r = client.Post("/v2/models/" + model + "/infer", request.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json::object();
  EXPECT_EQ(r->status, 200) << r->body.substr(0, 2000);
  return json::parse(r->body, nullptr, false);
}

class AgentTflite : public AgentE2E {
 protected:
  // The digits model with the golden pair of tests/data/digits/v1 (torch's logits).
  testing::GoldenModel DigitsModel() {
    const fs::path dir = tmp_ / "digits-tflite";
    fs::create_directories(dir / "golden");
    fs::copy_file(kData / "tflite/digits.tflite", dir / "model.tflite");
    for (const std::string pb : {"input_0.pb", "output_0.pb"}) {
      fs::copy_file(kData / "digits/v1/golden/heldout" / pb, dir / "golden" / pb);
    }
    return {dir, "model.tflite"};
  }

  // The face detector with the astronaut photo as golden input and the plugin's outputs for it
  // as golden outputs, once those outputs show the face where the Haar cascade found it.
  testing::GoldenModel FaceModel() {
    const fs::path dir = tmp_ / "face-tflite";
    fs::create_directories(dir / "golden");
    const fs::path model = testing::FaceDetectorModel();
    EXPECT_TRUE(fs::exists(model)) << model << " is missing: run scripts/install-deps.sh";
    fs::copy_file(model, dir / "model.tflite");
    auto backend = testing::LoadBuiltPlugin("tflite");
    EXPECT_TRUE(backend) << backend.error().message;
    if (!backend) return {dir, "model.tflite"};
    auto session = (*backend)->Load(dir / "model.tflite", testing::FaceDetectorVariant(), {});
    EXPECT_TRUE(session) << session.error().message;
    if (!session) return {dir, "model.tflite"};
    const runtime::Tensor input =
        testing::FaceInput(testing::FaceImagesDir() / "astronaut_128.png");
    auto out = (*session)->Run({input});
    EXPECT_TRUE(out && out->size() == 2);
    if (!out || out->size() != 2) return {dir, "model.tflite"};
    ExpectTheAstronautsFace((*out)[0].As<float>(), (*out)[1].As<float>());
    WriteBytes(dir / "golden/input_0.pb", *runtime::SerializeTensorProto(input));
    WriteBytes(dir / "golden/output_0.pb", *runtime::SerializeTensorProto((*out)[0]));
    WriteBytes(dir / "golden/output_1.pb", *runtime::SerializeTensorProto((*out)[1]));
    return {dir, "model.tflite"};
  }

  static void ExpectTheAstronautsFace(std::span<const float> regressors,
                                      std::span<const float> scores) {
    const auto haar = testing::HaarFaces("astronaut_128.png");
    ASSERT_EQ(haar.size(), 1U);
    const auto found = testing::DecodeFaces(regressors, scores);
    ASSERT_FALSE(found.empty()) << "no face found";
    EXPECT_GE(found.front().score, 0.75);
    EXPECT_GE(testing::Iou(found.front(), haar[0]), 0.5);
  }
};

const std::vector<std::string> kDigitsOps = {"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
                                             "RESHAPE"};
const std::vector<std::string> kFaceOps = {
    "ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "MAX_POOL_2D",
    "PAD", "RELU",          "RESHAPE"};

TEST_F(AgentTflite, DigitsAndTheFaceDetectorInstallAndServeThroughArmNn) {
  WriteConfig({}, {{"backends", {"tflite", "opencv"}}});
  const Bundle digits = testing::MakeGoldenBundle(
      fleet_, tmp_.path(), DigitsModel(), "digits-tflite",
      TfliteVariant(kDigitsOps, {Spec("input", {-1, 1, 8, 8})}, {Spec("logits", {-1, 10})}), kAtol,
      kRtol);
  auto installed = Install(digits.path, seconds(120));
  ASSERT_EQ(installed.exit_code, 0) << installed.out << installed.err;
  // The agent's own parity run over the 360 golden rows, against torch's logits.
  EXPECT_NE((installed.out + installed.err).find("pass=true samples=360 top1=1"), std::string::npos)
      << installed.out << installed.err;

  const Bundle face = testing::MakeGoldenBundle(
      fleet_, tmp_.path(), FaceModel(), "face-detector",
      TfliteVariant(kFaceOps, {Spec("input", {1, 128, 128, 3})},
                    {Spec("regressors", {1, 896, 16}), Spec("classificators", {1, 896, 1})}),
      1e-5, 1e-5);
  installed = Install(face.path, seconds(120));
  ASSERT_EQ(installed.exit_code, 0) << installed.out << installed.err;

  StartAgent();
  EXPECT_NE(LogText().find("event=backend_loaded name=tflite"), std::string::npos) << LogText();
  const json status = Status();
  bool listed = false;
  for (const auto& b : status.value("backends", json::array())) {
    if (b.value("name", "") != "tflite") continue;
    listed = true;
    EXPECT_EQ(b["formats"], json({"tflite"}));
    EXPECT_EQ(b["devices"], json({"cpu", "armnn:CpuRef"}));
  }
  EXPECT_TRUE(listed) << status.dump();

  // Digits: golden row 7 as a JSON tensor gives torch's logits for it.
  const auto input = runtime::ReadTensorProto(kData / "digits/v1/golden/heldout/input_0.pb");
  const auto output = runtime::ReadTensorProto(kData / "digits/v1/golden/heldout/output_0.pb");
  ASSERT_TRUE(input && output);
  const auto row = input->As<float>().subspan(7 * 64, 64);
  const auto expected = output->As<float>().subspan(7 * 10, 10);
  const json digits_reply = PostInfer(port_, "digits-tflite",
                                      {{"inputs",
                                        {{{"name", "input"},
                                          {"shape", {1, 1, 8, 8}},
                                          {"datatype", "FP32"},
                                          {"data", std::vector<float>(row.begin(), row.end())}}}}});
  ASSERT_TRUE(digits_reply.contains("outputs")) << digits_reply.dump();
  const json& logits = digits_reply["outputs"][0];
  ASSERT_EQ(logits["data"].size(), 10U);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_NEAR(logits["data"][i].get<double>(), expected[i], kAtol + kRtol * std::abs(expected[i]))
        << i;
  }

  // The face detector through the local API: the astronaut's face, where the cascade found it.
  const runtime::Tensor face_input =
      testing::FaceInput(testing::FaceImagesDir() / "astronaut_128.png");
  const auto pixels = face_input.As<float>();
  const json face_reply =
      PostInfer(port_, "face-detector",
                {{"inputs",
                  {{{"name", "input"},
                    {"shape", {1, 128, 128, 3}},
                    {"datatype", "FP32"},
                    {"data", std::vector<float>(pixels.begin(), pixels.end())}}}}});
  ASSERT_TRUE(face_reply.contains("outputs")) << face_reply.dump().substr(0, 500);
  ASSERT_EQ(face_reply["outputs"].size(), 2U);
  const auto regressors = face_reply["outputs"][0]["data"].get<std::vector<float>>();
  const auto scores = face_reply["outputs"][1]["data"].get<std::vector<float>>();
  ExpectTheAstronautsFace(regressors, scores);
  StopAgent();
}

// The custom operator's name comes from the signed requirements, which `bundle create` read from
// the file; the box refuses before a byte of the bundle is downloaded.
TEST_F(AgentTflite, ACustomOperatorIsRefusedBeforeDownloadByName) {
  WriteConfig({}, {{"backends", {"tflite"}}});
  StartAgent();
  const fs::path dir = tmp_ / "custom";
  fs::create_directories(dir / "golden");
  fs::copy_file(kData / "tflite/custom_op.tflite", dir / "model.tflite");
  // Golden files of the model's shapes (never used: the bundle is refused before download).
  std::vector<float> zeros_in(16, 0.0F), zeros_out(64, 0.0F);
  WriteBytes(dir / "golden/input_0.pb", *runtime::SerializeTensorProto(*runtime::Tensor::FromFloats(
                                            "input", {1, 4, 4, 1}, zeros_in)));
  WriteBytes(dir / "golden/output_0.pb",
             *runtime::SerializeTensorProto(
                 *runtime::Tensor::FromFloats("output", {1, 8, 8, 1}, zeros_out)));
  const Bundle bundle = testing::MakeGoldenBundle(
      fleet_, tmp_.path(), {dir, "model.tflite"}, "segmenter",
      // Only id and backends: `bundle create` reads format, opset, operators (the custom one as
      // custom:<name>), inputs and outputs from the file.
      json{{"id", "tflite"}, {"backends", {{{"name", "tflite"}, {"version", ">=22.0.0 <23.0.0"}}}}},
      kAtol, kRtol);
  server_.Add("/segmenter.efb", bundle.bytes);
  Deploy({testing::DesiredModel(bundle, server_.Url("/segmenter.efb"))});
  const std::string line = AwaitDesiredModelLine("segmenter");
  EXPECT_NE(line.find("result=refused"), std::string::npos) << line;
  EXPECT_NE(line.find("custom:Convolution2DTransposeBias"), std::string::npos) << line;
  EXPECT_EQ(server_.BytesSent("/segmenter.efb"), 0U) << "downloaded before refusing";
  std::printf("refusal: %s\n", line.c_str());
  StopAgent();
}

}  // namespace
}  // namespace edgefleet
