// End-to-end: backends as plugins (issue 12, acceptance 1). The plugin header is installed the
// way a packager installs it (`cmake --install --component sdk`), the example backend
// (runtime/examples/affine_backend) is configured and built out of tree against that prefix
// alone, and three broken libraries are compiled the same way. All of them, and the opencv
// plugin of this build, go into one backends_dir; the real agent must refuse each broken one
// with one clear line and serve models through the example and through opencv.
#include <sys/stat.h>

#include "runtime/tensor.hpp"
#include "tests/integration/agent_fixture.hpp"
#include "tests/support/opencv_plugin.hpp"

namespace edgefleet {
namespace {

// The example's model: y = 2.5 x - 1 on rows of 4 values.
constexpr float kScale = 2.5F;
constexpr float kOffset = -1.0F;

class AgentPlugins : public AgentE2E {
 protected:
  // Runs a build step; a failure stops the test with its output.
  static void Step(const std::vector<std::string>& args) {
    auto r = testing::RunProcess(args, seconds(240));
    std::string command;
    for (const auto& a : args) command += a + " ";
    ASSERT_EQ(r.exit_code, 0) << command << "\n" << r.out << r.err;
  }

  // The header as installed, the example and the broken libraries built against it, and the
  // build's opencv plugin, all in one directory.
  void MakeBackendsDir() {
    const fs::path sdk = tmp_ / "sdk";
    ASSERT_NO_FATAL_FAILURE(Step({EDGEFLEET_CMAKE, "--install", EDGEFLEET_BINARY_DIR, "--component",
                                  "sdk", "--prefix", sdk.string()}));
    ASSERT_TRUE(fs::exists(sdk / "include" / "edgefleet" / "backend_plugin.h"));

    const fs::path example_build = tmp_ / "affine-build";
    ASSERT_NO_FATAL_FAILURE(
        Step({EDGEFLEET_CMAKE, "-S", EDGEFLEET_SOURCE_DIR "/runtime/examples/affine_backend", "-B",
              example_build.string(), "-G", "Ninja", "-DCMAKE_PREFIX_PATH=" + sdk.string()}));
    ASSERT_NO_FATAL_FAILURE(Step({EDGEFLEET_CMAKE, "--build", example_build.string()}));

    backends_ = tmp_ / "backends";
    fs::create_directories(backends_);
    fs::permissions(backends_, fs::perms::group_write | fs::perms::others_write,
                    fs::perm_options::remove);
    fs::copy_file(example_build / "libedgefleet_backend_affine.so",
                  backends_ / "libedgefleet_backend_affine.so");
    fs::copy_file(testing::OpenCvPluginPath(), backends_ / "libedgefleet_backend_opencv.so");
    const std::vector<std::pair<std::string, std::string>> faults = {
        {"faulty_abi", "FAULT_ABI"},
        {"faulty_no_run", "FAULT_NO_RUN"},
        {"faulty_self_test", "FAULT_SELF_TEST"}};
    for (const auto& [name, fault] : faults) {
      ASSERT_NO_FATAL_FAILURE(
          Step({"cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                "-fvisibility=hidden", "-I" + (sdk / "include").string(), "-D" + fault,
                "-DBACKEND_NAME=\"" + name + "\"",
                EDGEFLEET_SOURCE_DIR "/tests/integration/plugins/faulty_backend.c", "-o",
                (backends_ / ("lib" + name + ".so")).string()}));
    }
    // Not a library: ignored.
    testing::WriteFile(backends_ / "README.txt", "backends for this box");
  }

  // A bundle of the example's format, made by the real CLI: the model file is "2.5 -1", the
  // golden outputs are computed here.
  Bundle MakeAffineBundle() {
    return testing::MakeBundle(fleet_, "v1", tmp_.path(), [](json& body, const fs::path& dir) {
      fs::remove_all(dir / "model");
      fs::remove_all(dir / "golden");
      fs::create_directories(dir / "model");
      fs::create_directories(dir / "golden" / "g");
      testing::WriteFile(dir / "model" / "affine.txt", "2.5 -1\n");
      std::vector<float> x = {1, 2, 3, 4, -4, 0, 0.5F, 8, 9, -2, 3, 1};
      std::vector<float> y;
      for (float v : x) y.push_back(kScale * v + kOffset);
      auto in = runtime::Tensor::FromFloats("x", {3, 4}, x);
      auto out = runtime::Tensor::FromFloats("y", {3, 4}, y);
      ASSERT_TRUE(in && out);
      testing::WriteFile(dir / "golden" / "g" / "input_0.pb",
                         runtime::SerializeTensorProto(*in).value());
      testing::WriteFile(dir / "golden" / "g" / "output_0.pb",
                         runtime::SerializeTensorProto(*out).value());
      const json tensor_x = {{"name", "x"}, {"dtype", "float32"}, {"shape", {-1, 4}}};
      const json tensor_y = {{"name", "y"}, {"dtype", "float32"}, {"shape", {-1, 4}}};
      body = {{"name", "affine"},
              {"version", "1.0.0"},
              {"description", "y = 2.5 x - 1, served by the example backend"},
              {"variants",
               {{{"id", "affine"},
                 {"file", "model/affine.txt"},
                 {"format", "affine"},
                 {"opset", 1},
                 {"operators", {"Affine"}},
                 {"backends", {{{"name", "affine"}, {"version", ">=1.0.0 <2.0.0"}}}},
                 {"inputs", {tensor_x}},
                 {"outputs", {tensor_y}}}}},
              {"golden",
               {{{"name", "g"},
                 {"inputs", {"golden/g/input_0.pb"}},
                 {"outputs", {"golden/g/output_0.pb"}}}}},
              {"parity",
               {{"atol", 1e-6},
                {"rtol", 1e-6},
                {"min_top1_agreement", 1.0},
                {"max_latency_factor", 3.0}}},
              {"watch", testing::ShortWatch()}};
    });
  }

  // The refusal lines every agent start must print, one per broken library.
  static void ExpectRefusals(const std::string& log) {
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"libfaulty_abi.so", "built for backend ABI version 99, this agent loads version 1"},
        {"libfaulty_no_run.so", "missing symbol edgefleet_backend_run"},
        {"libfaulty_self_test.so",
         "(faulty_self_test 0.1.0): self-test failed: the accelerator did not answer (device "
         "/dev/faulty0)"}};
    for (const auto& [library, reason] : expected) {
      bool found = false;
      std::size_t at = 0;
      while ((at = log.find("event=backend_refused", at)) != std::string::npos) {
        const std::string line = log.substr(at, log.find('\n', at) - at);
        found = found ||
                (line.find(library) != std::string::npos && line.find(reason) != std::string::npos);
        ++at;
      }
      EXPECT_TRUE(found) << library << ": no refusal line with \"" << reason << "\" in:\n" << log;
    }
    for (const std::string name : {"affine", "opencv"}) {
      EXPECT_NE(log.find("event=backend_loaded name=" + name), std::string::npos) << log;
    }
    EXPECT_EQ(log.find("README.txt"), std::string::npos) << log;
  }

  fs::path backends_;
};

TEST_F(AgentPlugins, ServesThroughAnOutOfTreeBackendAndRefusesBrokenOnes) {
  ASSERT_NO_FATAL_FAILURE(MakeBackendsDir());
  WriteConfig({}, {{"backends_dir", backends_.string()}, {"backends", nullptr}});

  const Bundle affine = MakeAffineBundle();
  auto installed = Install(affine.path);
  ASSERT_EQ(installed.exit_code, 0) << installed.out << installed.err;
  ExpectRefusals(installed.err + installed.out);
  const Bundle digits = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  installed = Install(digits.path);
  ASSERT_EQ(installed.exit_code, 0) << installed.out << installed.err;

  StartAgent();
  ExpectRefusals(LogText());
  // status lists what the agent serves through, with formats and devices; never a refused one.
  const json status = Status();
  ASSERT_TRUE(status.contains("backends")) << status.dump();
  const json affine_backend = {{"name", "affine"},
                               {"version", "1.0.0"},
                               {"engine", "edgefleet example backend: y = scale * x + offset"},
                               {"formats", {"affine"}},
                               {"devices", {"cpu"}}};
  const json opencv_backend = {{"name", "opencv"},
                               {"version", "4.6.0"},
                               {"engine", "OpenCV DNN 4.6.0 (CPU)"},
                               {"formats", {"onnx"}},
                               {"devices", {"cpu"}}};
  EXPECT_EQ(status["backends"], json::array({affine_backend, opencv_backend}));

  const json request = {{"inputs",
                         {{{"name", "x"},
                           {"shape", {2, 4}},
                           {"datatype", "FP32"},
                           {"data", {1, 2, 3, 4, 0, -1, 0.5, 10}}}}}};
  auto r = Api()->Post("/v2/models/affine/infer", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = json::parse(r->body);
  const json& y = body["outputs"][0];
  EXPECT_EQ(y["name"], "y");
  EXPECT_EQ(y["shape"], json({2, 4}));
  const std::vector<float> x = {1, 2, 3, 4, 0, -1, 0.5F, 10};
  ASSERT_EQ(y["data"].size(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_FLOAT_EQ(y["data"][i].get<float>(), kScale * x[i] + kOffset) << i;
  }

  // The other backend of the same directory serves the digits model.
  for (std::size_t i = 0; i < 5; ++i) {
    const InferResult digit = Infer(i);
    EXPECT_EQ(digit.status, 200);
    EXPECT_EQ(digit.top1, digit.label);
  }
  StopAgent();
}

TEST_F(AgentPlugins, ABackendsDirWritableByOthersIsRefusedWhole) {
  ASSERT_NO_FATAL_FAILURE(MakeBackendsDir());
  fs::permissions(backends_, fs::perms::others_write, fs::perm_options::add);
  WriteConfig({}, {{"backends_dir", backends_.string()}, {"backends", nullptr}});
  const Bundle digits = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  auto installed = Install(digits.path);
  EXPECT_NE(installed.exit_code, 0) << installed.out << installed.err;
  const std::string out = installed.err + installed.out;
  EXPECT_NE(out.find("is writable by group or others"), std::string::npos) << out;
  EXPECT_NE(out.find("event=no_backends"), std::string::npos) << out;
  EXPECT_EQ(out.find("event=backend_loaded"), std::string::npos) << out;
}

}  // namespace
}  // namespace edgefleet
