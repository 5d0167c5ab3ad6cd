// `edgefleet rollout` end to end (issue 6, acceptance 3): the real CLI against a real mosquitto
// broker and real `edgefleet-agent` processes (3 here, 50 in the fleet-sized test), bundles made by
// the real CLI and served over loopback HTTP. Checks what the rollout says against what the
// agents run (`edgefleet-agent status`) and what the broker holds (mosquitto_sub).
#include "tests/integration/rollout_fixture.hpp"

namespace edgefleet::rollout_testing {
namespace {

#ifndef EDGEFLEET_FLEET_SCALE
TEST_F(RolloutE2E, WavesCompleteThenABrokenCanaryHaltsAndRestores) {
  ASSERT_NO_FATAL_FAILURE(AddBoxes(3));

  // 1% and 2% of 3 devices are both the canary: the 2% wave is dropped, and what is reported is
  // the waves that release someone, with their own percentages.
  auto first = Rollout(v1_, "1%,2%,100%", "v1");
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  for (const Box& b : boxes_) EXPECT_EQ(ActiveVersion(b), "1.0.0") << b.name;
  json waves = RolloutStatus("v1")["waves"];
  ASSERT_EQ(waves.size(), 2u) << waves.dump();
  EXPECT_EQ(waves[0]["percent"], 1);
  EXPECT_EQ(waves[0]["devices"], 1);
  EXPECT_EQ(waves[1]["percent"], 100);
  EXPECT_EQ(waves[1]["devices"], 2);

  auto second = Rollout(v2_, "10%,50%,100%", "v2");
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_TRUE(Contains(second.out, "rollout=v2 state=completed")) << second.out;
  // Wave by wave: box-2 is released only after box-1's wave succeeded, box-3 after box-2's.
  const auto pos = [&](const std::string& needle) { return second.out.find(needle); };
  const auto r1 = pos("device=box-1 wave=1 event=released");
  const auto c1 = pos("device=box-1 wave=1 event=committed");
  const auto r2 = pos("device=box-2 wave=2 event=released");
  const auto c2 = pos("device=box-2 wave=2 event=committed");
  const auto r3 = pos("device=box-3 wave=3 event=released");
  ASSERT_NE(r1, std::string::npos) << second.out;
  ASSERT_NE(r3, std::string::npos) << second.out;
  EXPECT_LT(r1, c1);
  EXPECT_LT(c1, r2);
  EXPECT_LT(r2, c2);
  EXPECT_LT(c2, r3);
  json status = RolloutStatus("v2");
  EXPECT_EQ(status.value("state", ""), "completed");
  ASSERT_EQ(status["waves"].size(), 3u);
  for (const json& w : status["waves"]) {
    EXPECT_EQ(w["devices"], 1);
    EXPECT_EQ(w["succeeded"], 1);
    EXPECT_EQ(w["state"], "done");
  }
  for (const Box& b : boxes_) EXPECT_EQ(ActiveVersion(b), "1.1.0") << b.name;
  // Devices that join the group later get 1.1.0 from the group's document.
  json group_doc = Retained("edgefleet/v1/demo/group/lab/desired");
  ASSERT_TRUE(group_doc.is_object());
  EXPECT_EQ(group_doc["signed"]["models"][0]["version"], "1.1.0");
  EXPECT_GT(group_doc["signed"].value("serial", 0ull), 0ull);

  auto third = Rollout(broken_, "10%,50%,100%", "v3");
  EXPECT_EQ(third.exit_code, 2) << third.out << third.err;
  status = RolloutStatus("v3");
  EXPECT_EQ(status.value("state", ""), "halted");
  EXPECT_TRUE(Contains(status.value("reason", ""), "error threshold")) << status.dump(1);
  const json canary = Device(status, "box-1");
  EXPECT_EQ(canary.value("outcome", ""), "failed");
  EXPECT_TRUE(Contains(canary.value("detail", ""), "parity")) << canary.dump();
  EXPECT_EQ(canary.value("state", ""), "restored");
  for (const char* name : {"box-2", "box-3"}) {
    const json d = Device(status, name);
    EXPECT_EQ(d.value("state", ""), "waiting") << name;
    EXPECT_EQ(d.value("serial", 1), 0) << name << ": released although the canary failed";
  }
  for (const Box& b : boxes_) EXPECT_EQ(ActiveVersion(b), "1.1.0") << b.name;
  for (std::size_t i : {1u, 2u}) {
    const auto versions = DeployedVersions(boxes_[i]);
    EXPECT_FALSE(versions.empty()) << boxes_[i].name;
    EXPECT_EQ(std::count(versions.begin(), versions.end(), "1.2.0"), 0) << boxes_[i].name;
  }
  // The canary's retained desired state is the previous one again, re-signed with a new serial.
  json restored = Retained("edgefleet/v1/demo/device/box-1/desired");
  ASSERT_TRUE(restored.is_object());
  EXPECT_EQ(restored["signed"]["models"][0]["version"], "1.1.0");
  EXPECT_EQ(restored["signed"]["serial"], canary["restore_serial"]);
  // The rollout's own status topic (read by the collector) says the same.
  json published = Retained("edgefleet/v1/demo/rollout/v3/status");
  EXPECT_EQ(published.value("state", ""), "halted");
  EXPECT_EQ(published["devices"].value("restored", -1), 1) << published.dump();
  ASSERT_EQ(published["failures"].size(), 1u) << published.dump();
  EXPECT_EQ(published["failures"][0]["device"], "box-1");

  auto list =
      testing::RunProcess({EDGEFLEET_CLI, "rollout", "list", "--db", Db().string()}, seconds(30));
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "v1  digits 1.0.0 -> lab  completed")) << list.out;
  EXPECT_TRUE(Contains(list.out, "v2  digits 1.1.0 -> lab  completed")) << list.out;
  EXPECT_TRUE(Contains(list.out, "v3  digits 1.2.0 -> lab  halted")) << list.out;
}
#endif

}  // namespace
}  // namespace edgefleet::rollout_testing

namespace edgefleet::rollout_testing {
namespace {

#ifndef EDGEFLEET_FLEET_SCALE
// pause holds the next wave; SIGINT leaves the rollout in the database; resume (a new process)
// drives it to the end from there.
TEST_F(RolloutE2E, PausedThenInterruptedRolloutResumesFromTheDatabase) {
  const fs::path log = tmp_ / "rollout-v2.log";
  auto driver_process = StartV2UpToTheCanary(log);
  ASSERT_FALSE(HasFailure());
  testing::BackgroundProcess& driver = *driver_process;
  auto pause = testing::RunProcess({EDGEFLEET_CLI, "rollout", "pause", "v2", "--db", Db().string()},
                                   seconds(30));
  ASSERT_EQ(pause.exit_code, 0) << pause.out << pause.err;
  EXPECT_TRUE(Contains(pause.out, "pause requested from the running driver")) << pause.out;
  ASSERT_TRUE(WaitFor("paused, canary committed", seconds(60), [&] {
    json s = RolloutStatus("v2");
    return s.value("state", "") == "paused" &&
           Device(s, "box-1").value("outcome", "") == "succeeded";
  }));
  // The canary succeeded, yet nothing more is released while paused.
  std::this_thread::sleep_for(seconds(3));
  json status = RolloutStatus("v2");
  EXPECT_EQ(status.value("state", ""), "paused");
  EXPECT_EQ(Device(status, "box-2").value("state", ""), "waiting");
  EXPECT_EQ(ActiveVersion(boxes_[1]), "1.0.0");

  driver.Signal(SIGINT);
  EXPECT_EQ(driver.Wait(seconds(30)), std::optional<int>(1));
  const std::string driver_log = testing::ReadFile(log);
  EXPECT_TRUE(Contains(driver_log, "edgefleet rollout resume v2")) << driver_log;
  status = RolloutStatus("v2");
  EXPECT_EQ(status.value("state", ""), "paused");
  EXPECT_EQ(status.value("driver_pid", -1), 0) << "the lease outlived its process";

  auto resume = testing::RunProcess(
      {EDGEFLEET_CLI, "rollout", "resume", "v2", "--db", Db().string()}, seconds(240));
  EXPECT_EQ(resume.exit_code, 0) << resume.out << resume.err;
  EXPECT_TRUE(Contains(resume.out, "rollout=v2 state=completed")) << resume.out;
  status = RolloutStatus("v2");
  EXPECT_EQ(status.value("state", ""), "completed");
  for (const Box& b : boxes_) EXPECT_EQ(ActiveVersion(b), "1.1.0") << b.name;
  // Resuming a finished rollout changes nothing and says so.
  auto again = testing::RunProcess(
      {EDGEFLEET_CLI, "rollout", "resume", "v2", "--db", Db().string()}, seconds(30));
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_TRUE(Contains(again.out, "nothing to resume")) << again.out;
}

// The command is stopped right after the canary's release; the canary commits while no driver
// runs. `resume` must still see that verdict (the broker queued the event for the rollout's
// persistent session) instead of waiting out the wave timeout.
TEST_F(RolloutE2E, AVerdictReportedWhileTheCommandIsDownIsNotLost) {
  const fs::path log = tmp_ / "rollout-v2.log";
  auto driver_process = StartV2UpToTheCanary(log);
  ASSERT_FALSE(HasFailure());
  testing::BackgroundProcess& driver = *driver_process;
  driver.Signal(SIGINT);
  ASSERT_EQ(driver.Wait(seconds(30)), std::optional<int>(1));
  EXPECT_EQ(Device(RolloutStatus("v2"), "box-1").value("outcome", "x"), "");
  ASSERT_TRUE(WaitFor("box-1 committed 1.1.0 with no driver running", seconds(60), [&] {
    for (const json& d : AgentStatus(boxes_[0]).value("deployments", json::array())) {
      if (d.value("version", "") == "1.1.0" && d.value("state", "") == "committed") return true;
    }
    return false;
  }));
  // Well below the 3 min wave timeout: the verdict has to come from the queued event.
  auto resume = testing::RunProcess(
      {EDGEFLEET_CLI, "rollout", "resume", "v2", "--db", Db().string()}, seconds(90));
  EXPECT_FALSE(resume.timed_out) << resume.out;
  EXPECT_EQ(resume.exit_code, 0) << resume.out << resume.err;
  EXPECT_TRUE(Contains(resume.out, "device=box-1 wave=1 event=committed")) << resume.out;
  const json status = RolloutStatus("v2");
  EXPECT_EQ(status.value("state", ""), "completed");
  EXPECT_EQ(Device(status, "box-1").value("detail", ""), "committed");
  for (const Box& b : boxes_) EXPECT_EQ(ActiveVersion(b), "1.1.0") << b.name;
}

// Bad input: each is refused with the reason named, exit 1, and nothing is published or recorded.
TEST_F(RolloutE2E, BadInputIsRefusedBeforeAnythingIsPublished) {
  ASSERT_NO_FATAL_FAILURE(AddBoxes(1));
  std::string tampered = v1_.bytes;
  tampered[tampered.size() / 2] = static_cast<char>(tampered[tampered.size() / 2] ^ 0x55);
  server_.Add("/tampered.efb", tampered);
  struct Case {
    std::function<void(std::vector<std::string>&)> edit;
    std::string says;
  };
  auto set = [](std::vector<std::string>& args, const std::string& flag, const std::string& v) {
    auto it = std::find(args.begin(), args.end(), flag);
    ASSERT_NE(it, args.end()) << flag;
    *(it + 1) = v;
  };
  const std::vector<Case> cases = {
      {[&](auto& a) { set(a, "--model", "other"); }, "holds model 'digits', not --model 'other'"},
      {[&](auto& a) { set(a, "--group", "nolab"); }, "--group nolab: no device reported"},
      {[&](auto& a) { set(a, "--bundle", server_.Url("/missing.efb")); },
       "--bundle " + server_.Url("/missing.efb") + ": HTTP 404"},
      {[&](auto& a) { set(a, "--bundle", server_.Url("/tampered.efb")); }, "tampered.efb"},
      {[&](auto& a) { set(a, "--waves", "50%,10%,100%"); }, "must increase"},
      {[&](auto& a) { set(a, "--deploy-key", (tmp_ / "nokey").string()); }, "nokey"},
      {[&](auto& a) { set(a, "--broker", "127.0.0.1:1"); }, "--broker 127.0.0.1:1: not connected"},
  };
  for (const Case& c : cases) {
    auto args = RolloutArgs(v1_, "100%", "bad");
    c.edit(args);
    auto r = testing::RunProcess(args, seconds(60));
    EXPECT_EQ(r.exit_code, 1) << c.says << "\n" << r.out << r.err;
    EXPECT_TRUE(Contains(r.err, c.says)) << "expected: " << c.says << "\nfound: " << r.err;
  }
  EXPECT_TRUE(Retained("edgefleet/v1/demo/device/box-1/desired").empty());
  EXPECT_TRUE(Retained("edgefleet/v1/demo/group/lab/desired").empty());
  std::error_code ec;
  for (const char* scratch : {".download", ".download.part"}) {
    EXPECT_FALSE(fs::exists(Db().string() + scratch, ec)) << "left behind: " << scratch;
  }
  if (fs::exists(Db(), ec)) {
    auto list =
        testing::RunProcess({EDGEFLEET_CLI, "rollout", "list", "--db", Db().string()}, seconds(30));
    EXPECT_EQ(list.out, "") << "a refused rollout was recorded";
  }
  EXPECT_EQ(DeployedVersions(boxes_[0]).size(), 0u);
}

// Backends issue: a device whose backends can run no variant of the bundle (here box-2, restarted
// with an empty backends_dir, so its birth record lists no backends) makes `rollout start` refuse,
// naming it, before anything is published or stored.
TEST_F(RolloutE2E, ADeviceThatCanRunNoVariantIsRefusedBeforeAnythingIsPublished) {
  ASSERT_NO_FATAL_FAILURE(AddBoxes(2));
  Box& box2 = boxes_[1];
  box2.process.reset();  // killed: the broker publishes its last will (offline)
  ASSERT_TRUE(WaitFor("box-2 offline", seconds(30), [&] {
    return !Retained("edgefleet/v1/demo/device/box-2/status").value("online", true);
  }));
  json config = json::parse(testing::ReadFile(box2.config));
  const fs::path empty = tmp_ / "no-backends";
  fs::create_directories(empty);
  fs::permissions(empty, fs::perms::group_write | fs::perms::others_write,
                  fs::perm_options::remove);
  config["backends_dir"] = empty.string();
  config.erase("backends");
  testing::WriteFile(box2.config, config.dump(2));
  Start(box2);
  ASSERT_TRUE(WaitUp(box2));
  ASSERT_EQ(Retained("edgefleet/v1/demo/device/box-2/status")["backends"], json::array());

  auto r = testing::RunProcess(RolloutArgs(v1_, "50%,100%", "nobackend"), seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(Contains(r.err,
                       "--group lab: 1 of 2 device(s) can run no variant of digits 1.0.0; "
                       "nothing was published:\n  box-2: reports no backends"))
      << r.err;
  EXPECT_FALSE(Contains(r.err, "box-1:")) << r.err;
  EXPECT_TRUE(Retained("edgefleet/v1/demo/device/box-1/desired").empty());
  EXPECT_TRUE(Retained("edgefleet/v1/demo/device/box-2/desired").empty());
  EXPECT_TRUE(Retained("edgefleet/v1/demo/group/lab/desired").empty());
  auto list =
      testing::RunProcess({EDGEFLEET_CLI, "rollout", "list", "--db", Db().string()}, seconds(30));
  EXPECT_EQ(list.out, "") << "a refused rollout was recorded";
}

#else
// Acceptance 3: 50 real agents against one broker. v1 goes out in waves and completes; then one
// canary device cannot take v2 (its disk reserve is set beyond any disk: a real refusal at the
// download step), so 1 of the 5 canaries fails (20% > the 10% error threshold): the rollout halts,
// the 4 canaries that took v2 are restored to v1, and no device after the canary wave is touched.
TEST_F(RolloutE2E, FiftyAgentsRolloutCompletesAndAFailingCanaryHaltsAndRestores) {
  ASSERT_NO_FATAL_FAILURE(AddBoxes(50));
  auto first = Rollout(v1_, "10%,50%,100%", "v1", seconds(400));
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  json status = RolloutStatus("v1");
  EXPECT_EQ(status.value("state", ""), "completed");
  ASSERT_EQ(status["waves"].size(), 3u);
  EXPECT_EQ(status["waves"][0]["devices"], 5);
  EXPECT_EQ(status["waves"][1]["devices"], 20);
  EXPECT_EQ(status["waves"][2]["devices"], 25);
  for (const Box& b : boxes_) EXPECT_EQ(ActiveVersion(b), "1.0.0") << b.name;

  Box& faulty = boxes_[2];  // box-03, in the canary wave
  faulty.process->Signal(SIGTERM);
  ASSERT_EQ(faulty.process->Wait(seconds(30)), std::optional<int>(0));
  WriteBoxConfig(faulty, {{"reserve_bytes", 1ull << 50}});  // 1 PiB, the config's maximum
  Start(faulty);
  ASSERT_TRUE(WaitUp(faulty));

  auto second = Rollout(v2_, "10%,50%,100%", "v2", seconds(400));
  EXPECT_EQ(second.exit_code, 2) << second.out << second.err;
  if (HasFailure()) std::cerr << second.out << second.err;
  status = RolloutStatus("v2");
  EXPECT_EQ(status.value("state", ""), "halted");
  EXPECT_TRUE(Contains(status.value("reason", ""), "20%")) << status.value("reason", "");
  const json bad = Device(status, "box-03");
  EXPECT_EQ(bad.value("outcome", ""), "failed");
  EXPECT_TRUE(Contains(bad.value("detail", ""), "disk")) << bad.dump();
  int restored = 0;
  for (const Box& b : boxes_) {
    const json d = Device(status, b.name);
    if (d.value("wave", 0) == 1) {
      EXPECT_EQ(d.value("state", ""), "restored") << d.dump();
      restored += d.value("outcome", "") == "succeeded";
    } else {
      EXPECT_EQ(d.value("state", ""), "waiting") << d.dump();
      EXPECT_EQ(d.value("serial", 1), 0) << d.dump();
    }
    EXPECT_EQ(ActiveVersion(b), "1.0.0") << b.name;
  }
  EXPECT_EQ(restored, 4) << "the four canaries that took v2 went back to v1";
  // Their retained desired state names v1 again (allowed to go down from 1.1.0).
  json doc = Retained("edgefleet/v1/demo/device/box-01/desired");
  EXPECT_EQ(doc["signed"]["models"][0]["version"], "1.0.0");
  EXPECT_EQ(doc["signed"]["models"][0]["allow_downgrade"], true);
  // The group's document still says v1 (only a completed rollout writes it).
  EXPECT_EQ(Retained("edgefleet/v1/demo/group/lab/desired")["signed"]["models"][0]["version"],
            "1.0.0");
}
#endif

}  // namespace
}  // namespace edgefleet::rollout_testing
