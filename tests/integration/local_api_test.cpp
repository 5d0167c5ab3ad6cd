// The local inference API end to end: a real LocalApi on a free loopback port, a real ModelHost
// with the OpenCV backend serving tests/data/digits, and httplib's real client.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/local_api.hpp"
#include "runtime/model_host.hpp"
#include "runtime/tensor.hpp"
#include "tests/integration/served_api.hpp"
#include "tests/support/digits.hpp"
#include "tests/support/grafana.hpp"
#include "tests/support/opencv_plugin.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json ParseBody(const httplib::Result& res) {
  if (!res) return json();
  return json::parse(res->body, nullptr, false);
}

std::string Describe(const httplib::Result& res) {
  if (!res) return "transport error " + std::to_string(static_cast<int>(res.error()));
  return std::to_string(res->status) + " " + res->body.substr(0, 300);
}

json RowRequest(const runtime::Tensor& batch, std::size_t row) {
  auto values = batch.As<float>();
  const std::size_t per_row = 64;
  std::vector<float> data(values.begin() + static_cast<std::ptrdiff_t>(row * per_row),
                          values.begin() + static_cast<std::ptrdiff_t>((row + 1) * per_row));
  return {{"id", "row-" + std::to_string(row)},
          {"inputs",
           {{{"name", "input"}, {"shape", {1, 1, 8, 8}}, {"datatype", "FP32"}, {"data", data}}}}};
}

int Argmax(const json& data) {
  int best = 0;
  for (std::size_t i = 1; i < data.size(); ++i) {
    if (data[i].get<double>() > data[static_cast<std::size_t>(best)].get<double>()) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

class LocalApiDigits : public ::testing::Test {
 protected:
  void SetUp() override {
    served_ = std::make_unique<Served>();
    served_->Load("v1", runtime::Slot::kA);
    ASSERT_TRUE(served_->host().Activate("digits", runtime::Slot::kA));
    agent::LocalApiOptions options;
    options.models = {"digits"};
    options.max_body_bytes = 1u << 20;  // small, so the 413 test stays quick
    served_->Start(options);
    client_ = served_->Client();
  }
  void TearDown() override {
    client_.reset();
    served_.reset();
  }

  httplib::Result InferJson(const json& body, const std::string& path = "/v2/models/digits/infer") {
    return client_->Post(path.c_str(), body.dump(), "application/json");
  }

  std::unique_ptr<Served> served_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(LocalApiDigits, HealthAndMetadata) {
  auto live = client_->Get("/v2/health/live");
  ASSERT_TRUE(live) << Describe(live);
  EXPECT_EQ(live->status, 200);
  auto ready = client_->Get("/v2/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;

  auto meta = client_->Get("/v2/models/digits");
  ASSERT_TRUE(meta);
  ASSERT_EQ(meta->status, 200) << meta->body;
  json m = ParseBody(meta);
  EXPECT_EQ(m["name"], "digits");
  EXPECT_EQ(m["platform"], "opencv_onnx");  // "<engine>_<format>", as Triton's
  EXPECT_EQ(m["versions"], json::array({"1.0.0"}));
  ASSERT_EQ(m["inputs"].size(), 1u);
  EXPECT_EQ(m["inputs"][0]["name"], "input");
  EXPECT_EQ(m["inputs"][0]["datatype"], "FP32");
  EXPECT_EQ(m["inputs"][0]["shape"], json::array({-1, 1, 8, 8}));
  EXPECT_EQ(m["outputs"][0]["name"], "logits");
  EXPECT_EQ(m["outputs"][0]["datatype"], "FP32");

  auto versioned = client_->Get("/v2/models/digits/versions/1.0.0");
  ASSERT_TRUE(versioned);
  EXPECT_EQ(versioned->status, 200);
  auto model_ready = client_->Get("/v2/models/digits/ready");
  ASSERT_TRUE(model_ready);
  EXPECT_EQ(model_ready->status, 200);
  auto version_ready = client_->Get("/v2/models/digits/versions/1.0.0/ready");
  ASSERT_TRUE(version_ready);
  EXPECT_EQ(version_ready->status, 200);

  for (const char* path : {"/v2/models/digits/versions/9.9.9", "/v2/models/nope",
                           "/v2/models/nope/ready", "/v2/models/digits/versions/9.9.9/ready"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_TRUE(ParseBody(res)["error"].is_string()) << path << ": " << res->body;
  }
  auto server = client_->Get("/v2");
  ASSERT_TRUE(server);
  EXPECT_EQ(ParseBody(server)["name"], "edgefleet");
}

// Acceptance 1: every held-out PNG over HTTP as raw bytes; at least 95 % come back right.
TEST_F(LocalApiDigits, HeldoutPngsAsRawBytes) {
  const auto images = LoadHeldoutPngs();
  ASSERT_EQ(images.size(), 360u);
  int correct = 0;
  for (const auto& image : images) {
    auto res = client_->Post("/v2/models/digits/infer", image.png, "image/png");
    ASSERT_TRUE(res) << image.file << ": " << Describe(res);
    ASSERT_EQ(res->status, 200) << image.file << ": " << res->body;
    json body = ParseBody(res);
    ASSERT_TRUE(body["parameters"]["top1_class"].is_number_integer()) << res->body;
    EXPECT_EQ(body["model_name"], "digits");
    EXPECT_EQ(body["model_version"], "1.0.0");
    EXPECT_FALSE(body["id"].get<std::string>().empty());
    EXPECT_EQ(res->get_header_value("X-Request-Id"), body["id"]);
    const auto& out = body["outputs"][0];
    EXPECT_EQ(out["name"], "logits");
    EXPECT_EQ(out["shape"], json::array({1, 10}));
    EXPECT_EQ(out["datatype"], "FP32");
    EXPECT_EQ(Argmax(out["data"]), body["parameters"]["top1_class"]);
    const double confidence = body["parameters"]["top1_confidence"];
    EXPECT_GT(confidence, 0.0);
    EXPECT_LE(confidence, 1.0);
    if (body["parameters"]["top1_class"] == image.label) ++correct;
  }
  const double accuracy = static_cast<double>(correct) / static_cast<double>(images.size());
  std::printf("held-out PNGs over HTTP: %d/%zu correct (%.4f)\n", correct, images.size(), accuracy);
  EXPECT_GE(accuracy, 0.95);
}

// The same held-out set as JSON tensors (rows of golden/heldout/input_0.pb), one request each.
TEST_F(LocalApiDigits, HeldoutRowsAsJsonTensors) {
  auto batch = runtime::ReadTensorProto(kDigits / "v1/golden/heldout/input_0.pb");
  ASSERT_TRUE(batch) << batch.error().message;
  ASSERT_EQ(batch->shape, (std::vector<std::int64_t>{360, 1, 8, 8}));
  const json labels = json::parse(ReadAll(kDigits / "v1/golden/labels.json"))["heldout"];
  ASSERT_EQ(labels.size(), 360u);
  int correct = 0;
  for (std::size_t row = 0; row < 360; ++row) {
    auto res = InferJson(RowRequest(*batch, row));
    ASSERT_TRUE(res) << Describe(res);
    ASSERT_EQ(res->status, 200) << res->body;
    json body = ParseBody(res);
    EXPECT_EQ(body["id"], "row-" + std::to_string(row));  // the client's id comes back
    if (Argmax(body["outputs"][0]["data"]) == labels[row].get<int>()) ++correct;
  }
  const double accuracy = correct / 360.0;
  std::printf("held-out JSON tensors over HTTP: %d/360 correct (%.4f)\n", correct, accuracy);
  EXPECT_GE(accuracy, 0.95);

  // And the whole batch in one request, with "data" nested as the protocol allows.
  auto values = batch->As<float>();
  json nested = json::array();
  for (std::size_t row = 0; row < 360; ++row) {
    json image = json::array();
    for (std::size_t y = 0; y < 8; ++y) {
      image.push_back(
          std::vector<float>(values.begin() + static_cast<std::ptrdiff_t>(row * 64 + y * 8),
                             values.begin() + static_cast<std::ptrdiff_t>(row * 64 + y * 8 + 8)));
    }
    nested.push_back(json::array({image}));
  }
  json request = {
      {"inputs",
       {{{"name", "input"}, {"shape", {360, 1, 8, 8}}, {"datatype", "FP32"}, {"data", nested}}}},
      {"outputs", {{{"name", "logits"}}}}};
  auto res = InferJson(request);
  ASSERT_TRUE(res) << Describe(res);
  ASSERT_EQ(res->status, 200) << res->body.substr(0, 300);
  json out = ParseBody(res)["outputs"][0];
  EXPECT_EQ(out["shape"], json::array({360, 10}));
  EXPECT_EQ(out["data"].size(), 3600u);
}

TEST_F(LocalApiDigits, BinaryTensorExtensionMatchesJsonTensors) {
  auto batch = runtime::ReadTensorProto(kDigits / "v1/golden/heldout/input_0.pb");
  ASSERT_TRUE(batch) << batch.error().message;
  auto binary_request = [&](std::int64_t rows, std::uint64_t declared, std::size_t bytes) {
    json header = {{"inputs",
                    {{{"name", "input"},
                      {"shape", {rows, 1, 8, 8}},
                      {"datatype", "FP32"},
                      {"parameters", {{"binary_data_size", declared}}}}}}};
    const std::string text = header.dump();
    std::string body = text;
    body.append(reinterpret_cast<const char*>(batch->data.data()), bytes);
    return client_->Post("/v2/models/digits/infer",
                         {{"Inference-Header-Content-Length", std::to_string(text.size())}}, body,
                         "application/octet-stream");
  };
  const std::size_t rows = 16;
  const std::size_t bytes = rows * 64 * sizeof(float);
  auto res = binary_request(rows, bytes, bytes);
  ASSERT_TRUE(res) << Describe(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json binary_out = ParseBody(res)["outputs"][0];
  ASSERT_EQ(binary_out["shape"], json::array({16, 10}));
  // The same rows sent as JSON numbers give the same logits.
  for (std::size_t row = 0; row < rows; ++row) {
    auto one = InferJson(RowRequest(*batch, row));
    ASSERT_TRUE(one) << Describe(one);
    json data = ParseBody(one)["outputs"][0]["data"];
    for (std::size_t k = 0; k < 10; ++k) {
      EXPECT_FLOAT_EQ(data[k].get<float>(), binary_out["data"][row * 10 + k].get<float>());
    }
  }
  // Sizes that disagree with the shape, and bytes that belong to no input, are refused.
  res = binary_request(rows, bytes - 4, bytes - 4);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(ParseBody(res)["error"].get<std::string>().find("needs 4096 bytes"), std::string::npos)
      << res->body;
  res = binary_request(rows, bytes, bytes + 8);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("belong to no input"), std::string::npos) << res->body;
  res = client_->Post("/v2/models/digits/infer", {{"Inference-Header-Content-Length", "999999"}},
                      "{}", "application/octet-stream");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("Inference-Header-Content-Length"), std::string::npos) << res->body;
}

// Binary outputs (the binary tensor extension, response side): the same logits as JSON numbers,
// as raw little-endian float32 after a JSON header of Inference-Header-Content-Length bytes.
TEST_F(LocalApiDigits, BinaryOutputsCarryTheSameValuesAsJson) {
  auto batch = runtime::ReadTensorProto(kDigits / "v1/golden/heldout/input_0.pb");
  ASSERT_TRUE(batch) << batch.error().message;
  const json plain_request = RowRequest(*batch, 3);
  auto plain = InferJson(plain_request);
  ASSERT_TRUE(plain) << Describe(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  const json expected = ParseBody(plain)["outputs"][0]["data"];
  ASSERT_EQ(expected.size(), 10u);

  json all = plain_request;
  all["parameters"] = {{"binary_data_output", true}};
  json one = plain_request;
  one["outputs"] = {{{"name", "logits"}, {"parameters", {{"binary_data", true}}}}};
  for (const json& request : {all, one}) {
    auto res = InferJson(request);
    ASSERT_TRUE(res) << Describe(res);
    ASSERT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/octet-stream");
    const std::string length = res->get_header_value("Inference-Header-Content-Length");
    ASSERT_FALSE(length.empty());
    const std::size_t header_size = std::stoul(length);
    ASSERT_LE(header_size, res->body.size());
    const json header = json::parse(res->body.substr(0, header_size), nullptr, false);
    ASSERT_TRUE(header.is_object()) << res->body.substr(0, header_size);
    const json& out = header["outputs"][0];
    EXPECT_EQ(out["name"], "logits");
    EXPECT_EQ(out["shape"], json::array({1, 10}));
    EXPECT_EQ(out["datatype"], "FP32");
    EXPECT_FALSE(out.contains("data"));
    ASSERT_EQ(out["parameters"]["binary_data_size"], 40);
    ASSERT_EQ(res->body.size(), header_size + 40);
    std::vector<float> values(10);
    std::memcpy(values.data(), res->body.data() + header_size, 40);
    for (std::size_t k = 0; k < 10; ++k) EXPECT_FLOAT_EQ(values[k], expected[k].get<float>());
    EXPECT_EQ(header["parameters"]["top1_class"], ParseBody(plain)["parameters"]["top1_class"]);
  }
  // An output's own "binary_data": false wins over the request's binary_data_output: true.
  json except = all;
  except["outputs"] = {{{"name", "logits"}, {"parameters", {{"binary_data", false}}}}};
  auto as_json = InferJson(except);
  ASSERT_TRUE(as_json) << Describe(as_json);
  ASSERT_EQ(as_json->status, 200) << as_json->body;
  EXPECT_TRUE(as_json->get_header_value("Inference-Header-Content-Length").empty());
  EXPECT_EQ(ParseBody(as_json)["outputs"][0]["data"], expected);
  json wrong = plain_request;
  wrong["parameters"] = {{"binary_data_output", 1}};
  auto res = InferJson(wrong);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("binary_data_output"), std::string::npos) << res->body;
  wrong = plain_request;
  wrong["outputs"] = {{{"name", "logits"}, {"parameters", {{"binary_data", "yes"}}}}};
  res = InferJson(wrong);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(
      ParseBody(res)["error"].get<std::string>().find("\"binary_data\" must be true or false"),
      std::string::npos)
      << res->body;
  wrong = plain_request;
  wrong["parameters"] = json::array();
  res = InferJson(wrong);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(ParseBody(res)["error"].get<std::string>().find("\"parameters\" must be an object"),
            std::string::npos)
      << res->body;
}

// A POSIX shared memory object the test owns: created fresh, unlinked at the end.
class ShmObject {
 public:
  explicit ShmObject(std::size_t size)
      : key_("/edgefleet-test-" + std::to_string(::getpid()) + "-" + std::to_string(Next())) {
    fd_ = ::shm_open(key_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd_ < 0 || ::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      ADD_FAILURE() << "shm " << key_ << ": " << std::strerror(errno);
    }
  }
  ~ShmObject() {
    if (fd_ >= 0) ::close(fd_);
    ::shm_unlink(key_.c_str());
  }
  void Write(std::size_t offset, const void* data, std::size_t n) {
    ASSERT_EQ(::pwrite(fd_, data, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  }
  void Truncate(std::size_t size) { ASSERT_EQ(::ftruncate(fd_, static_cast<off_t>(size)), 0); }
  const std::string& key() const { return key_; }

 private:
  static int Next() {
    static std::atomic<int> n{0};
    return n++;
  }
  std::string key_;
  int fd_ = -1;
};

json ShmInput(std::int64_t rows, const std::string& region, std::uint64_t size,
              std::uint64_t offset = 0) {
  return {{"inputs",
           {{{"name", "input"},
             {"shape", {rows, 1, 8, 8}},
             {"datatype", "FP32"},
             {"parameters",
              {{"shared_memory_region", region},
               {"shared_memory_byte_size", size},
               {"shared_memory_offset", offset}}}}}}};
}

TEST_F(LocalApiDigits, SharedMemoryInputsMatchJsonTensors) {
  auto batch = runtime::ReadTensorProto(kDigits / "v1/golden/heldout/input_0.pb");
  ASSERT_TRUE(batch) << batch.error().message;
  const std::size_t rows = 16;
  const std::size_t row_bytes = 64 * sizeof(float);
  const std::size_t bytes = rows * row_bytes;
  ShmObject shm(8 + bytes);  // the region starts 8 bytes in, to exercise offsets
  shm.Write(8, batch->data.data(), bytes);
  auto post = [&](const std::string& path, const json& body) {
    return client_->Post(path.c_str(), body.dump(), "application/json");
  };
  auto expect_error = [&](const httplib::Result& res, int status, const std::string& part) {
    ASSERT_TRUE(res) << Describe(res);
    EXPECT_EQ(res->status, status) << res->body;
    EXPECT_NE(ParseBody(res)["error"].get<std::string>().find(part), std::string::npos)
        << res->body;
  };

  auto res = post("/v2/systemsharedmemory/region/frames/register",
                  {{"key", shm.key()}, {"offset", 8}, {"byte_size", bytes}});
  ASSERT_TRUE(res) << Describe(res);
  ASSERT_EQ(res->status, 200) << res->body;
  res = client_->Get("/v2/systemsharedmemory/status");
  ASSERT_TRUE(res);
  EXPECT_EQ(
      ParseBody(res),
      json::array({{{"name", "frames"}, {"key", shm.key()}, {"offset", 8}, {"byte_size", bytes}}}));
  res = client_->Get("/v2");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("system_shared_memory"), std::string::npos) << res->body;

  // All 16 rows from the region give the logits the same rows give as JSON numbers.
  res = InferJson(ShmInput(rows, "frames", bytes));
  ASSERT_TRUE(res) << Describe(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json out = ParseBody(res)["outputs"][0];
  ASSERT_EQ(out["shape"], json::array({16, 10}));
  for (std::size_t row = 0; row < rows; ++row) {
    auto one = InferJson(RowRequest(*batch, row));
    ASSERT_TRUE(one) << Describe(one);
    const json data = ParseBody(one)["outputs"][0]["data"];
    for (std::size_t k = 0; k < 10; ++k) {
      EXPECT_FLOAT_EQ(data[k].get<float>(), out["data"][row * 10 + k].get<float>());
    }
  }
  // One row at an offset inside the region is that row.
  res = InferJson(ShmInput(1, "frames", row_bytes, 5 * row_bytes));
  ASSERT_TRUE(res) << Describe(res);
  ASSERT_EQ(res->status, 200) << res->body;
  auto row5 = InferJson(RowRequest(*batch, 5));
  ASSERT_TRUE(row5);
  EXPECT_EQ(ParseBody(res)["outputs"][0]["data"], ParseBody(row5)["outputs"][0]["data"]);

  // Mistakes and hostile registrations name what is wrong; nothing outside /dev/shm opens.
  expect_error(InferJson(ShmInput(1, "nope", row_bytes)), 400, "no shared memory region 'nope'");
  expect_error(InferJson(ShmInput(1, "frames", row_bytes + 4)), 400, "needs 256 bytes");
  expect_error(InferJson(ShmInput(1, "frames", row_bytes, bytes)), 400, "passes the region");
  json with_data = ShmInput(1, "frames", row_bytes);
  with_data["inputs"][0]["data"] = std::vector<float>(64, 0.f);
  expect_error(InferJson(with_data), 400, "neither \"data\"");
  json shm_output = RowRequest(*batch, 0);
  shm_output["outputs"] = {
      {{"name", "logits"}, {"parameters", {{"shared_memory_region", "frames"}}}}};
  expect_error(InferJson(shm_output), 400, "output to shared memory is not supported");
  const std::string reg = "/v2/systemsharedmemory/region/other/register";
  expect_error(
      post("/v2/systemsharedmemory/region/frames/register", {{"key", shm.key()}, {"byte_size", 4}}),
      400, "already registered");
  expect_error(post(reg, {{"key", "/../../etc/passwd"}, {"byte_size", 4}}), 400, "key");
  expect_error(post(reg, {{"key", "etc"}, {"byte_size", 4}}), 400, "key");
  expect_error(post(reg, {{"key", "/edgefleet-test-missing"}, {"byte_size", 4}}), 400,
               "cannot open shared memory /edgefleet-test-missing");
  expect_error(post(reg, {{"key", shm.key()}, {"offset", 8}, {"byte_size", bytes + 1}}), 400,
               "passes the end");
  // A FIFO under /dev/shm: refused at once (opening it blocking would hold a worker until a
  // writer came, and this request would time out).
  const std::string fifo = shm.key() + "-fifo";
  ASSERT_EQ(::mkfifo(("/dev/shm" + fifo).c_str(), 0600), 0) << std::strerror(errno);
  expect_error(post(reg, {{"key", fifo}, {"byte_size", 4}}), 400, "is not a shared memory object");
  ::unlink(("/dev/shm" + fifo).c_str());
  expect_error(post(reg, {{"key", shm.key()}, {"byte_size", -1}}), 400, "expected {\"key\"");
  expect_error(client_->Post(reg.c_str(), "{\"key\":", "application/json"), 400, "malformed JSON");
  expect_error(
      client_->Post(reg.c_str(), std::string(40, '[') + std::string(40, ']'), "application/json"),
      400, "JSON nested deeper than 32 levels");
  expect_error(post("/v2/systemsharedmemory/region/bad%20name/register",
                    {{"key", shm.key()}, {"byte_size", 4}}),
               400, "region name");

  // A client that shrinks its object gets an error, not a crashed agent (reads are pread, not
  // mmap), and the server keeps serving.
  shm.Truncate(8 + row_bytes);
  expect_error(InferJson(ShmInput(rows, "frames", bytes)), 400, "read ");
  res = InferJson(ShmInput(1, "frames", row_bytes));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;

  res = client_->Post("/v2/systemsharedmemory/region/frames/unregister");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  expect_error(InferJson(ShmInput(1, "frames", row_bytes)), 400, "no shared memory region");
  expect_error(client_->Post("/v2/systemsharedmemory/region/frames/unregister"), 404,
               "no shared memory region 'frames'");
  expect_error(client_->Get("/v2/systemsharedmemory/region/frames/status"), 404,
               "no shared memory region");
}

TEST(LocalApiSharedMemory, RegionLimitAndTheOffSwitch) {
  ShmObject shm(1024);
  for (bool on : {true, false}) {
    Served served;
    served.Load("v1", runtime::Slot::kA);
    ASSERT_TRUE(served.host().Activate("digits", runtime::Slot::kA));
    agent::LocalApiOptions options;
    options.shared_memory = on;
    options.max_shared_memory_regions = 2;
    served.Start(options);
    auto client = served.Client();
    auto reg = [&](const std::string& name) {
      return client->Post(("/v2/systemsharedmemory/region/" + name + "/register").c_str(),
                          json{{"key", shm.key()}, {"byte_size", 1024}}.dump(), "application/json");
    };
    auto res = reg("a");
    ASSERT_TRUE(res);
    if (!on) {
      EXPECT_EQ(res->status, 404) << res->body;
      json request = ShmInput(1, "a", 256);
      res = client->Post("/v2/models/digits/infer", request.dump(), "application/json");
      ASSERT_TRUE(res);
      EXPECT_EQ(res->status, 400) << res->body;
      EXPECT_NE(res->body.find("api.shared_memory"), std::string::npos) << res->body;
      continue;
    }
    EXPECT_EQ(res->status, 200) << res->body;
    res = reg("b");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    res = reg("c");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << res->body;
    EXPECT_NE(res->body.find("2 regions are registered"), std::string::npos) << res->body;
    res = client->Post("/v2/systemsharedmemory/unregister");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    res = client->Get("/v2/systemsharedmemory/status");
    ASSERT_TRUE(res);
    EXPECT_EQ(ParseBody(res), json::array());
    res = reg("c");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
  }
}

struct Hostile {
  std::string what;
  std::string path;
  std::string body;
  std::string content_type;
  int status;
};

// Every hostile or malformed request gets the protocol's error shape and the right status, and
// the server keeps serving (checked after each one on the same client).
TEST_F(LocalApiDigits, HostileRequestsAreRefusedWithProtocolErrors) {
  const std::string infer = "/v2/models/digits/infer";
  const std::string good_input = R"({"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":[)" +
                                 [] {
                                   std::string s;
                                   for (int i = 0; i < 64; ++i)
                                     s += (i ? ",0." : "0.") + std::to_string(i % 10);
                                   return s;
                                 }() +
                                 "]}";
  auto input = [](std::string shape, std::string datatype, std::string data) {
    return R"({"inputs":[{"name":"input","shape":)" + shape + R"(,"datatype":")" + datatype +
           R"(","data":)" + data + "}]}";
  };
  std::string data63 = "[";
  for (int i = 0; i < 63; ++i) data63 += (i ? ",0" : "0");
  data63 += "]";
  const std::string data65 = data63.substr(0, data63.size() - 1) + ",0,0]";
  const std::string deep =
      "{\"inputs\":" + std::string(100000, '[') + std::string(100000, ']') + "}";

  const std::vector<Hostile> cases = {
      {"bad JSON", infer, "{\"inputs\": [", "application/json", 400},
      {"empty body", infer, "", "application/json", 400},
      {"not an object", infer, "[1,2,3]", "application/json", 400},
      {"no inputs", infer, "{\"id\":\"x\"}", "application/json", 400},
      {"inputs not array", infer, "{\"inputs\":{}}", "application/json", 400},
      {"data shorter than shape", infer, input("[1,1,8,8]", "FP32", data63), "application/json",
       400},
      {"data longer than shape", infer, input("[1,1,8,8]", "FP32", data65), "application/json",
       400},
      {"wrong datatype", infer, input("[1,1,8,8]", "INT64", "[]"), "application/json", 400},
      {"unknown datatype", infer, input("[1,1,8,8]", "FLOAT", "[]"), "application/json", 400},
      {"strings as FP32", infer, input("[1,1,1,2]", "FP32", "[\"a\",\"b\"]"), "application/json",
       400},
      {"shape product overflows", infer,
       input("[4294967296,4294967296,4294967296,1]", "FP32", "[]"), "application/json", 400},
      {"huge shape product", infer, input("[100000000,1,8,8]", "FP32", "[1]"), "application/json",
       400},
      {"negative dimension", infer, input("[-1,1,8,8]", "FP32", "[]"), "application/json", 400},
      // A 400, not the engine's failure (a 500 that the watch counts against the model).
      {"batch 0", infer, input("[0,1,8,8]", "FP32", "[]"), "application/json", 400},
      {"shape the model does not take", infer, input("[1,1,9,9]", "FP32", "[]"), "application/json",
       400},
      {"unknown input name", infer,
       R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]})", "application/json",
       400},
      {"input twice", infer, "{\"inputs\":[" + good_input + "," + good_input + "]}",
       "application/json", 400},
      {"unknown output", infer, "{\"inputs\":[" + good_input + "],\"outputs\":[{\"name\":\"z\"}]}",
       "application/json", 400},
      {"id with a control character", infer, "{\"id\":\"a\\nb\",\"inputs\":[" + good_input + "]}",
       "application/json", 400},
      {"id not a string", infer, "{\"id\":5,\"inputs\":[" + good_input + "]}", "application/json",
       400},
      {"deep nesting", infer, deep, "application/json", 400},
      {"not an image", infer, "this is not a png", "image/png", 400},
      {"empty image", infer, "", "application/octet-stream", 400},
      {"unsupported content type", infer, "hello", "text/plain", 415},
      {"multipart", infer, "--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415},
      {"body over the cap", infer, std::string((1u << 20) + 1, ' '), "application/json", 413},
      {"unknown model", "/v2/models/nope/infer", "{\"inputs\":[" + good_input + "]}",
       "application/json", 404},
      {"unknown version", "/v2/models/digits/versions/7.0.0/infer",
       "{\"inputs\":[" + good_input + "]}", "application/json", 404},
      {"unknown route", "/v2/models/digits/explode", "{}", "application/json", 404},
  };
  for (const auto& c : cases) {
    auto res = client_->Post(c.path.c_str(), c.body, c.content_type.c_str());
    ASSERT_TRUE(res) << c.what << ": " << Describe(res);
    EXPECT_EQ(res->status, c.status) << c.what << ": " << res->body.substr(0, 300);
    json body = ParseBody(res);
    EXPECT_TRUE(body.is_object() && body.contains("error") && body["error"].is_string() &&
                !body["error"].get<std::string>().empty())
        << c.what << ": " << res->body.substr(0, 300);
    if (c.path == infer) {
      EXPECT_FALSE(res->get_header_value("X-Request-Id").empty()) << c.what;
    }
    // The same client and a fresh one still get answers.
    auto after = InferJson(json::parse("{\"inputs\":[" + good_input + "]}"));
    ASSERT_TRUE(after) << "after " << c.what << ": " << Describe(after);
    EXPECT_EQ(after->status, 200) << "after " << c.what << ": " << after->body;
  }
  for (const char* path : {"/nothing", "/v2/models/digits/infer"}) {  // GET has no such route
    auto res = client_->Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_TRUE(ParseBody(res)["error"].is_string()) << path << ": " << res->body;
  }

  // A declared length far over the cap is refused without buffering the body.
  {
    auto fresh = served_->Client();
    const std::size_t declared = 64u << 20;
    std::size_t sent = 0;
    auto res = fresh->Post(
        infer.c_str(), declared,
        [&](size_t offset, size_t length, httplib::DataSink& sink) {
          std::string chunk(std::min<std::size_t>(length, 1u << 16), 'x');
          sent = offset + chunk.size();
          return sink.write(chunk.data(), chunk.size());
        },
        "application/json");
    if (res) {
      EXPECT_EQ(res->status, 413) << res->body;
    }  // else the server closed while the client was still sending: also a refusal
    std::printf("declared %zu bytes, client sent %zu before the answer\n", declared, sent);
  }
  // A chunked body (no length) over the cap: refused while reading.
  {
    auto fresh = served_->Client();
    int chunks = 0;
    auto res = fresh->Post(
        infer.c_str(),
        [&](size_t, httplib::DataSink& sink) {
          std::string chunk(1u << 16, ' ');
          if (++chunks > 40) {
            sink.done();
            return true;
          }
          return sink.write(chunk.data(), chunk.size());
        },
        "application/json");
    if (res) {
      EXPECT_EQ(res->status, 413) << res->body;
    }
    std::printf("chunked body over the cap: %s after %d chunks of 64 KiB\n",
                res ? std::to_string(res->status).c_str() : "connection closed", chunks);
  }
  auto still = served_->Client()->Get("/v2/health/live");
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200);
}

// Slow or abusive clients on other connections do not stop a well-behaved one.
TEST_F(LocalApiDigits, OtherClientsKeepBeingServedWhileOneMisbehaves) {
  std::atomic<bool> stop{false};
  std::thread abuser([&] {
    auto bad = served_->Client();
    while (!stop) {
      bad->Post("/v2/models/digits/infer", std::string(10000, '['), "application/json");
      bad->Post("/v2/models/digits/infer", "\xff\xfe garbage", "image/jpeg");
    }
  });
  const auto images = LoadHeldoutPngs();
  int ok = 0;
  for (int i = 0; i < 100; ++i) {
    auto res = client_->Post("/v2/models/digits/infer", images[static_cast<std::size_t>(i)].png,
                             "image/png");
    if (res && res->status == 200) ++ok;
  }
  stop = true;
  abuser.join();
  EXPECT_EQ(ok, 100);
}

TEST_F(LocalApiDigits, RequestIdsFromHeaderBodyOrGenerated) {
  const auto images = LoadHeldoutPngs();
  auto generated = client_->Post("/v2/models/digits/infer", images[0].png, "image/png");
  ASSERT_TRUE(generated);
  const std::string id = ParseBody(generated)["id"];
  EXPECT_TRUE(std::regex_match(
      id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << id;
  auto again = client_->Post("/v2/models/digits/infer", images[0].png, "image/png");
  ASSERT_TRUE(again);
  EXPECT_NE(ParseBody(again)["id"], id);

  auto from_header = client_->Post("/v2/models/digits/infer", {{"X-Request-Id", "my-req-7"}},
                                   images[0].png, "image/png");
  ASSERT_TRUE(from_header);
  EXPECT_EQ(ParseBody(from_header)["id"], "my-req-7");
  EXPECT_EQ(from_header->get_header_value("X-Request-Id"), "my-req-7");

  auto failed = client_->Post("/v2/models/digits/infer", {{"X-Request-Id", "bad-1"}}, "{",
                              "application/json");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 400);
  EXPECT_EQ(failed->get_header_value("X-Request-Id"), "bad-1");

  // The protocol allows any string as "id" and echoes it: spaces and non-ASCII letters come back
  // in the body (the header, which cannot carry them safely, is left out).
  for (const std::string any : {"frame 12 of cam A", "caméra-№3"}) {
    const json request = {{"id", any},
                          {"inputs",
                           {{{"name", "input"},
                             {"shape", {1, 1, 8, 8}},
                             {"datatype", "FP32"},
                             {"data", std::vector<float>(64, 0.5f)}}}}};
    auto echoed = InferJson(request);
    ASSERT_TRUE(echoed);
    EXPECT_EQ(echoed->status, 200) << echoed->body;
    EXPECT_EQ(ParseBody(echoed)["id"], any);
    EXPECT_FALSE(echoed->has_header("X-Request-Id"));
  }
}

// Feedback scores the served top-1 once per id; /metrics shows labeled and correct.
TEST_F(LocalApiDigits, FeedbackBecomesOnlineAccuracyInMetrics) {
  const auto images = LoadHeldoutPngs();
  std::vector<int> predicted;
  for (int i = 0; i < 3; ++i) {
    auto res =
        client_->Post("/v2/models/digits/infer", {{"X-Request-Id", "fb-" + std::to_string(i)}},
                      images[static_cast<std::size_t>(i)].png, "image/png");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    predicted.push_back(ParseBody(res)["parameters"]["top1_class"]);
  }
  auto feedback = [&](const json& body) {
    return client_->Post("/v2/models/digits/feedback", body.dump(), "application/json");
  };
  auto right = feedback({{"id", "fb-0"}, {"label", predicted[0]}});
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 200) << right->body;
  EXPECT_EQ(ParseBody(right)["model_version"], "1.0.0");
  auto wrong = feedback({{"id", "fb-1"}, {"label", (predicted[1] + 1) % 10}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 200);
  auto duplicate = feedback({{"id", "fb-0"}, {"label", predicted[0]}});
  ASSERT_TRUE(duplicate);
  EXPECT_EQ(duplicate->status, 409);
  EXPECT_TRUE(ParseBody(duplicate)["error"].is_string());
  auto unknown = feedback({{"id", "never-served"}, {"label", 3}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto bad = feedback({{"id", "fb-2"}, {"label", "three"}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  auto other_model = client_->Post("/v2/models/nope/feedback",
                                   json({{"id", "fb-2"}, {"label", 1}}).dump(), "application/json");
  ASSERT_TRUE(other_model);
  EXPECT_EQ(other_model->status, 404);

  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  const std::string& text = metrics->body;
  const std::string labels = "{model=\"digits\",version=\"1.0.0\"}";
  EXPECT_NE(text.find("edgefleet_feedback_labeled_total" + labels + " 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("edgefleet_feedback_correct_total" + labels + " 1\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_feedback_duplicate_total" + labels + " 1\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_feedback_unknown_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_inference_requests_total" + labels + " 3\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_inference_latency_seconds_count" + labels + " 3\n"),
            std::string::npos);
}

// What Triton users look for, under edgefleet names (README "Metrics for Triton users"):
// successes, inferences counted per sample, requests in flight, the process's CPU and memory,
// and the build.
TEST_F(LocalApiDigits, MetricsCountInferencesPerSampleAndTheProcess) {
  auto batch = runtime::ReadTensorProto(kDigits / "v1/golden/heldout/input_0.pb");
  ASSERT_TRUE(batch) << batch.error().message;
  for (std::size_t row = 0; row < 2; ++row) {
    auto res = InferJson(RowRequest(*batch, row));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
  }
  auto values = batch->As<float>();
  const std::vector<float> three(values.begin(), values.begin() + 3 * 64);
  auto res = InferJson(
      {{"inputs",
        {{{"name", "input"}, {"shape", {3, 1, 8, 8}}, {"datatype", "FP32"}, {"data", three}}}}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body.substr(0, 300);
  res = InferJson(
      {{"inputs",
        {{{"name", "input"}, {"shape", {1, 1, 8, 8}}, {"datatype", "FP32"}, {"data", {1, 2}}}}}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 400);

  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  const std::string& text = metrics->body;
  const std::string labels = "{model=\"digits\",version=\"1.0.0\"}";
  EXPECT_NE(text.find("edgefleet_inference_requests_total" + labels + " 4\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("edgefleet_inference_success_total" + labels + " 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("edgefleet_inference_count_total" + labels + " 5\n"), std::string::npos)
      << "two single rows and a batch of three";
  EXPECT_NE(text.find("edgefleet_inference_in_flight 0\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_inference_queue_waiting 0\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_http_queue_full_total 0\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_http_connections_refused_total 0\n"), std::string::npos);
  EXPECT_NE(text.find("edgefleet_build_info{version=\""), std::string::npos);
  auto sample = [&](const std::string& name) {
    const auto at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1.0;
    return std::stod(text.substr(at + name.size() + 2));
  };
  EXPECT_GE(sample("edgefleet_http_connections_open"), 1.0) << "this client's connection";
  const double rss = sample("edgefleet_process_resident_memory_bytes");
  EXPECT_GT(rss, 4e6) << "the test process holds a model and a server";
  EXPECT_LT(rss, 4e9);
  const double cpu = sample("edgefleet_process_cpu_seconds_total");
  EXPECT_GT(cpu, 0.0) << "loading the model took CPU";
  EXPECT_LT(cpu, 3600.0);
}

// The local API on a Unix socket beside TCP (README: the curl line): an app infers with
// `curl --unix-socket`; the socket has the configured mode. (Who may connect is the HTTP layer's
// test: http.HttpServer.AUnixSocketCarriesItsModeAndGroupAndAdmitsOnlyTheGroup.)
TEST(LocalApiUnixSocket, CurlInfersThroughTheSocket) {
  testing::TempDir dir;
  Served served;
  ASSERT_NO_FATAL_FAILURE(served.Load("v1", runtime::Slot::kA));
  ASSERT_TRUE(served.host().Activate("digits", runtime::Slot::kA));
  agent::LocalApiOptions options;
  options.unix_socket = (dir.path() / "api.sock").string();
  options.unix_socket_mode = 0600;
  ASSERT_NO_FATAL_FAILURE(served.Start(options));
  struct stat st {};
  ASSERT_EQ(::stat(options.unix_socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const auto images = LoadHeldoutPngs();
  const fs::path png = dir.path() / "digit.png";
  std::ofstream(png, std::ios::binary) << images[0].png;
  auto r =
      testing::RunProcess({"curl", "-s", "--max-time", "10", "--unix-socket", options.unix_socket,
                           "-H", "Content-Type: image/png", "--data-binary", "@" + png.string(),
                           "http://localhost/v2/models/digits/infer"},
                          std::chrono::seconds(20));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json body = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.out;
  EXPECT_EQ(body["model_name"], "digits");
  EXPECT_EQ(body["parameters"]["top1_class"], images[0].label);
  served.api().Stop();
  EXPECT_FALSE(fs::exists(options.unix_socket));
}

// deploy/grafana/edgefleet-agent-dashboard.json (the per-box dashboard) queries only metrics a
// real local API serves; promtool checks its queries (tests/deploy/dashboard_test.cpp).
TEST_F(LocalApiDigits, GrafanaBoxDashboardUsesOnlyMetricsTheAgentServes) {
  std::ifstream in(fs::path(EDGEFLEET_SOURCE_DIR) / "deploy" / "grafana" /
                   "edgefleet-agent-dashboard.json");
  const json dashboard = json::parse(in, nullptr, false);
  ASSERT_TRUE(dashboard.is_object()) << "the box dashboard is not a JSON object";
  const std::set<std::string> used = testing::GrafanaMetricNames(dashboard);
  for (const char* needed :
       {"edgefleet_inference_success_total", "edgefleet_inference_errors_total",
        "edgefleet_inference_count_total", "edgefleet_inference_latency_seconds_bucket",
        "edgefleet_inference_in_flight", "edgefleet_process_cpu_seconds_total",
        "edgefleet_process_resident_memory_bytes", "edgefleet_model_active"}) {
    EXPECT_EQ(used.count(needed), 1u) << "the box dashboard does not show " << needed;
  }
  const auto images = LoadHeldoutPngs();
  auto res = client_->Post("/v2/models/digits/infer", {{"X-Request-Id", "dash-1"}}, images[0].png,
                           "image/png");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  const std::set<std::string> served = testing::MetricSampleNames(metrics->body);
  for (const std::string& name : used) {
    EXPECT_EQ(served.count(name), 1u)
        << "the box dashboard uses " << name << ", which the agent does not serve";
  }
}

// /metrics is Prometheus text: every line a comment or `name{labels} value`; histograms are
// cumulative and end with +Inf == _count.
TEST_F(LocalApiDigits, MetricsParseAsPrometheusText) {
  const auto images = LoadHeldoutPngs();
  for (int i = 0; i < 20; ++i) {
    client_->Post("/v2/models/digits/infer", images[static_cast<std::size_t>(i)].png, "image/png");
  }
  client_->Post("/v2/models/digits/infer", "{", "application/json");  // one client error
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/plain", 0), 0u);
  const std::regex comment(R"(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*)");
  const std::string label = R"([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\\n])*")";
  const std::regex sample("([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(" + label + "(," + label +
                          ")*)?\\})? (-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|\\+Inf|-Inf)");
  std::istringstream lines(res->body);
  std::string line;
  int samples = 0;
  std::vector<double> buckets;
  double count = -1;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(std::regex_match(line, comment)) << line;
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << "not Prometheus text: " << line;
    ++samples;
    const std::string value = line.substr(line.rfind(' ') + 1);
    if (line.rfind("edgefleet_inference_latency_seconds_bucket{model=\"digits\"", 0) == 0) {
      buckets.push_back(std::stod(value));
    }
    if (line.rfind("edgefleet_inference_latency_seconds_count{model=\"digits\"", 0) == 0) {
      count = std::stod(value);
    }
  }
  EXPECT_GT(samples, 20);
  ASSERT_EQ(buckets.size(), 17u);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
  EXPECT_EQ(buckets.back(), count);
  EXPECT_EQ(count, 20);
  EXPECT_NE(res->body.find("edgefleet_inference_errors_total{model=\"digits\",version=\"1.0.0\","
                           "class=\"client\"} 1\n"),
            std::string::npos)
      << res->body;
  EXPECT_NE(res->body.find("le=\"0.0001\"} "), std::string::npos);  // 0.1 ms in seconds
  EXPECT_NE(res->body.find("le=\"+Inf\"} 20\n"), std::string::npos);
  EXPECT_NE(
      res->body.find("edgefleet_model_active{model=\"digits\",version=\"1.0.0\",slot=\"A\"} 1"),
      std::string::npos);
}

TEST(LocalApiReadiness, NotReadyUntilEveryConfiguredModelIsActive) {
  Served served;
  served.Load("v1", runtime::Slot::kA);
  agent::LocalApiOptions options;
  options.models = {"digits", "other"};
  served.Start(options);
  auto client = served.Client();
  auto ready = client->Get("/v2/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_TRUE(ParseBody(ready)["error"].is_string());
  auto model_ready = client->Get("/v2/models/digits/ready");
  ASSERT_TRUE(model_ready);
  EXPECT_EQ(model_ready->status, 503);
  auto infer = client->Post("/v2/models/digits/infer", LoadHeldoutPngs()[0].png, "image/png");
  ASSERT_TRUE(infer);
  EXPECT_EQ(infer->status, 503);
  auto meta = client->Get("/v2/models/digits");  // loaded, so it is described
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->status, 200);

  ASSERT_TRUE(served.host().Activate("digits", runtime::Slot::kA));
  ready = client->Get("/v2/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);  // "other" is still missing
  EXPECT_NE(ParseBody(ready)["error"].get<std::string>().find("other"), std::string::npos);
  model_ready = client->Get("/v2/models/digits/ready");
  ASSERT_TRUE(model_ready);
  EXPECT_EQ(model_ready->status, 200);
}

TEST(LocalApiStart, RefusesAPortInUse) {
  Served first;
  first.Start();
  agent::LocalApiOptions options;
  options.port = first.api().port();
  runtime::ModelHost host;
  agent::ServingStats second_stats;
  auto second = agent::LocalApi::Start(host, second_stats, options);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kIo);
}

// Acceptance 4: v1 in slot A, v2 in slot B; four clients infer continuously over HTTP while the
// main thread switches the active slot 100 times. No request may fail, and both versions serve.
TEST(LocalApiSwap, HundredSwitchesUnderLoadFailNothing) {
  Served served;
  served.Load("v1", runtime::Slot::kA);
  served.Load("v2", runtime::Slot::kB);
  ASSERT_TRUE(served.host().Activate("digits", runtime::Slot::kA));
  served.Start();
  const auto images = LoadHeldoutPngs();
  auto batch = runtime::ReadTensorProto(kDigits / "v1/golden/heldout/input_0.pb");
  ASSERT_TRUE(batch);

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::map<std::string, int> by_version;  // guarded by mu
  std::vector<std::string> failures;      // guarded by mu
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto client = served.Client();
      std::map<std::string, int> seen;
      for (std::size_t i = 0; !stop; ++i) {
        // Threads 0 and 1 send PNGs, 2 and 3 JSON tensors: both paths must survive a switch.
        const std::size_t row = (i * 4 + static_cast<std::size_t>(t)) % images.size();
        httplib::Result res =
            t < 2 ? client->Post("/v2/models/digits/infer", images[row].png, "image/png")
                  : client->Post("/v2/models/digits/infer", RowRequest(*batch, row).dump(),
                                 "application/json");
        json body = ParseBody(res);
        if (res && res->status == 200 && body.contains("model_version")) {
          ++ok;
          ++seen[body["model_version"].get<std::string>()];
        } else {
          ++failed;
          std::lock_guard lock(mu);
          if (failures.size() < 10) failures.push_back(Describe(res));
        }
      }
      std::lock_guard lock(mu);
      for (const auto& [v, n] : seen) by_version[v] += n;
    });
  }
  // Let the clients get going, then switch 100 times, a few milliseconds apart, each switch only
  // after a request has completed since the last one: every switch happens under load however
  // fast this machine serves (a floor on requests per second would measure the machine; under
  // ASan beside another test it once fell to 98 requests in the half second).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int before = ok.load();
  int activated = 0;
  int stalls = 0;  // switches after which no request completed within 2 s
  for (int i = 0; i < 100 && stalls < 3; ++i) {
    auto slot = i % 2 == 0 ? runtime::Slot::kB : runtime::Slot::kA;
    if (!served.host().Activate("digits", slot)) break;
    ++activated;
    const int at = ok.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (ok.load() == at && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (ok.load() == at) ++stalls;
  }
  const int during = ok.load() - before;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  for (auto& th : clients) th.join();

  std::printf(
      "swap under load: 100 switches, %d requests ok (%d during the switches), %d "
      "failed; v1.0.0=%d v1.1.0=%d\n",
      ok.load(), during, failed.load(), by_version["1.0.0"], by_version["1.1.0"]);
  for (const auto& f : failures) std::printf("  failure: %s\n", f.c_str());
  EXPECT_EQ(activated, 100);
  EXPECT_EQ(stalls, 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GE(during, 100);
  EXPECT_GT(by_version["1.0.0"], 0);
  EXPECT_GT(by_version["1.1.0"], 0);

  // The metrics account for every request, split by the version that served it.
  const std::string text = served.api().MetricsText();
  auto value_of = [&](const std::string& key) {
    const auto at = text.find(key);
    if (at == std::string::npos) return -1;
    return std::stoi(text.substr(at + key.size()));
  };
  const int v1 =
      value_of("edgefleet_inference_requests_total{model=\"digits\",version=\"1.0.0\"} ");
  const int v2 =
      value_of("edgefleet_inference_requests_total{model=\"digits\",version=\"1.1.0\"} ");
  EXPECT_EQ(v1, by_version["1.0.0"]);
  EXPECT_EQ(v2, by_version["1.1.0"]);
}

}  // namespace
}  // namespace edgefleet
