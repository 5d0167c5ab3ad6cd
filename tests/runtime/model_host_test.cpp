// The model host with the real opencv backend and the committed digits models: slots, activation,
// snapshots that outlive a switch, warm-up before publishing, and 100 switches under load.
#include "runtime/model_host.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/tensor.hpp"
#include "tests/support/digits.hpp"
#include "tests/support/opencv_plugin.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

fs::path DigitsDir(std::string_view version) {
  return fs::path(EDGEFLEET_TEST_DATA_DIR) / "digits" / version;
}

// One digits version: its manifest and its golden batch, for single-row requests whose answer
// is known exactly.
struct Digits {
  fs::path dir;
  manifests::Manifest manifest;
  std::vector<float> inputs;   // [360,1,8,8]
  std::vector<float> outputs;  // [360,10], this version's own logits

  static Digits Load(std::string_view version) {
    Digits d;
    d.dir = DigitsDir(version);
    auto manifest = testing::LoadBundleManifest(d.dir);
    EXPECT_TRUE(manifest) << manifest.error().message;
    if (manifest) d.manifest = *manifest;
    auto in = ReadTensorProto(d.dir / "golden/heldout/input_0.pb");
    auto out = ReadTensorProto(d.dir / "golden/heldout/output_0.pb");
    EXPECT_TRUE(in && out);
    if (in && out) {
      d.inputs.assign(in->As<float>().begin(), in->As<float>().end());
      d.outputs.assign(out->As<float>().begin(), out->As<float>().end());
    }
    return d;
  }

  std::vector<Tensor> Row(std::size_t row) const {
    std::span<const float> values(inputs.data() + row * 64, 64);
    return {*Tensor::FromFloats("input", {1, 1, 8, 8}, values)};
  }

  // True when `logits` are this version's answer for `row` (the parity tolerance).
  bool Matches(const Tensor& logits, std::size_t row) const {
    auto got = logits.As<float>();
    if (logits.shape != std::vector<std::int64_t>{1, 10} || got.size() != 10) return false;
    for (std::size_t i = 0; i < 10; ++i) {
      const double want = outputs[row * 10 + i];
      if (std::fabs(got[i] - want) > 1e-4 + 1e-3 * std::fabs(want)) return false;
    }
    return true;
  }
};

class ModelHostTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto backend = testing::LoadOpenCvPlugin();
    ASSERT_TRUE(backend) << backend.error().message;
    backend_ = std::move(backend).value().release();
    v1_ = new Digits(Digits::Load("v1"));
    v2_ = new Digits(Digits::Load("v2"));
  }
  static void TearDownTestSuite() {
    delete v1_;
    delete v2_;
    delete backend_;
  }

  static LoadRequest Request(const Digits& d, Slot slot, Backend* backend = nullptr) {
    LoadRequest r;
    r.name = "digits";
    r.version = d.manifest.version;
    r.slot = slot;
    r.variant = d.manifest.variants.at(0);
    r.model_file = d.dir / r.variant.file;
    r.preprocessing = d.manifest.preprocessing;
    r.bundle_sha256 = "sha-of-" + d.manifest.version.ToString();
    r.backend = backend != nullptr ? backend : backend_;
    return r;
  }

  static Backend* backend_;
  static Digits* v1_;
  static Digits* v2_;
  ModelHost host_;
};

Backend* ModelHostTest::backend_ = nullptr;
Digits* ModelHostTest::v1_ = nullptr;
Digits* ModelHostTest::v2_ = nullptr;

TEST_F(ModelHostTest, LoadActivateInfer) {
  auto none = host_.Infer("digits", v1_->Row(0));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);

  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  // Loaded is not serving: nothing answers until a slot is activated.
  EXPECT_EQ(host_.Active("digits"), nullptr);
  EXPECT_FALSE(host_.Infer("digits", v1_->Row(0)));

  ASSERT_TRUE(host_.Activate("digits", Slot::kA));
  auto active = host_.Active("digits");
  ASSERT_NE(active, nullptr);
  EXPECT_EQ(active->slot, Slot::kA);
  EXPECT_EQ(active->version.ToString(), "1.0.0");
  EXPECT_EQ(active->variant_id, "onnx-op10");
  EXPECT_EQ(active->backend, "opencv");
  EXPECT_EQ(active->bundle_sha256, "sha-of-1.0.0");
  ASSERT_TRUE(active->preprocessing);
  EXPECT_EQ(active->preprocessing->color, "GRAY");

  for (std::size_t row : {0u, 1u, 2u, 359u}) {
    auto outcome = host_.Infer("digits", v1_->Row(row));
    ASSERT_TRUE(outcome) << outcome.error().message;
    EXPECT_EQ(outcome->instance, active);
    EXPECT_GT(outcome->infer_ms, 0.0);
    ASSERT_EQ(outcome->outputs.size(), 1u);
    EXPECT_TRUE(v1_->Matches(outcome->outputs[0], row)) << "row " << row;
  }

  auto bad = host_.Infer("digits",
                         {*Tensor::FromFloats("input", {1, 1, 4, 4}, std::vector<float>(16, 0.f))});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument) << bad.error().message;
  EXPECT_NE(bad.error().message.find("model 'digits' slot A (version 1.0.0)"), std::string::npos)
      << bad.error().message;
}

TEST_F(ModelHostTest, LoadIntoBWhileAServesThenSwitch) {
  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  ASSERT_TRUE(host_.Activate("digits", Slot::kA));

  // A client keeps inferring on A while B loads and warms up.
  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::atomic<int> wrong{0};
  std::thread client([&] {
    for (std::size_t i = 0; !stop; ++i) {
      const std::size_t row = i % 360;
      auto outcome = host_.Infer("digits", v1_->Row(row));
      if (outcome && outcome->instance->slot == Slot::kA &&
          v1_->Matches(outcome->outputs.at(0), row)) {
        ++served;
      } else {
        ++wrong;
      }
    }
  });
  const auto start = Clock::now();
  while (served < 5 && Clock::now() - start < std::chrono::seconds(10)) {
    std::this_thread::yield();
  }
  const int before_load = served;
  auto loaded = host_.Load(Request(*v2_, Slot::kB));
  const int after_load = served;
  stop = true;
  client.join();
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(wrong, 0);
  EXPECT_GE(before_load, 5);
  std::cout << "requests served on A while B loaded: " << after_load - before_load << "\n";

  // Loading B did not touch what serves.
  ASSERT_NE(host_.Active("digits"), nullptr);
  EXPECT_EQ(host_.Active("digits")->slot, Slot::kA);

  auto snapshot = host_.Active("digits");  // a request that started before the switch
  ASSERT_TRUE(host_.Activate("digits", Slot::kB));
  EXPECT_EQ(host_.Active("digits")->version.ToString(), "1.1.0");

  // The snapshot still runs on A (v1's answers), the host on B (v2's).
  EXPECT_EQ(snapshot->slot, Slot::kA);
  EXPECT_EQ(snapshot->version.ToString(), "1.0.0");
  auto old_run = snapshot->session->Run(v1_->Row(7));
  ASSERT_TRUE(old_run) << old_run.error().message;
  EXPECT_TRUE(v1_->Matches(old_run->at(0), 7));
  auto now = host_.Infer("digits", v2_->Row(7));
  ASSERT_TRUE(now) << now.error().message;
  EXPECT_EQ(now->instance->slot, Slot::kB);
  EXPECT_TRUE(v2_->Matches(now->outputs.at(0), 7));
  EXPECT_FALSE(v1_->Matches(now->outputs.at(0), 7));  // the versions really differ

  // The snapshot even survives its slot being emptied: the last holder frees it.
  ASSERT_TRUE(host_.Unload("digits", Slot::kA));
  EXPECT_EQ(host_.InSlot("digits", Slot::kA), nullptr);
  auto orphan_run = snapshot->session->Run(v1_->Row(8));
  ASSERT_TRUE(orphan_run) << orphan_run.error().message;
  EXPECT_TRUE(v1_->Matches(orphan_run->at(0), 8));
}

TEST_F(ModelHostTest, LoadingIntoTheActiveSlotIsRefused) {
  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  ASSERT_TRUE(host_.Activate("digits", Slot::kA));
  const auto serving = host_.Active("digits");

  auto refused = host_.Load(Request(*v2_, Slot::kA));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused.error().message,
            "model 'digits' slot A: is the active slot (version 1.0.0); load into slot B and "
            "activate it");
  EXPECT_EQ(host_.Active("digits"), serving);
  EXPECT_EQ(host_.InSlot("digits", Slot::kA), serving);
  EXPECT_EQ(host_.InSlot("digits", Slot::kB), nullptr);

  // Reloading the inactive slot replaces it; the active one is untouched.
  ASSERT_TRUE(host_.Load(Request(*v2_, Slot::kB)));
  const auto first_b = host_.InSlot("digits", Slot::kB);
  ASSERT_TRUE(host_.Load(Request(*v2_, Slot::kB)));
  EXPECT_NE(host_.InSlot("digits", Slot::kB), first_b);
  EXPECT_EQ(host_.Active("digits"), serving);
}

TEST_F(ModelHostTest, UnloadOnlyTheInactiveSlot) {
  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  ASSERT_TRUE(host_.Load(Request(*v2_, Slot::kB)));
  ASSERT_TRUE(host_.Activate("digits", Slot::kB));

  auto refused = host_.Unload("digits", Slot::kB);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused.error().message,
            "model 'digits' slot B: is the active slot (version 1.1.0); activate the other slot "
            "first");

  ASSERT_TRUE(host_.Unload("digits", Slot::kA));
  EXPECT_EQ(host_.InSlot("digits", Slot::kA), nullptr);
  EXPECT_TRUE(host_.Unload("digits", Slot::kA));  // already empty: nothing to do
  auto activate_empty = host_.Activate("digits", Slot::kA);
  ASSERT_FALSE(activate_empty);
  EXPECT_EQ(activate_empty.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(activate_empty.error().message, "model 'digits' slot A: empty, nothing to activate");
  EXPECT_TRUE(host_.Infer("digits", v2_->Row(0)));  // B still serves

  auto unknown = host_.Unload("nope", Slot::kA);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto unknown_activate = host_.Activate("nope", Slot::kA);
  ASSERT_FALSE(unknown_activate);
  EXPECT_EQ(unknown_activate.error().code, ErrorCode::kNotFound);
}

TEST_F(ModelHostTest, ListShowsSlotsAndVersions) {
  EXPECT_TRUE(host_.List().empty());
  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  auto other = Request(*v2_, Slot::kB);
  other.name = "digits-canary";
  ASSERT_TRUE(host_.Load(other));
  ASSERT_TRUE(host_.Load(Request(*v2_, Slot::kB)));
  ASSERT_TRUE(host_.Activate("digits", Slot::kA));

  auto list = host_.List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "digits");
  ASSERT_TRUE(list[0].active);
  EXPECT_EQ(*list[0].active, Slot::kA);
  ASSERT_EQ(list[0].slots.size(), 2u);
  EXPECT_EQ(list[0].slots[0].slot, Slot::kA);
  EXPECT_EQ(list[0].slots[0].version.ToString(), "1.0.0");
  EXPECT_EQ(list[0].slots[0].variant_id, "onnx-op10");
  EXPECT_EQ(list[0].slots[0].bundle_sha256, "sha-of-1.0.0");
  EXPECT_EQ(list[0].slots[1].slot, Slot::kB);
  EXPECT_EQ(list[0].slots[1].version.ToString(), "1.1.0");
  EXPECT_EQ(list[1].name, "digits-canary");
  EXPECT_FALSE(list[1].active);
  ASSERT_EQ(list[1].slots.size(), 1u);
  EXPECT_EQ(list[1].slots[0].slot, Slot::kB);

  ASSERT_TRUE(host_.Activate("digits", Slot::kB));
  ASSERT_TRUE(host_.Unload("digits", Slot::kA));
  ASSERT_TRUE(host_.Unload("digits-canary", Slot::kB));
  list = host_.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(*list[0].active, Slot::kB);
  ASSERT_EQ(list[0].slots.size(), 1u);
  EXPECT_EQ(list[0].slots[0].version.ToString(), "1.1.0");
}

TEST_F(ModelHostTest, FailedLoadLeavesTheSlotAsItWas) {
  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  ASSERT_TRUE(host_.Load(Request(*v2_, Slot::kB)));
  ASSERT_TRUE(host_.Activate("digits", Slot::kA));
  const auto b = host_.InSlot("digits", Slot::kB);

  testing::TempDir temp;
  testing::WriteFile(temp / "garbage.onnx", "this is not an onnx model");
  auto request = Request(*v2_, Slot::kB);
  request.model_file = temp / "garbage.onnx";
  auto failed = host_.Load(request);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message.rfind("model 'digits' slot B: load: ", 0), 0u)
      << failed.error().message;
  EXPECT_EQ(host_.InSlot("digits", Slot::kB), b);

  // A first load that fails leaves no trace of the model.
  request.name = "other";
  EXPECT_FALSE(host_.Load(request));
  EXPECT_EQ(host_.List().size(), 1u);
  EXPECT_EQ(host_.InSlot("other", Slot::kB), nullptr);

  request = Request(*v2_, Slot::kB);
  request.backend = nullptr;
  auto no_backend = host_.Load(request);
  ASSERT_FALSE(no_backend);
  EXPECT_EQ(no_backend.error().code, ErrorCode::kInvalidArgument);
}

// A seam around the real backend: records every Run, optionally fails them.
struct RunLog {
  std::mutex mu;
  std::vector<std::vector<Tensor>> runs;  // guarded by mu
  bool fail = false;
};

class RecordingSession final : public Session {
 public:
  RecordingSession(std::unique_ptr<Session> inner, std::shared_ptr<RunLog> log)
      : inner_(std::move(inner)), log_(std::move(log)) {}
  const std::vector<TensorInfo>& inputs() const override { return inner_->inputs(); }
  const std::vector<TensorInfo>& outputs() const override { return inner_->outputs(); }
  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) override {
    {
      std::lock_guard lock(log_->mu);
      log_->runs.push_back(inputs);
    }
    if (log_->fail) return Fail(ErrorCode::kInternal, "injected failure");
    return inner_->Run(inputs);
  }

 private:
  std::unique_ptr<Session> inner_;
  std::shared_ptr<RunLog> log_;
};

class RecordingBackend final : public Backend {
 public:
  RecordingBackend(Backend& inner, std::shared_ptr<RunLog> log)
      : inner_(inner), log_(std::move(log)) {}
  const BackendCapabilities& capabilities() const override { return inner_.capabilities(); }
  Result<std::unique_ptr<Session>> Load(const fs::path& model_file,
                                        const manifests::Variant& variant,
                                        const SessionOptions& options) override {
    auto session = inner_.Load(model_file, variant, options);
    if (!session) return Unexpected(session.error());
    return std::unique_ptr<Session>(
        std::make_unique<RecordingSession>(std::move(session).value(), log_));
  }

 private:
  Backend& inner_;
  std::shared_ptr<RunLog> log_;
};

TEST_F(ModelHostTest, WarmsUpOnZeroTensorsBeforePublishing) {
  auto log = std::make_shared<RunLog>();
  RecordingBackend recording(*backend_, log);
  auto request = Request(*v1_, Slot::kA, &recording);
  request.warmup_runs = 3;
  ASSERT_TRUE(host_.Load(request));
  {
    std::lock_guard lock(log->mu);
    ASSERT_EQ(log->runs.size(), 3u);
    for (const auto& run : log->runs) {
      ASSERT_EQ(run.size(), 1u);
      EXPECT_EQ(run[0].name, "input");
      EXPECT_EQ(run[0].dtype, DType::kFloat32);
      // The declared [-1,1,8,8] with the dynamic batch as 1.
      EXPECT_EQ(run[0].shape, (std::vector<std::int64_t>{1, 1, 8, 8}));
      for (float v : run[0].As<float>()) ASSERT_EQ(v, 0.0f);
    }
  }
  // Zero warm-up runs asked for still means one: a slot is ready only after warming up.
  {
    std::lock_guard lock(log->mu);
    log->runs.clear();
  }
  request.slot = Slot::kB;
  request.warmup_runs = 0;
  ASSERT_TRUE(host_.Load(request));
  std::lock_guard lock(log->mu);
  EXPECT_EQ(log->runs.size(), 1u);
}

TEST_F(ModelHostTest, FailedWarmupPublishesNothing) {
  ASSERT_TRUE(host_.Load(Request(*v2_, Slot::kB)));
  const auto b = host_.InSlot("digits", Slot::kB);
  auto log = std::make_shared<RunLog>();
  log->fail = true;
  RecordingBackend recording(*backend_, log);

  auto failed = host_.Load(Request(*v1_, Slot::kB, &recording));
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::kInternal);
  EXPECT_EQ(failed.error().message, "model 'digits' slot B: warm-up run: injected failure");
  EXPECT_EQ(host_.InSlot("digits", Slot::kB), b);
  EXPECT_FALSE(host_.Load(Request(*v1_, Slot::kA, &recording)));
  EXPECT_EQ(host_.InSlot("digits", Slot::kA), nullptr);
}

// Holds every Load until released, to look at the host while a load is in progress.
class GatedBackend final : public Backend {
 public:
  explicit GatedBackend(Backend& inner) : inner_(inner) {}
  const BackendCapabilities& capabilities() const override { return inner_.capabilities(); }
  Result<std::unique_ptr<Session>> Load(const fs::path& model_file,
                                        const manifests::Variant& variant,
                                        const SessionOptions& options) override {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
    return inner_.Load(model_file, variant, options);
  }
  bool WaitEntered() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  Backend& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;   // guarded by mu_
  bool released_ = false;  // guarded by mu_
};

TEST_F(ModelHostTest, ServingNeverWaitsForALoad) {
  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  ASSERT_TRUE(host_.Activate("digits", Slot::kA));
  GatedBackend gated(*backend_);
  Status loaded;
  std::thread loader([&] { loaded = host_.Load(Request(*v2_, Slot::kB, &gated)); });
  const bool entered = gated.WaitEntered();
  if (entered) {
    // B is loading (blocked inside the backend): A serves, List and Active answer, and a second
    // load into B is refused instead of racing the first.
    auto outcome = host_.Infer("digits", v1_->Row(3));
    EXPECT_TRUE(outcome && v1_->Matches(outcome->outputs.at(0), 3));
    EXPECT_EQ(host_.List().at(0).slots.size(), 1u);
    EXPECT_EQ(host_.InSlot("digits", Slot::kB), nullptr);
    auto second = host_.Load(Request(*v2_, Slot::kB));
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().message, "model 'digits' slot B: another load into it is in progress");
    auto unload = host_.Unload("digits", Slot::kB);
    EXPECT_FALSE(unload);
  }
  gated.Release();
  loader.join();
  ASSERT_TRUE(entered) << "the load never reached the backend";
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_NE(host_.InSlot("digits", Slot::kB), nullptr);
  EXPECT_EQ(host_.InSlot("digits", Slot::kB)->version.ToString(), "1.1.0");
  EXPECT_TRUE(host_.Load(Request(*v2_, Slot::kB)));  // the mark is gone once the load ended
}

// Acceptance 4, in-process: 4 clients infer continuously while another thread switches A/B 100
// times. No request may fail, and every answer must be exactly v1's or v2's for its input.
TEST_F(ModelHostTest, HundredSwitchesUnderLoadFailNoRequest) {
  ASSERT_TRUE(host_.Load(Request(*v1_, Slot::kA)));
  ASSERT_TRUE(host_.Load(Request(*v2_, Slot::kB)));
  ASSERT_TRUE(host_.Activate("digits", Slot::kA));
  const auto a = host_.InSlot("digits", Slot::kA);
  const auto b = host_.InSlot("digits", Slot::kB);

  constexpr int kClients = 4;
  constexpr int kSwitches = 100;
  std::atomic<bool> stop{false};
  std::atomic<long> requests{0};
  std::atomic<long> failed{0};
  std::atomic<long> unknown_instance{0};
  std::atomic<long> wrong_answer{0};
  std::atomic<long> on_a{0};
  std::atomic<long> on_b{0};
  std::mutex first_error_mu;
  std::string first_error;  // guarded by first_error_mu

  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (std::size_t i = static_cast<std::size_t>(c) * 90; !stop; ++i) {
        const std::size_t row = i % 360;
        auto outcome = host_.Infer("digits", v1_->Row(row));
        ++requests;
        if (!outcome) {
          ++failed;
          std::lock_guard lock(first_error_mu);
          if (first_error.empty()) first_error = outcome.error().message;
          continue;
        }
        const auto& served_by = outcome->instance;
        if (served_by == a && served_by->version.ToString() == "1.0.0") {
          ++on_a;
          if (!v1_->Matches(outcome->outputs.at(0), row)) ++wrong_answer;
        } else if (served_by == b && served_by->version.ToString() == "1.1.0") {
          ++on_b;
          // v2's golden batch has the same inputs in the same order as v1's.
          if (!v2_->Matches(outcome->outputs.at(0), row)) ++wrong_answer;
        } else {
          ++unknown_instance;
        }
      }
    });
  }

  // Each switch waits for a few requests so that switches land among requests in flight rather
  // than 100 of them finishing before the clients start; the deadline makes a hang fail loudly.
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  Slot next = Slot::kB;
  int switches = 0;
  for (; switches < kSwitches && Clock::now() < deadline; ++switches) {
    const long seen = requests;
    while (requests < seen + kClients && Clock::now() < deadline) std::this_thread::yield();
    if (auto activated = host_.Activate("digits", next); !activated) {
      ADD_FAILURE() << activated.error().message;
      break;
    }
    next = Other(next);
  }
  const long at_last_switch = requests;
  while (requests < at_last_switch + kClients && Clock::now() < deadline) {
    std::this_thread::yield();
  }
  stop = true;
  for (auto& t : clients) t.join();

  std::cout << "switches " << switches << ", requests " << requests << " (A " << on_a << ", B "
            << on_b << "), failed " << failed << ", unknown " << unknown_instance
            << ", wrong answers " << wrong_answer << "\n";
  EXPECT_EQ(switches, kSwitches) << "deadline reached";
  EXPECT_EQ(failed, 0) << first_error;
  EXPECT_EQ(unknown_instance, 0);
  EXPECT_EQ(wrong_answer, 0);
  EXPECT_GT(on_a, 0);
  EXPECT_GT(on_b, 0);
  EXPECT_GE(requests, kSwitches * kClients);
  // 100 switches from A: even count, so A serves at the end.
  EXPECT_EQ(host_.Active("digits"), a);
}

}  // namespace
}  // namespace edgefleet::runtime
