// End-to-end: the real agent with the build's `onnxruntime` and `opencv` plugins (issue 17), on
// the ONNX exports tests/data/make_onnx_zoo.py made at build time. A bundle's ONNX variant that
// lists both backends is measured on each; the agent serves the faster, says why (every
// measured latency) in the deployment's status, and answers with PyTorch's logits. Exports
// OpenCV 4.6 cannot run (MobileNetV2 at opset 17, EfficientNet-B0, ShuffleNetV2) install and pass
// parity with the plugin, and a box without it refuses them before downloading a byte.
#include <algorithm>
#include <map>
#include <regex>

#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/golden_bundle.hpp"

namespace edgefleet {
namespace {

const fs::path kZoo = EDGEFLEET_ONNX_ZOO_DIR;

// PyTorch against ORT or OpenCV kernels (fused batch norms): as a float model's bundle would set.
constexpr double kAtol = 1e-3;
constexpr double kRtol = 1e-3;

class AgentOnnxRuntime : public AgentE2E {
 protected:
  static testing::GoldenModel Model(const std::string& zoo) { return {kZoo / zoo, "model.onnx"}; }
  // A bundle named `name` whose one variant is the zoo file, runnable by opencv or onnxruntime;
  // `bundle create` fills opset, operators, inputs and outputs from the file.
  Bundle MakeZooBundle(const std::string& zoo, const std::string& name,
                       const std::vector<std::string>& extra_args = {}) {
    const json variant = {{"id", "onnx"},
                          {"format", "onnx"},
                          {"backends",
                           {{{"name", "opencv"}, {"version", ">=4.5.0 <5.0.0"}},
                            {{"name", "onnxruntime"}, {"version", ">=1.16.0 <2.0.0"}}}}};
    return testing::MakeGoldenBundle(fleet_, tmp_.path(), Model(zoo), name, variant, kAtol, kRtol,
                                     extra_args);
  }

  // backend -> median ms, from the install's event=variant_measured lines that passed.
  static std::map<std::string, double> Measured(const std::string& log) {
    std::map<std::string, double> out;
    static const std::regex line(
        "event=variant_measured id=[0-9]+ variant=onnx backend=([a-z]+) pass=true "
        "median_ms=([0-9.]+)");
    for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
      out[(*it)[1]] = std::stod((*it)[2]);
    }
    return out;
  }

  // The `loaded` transition's reason of `model`'s newest deployment in status.
  std::string LoadedReason(const std::string& model) {
    const json status = Status();
    std::string reason;
    for (const auto& d : status.value("deployments", json::array())) {
      if (d.value("model", "") != model) continue;
      for (const auto& t : d.value("transitions", json::array())) {
        if (t.value("to", "") == "parity") reason = t.value("reason", "");
      }
    }
    return reason;
  }

  void ExpectServedLikePyTorch(const std::string& zoo, const std::string& name) {
    testing::ExpectAgentServesGolden(port_, name, Model(zoo), kAtol, kRtol);
  }
};

TEST_F(AgentOnnxRuntime, ServesEachModelThroughTheFastestMeasuredBackendAndSaysWhy) {
  // opencv first: preference alone would pick it; only the measurement can move a model to ORT.
  WriteConfig({}, {{"backends", {"opencv", "onnxruntime"}},
                   {"backend_options", {{"onnxruntime", {{"optimized_model_cache", true}}}}}});
  struct Case {
    std::string zoo;
    std::string name;
    std::vector<std::string> runnable;  // backends whose table accepts the file
  };
  const std::vector<Case> cases = {
      {"mobilenet_v2_op10", "mobilenetv2-op10", {"onnxruntime", "opencv"}},
      {"mobilenet_v2_op17", "mobilenetv2-op17", {"onnxruntime"}},
      {"resnet18_op10", "resnet18", {"onnxruntime", "opencv"}},
      {"efficientnet_b0_op13", "efficientnet-b0", {"onnxruntime"}},
      {"shufflenet_v2_x1_0_op17", "shufflenet-v2", {"onnxruntime"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.zoo);
    const Bundle bundle = MakeZooBundle(c.zoo, c.name);
    const auto installed = Install(bundle.path, seconds(240));
    const std::string log = installed.out + installed.err;
    ASSERT_EQ(installed.exit_code, 0) << log;
    const auto measured = Measured(log);
    std::vector<std::string> backends;
    for (const auto& [backend, ms] : measured) backends.push_back(backend);
    EXPECT_EQ(backends, c.runnable) << log;
    // The served backend is the fastest, or within the 5 % tie band of it and preferred.
    double fastest = 1e300;
    for (const auto& [backend, ms] : measured) fastest = std::min(fastest, ms);
    std::smatch chosen;
    ASSERT_TRUE(std::regex_search(log, chosen,
                                  std::regex("event=parity id=[0-9]+ pass=true .* variant=onnx "
                                             "backend=([a-z]+)")))
        << log;
    ASSERT_TRUE(measured.count(chosen[1]));
    EXPECT_LE(measured.at(chosen[1]), fastest * 1.05) << log;
    // Status says why: the chosen pair and every measured latency.
    const std::string reason = LoadedReason(c.name);
    EXPECT_EQ(reason.rfind("variant onnx on " + std::string(chosen[1]) + ", fastest of " +
                               std::to_string(measured.size()) + " measured: ",
                           0),
              0U)
        << reason;
    for (const auto& [backend, ms] : measured) {
      EXPECT_TRUE(std::regex_search(reason, std::regex("onnx on " + backend + " [0-9.]+ ms")))
          << reason;
    }
    std::cout << c.zoo << ": served on " << chosen[1] << "; " << reason << "\n";
    // ORT kept its optimised graph in the slot's cache, keyed by the model's signed SHA-256.
    std::size_t cached = 0;
    for (const auto& e : fs::recursive_directory_iterator(state_dir_ / "models" / c.name)) {
      const std::string f = e.path().filename().string();
      cached += e.path().parent_path().filename() == "onnxruntime" &&
                        e.path().parent_path().parent_path().extension() == ".cache" &&
                        f.rfind("optimized-", 0) == 0 && f.size() > 64 + 5
                    ? 1
                    : 0;
    }
    EXPECT_EQ(cached, 1U) << "one optimised model in <slot>.cache/onnxruntime";
  }

  StartAgent();
  EXPECT_NE(LogText().find("event=backend_loaded name=onnxruntime"), std::string::npos)
      << LogText();
  const json status = Status();
  bool listed = false;
  for (const auto& b : status.value("backends", json::array())) {
    if (b.value("name", "") != "onnxruntime") continue;
    listed = true;
    EXPECT_EQ(b["formats"], json({"onnx"}));
    EXPECT_NE(b.value("engine", "").find("ONNX Runtime"), std::string::npos) << b.dump();
  }
  EXPECT_TRUE(listed) << status.dump();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.zoo);
    ASSERT_NO_FATAL_FAILURE(ExpectServedLikePyTorch(c.zoo, c.name));
  }
  // A restart serves each model on the backend measured at install.
  StopAgent();
  StartAgent();
  for (const Case& c : cases) ASSERT_NO_FATAL_FAILURE(ExpectServedLikePyTorch(c.zoo, c.name));
  StopAgent();
}

// A box whose config does not list onnxruntime (its library is never opened) refuses exports its
// opencv cannot run from the signed requirements alone: nothing is downloaded.
TEST_F(AgentOnnxRuntime, ABoxWithoutTheOnnxRuntimePluginRefusesModernExportsBeforeDownload) {
  WriteConfig({}, {{"backends", {"opencv"}}});
  StartAgent();
  const std::vector<std::pair<std::string, std::string>> models = {
      {"mobilenet_v2_op17", "mobilenetv2-op17"},
      {"efficientnet_b0_op13", "efficientnet-b0"},
      {"shufflenet_v2_x1_0_op17", "shufflenet-v2"}};
  std::vector<json> desired;
  for (const auto& [zoo, name] : models) {
    const Bundle bundle = MakeZooBundle(zoo, name);
    server_.Add("/" + name + ".efb", bundle.bytes);
    desired.push_back(testing::DesiredModel(bundle, server_.Url("/" + name + ".efb")));
  }
  Deploy(desired);
  // Each refusal is one event=desired_model line (and a rejected event to the fleet) with every
  // reason; no deployment starts.
  auto refusal = [&](const std::string& name) {
    const std::string log = LogText();
    const auto at = log.find("event=desired_model serial=1 model=" + name + " ");
    return at == std::string::npos ? std::string() : log.substr(at, log.find('\n', at) - at);
  };
  ASSERT_TRUE(WaitFor("every model refused", seconds(60), [&] {
    return std::all_of(models.begin(), models.end(),
                       [&](const auto& m) { return !refusal(m.second).empty(); });
  }));
  EXPECT_EQ(LogText().find("event=backend_loaded name=onnxruntime"), std::string::npos);
  for (const auto& [zoo, name] : models) {
    SCOPED_TRACE(name);
    const std::string line = refusal(name);
    EXPECT_NE(line.find("result=refused"), std::string::npos) << line;
    EXPECT_NE(line.find("no variant can run on this box"), std::string::npos) << line;
    // An operator opencv runs in no form, or a form of it measured to fail (EfficientNet's
    // batch-broadcast Mul), named with the case that failed.
    EXPECT_TRUE(line.find("is not supported by opencv 4.6.0") != std::string::npos ||
                line.find("fails on opencv 4.6.0") != std::string::npos)
        << line;
    EXPECT_NE(line.find("could run on backend 'onnxruntime'"), std::string::npos) << line;
    EXPECT_EQ(server_.BytesSent("/" + name + ".efb"), 0U) << "downloaded before refusing";
  }
  EXPECT_EQ(Status().value("deployments", json::array()).size(), 0U);
  StopAgent();
}

// Issue 13: the same opset-17 MobileNetV2 a box with only opencv refuses as exported is served
// there after `bundle create --lower opencv-4.6`: the lowered variant (opset 10, Clip bounds as
// attributes) is chosen, passes parity on the bundle's golden data and answers like PyTorch.
TEST_F(AgentOnnxRuntime, AnOpencvOnlyBoxServesAModernExportLoweredByBundleCreate) {
  WriteConfig({}, {{"backends", {"opencv"}}});
  const Bundle bundle =
      MakeZooBundle("mobilenet_v2_op17", "mobilenetv2-lowered", {"--lower", "opencv-4.6"});
  const json variants = bundle.manifest.value("variants", json::array());
  ASSERT_EQ(variants.size(), 2U) << bundle.manifest.dump();
  EXPECT_EQ(variants[0].value("opset", 0), 17);
  EXPECT_EQ(variants[1].value("id", ""), "onnx-opencv-4.6");
  EXPECT_EQ(variants[1].value("opset", 0), 10);
  EXPECT_EQ(variants[1]["backends"].size(), 1U);
  EXPECT_EQ(variants[1]["backends"][0].value("name", ""), "opencv");
  const auto forms = variants[1].value("forms", json::array()).dump();
  EXPECT_EQ(forms.find("Clip(f32;d4,c0,c0"), std::string::npos) << forms;
  EXPECT_NE(forms.find("Clip(f32;d4;max=6,min=0)"), std::string::npos) << forms;

  const auto installed = Install(bundle.path, seconds(240));
  const std::string log = installed.out + installed.err;
  ASSERT_EQ(installed.exit_code, 0) << log;
  EXPECT_TRUE(std::regex_search(
      log, std::regex("event=parity id=[0-9]+ pass=true .* variant=onnx-opencv-4.6 "
                      "backend=opencv")))
      << log;
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(ExpectServedLikePyTorch("mobilenet_v2_op17", "mobilenetv2-lowered"));
  StopAgent();
}

// `edgefleet model lower` checks its result before writing: against the original's outputs on
// onnxruntime (no --golden), then the lowered file is what `model check` says opencv runs and
// matches; a model it cannot lower and a truncated file fail naming why, and write nothing.
TEST_F(AgentOnnxRuntime, ModelLowerWritesOnlyAFileThatMatchesTheOriginal) {
  const fs::path out = tmp_.path() / "lowered.onnx";
  auto lower = [&](const fs::path& in) {
    return testing::RunProcess(
        {EDGEFLEET_CLI, "model", "lower", in.string(), "-o", out.string(), "--for", "opencv-4.6"},
        seconds(120));
  };
  const auto ok = lower(kZoo / "mobilenet_v2_op17" / "model.onnx");
  ASSERT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("Clip: min/max inputs to attributes (35 node(s))"), std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("checked on opencv against random inputs on onnxruntime: match"),
            std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("opset 17 -> 10"), std::string::npos) << ok.out;
  const auto check = testing::RunProcess({EDGEFLEET_CLI, "model", "check", out.string(), "--golden",
                                          (kZoo / "mobilenet_v2_op17" / "golden").string()},
                                         seconds(120));
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_NE(check.out.find("opencv 4.6.0: before download runs; after download accepted; golden "
                           "match"),
            std::string::npos)
      << check.out;
  fs::remove(out);

  const auto refused = lower(kZoo / "efficientnet_b0_op13" / "model.onnx");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("cannot lower for opencv 4.6.0"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("node '"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("fails on opencv 4.6.0"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(out));

  const std::string bytes = testing::ReadFile(kZoo / "mobilenet_v2_op17" / "model.onnx");
  const fs::path cut = tmp_.path() / "cut.onnx";
  testing::WriteFile(cut, bytes.substr(0, bytes.size() / 3));
  const auto truncated = lower(cut);
  EXPECT_NE(truncated.exit_code, 0);
  EXPECT_NE(truncated.err.find("cut.onnx: not an ONNX model"), std::string::npos) << truncated.err;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace edgefleet
