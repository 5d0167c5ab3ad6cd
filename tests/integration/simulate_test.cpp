// `edgefleet simulate` (issue 15, item 6): the simulated device's behaviour in-process (its
// payloads read back with the collector's own parsers, desired state signed by the test fleet's
// deploy key), then the real CLI against a real mosquitto broker and the real `edgefleet
// collect`: what the simulator reports sent is what the collector stored, exactly once. Built a
// second time with EDGEFLEET_FLEET_SCALE (label `fleet`, release pass only): the real `edgefleet
// rollout` over simulated devices, waves that complete and a flaky group that halts and restores;
// and `edgefleet collect` killed five times under 2,000 simulated devices, losing nothing.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "deploy/sim_device.hpp"
#include "manifests/crypto.hpp"
#include "telemetry/payloads.hpp"
#include "tests/integration/agent_harness.hpp"
#include "tests/support/background_process.hpp"
#include "tests/support/mosquitto_broker.hpp"
#include "tests/support/postgres_server.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

namespace edgefleet {
namespace {

namespace fs = std::filesystem;
using deploy::SimDevice;
using deploy::SimMessage;
using deploy::SimProfile;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

using testing::WaitFor;

// `edgefleet collect` for `fleet` on the broker at `address`: database <dir>/c.db (or `extra`'s
// --db), log `log`, HTTP on a free port written to <dir>/<name>.port (removed first, so a
// restart's port is the one awaited), MQTT client id `name`. Returns the process and its HTTP
// port (0 after a test failure).
std::pair<std::unique_ptr<testing::BackgroundProcess>, int> StartCollect(
    const fs::path& dir, const std::string& address, const std::string& fleet, const fs::path& log,
    const std::string& name = "collector", std::vector<std::string> extra = {}) {
  const fs::path port_file = dir / (name + ".port");
  std::error_code ec;
  fs::remove(port_file, ec);
  std::vector<std::string> argv = {
      EDGEFLEET_CLI, "collect",     "--broker",         address,       "--fleet", fleet, "--http",
      "127.0.0.1:0", "--port-file", port_file.string(), "--client-id", name};
  if (std::find(extra.begin(), extra.end(), "--db") == extra.end()) {
    extra.insert(extra.end(), {"--db", (dir / "c.db").string()});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto process = std::make_unique<testing::BackgroundProcess>(argv, log);
  const int port = testing::WaitForPortFile(port_file, seconds(30));
  return {std::move(process), port};
}

// The collector API's JSON answer to GET `path`, or null for anything but a 200.
json GetJson(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(10, 0);
  auto r = client.Get(path);
  return r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
}

#ifndef EDGEFLEET_FLEET_SCALE

class SimDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::MakeFleet(tmp_.path(), fleet_);
    profile_.fleet = "demo";
    profile_.groups = {"lab"};
    profile_.window_s = 1;
    profile_.event_every_s = 0;
    profile_.update_s = 0.9;
  }

  // Everything due up to `until_ms`, stepping the clock 100 ms at a time.
  std::vector<SimMessage> Run(SimDevice& d, std::int64_t from_ms, std::int64_t until_ms) {
    std::vector<SimMessage> out;
    for (std::int64_t t = from_ms; t <= until_ms; t += 100) d.TakeDue(t, &out);
    return out;
  }

  static std::vector<telemetry::EventMessage> Events(const std::vector<SimMessage>& messages) {
    std::vector<telemetry::EventMessage> out;
    for (const SimMessage& m : messages) {
      if (m.kind != SimMessage::Kind::kEvent) continue;
      auto e = telemetry::ParseEvent(m.payload);
      EXPECT_TRUE(e.has_value()) << (e ? "" : e.error().message);
      if (e) out.push_back(*e);
    }
    return out;
  }

  std::string Doc(std::uint64_t serial, const std::string& version, const std::string& sha,
                  const json& target = {{"device", "sim-1"}}) {
    json model = {{"name", "digits"},
                  {"version", version},
                  {"bundle", {{"url", "http://127.0.0.1:1/b.efb"}, {"size", 1}, {"sha256", sha}}},
                  {"allow_downgrade", true}};
    return testing::DesiredStateDoc(*fleet_.deploy, serial, {model}, std::chrono::hours(1), target);
  }

  testing::TempDir tmp_;
  testing::Fleet fleet_;
  SimProfile profile_;
};

TEST_F(SimDeviceTest, WindowsAreNumberedInOrderAndReadByTheCollectorsParser) {
  SimDevice d(&profile_, "sim-1", false, 42, 0);
  const auto messages = Run(d, 0, 10'000);
  std::uint64_t expect = 1;
  std::string stream;
  for (const SimMessage& m : messages) {
    ASSERT_EQ(m.kind, SimMessage::Kind::kWindow);
    EXPECT_EQ(m.topic, "edgefleet/v1/demo/device/sim-1/telemetry");
    auto w = telemetry::ParseTelemetry(m.payload);
    ASSERT_TRUE(w.has_value()) << w.error().message;
    EXPECT_EQ(w->seq.n, expect++);
    if (stream.empty()) stream = w->seq.stream;
    EXPECT_EQ(w->seq.stream, stream);
    EXPECT_EQ(w->count, profile_.requests_per_window);
    EXPECT_EQ(w->latency.count, profile_.requests_per_window);
    EXPECT_EQ(w->version, "1.0.0");
  }
  EXPECT_GE(messages.size(), 10u);  // one per second of 10
  EXPECT_LE(messages.size(), 11u);
  EXPECT_EQ(d.counters().numbered, messages.size());
  EXPECT_EQ(stream.size(), 16u);
  // The birth and the will parse, and name the model the device runs.
  auto birth = telemetry::ParseStatus(d.Status(true, 1, 0).payload);
  ASSERT_TRUE(birth.has_value()) << birth.error().message;
  ASSERT_EQ(birth->models.size(), 1u);
  EXPECT_EQ(birth->models[0].active->version, "1.0.0");
  EXPECT_EQ(birth->groups, std::vector<std::string>{"lab"});
  auto will = telemetry::ParseStatus(d.Status(false, 0, 0).payload);
  ASSERT_TRUE(will.has_value()) << will.error().message;
  EXPECT_FALSE(will->online);
}

// A loop that fell behind sends one window covering the missed span, not a burst, and counts
// the periods it folded in: a load figure must be able to say the load was not generated.
TEST_F(SimDeviceTest, ALateLoopSendsOneWindowForTheSpanAndCountsThePeriodsItMissed) {
  SimDevice d(&profile_, "sim-1", false, 42, 0);
  std::vector<SimMessage> out;
  d.TakeDue(1000, &out);  // the first window falls in (0, 1000]
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(d.counters().windows_late, 0u);
  const std::int64_t due = d.NextDue();
  ASSERT_GT(due, 1000);
  ASSERT_LE(due, 2000);
  out.clear();
  d.TakeDue(due + 3500, &out);  // 3.5 periods late: this window and 3 more were due
  ASSERT_EQ(out.size(), 1u);
  auto w = telemetry::ParseTelemetry(out[0].payload);
  ASSERT_TRUE(w.has_value()) << w.error().message;
  EXPECT_DOUBLE_EQ(w->window_s, static_cast<double>(due + 3500 - 1000) / 1000.0);  // the span
  EXPECT_EQ(w->seq.n, 2u);
  EXPECT_EQ(d.counters().windows, 2u);
  EXPECT_EQ(d.counters().windows_late, 3u);
  // On time again: the period is kept, nothing more counted late.
  EXPECT_EQ(d.NextDue(), due + 4000);
  out = Run(d, due + 4000, due + 9000);
  EXPECT_EQ(out.size(), 6u);
  EXPECT_EQ(d.counters().windows_late, 3u);
}

// Periods before the device's connection came up (the simulator opens connections at a rate,
// so the last of 10,000 waits seconds) were never due on a live connection: not counted late.
TEST_F(SimDeviceTest, PeriodsBeforeTheConnectionCameUpAreNotCountedLate) {
  SimDevice late(&profile_, "sim-1", false, 42, 0);
  SimDevice connected(&profile_, "sim-1", false, 42, 0);
  connected.OnConnected(5500);
  std::vector<SimMessage> out;
  late.TakeDue(5500, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_GE(late.counters().windows_late, 4u);  // what the loop would otherwise have counted
  out.clear();
  connected.TakeDue(5500, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(connected.counters().windows_late, 0u);
  // The period's phase is kept: the next window is due one period after the last boundary.
  EXPECT_GT(connected.NextDue(), 5500);
  EXPECT_LE(connected.NextDue(), 6500);
  EXPECT_EQ(connected.NextDue() % 1000, late.NextDue() % 1000);
  // Connected again later, after an outage: the same.
  connected.OnConnected(20250);
  out.clear();
  connected.TakeDue(20250, &out);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(connected.counters().windows_late, 0u);
}

TEST_F(SimDeviceTest, ADesiredStateIsAnsweredWithAnAgentsEventsAndAReplayIsIgnored) {
  profile_.window_s = 3600;  // only the update's messages in this test
  SimDevice d(&profile_, "sim-1", false, 7, 0);
  const std::string sha(64, 'a');
  d.OnDesired("edgefleet/v1/demo/device/sim-1/desired", Doc(5, "1.1.0", sha), 0);
  const auto messages = Run(d, 0, 2000);
  const auto events = Events(messages);
  std::vector<std::string> names;
  for (const auto& e : events) {
    names.push_back(e.event);
    EXPECT_EQ(e.serial, 5u);
    EXPECT_EQ(e.version, "1.1.0");
    EXPECT_EQ(e.target, "device/sim-1");
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"downloading", "verifying", "unpacking", "loading", "parity",
                                      "parity_report", "activating", "watching", "committed"}));
  // After the commit: a fresh status with the new version active and the old one standing by.
  auto status = std::find_if(messages.begin(), messages.end(), [](const SimMessage& m) {
    return m.kind == SimMessage::Kind::kStatus;
  });
  ASSERT_NE(status, messages.end());
  auto s = telemetry::ParseStatus(status->payload);
  ASSERT_TRUE(s.has_value()) << s.error().message;
  EXPECT_EQ(s->models[0].active->version, "1.1.0");
  EXPECT_EQ(s->models[0].active->sha256, sha);
  EXPECT_EQ(s->models[0].active->slot, "B");
  EXPECT_EQ(s->models[0].standby->version, "1.0.0");
  EXPECT_EQ(d.counters().committed, 1u);
  // The same serial again (a retained copy after a reconnect) starts nothing.
  d.OnDesired("edgefleet/v1/demo/device/sim-1/desired", Doc(5, "1.2.0", sha), 3000);
  EXPECT_TRUE(Run(d, 3000, 6000).empty());
  EXPECT_EQ(d.counters().desired, 1u);
}

TEST_F(SimDeviceTest, AFailingDeviceFailsAtParityButItsRestoreSucceeds) {
  profile_.window_s = 3600;
  SimDevice d(&profile_, "sim-1", /*fails_updates=*/true, 7, 0);
  const std::string topic = "edgefleet/v1/demo/group/lab/desired";
  d.OnDesired(topic, Doc(1, "1.1.0", std::string(64, 'b'), {{"group", "lab"}}), 0);
  auto events = Events(Run(d, 0, 2000));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "failed");
  EXPECT_EQ(events.back().from, "parity");
  EXPECT_EQ(events.back().target, "group/lab");
  EXPECT_NE(events.back().reason.find("parity failed"), std::string::npos);
  EXPECT_EQ(d.counters().failed, 1u);
  // Back to the version it started with: a restore, which succeeds.
  d.OnDesired(topic, Doc(2, "1.0.0", std::string(64, 'c'), {{"group", "lab"}}), 3000);
  events = Events(Run(d, 3000, 5000));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "committed");
  EXPECT_EQ(events.back().serial, 2u);
}

TEST_F(SimDeviceTest, ADocumentThatDoesNotParseIsRejectedWithTheReason) {
  profile_.window_s = 3600;
  SimDevice d(&profile_, "sim-1", false, 7, 0);
  d.OnDesired("edgefleet/v1/demo/device/sim-1/desired", "{\"signed\": 1}", 0);
  const auto events = Events(Run(d, 0, 100));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "rejected");
  EXPECT_NE(events[0].reason.find("signed"), std::string::npos) << events[0].reason;
  EXPECT_EQ(d.counters().rejected, 1u);
}

// The real CLI end to end: what the simulator says it sent and had acknowledged is what the
// collector stored, each window and event once, no number missing, every device offline at the
// end (its clean stop). Reading each socket as data arrives, and (--read-every-s 3) every
// three seconds: then the PUBACKs of the last seconds are read at the end, before DISCONNECT.
class SimulateE2EReads : public ::testing::TestWithParam<const char*> {};

TEST_P(SimulateE2EReads, WhatTheSimulatorSentIsWhatTheCollectorStoredExactlyOnce) {
  testing::TempDir tmp;
  testing::MosquittoBroker broker(tmp / "broker");
  ASSERT_TRUE(broker.running());
  const std::string address = "127.0.0.1:" + std::to_string(broker.port());
  const auto collector = StartCollect(tmp.path(), address, "simf", tmp / "collector.log");
  const int port = collector.second;
  ASSERT_GT(port, 0);
  auto get = [port](const std::string& path) { return GetJson(port, path); };

  const fs::path report_file = tmp / "report.json";
  auto run =
      testing::RunProcess({EDGEFLEET_CLI,     "simulate", "--broker",       address,
                           "--fleet",         "simf",     "--devices",      "150",
                           "--duration",      "8s",       "--window-s",     "1",
                           "--event-every-s", "2",        "--connect-rate", "300",
                           "--read-every-s",  GetParam(), "--report",       report_file.string()},
                          seconds(60));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const json report = json::parse(run.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << run.out;
  EXPECT_EQ(json::parse(testing::ReadFile(report_file)), report);
  EXPECT_EQ(report["connections"]["accepted"], 150) << report.dump(1);
  EXPECT_EQ(report["connections"]["lost"], 0) << report.dump(1);
  const std::uint64_t windows = report["windows"]["acked"];
  const std::uint64_t events = report["events"]["acked"];
  EXPECT_EQ(report["windows"]["sent"], windows);
  EXPECT_EQ(report["events"]["sent"], events);
  EXPECT_EQ(report["made"]["windows"], windows) << report.dump(1);
  EXPECT_GE(windows, 150u * 6) << "a window a second for about 7 s after the ramp; periods late: "
                               << report["made"]["windows_late"];
  EXPECT_GE(events, 150u * 2);
  EXPECT_EQ(report["numbered"].get<std::uint64_t>(), windows + events);
  EXPECT_NE(run.err.find("event=simulate_stopped"), std::string::npos) << run.err;

  json summary;
  ASSERT_TRUE(WaitFor("every numbered message stored", seconds(30), [&] {
    summary = get("/api/summary");
    return summary.is_object() && summary["messages"]["numbered"] == windows + events &&
           summary["devices"]["offline"] == 150;
  })) << summary.dump(1);
  EXPECT_EQ(summary["messages"]["missing"], 0) << summary.dump(1);
  EXPECT_EQ(summary["devices"]["total"], 150) << summary.dump(1);
  // Exactly once: the windows stored for one device are its numbers 1..n without a repeat.
  const json stored = get("/api/telemetry?device=sim-00007&limit=100000");
  std::vector<std::uint64_t> numbers;
  for (const json& w : stored.value("windows", json::array())) numbers.push_back(w["seq"]["n"]);
  std::sort(numbers.begin(), numbers.end());
  EXPECT_EQ(std::adjacent_find(numbers.begin(), numbers.end()), numbers.end());
  EXPECT_GE(numbers.size(), 6u);
}

INSTANTIATE_TEST_SUITE_P(SimulateE2E, SimulateE2EReads, ::testing::Values("0", "3"));

TEST(SimulateE2E, BadOptionsAreRefusedNamingTheOption) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--devices", "0"}, "--devices: expected 1..20000, found 0"},
      {{"--devices", "20001"}, "--devices: expected 1..20000, found 20001"},
      {{"--fail-share", "1.5"}, "--fail-share: expected 0..1"},
      {{"--window-s", "0"}, "--window-s: expected 0.1..3600"},
      {{"--read-every-s", "11"}, "--read-every-s: expected 0..10"},
      {{"--duration", "25h"}, "--duration"},
      {{"--prefix", "a/b"}, "--prefix"},
      {{"--prefix", std::string(1025, 'p')}, "--prefix: expected at most 1024 bytes, found 1025"},
      {{"--broker", "192.0.2.1:1883"}, "not a loopback address"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {EDGEFLEET_CLI, "simulate", "--fleet", "f", "--duration", "1s"};
    if (std::find(c.args.begin(), c.args.end(), "--broker") == c.args.end()) {
      argv.insert(argv.end(), {"--broker", "127.0.0.1:1"});
    }
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = testing::RunProcess(argv, seconds(30));
    EXPECT_NE(r.exit_code, 0) << c.says;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << "expected: " << c.says << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

// Issue 15, acceptance 4: two `edgefleet collect` processes in one shared-subscription group
// write one real PostgreSQL database (a server started in the test's temp dir). One of them is
// killed (SIGKILL) and restarted while 200 devices send. Every window and event the devices had
// acknowledged is stored exactly once (counted by sequence numbers and by rows), each collector
// stored part of them, and the API, the dashboard, /metrics and `edgefleet devices` work over
// PostgreSQL.
TEST(SimulateE2E, TwoCollectorsInAShareGroupStoreEachMessageOnceInPostgres) {
  testing::TempDir tmp;
  testing::MosquittoBroker broker(tmp / "broker");
  ASSERT_TRUE(broker.running());
  testing::PostgresServer pg(tmp / "pg");
  ASSERT_TRUE(pg.running()) << pg.Log();
  const std::string url = pg.CreateDatabase("fleet");
  ASSERT_FALSE(url.empty());
  const std::string address = "127.0.0.1:" + std::to_string(broker.port());
  int starts = 0;
  auto start = [&](const std::string& name) {
    ++starts;
    return StartCollect(
        tmp.path(), address, "simp", tmp / (name + "." + std::to_string(starts) + ".log"), name,
        {"--db", url, "--spool", (tmp / (name + ".spool")).string(), "--share", "collectors"});
  };
  auto [c1, port1] = start("c1");
  ASSERT_GT(port1, 0);
  auto [c2, port2] = start("c2");
  ASSERT_GT(port2, 0);

  const fs::path report_file = tmp / "report.json";
  testing::BackgroundProcess sim(
      {EDGEFLEET_CLI,     "simulate", "--broker",       address,
       "--fleet",         "simp",     "--devices",      "200",
       "--duration",      "12s",      "--window-s",     "1",
       "--event-every-s", "2",        "--connect-rate", "400",
       "--group",         "lab",      "--report",       report_file.string()},
      tmp / "sim.log");
  std::this_thread::sleep_for(seconds(4));
  c1->Signal(SIGKILL);
  ASSERT_TRUE(c1->Wait(seconds(10)).has_value());
  std::tie(c1, port1) = start("c1");
  ASSERT_GT(port1, 0);
  ASSERT_EQ(sim.Wait(seconds(60)), std::optional<int>(0)) << testing::ReadFile(tmp / "sim.log");
  const json report = json::parse(testing::ReadFile(report_file), nullptr, false);
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["connections"]["accepted"], 200) << report.dump(1);
  const std::uint64_t windows = report["windows"]["acked"];
  const std::uint64_t events = report["events"]["acked"];
  EXPECT_GE(windows, 200u * 8) << "a window a second for about 11 s after the ramp; periods late: "
                               << report["made"]["windows_late"];
  EXPECT_EQ(report["numbered"].get<std::uint64_t>(), windows + events);

  json summary;
  ASSERT_TRUE(WaitFor("every acknowledged message stored", seconds(60),
                      [&] {
                        summary = GetJson(port2, "/api/summary");
                        return summary.is_object() &&
                               summary["messages"]["numbered"] == windows + events &&
                               summary["devices"]["offline"] == 200;
                      }))
      << "acked " << windows + events << "\n"
      << summary.dump(1);
  EXPECT_EQ(summary["messages"]["missing"], 0) << summary.dump(1);
  EXPECT_EQ(summary["devices"]["total"], 200) << summary.dump(1);
  // Rows, not only sequence counts: each window and event once.
  auto count = [&](const std::string& table) {
    auto r = testing::RunProcess(
        {"psql", "-qtA", url, "-c", "SELECT COUNT(*), COUNT(DISTINCT id) FROM " + table});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  EXPECT_EQ(count("windows"), std::to_string(windows) + "|" + std::to_string(windows) + "\n");
  EXPECT_EQ(count("events"), std::to_string(events) + "|" + std::to_string(events) + "\n");

  // Both took part: c2 ran throughout, c1 before its kill and after its restart.
  const json s1 = GetJson(port1, "/api/summary");
  const std::uint64_t stored2 = summary["collector"]["messages"]["telemetry"];
  EXPECT_GT(s1["collector"]["messages"]["telemetry"].get<std::uint64_t>(), 0u) << s1.dump(1);
  EXPECT_GT(stored2, windows / 10) << summary.dump(1);
  EXPECT_LT(stored2, windows) << summary.dump(1);

  // The API and the dashboard over PostgreSQL, from either collector.
  const json page = GetJson(port1, "/api/devices?group=lab&online=false&limit=50");
  ASSERT_TRUE(page.is_object());
  EXPECT_EQ(page["matching"], 200);
  EXPECT_EQ(page["devices"].size(), 50u);
  EXPECT_EQ(page["next"], page["devices"][49]["device"]);
  EXPECT_EQ(GetJson(port1, "/api/devices?group=elsewhere")["matching"], 0);
  const json series = GetJson(port2, "/api/series?bucket_s=10");
  ASSERT_TRUE(series.is_object() && series["series"].size() == 1u) << series.dump(1);
  EXPECT_EQ(series["series"][0]["model"], "digits");
  EXPECT_GE(series["series"][0]["points"].size(), 2u) << series.dump(1);
  httplib::Client http("127.0.0.1", port1);
  auto dashboard = http.Get("/");
  ASSERT_TRUE(dashboard);
  EXPECT_EQ(dashboard->status, 200);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("edgefleet_fleet_devices{group=\"lab\",state=\"offline\"} 200"),
            std::string::npos)
      << metrics->body.substr(0, 2000);
  auto devices = testing::RunProcess({EDGEFLEET_CLI, "devices", "--db", url, "--json"});
  ASSERT_EQ(devices.exit_code, 0) << devices.err;
  const json rows = json::parse(devices.out, nullptr, false);
  ASSERT_TRUE(rows.is_array()) << devices.out.substr(0, 500);
  EXPECT_EQ(rows.size(), 200u);

  for (auto* c : {c1.get(), c2.get()}) {
    c->Signal(SIGTERM);
    EXPECT_EQ(c->Wait(seconds(30)), std::optional<int>(0));
  }
}

#else  // EDGEFLEET_FLEET_SCALE

// The real `edgefleet rollout` over simulated devices: 600 in group lab take v1 in waves of 1%,
// 10% and 100%; then 200 in group flaky, 15% of which fail updates at parity, take v2 and the
// rollout halts and restores v1 on every device it released.
TEST(SimulatedFleetRollout, WavesCompleteAndAFlakyGroupHaltsAndRestores) {
  testing::TempDir tmp;
  testing::Fleet fleet;
  testing::MakeFleet(tmp.path(), fleet);
  const fs::path deploy_key = tmp / "deploy.key";
  ASSERT_TRUE(manifests::SavePrivateKey(*fleet.deploy, deploy_key));
  testing::MosquittoBroker broker(tmp / "broker");
  ASSERT_TRUE(broker.running());
  const std::string address = "127.0.0.1:" + std::to_string(broker.port());
  const fs::path work = tmp / "bundles";
  fs::create_directories(work);
  auto v1 = testing::MakeBundle(fleet, "v1", work, nullptr);
  auto v2 = testing::MakeBundle(fleet, "v2", work, nullptr);
  testing::BundleServer server;
  server.Add("/v1.efb", v1.bytes);
  server.Add("/v2.efb", v2.bytes);

  auto simulate = [&](const std::string& prefix, const std::string& group, int devices,
                      const std::string& fail_share) {
    return std::make_unique<testing::BackgroundProcess>(
        std::vector<std::string>{
            EDGEFLEET_CLI,     "simulate", "--broker",       address,
            "--fleet",         "demo",     "--devices",      std::to_string(devices),
            "--prefix",        prefix,     "--group",        group,
            "--duration",      "10m",      "--window-s",     "5",
            "--event-every-s", "0",        "--update-s",     "1",
            "--fail-share",    fail_share, "--connect-rate", "500"},
        tmp / (prefix + "sim.log"));
  };
  auto lab = simulate("lab-", "lab", 600, "0");
  auto flaky = simulate("flaky-", "flaky", 200, "0.15");
  ASSERT_TRUE(WaitFor("800 devices connected", seconds(60), [&] {
    auto r = testing::RunProcess(
        {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-t",
         "edgefleet/v1/demo/device/+/status", "--retained-only", "-W", "2", "-F", "%t"},
        seconds(10));
    return std::count(r.out.begin(), r.out.end(), '\n') >= 800;
  }));

  const fs::path db = tmp / "rollouts.db";
  auto rollout = [&](const std::string& url, const std::string& group, const std::string& id) {
    return testing::RunProcess({EDGEFLEET_CLI,
                                "rollout",
                                "start",
                                "--model",
                                "digits",
                                "--bundle",
                                server.Url(url),
                                "--group",
                                group,
                                "--waves",
                                "1%,10%,100%",
                                "--fleet",
                                "demo",
                                "--broker",
                                address,
                                "--deploy-key",
                                deploy_key.string(),
                                "--db",
                                db.string(),
                                "--id",
                                id,
                                "--trust",
                                fleet.root_json.string(),
                                "--wave-timeout",
                                "2m",
                                "--discover",
                                "2s"},
                               seconds(400));
  };
  auto status_of = [&](const std::string& id) {
    auto r = testing::RunProcess(
        {EDGEFLEET_CLI, "rollout", "status", id, "--db", db.string(), "--json"}, seconds(60));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json doc = json::parse(r.out, nullptr, false);
    return doc.is_discarded() ? json::object() : doc;
  };

  auto first = rollout("/v1.efb", "lab", "lab-v1");
  ASSERT_EQ(first.exit_code, 0) << first.out.substr(0, 4000) << first.err;
  json status = status_of("lab-v1");
  EXPECT_EQ(status.value("state", ""), "completed");
  ASSERT_EQ(status["waves"].size(), 3u) << status.dump(1).substr(0, 2000);
  EXPECT_EQ(status["waves"][0]["devices"], 6);
  EXPECT_EQ(status["waves"][1]["devices"], 54);
  EXPECT_EQ(status["waves"][2]["devices"], 540);
  int succeeded = 0;
  for (const json& d : status.value("device_list", json::array())) {
    succeeded += d.value("outcome", "") == "succeeded";
  }
  EXPECT_EQ(succeeded, 600);

  // The flaky group: v1 everywhere first (a restore needs a previous desired state), then v2.
  auto base = rollout("/v1.efb", "flaky", "flaky-v1");
  ASSERT_EQ(base.exit_code, 0) << base.out.substr(0, 4000) << base.err;
  auto second = rollout("/v2.efb", "flaky", "flaky-v2");
  EXPECT_EQ(second.exit_code, 2) << second.out.substr(0, 4000) << second.err;
  status = status_of("flaky-v2");
  EXPECT_EQ(status.value("state", ""), "halted") << status.value("reason", "");
  int failed = 0, restored = 0, released = 0;
  for (const json& d : status.value("device_list", json::array())) {
    if (d.value("serial", 0) == 0) {
      EXPECT_EQ(d.value("state", ""), "waiting") << d.dump();
      continue;
    }
    ++released;
    failed += d.value("outcome", "") == "failed";
    restored += d.value("state", "") == "restored";
  }
  EXPECT_GT(failed, 0);
  EXPECT_LT(released, 200) << "halted before the last wave";
  EXPECT_EQ(restored, released) << status.dump(1).substr(0, 4000);

  lab->Signal(SIGTERM);
  flaky->Signal(SIGTERM);
  EXPECT_EQ(lab->Wait(seconds(30)), std::optional<int>(0));
  EXPECT_EQ(flaky->Wait(seconds(30)), std::optional<int>(0));
}

// Issue 15, acceptance 3: `edgefleet collect` killed with SIGKILL five times while 2,000
// simulated devices send a window a second each, restarted each time on the same database and
// persistent session. After dedup every window and event the devices had acknowledged is stored
// exactly once, and no device's numbers have a gap.
TEST(SimulatedFleetCollector, KilledFiveTimesUnderTwoThousandDevicesItLosesNoWindow) {
  testing::TempDir tmp;
  testing::MosquittoBroker broker(tmp / "broker");
  ASSERT_TRUE(broker.running());
  const std::string address = "127.0.0.1:" + std::to_string(broker.port());
  int starts = 0;
  auto start_collector = [&] {
    ++starts;
    return StartCollect(tmp.path(), address, "simk",
                        tmp / ("collector." + std::to_string(starts) + ".log"));
  };
  std::unique_ptr<testing::BackgroundProcess> collector;
  int port = 0;
  std::tie(collector, port) = start_collector();
  ASSERT_GT(port, 0);

  const fs::path report_file = tmp / "report.json";
  testing::BackgroundProcess sim(
      {EDGEFLEET_CLI, "simulate", "--broker", address, "--fleet", "simk", "--devices", "2000",
       "--duration", "40s", "--window-s", "1", "--event-every-s", "10", "--connect-rate", "1000",
       "--report", report_file.string()},
      tmp / "sim.log");
  std::this_thread::sleep_for(seconds(5));  // the ramp, then traffic
  for (int kill = 0; kill < 5; ++kill) {
    collector->Signal(SIGKILL);
    ASSERT_TRUE(collector->Wait(seconds(10)).has_value());
    std::tie(collector, port) = start_collector();
    ASSERT_GT(port, 0) << "restart " << kill + 1;
    std::this_thread::sleep_for(seconds(5));
  }
  ASSERT_EQ(sim.Wait(seconds(90)), std::optional<int>(0)) << testing::ReadFile(tmp / "sim.log");
  const json report = json::parse(testing::ReadFile(report_file), nullptr, false);
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["connections"]["accepted"], 2000) << report.dump(1);
  const std::uint64_t windows = report["windows"]["acked"];
  const std::uint64_t events = report["events"]["acked"];
  EXPECT_GE(windows, 2000u * 25) << "a window a second for the 30 s after the ramp";
  EXPECT_EQ(report["numbered"].get<std::uint64_t>(), windows + events) << "every one acked";

  json summary;
  const bool caught_up = WaitFor("every acknowledged message stored", seconds(120), [&] {
    summary = GetJson(port, "/api/summary");
    return summary.is_object() && summary["messages"]["numbered"] == windows + events &&
           summary["devices"]["offline"] == 2000;
  });
  EXPECT_TRUE(caught_up) << "acked " << windows + events << "\n" << summary.dump(1);
  EXPECT_EQ(summary["messages"]["missing"], 0) << summary.dump(1);
  EXPECT_EQ(summary["devices"]["total"], 2000) << summary.dump(1);
  EXPECT_EQ(starts, 6);
  collector->Signal(SIGTERM);
  EXPECT_EQ(collector->Wait(seconds(30)), std::optional<int>(0));
}

#endif  // EDGEFLEET_FLEET_SCALE

}  // namespace
}  // namespace edgefleet
