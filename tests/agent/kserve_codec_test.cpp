// The KServe v2 codec as pure functions: request ids, decoding requests and encoding responses,
// written from the Open Inference Protocol's text (no server, no model).
#include "agent/kserve_codec.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace edgefleet::agent {
namespace {

using json = nlohmann::json;

const std::vector<runtime::TensorInfo> kInputs = {{"input", runtime::DType::kFloat32, {-1, 2}}};
const std::vector<runtime::TensorInfo> kOutputs = {{"logits", runtime::DType::kFloat32, {-1, 3}},
                                                   {"label", runtime::DType::kInt64, {-1}}};

std::vector<runtime::Tensor> Outputs(int batch) {
  std::vector<float> logits;
  std::vector<std::int64_t> labels;
  for (int b = 0; b < batch; ++b) {
    logits.insert(logits.end(), {0.1f, 2.0f + static_cast<float>(b), 0.3f});
    labels.push_back(1);
  }
  auto scores = runtime::Tensor::FromFloats("logits", {batch, 3}, logits);
  EXPECT_TRUE(scores);
  runtime::Tensor label;
  label.name = "label";
  label.dtype = runtime::DType::kInt64;
  label.shape = {batch};
  label.data.resize(labels.size() * sizeof(std::int64_t));
  std::memcpy(label.data.data(), labels.data(), label.data.size());
  return {*scores, label};
}

std::optional<HttpError> Decode(const std::string& body, InferRequest* out,
                                std::string* id = nullptr, const std::string* header = nullptr) {
  static const SharedMemoryRegistry kNoRegions(4);
  std::string local_id = "generated";
  return DecodeInferRequest(body, header, kInputs, kOutputs, LocalApiOptions{}, kNoRegions,
                            id ? id : &local_id, out);
}

TEST(KserveCodecTest, AJsonIdIsAnyBoundedUtf8StringWithoutControlCharacters) {
  EXPECT_TRUE(IsUsableJsonId("my request 1"));
  EXPECT_TRUE(IsUsableJsonId("caf\xc3\xa9-\xe6\x97\xa5"));
  EXPECT_TRUE(IsUsableJsonId(std::string(128, 'x')));
  EXPECT_FALSE(IsUsableJsonId(std::string(129, 'x')));
  EXPECT_FALSE(IsUsableJsonId(""));
  EXPECT_FALSE(IsUsableJsonId("a\nb"));
  EXPECT_FALSE(IsUsableJsonId("a\x7f"));
  EXPECT_FALSE(IsUsableJsonId("\xc3("));  // invalid UTF-8
  // The header form is stricter: it must not break header lines or carry spaces.
  EXPECT_FALSE(IsUsableRequestId("my request 1"));
  EXPECT_FALSE(IsUsableRequestId("caf\xc3\xa9"));
  EXPECT_TRUE(IsUsableRequestId("req-42"));
  const std::string a = NewRequestId();
  EXPECT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4') << a;
  EXPECT_NE(a, NewRequestId());
}

TEST(KserveCodecTest, TheRequestsIdReplacesTheGeneratedOneEvenWhenDecodingFailsLater) {
  InferRequest req;
  std::string id = "generated";
  const auto error = Decode(R"({"id": "mon id é", "inputs": [{"name": "input", "shape": [1, 2],
      "datatype": "FP32", "data": [1, 2, 3]}]})",
                            &req, &id);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 400);
  EXPECT_NE(error->message.find("data holds more elements but shape [1,2] needs 2"),
            std::string::npos)
      << error->message;
  EXPECT_EQ(id, "mon id é");
}

TEST(KserveCodecTest, WrongDatatypesAndUnknownOutputsAreTheClients400) {
  // (Batch 0 decodes to an empty tensor; the backend's input check refuses it with 400 before
  // the engine runs, runtime/plugin_backend.cpp.)
  InferRequest req;
  auto error = Decode(
      R"({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]})",
      &req);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 400);
  EXPECT_NE(error->message.find("INT64"), std::string::npos) << error->message;
  error = Decode(R"({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
      "data": [1, 2]}], "outputs": [{"name": "nope"}]})",
                 &req);
  ASSERT_TRUE(error);
  EXPECT_NE(error->message.find("unknown output 'nope'"), std::string::npos) << error->message;
}

TEST(KserveCodecTest, BinaryInputsFollowTheJsonHeader) {
  const std::string header =
      R"({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
          "parameters": {"binary_data_size": 8}}]})";
  const float values[2] = {1.5f, -2.0f};
  std::string body = header;
  body.append(reinterpret_cast<const char*>(values), sizeof(values));
  const std::string length = std::to_string(header.size());
  InferRequest req;
  ASSERT_FALSE(Decode(body, &req, nullptr, &length));
  ASSERT_EQ(req.inputs.size(), 1u);
  const auto got = req.inputs[0].As<float>();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -2.0f);

  const std::string short_length = std::to_string(header.size() + 5);
  const auto error = Decode(body, &req, nullptr, &short_length);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 400);
}

TEST(KserveCodecTest, AnOutputsOwnBinaryDataFalseWinsOverTheRequestsBinaryDataOutput) {
  InferRequest req;
  ASSERT_FALSE(Decode(R"({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
      "data": [1, 2]}], "parameters": {"binary_data_output": true},
      "outputs": [{"name": "logits", "parameters": {"binary_data": false}}, {"name": "label"}]})",
                      &req));
  EXPECT_FALSE(req.Binary("logits"));
  EXPECT_TRUE(req.Binary("label"));

  InferResponse res;
  ASSERT_FALSE(EncodeInferResponse("digits", "1.0.0", "r1", "a", Outputs(1), req, &res));
  EXPECT_EQ(res.content_type, "application/octet-stream");
  ASSERT_TRUE(res.header_length);
  ASSERT_EQ(res.body.size(), *res.header_length + sizeof(std::int64_t));
  const json header = json::parse(res.body.substr(0, *res.header_length));
  ASSERT_EQ(header["outputs"].size(), 2u);
  EXPECT_TRUE(header["outputs"][0].contains("data"));
  EXPECT_EQ(header["outputs"][1]["parameters"]["binary_data_size"], 8);
  std::int64_t label = 0;
  std::memcpy(&label, res.body.data() + *res.header_length, sizeof(label));
  EXPECT_EQ(label, 1);
}

TEST(KserveCodecTest, AJsonResponseNamesModelVersionIdAndTheTop1OfOneRow) {
  InferRequest all;
  InferResponse res;
  ASSERT_FALSE(EncodeInferResponse("digits", "1.1.0", "caf\xc3\xa9", "b", Outputs(1), all, &res));
  EXPECT_EQ(res.content_type, "application/json");
  EXPECT_FALSE(res.header_length);
  const json doc = json::parse(res.body);
  EXPECT_EQ(doc["model_name"], "digits");
  EXPECT_EQ(doc["model_version"], "1.1.0");
  EXPECT_EQ(doc["id"], "caf\xc3\xa9");
  EXPECT_EQ(doc["parameters"]["slot"], "b");
  EXPECT_EQ(doc["parameters"]["top1_class"], 1);
  ASSERT_TRUE(res.top1);
  EXPECT_EQ(res.top1->label, 1);
  ASSERT_EQ(doc["outputs"].size(), 2u);
  EXPECT_EQ(doc["outputs"][0]["datatype"], "FP32");
  EXPECT_EQ(doc["outputs"][1]["data"], json::array({1}));

  // A batch of two is no single answer: no top-1 for feedback.
  ASSERT_FALSE(EncodeInferResponse("digits", "1.1.0", "x", "b", Outputs(2), all, &res));
  EXPECT_FALSE(res.top1);
  EXPECT_FALSE(json::parse(res.body)["parameters"].contains("top1_class"));

  // Only the outputs asked for.
  InferRequest one;
  one.wanted_outputs = {"label"};
  ASSERT_FALSE(EncodeInferResponse("digits", "1.1.0", "x", "b", Outputs(1), one, &res));
  const json only = json::parse(res.body);
  ASSERT_EQ(only["outputs"].size(), 1u);
  EXPECT_EQ(only["outputs"][0]["name"], "label");
}

TEST(KserveCodecTest, AnOutputJsonCannotCarryIsAServerErrorNamingIt) {
  std::vector<runtime::Tensor> outputs(1);
  outputs[0].name = "half";
  outputs[0].dtype = runtime::DType::kFloat16;
  outputs[0].shape = {1};
  outputs[0].data.resize(2);
  InferRequest all;
  InferResponse res;
  const auto error = EncodeInferResponse("m", "1.0.0", "x", "a", outputs, all, &res);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 500);
  EXPECT_NE(error->message.find("output 'half' has datatype FP16"), std::string::npos)
      << error->message;
  // As raw bytes it can.
  all.all_binary = true;
  EXPECT_FALSE(EncodeInferResponse("m", "1.0.0", "x", "a", outputs, all, &res));
}

TEST(KserveCodecTest, DeepJsonIsRefusedBeforeParsing) {
  json doc;
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  const auto error = ParseJsonWithin(deep, 32, &doc);
  ASSERT_TRUE(error);
  EXPECT_NE(error->message.find("deeper than 32"), std::string::npos) << error->message;
  EXPECT_FALSE(ParseJsonWithin(R"({"a": [[1]]})", 32, &doc));
  EXPECT_EQ(doc["a"][0][0], 1);
}

}  // namespace
}  // namespace edgefleet::agent
