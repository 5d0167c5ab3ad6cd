// The rollout's decisions (deploy/rollout_plan) and its database (deploy/rollout_store) on real
// SQLite files: waves, thresholds, leases, serials, and what survives reopening.
#include <unistd.h>

#include <gtest/gtest.h>

#include "deploy/rollout/rollout_plan.hpp"
#include "deploy/rollout/rollout_store.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::deploy {
namespace {

TEST(RolloutPlan, WavesParseAndRefuseWithTheReason) {
  auto w = ParseWaves("10%,50%,100%");
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(*w, (std::vector<double>{10, 50, 100}));
  EXPECT_EQ(*ParseWaves("100"), (std::vector<double>{100}));
  EXPECT_EQ(*ParseWaves(" 2.5% , 100% "), (std::vector<double>{2.5, 100}));
  struct Bad {
    const char* text;
    const char* says;
  };
  for (const Bad& bad :
       {Bad{"10%,50%", "the last wave must be 100%"}, Bad{"50%,10%,100%", "must increase"},
        Bad{"0%,100%", "above 0%"}, Bad{"10%,150%", "at most 100%"}, Bad{"ten,100%", "found 'ten'"},
        Bad{"10%,,100%", "found ''"}, Bad{"", "found ''"}}) {
    auto r = ParseWaves(bad.text);
    ASSERT_FALSE(r) << bad.text;
    EXPECT_NE(r.error().message.find(bad.says), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("--waves"), std::string::npos) << r.error().message;
  }
  EXPECT_DOUBLE_EQ(*ParsePercent("--error-threshold", "10%"), 0.1);
  EXPECT_DOUBLE_EQ(*ParsePercent("--error-threshold", "0"), 0.0);
  EXPECT_FALSE(ParsePercent("--error-threshold", "101%"));
  EXPECT_FALSE(ParsePercent("--error-threshold", "-1"));
  EXPECT_FALSE(ParsePercent("--error-threshold", "0.1x"));
}

TEST(RolloutPlan, WavesReleaseCumulativeCeilingsAndDropEmptyWaves) {
  auto cumulative = [](const std::vector<WavePlan>& plan) {
    std::vector<std::size_t> out;
    for (const auto& w : plan) out.push_back(w.cumulative);
    return out;
  };
  EXPECT_EQ(cumulative(PlanWaves({10, 50, 100}, 50)), (std::vector<std::size_t>{5, 25, 50}));
  EXPECT_EQ(cumulative(PlanWaves({10, 50, 100}, 3)), (std::vector<std::size_t>{1, 2, 3}));
  EXPECT_EQ(cumulative(PlanWaves({30, 100}, 10)), (std::vector<std::size_t>{3, 10}));
  // 10% and 50% of 1 device are both that device: one wave.
  EXPECT_EQ(cumulative(PlanWaves({10, 50, 100}, 1)), (std::vector<std::size_t>{1}));
  EXPECT_EQ(cumulative(PlanWaves({1, 2, 100}, 2)), (std::vector<std::size_t>{1, 2}));
  EXPECT_TRUE(PlanWaves({100}, 0).empty());
}

TEST(RolloutPlan, DecisionsFollowTheThresholds) {
  const Thresholds t{0.9, 0.1};
  // 1 of 5 failed = 20% > 10%: halt, even before the others answered, even when paused.
  auto d = Decide({5, 0, 1, 4}, t, 1, 3, false, false);
  EXPECT_EQ(d.verdict, Verdict::kHalt);
  EXPECT_NE(d.reason.find("20%"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("error threshold 10%"), std::string::npos) << d.reason;
  EXPECT_EQ(Decide({5, 0, 1, 4}, t, 1, 3, true, false).verdict, Verdict::kHalt);
  // 1 of 20 = 5% is tolerated; 19 of 20 = 95% >= 90% moves on.
  EXPECT_EQ(Decide({20, 19, 1, 0}, t, 2, 3, false, false).verdict, Verdict::kNextWave);
  EXPECT_EQ(Decide({20, 17, 1, 2}, t, 2, 3, false, false).verdict, Verdict::kWait);
  EXPECT_EQ(Decide({50, 50, 0, 0}, t, 3, 3, false, false).verdict, Verdict::kComplete);
  // Paused: no next wave and no completion.
  EXPECT_EQ(Decide({20, 20, 0, 0}, t, 2, 3, true, false).verdict, Verdict::kWait);
  EXPECT_EQ(Decide({50, 50, 0, 0}, t, 3, 3, true, false).verdict, Verdict::kWait);
  // A timed-out wave below the success threshold halts.
  d = Decide({20, 17, 2, 1}, Thresholds{0.9, 0.2}, 2, 3, false, true);
  EXPECT_EQ(d.verdict, Verdict::kHalt);
  EXPECT_NE(d.reason.find("timed out"), std::string::npos) << d.reason;
  // Error threshold 0%: any failure halts; nothing released: wait.
  EXPECT_EQ(Decide({10, 9, 1, 0}, Thresholds{0.5, 0}, 1, 2, false, false).verdict, Verdict::kHalt);
  EXPECT_EQ(Decide({0, 0, 0, 0}, t, 0, 3, false, false).verdict, Verdict::kWait);
}

RolloutRecord Sample(const std::string& id) {
  RolloutRecord r;
  r.id = id;
  r.fleet = "demo";
  r.group = "lab";
  r.model = "digits";
  r.version = "1.1.0";
  r.bundle_url = "http://127.0.0.1:1/d.efb";
  r.desired_model = {{"name", "digits"}, {"version", "1.1.0"}};
  r.waves = {10, 100};
  r.connection.broker = "127.0.0.1:1883";
  r.connection.deploy_keys = {"/keys/deploy.key"};
  r.started_ms = 1000;
  return r;
}

TEST(RolloutStore, RolloutsAndDevicesSurviveReopening) {
  testing::TempDir tmp;
  const auto path = tmp / "rollouts.db";
  {
    auto store = RolloutStore::Open(path);
    ASSERT_TRUE(store) << store.error().message;
    RolloutDevice a;
    a.device = "box-1";
    a.wave = 1;
    a.prev_models = nlohmann::json::array({{{"name", "digits"}, {"version", "1.0.0"}}});
    RolloutDevice b;
    b.device = "box-2";
    b.wave = 2;
    ASSERT_TRUE(store->Create(Sample("r1"), std::vector<RolloutDevice>{a, b}));
    auto again = store->Create(Sample("r1"), {});
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().message.find("exists already"), std::string::npos);
    ASSERT_TRUE(store->Create(Sample("r2"), {}));
    auto r = *store->Get("r1");
    r.state = RolloutState::kHalted;
    r.reason = "1 failed";
    r.wave = 1;
    a.state = DeviceState::kRestored;
    a.outcome = "failed";
    a.detail = "failed: parity";
    a.serial = 7;
    a.doc = "{}";
    ASSERT_TRUE(store->Save(r, std::vector<RolloutDevice>{a}));
  }
  auto store = RolloutStore::Open(path, true);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store->Get("")->id, "r2") << "no id: the newest";
  auto r = store->Get("r1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, RolloutState::kHalted);
  EXPECT_EQ(r->reason, "1 failed");
  EXPECT_EQ(r->waves, (std::vector<double>{10, 100}));
  EXPECT_EQ(r->connection.deploy_keys, (std::vector<std::string>{"/keys/deploy.key"}));
  auto devices = store->Devices("r1");
  ASSERT_TRUE(devices);
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].state, DeviceState::kRestored);
  EXPECT_EQ((*devices)[0].outcome, "failed");
  EXPECT_EQ((*devices)[0].serial, 7u);
  EXPECT_EQ((*devices)[0].prev_models[0]["version"], "1.0.0");
  EXPECT_EQ((*devices)[1].state, DeviceState::kWaiting);
  EXPECT_TRUE((*devices)[1].prev_models.is_null());
  auto missing = store->Get("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("'nope'"), std::string::npos);
}

TEST(RolloutStore, LeaseControlAndSerials) {
  testing::TempDir tmp;
  auto store = RolloutStore::Open(tmp / "rollouts.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Create(Sample("r1"), {}));
  const std::int64_t me = getpid();
  ASSERT_TRUE(store->AcquireLease("r1", me, 10'000, 5000));
  // Another process while ours is alive and beating: refused, naming the holder.
  auto other = store->AcquireLease("r1", me + 1, 12'000, 5000);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find(std::to_string(me)), std::string::npos);
  // A stale heartbeat (the holder stopped beating) can be taken over.
  EXPECT_TRUE(store->AcquireLease("r1", me + 1, 16'000, 5000));
  ASSERT_TRUE(store->ReleaseLease("r1", me + 1));
  EXPECT_EQ(store->Get("r1")->driver_pid, 0);

  ASSERT_TRUE(store->RequestControl("r1", "pause"));
  EXPECT_EQ(*store->TakeControl("r1"), "pause");
  EXPECT_EQ(*store->TakeControl("r1"), "") << "a request is taken once";
  EXPECT_FALSE(store->RequestControl("nope", "pause"));

  // Serials: above what the broker holds, above what this database used, at least the clock.
  EXPECT_EQ(*store->NextSerial("demo", "device/box-1", 0, 5000), 5000u);
  EXPECT_EQ(*store->NextSerial("demo", "device/box-1", 0, 5000), 5001u);
  EXPECT_EQ(*store->NextSerial("demo", "device/box-1", 9000, 5000), 9001u);
  EXPECT_EQ(*store->NextSerial("demo", "group/lab", 0, 100), 100u) << "per target";
  EXPECT_FALSE(store->NextSerial("demo", "device/box-1", static_cast<std::uint64_t>(INT64_MAX), 1));
  EXPECT_FALSE(store->NextSerial("demo", "device/box-1", UINT64_MAX, 1)) << "seen + 1 wraps";

  // A wave's serials in one transaction: the same rules per target, in request order; one
  // refused request records none of them.
  using Req = RolloutStore::SerialRequest;
  const std::vector<Req> wave = {{"device/box-1", 0}, {"device/box-2", 7000}, {"group/lab", 0}};
  auto serials = store->NextSerials("demo", wave, 5000);
  ASSERT_TRUE(serials) << serials.error().message;
  EXPECT_EQ(*serials, (std::vector<std::uint64_t>{9002u, 7001u, 5000u}));
  const std::vector<Req> refused = {{"device/box-1", 0}, {"device/box-3", UINT64_MAX}};
  auto none = store->NextSerials("demo", refused, 1);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("device/box-3"), std::string::npos) << none.error().message;
  EXPECT_EQ(*store->NextSerial("demo", "device/box-1", 0, 1), 9003u)
      << "the refused batch left no trace";
  EXPECT_EQ(*store->NextSerial("demo", "device/box-3", 0, 1), 1u);
  EXPECT_TRUE(store->NextSerials("demo", {}, 1)->empty());
}

TEST(RolloutStore, RefusesAFileThatIsNotARolloutDatabase) {
  testing::TempDir tmp;
  testing::WriteFile(tmp / "x.db", "not sqlite at all, just text that is long enough to matter");
  EXPECT_FALSE(RolloutStore::Open(tmp / "x.db"));
  auto missing = RolloutStore::Open(tmp / "none.db", true);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace edgefleet::deploy
