// One model in three formats, rolled out to boxes with different backends (issue 12, acceptance 4):
// the digits CNN of tests/data/digits/v1 as ONNX (opencv), TorchScript (torch; written by
// tests/data/make_digits_torchscript.py) and TFLite (tflite on Arm NN; tests/data/make_tflite.py),
// all from the same weights, each checked by the agent against torch's golden logits. The real
// CLI rolls the bundle out through a real broker to real agents; each box measures every variant
// its backends run and serves the fastest that passes, and its parity_report event lists every
// measurement. A box whose backends run none of a bundle's variants makes `rollout start` refuse
// before anything is published.
#include <sstream>

#include "tests/integration/rollout_fixture.hpp"

namespace edgefleet::rollout_testing {
namespace {

const fs::path kData = EDGEFLEET_TEST_DATA_DIR;

json DigitsVariant(const std::string& id, const std::string& file, const std::string& format,
                   int opset, const std::vector<std::string>& operators, const json& backend) {
  return {{"id", id},
          {"file", file},
          {"format", format},
          {"opset", opset},
          {"operators", operators},
          {"backends", {backend}},
          {"inputs", {{{"name", "input"}, {"dtype", "float32"}, {"shape", {-1, 1, 8, 8}}}}},
          {"outputs", {{{"name", "logits"}, {"dtype", "float32"}, {"shape", {-1, 10}}}}}};
}

const json kOnnx = DigitsVariant("onnx", "model/digits_op10.onnx", "onnx", 10,
                                 {"Conv", "Flatten", "Gemm", "MaxPool", "Relu"},
                                 {{"name", "opencv"}, {"version", ">=4.5.0 <5.0.0"}});
// Operators left out: `bundle create` reads them from the file's code.
const json kTorchScript = [] {
  json v = DigitsVariant("torchscript", "model/digits.pt", "torchscript", 1, {},
                         {{"name", "torch"}, {"version", ">=1.13.0 <2.0.0"}});
  v.erase("operators");
  return v;
}();
const json kTflite = DigitsVariant("tflite", "model/digits.tflite", "tflite", 3,
                                   {"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE"},
                                   {{"name", "tflite"}, {"version", ">=22.0.0 <23.0.0"}});

class CrossFormatRollout : public RolloutE2E {
 protected:
  // digits `version` whose variants are `variants` (v1's weights in each format).
  testing::Bundle CrossFormatBundle(const std::string& version, const json& variants) {
    const fs::path work = tmp_ / ("cross-" + version);
    fs::create_directories(work);
    auto bundle = testing::MakeBundle(fleet_, "v1", work, [&](json& body, const fs::path& dir) {
      fs::copy_file(kData / "torchscript/digits.pt", dir / "model/digits.pt");
      fs::copy_file(kData / "tflite/digits.tflite", dir / "model/digits.tflite");
      fs::remove(dir / "model/digits_op13.onnx");
      body["version"] = version;
      body["variants"] = variants;
      body["watch"] = testing::ShortWatch();
    });
    server_.Add("/digits-" + bundle.version + ".efb", bundle.bytes);
    return bundle;
  }

  // Every message on the devices' events topics from now on, one "topic payload" line each.
  std::unique_ptr<testing::BackgroundProcess> SubscribeEvents(const fs::path& out) {
    auto sub = std::make_unique<testing::BackgroundProcess>(
        // Line-buffered: mosquitto_sub's stdout to a file is otherwise flushed only at exit.
        std::vector<std::string>{"/usr/bin/stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p",
                                 std::to_string(broker_->port()), "-q", "1", "-v", "-t",
                                 "edgefleet/v1/demo/device/+/events"},
        out);
    std::this_thread::sleep_for(milliseconds(500));  // subscribed before anything is published
    return sub;
  }

  // The parity report (the event's "parity") of the last parity_report event `device` published.
  static json ParityReport(const fs::path& events, const std::string& device) {
    const std::string prefix = "edgefleet/v1/demo/device/" + device + "/events ";
    json last;
    std::istringstream lines(ReadIfThere(events));
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(prefix, 0) != 0) continue;
      const json e = json::parse(line.substr(prefix.size()), nullptr, false);
      if (e.is_object() && e.value("event", "") == "parity_report")
        last = e.value("parity", json());
    }
    return last;
  }
};

TEST_F(CrossFormatRollout, EachBoxServesTheFastestVariantItsBackendsRunAndReportsEveryOne) {
  // box-1 runs all three formats, box-2 only TFLite, box-3 only TorchScript.
  const std::vector<json> backends = {{"opencv", "torch", "tflite"}, {"tflite"}, {"torch"}};
  ASSERT_NO_FATAL_FAILURE(
      AddBoxes(3, [&](int i) { return backends[static_cast<std::size_t>(i - 1)]; }));
  const auto events_file = tmp_ / "events.log";
  auto events = SubscribeEvents(events_file);
  const testing::Bundle bundle = CrossFormatBundle("3.0.0", {kOnnx, kTorchScript, kTflite});

  auto r = Rollout(bundle, "34%,100%", "cross");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  // What each box measured: every variant its backends run, all passing against torch's
  // logits, one chosen; exactly the formats of its backends.
  const std::vector<std::vector<std::string>> runnable = {
      {"onnx", "torchscript", "tflite"}, {"tflite"}, {"torchscript"}};
  for (std::size_t i = 0; i < boxes_.size(); ++i) {
    const Box& box = boxes_[i];
    SCOPED_TRACE(box.name);
    EXPECT_EQ(ActiveVersion(box), "3.0.0");
    json report;
    ASSERT_TRUE(WaitFor(box.name + "'s parity_report", seconds(30), [&] {
      report = ParityReport(events_file, box.name);
      return !report.is_null();
    })) << ReadIfThere(events_file).substr(0, 3000);
    ASSERT_TRUE(report.contains("variants")) << report.dump();
    std::vector<std::string> measured;
    int chosen = 0;
    for (const json& v : report["variants"]) {
      measured.push_back(v.value("variant", ""));
      EXPECT_TRUE(v.value("pass", false)) << v.dump();
      EXPECT_TRUE(v["latency_median_ms"].is_number()) << v.dump();
      EXPECT_GT(v["latency_median_ms"].get<double>(), 0.0) << v.dump();
      if (v.value("chosen", false)) {
        ++chosen;
        EXPECT_EQ(report.value("variant", ""), v.value("variant", "")) << report.dump();
        EXPECT_EQ(report.value("backend", ""), v.value("backend", "")) << report.dump();
      }
    }
    std::sort(measured.begin(), measured.end());
    auto expected = runnable[i];
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(measured, expected) << report.dump();
    EXPECT_EQ(chosen, 1) << report.dump();
    std::printf("%s: serves %s on %s; measured %s\n", box.name.c_str(),
                report.value("variant", "").c_str(), report.value("backend", "").c_str(),
                report["variants"].dump().c_str());
  }
}

// The bundle without its ONNX variant: box-2 runs only opencv, so it can run none of TorchScript
// and TFLite; `rollout start` names it with why and publishes nothing.
TEST_F(CrossFormatRollout, ABoxWhoseBackendsRunNoVariantIsRefusedBeforeAnythingIsPublished) {
  const std::vector<json> backends = {{"torch", "tflite"}, {"opencv"}};
  ASSERT_NO_FATAL_FAILURE(
      AddBoxes(2, [&](int i) { return backends[static_cast<std::size_t>(i - 1)]; }));
  const testing::Bundle bundle = CrossFormatBundle("3.1.0", {kTorchScript, kTflite});
  auto r = testing::RunProcess(RolloutArgs(bundle, "100%", "noformat"), seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(Contains(r.err,
                       "--group lab: 1 of 2 device(s) can run no variant of digits 3.1.0; "
                       "nothing was published:\n  box-2: "))
      << r.err;
  EXPECT_TRUE(Contains(r.err, "\"torchscript\"")) << r.err;
  EXPECT_TRUE(Contains(r.err, "\"tflite\"")) << r.err;
  EXPECT_FALSE(Contains(r.err, "box-1:")) << r.err;
  EXPECT_TRUE(Retained("edgefleet/v1/demo/device/box-1/desired").empty());
  EXPECT_TRUE(Retained("edgefleet/v1/demo/device/box-2/desired").empty());
  EXPECT_TRUE(Retained("edgefleet/v1/demo/group/lab/desired").empty());
}

}  // namespace
}  // namespace edgefleet::rollout_testing
