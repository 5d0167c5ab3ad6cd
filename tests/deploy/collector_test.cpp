// End-to-end tests of `edgefleet collect` and `edgefleet devices`: a real mosquitto broker, the
// real collector process, payloads published by the real mosquitto_pub client, answers read over
// real HTTP and from the real CLI. The TLS tests run the broker with client certificates and the
// ACL file the project ships (deploy/mosquitto/acl). What the API, /metrics and `edgefleet
// devices` show is checked on both store engines: SQLite and a real PostgreSQL server.
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "telemetry/latency_histogram.hpp"
#include "telemetry/mqtt_client.hpp"
#include "telemetry/outbox.hpp"
#include "telemetry/payloads.hpp"
#include "tests/deploy/collector_fixture.hpp"

namespace edgefleet {
namespace {

using namespace collector_testing;  // NOLINT(build/namespaces): the fixture's helpers
using collector_testing::Status;    // not edgefleet::Status (Result<void>)

// The tests of what the API, /metrics, `edgefleet devices` and the dashboard show run on both
// store engines (CollectorEngineTest, here and in dashboard_test.cpp): SQLite, and a real
// PostgreSQL server.
INSTANTIATE_TEST_SUITE_P(Engines, CollectorEngineTest,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres), EngineName);

TEST_P(CollectorEngineTest, StoresEachWindowAndEventOnceAndShowsTheFleet) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  MustPublish(Topic("box-a", "status"), telemetry::EncodeStatus(Status("box-a", "1.2.0", now)),
              true);
  MustPublish(Topic("box-b", "status"),
              telemetry::EncodeStatus(Status("box-b", "1.1.0", now - 1000)), true);

  // box-a: three windows, one of them published twice (an outbox resend); box-b: one window.
  std::vector<telemetry::TelemetryWindow> a = {
      Window("box-a", "1.2.0", now - 20000, {1.0, 2.0, 11.9, 11.9}, 1, 10, 9),
      Window("box-a", "1.2.0", now - 10000, {3.0, 4.0, 30.0}, 0, 20, 18),
      Window("box-a", "1.2.0", now, {0.3, 120.0}, 2, 10, 10)};
  std::vector<std::string> payloads;
  for (const auto& w : a) payloads.push_back(telemetry::EncodeTelemetry(w));
  payloads.push_back(payloads[1]);
  PublishLines(Topic("box-a", "telemetry"), payloads);
  const auto b = Window("box-b", "1.1.0", now - 1000, {5.0, 6.0}, 0, 0, 0);
  MustPublish(Topic("box-b", "telemetry"), telemetry::EncodeTelemetry(b));
  // Two events, the first one twice.
  const std::string downloading = telemetry::EncodeEvent(Event("box-a", "downloading", now - 5));
  MustPublish(Topic("box-a", "events"), downloading);
  MustPublish(Topic("box-a", "events"), downloading);
  MustPublish(Topic("box-a", "events"), telemetry::EncodeEvent(Event("box-a", "verifying", now)));

  ASSERT_TRUE(WaitFor("4 windows, 2 events and 2 duplicates stored", seconds(20), [&] {
    return Counter("messages", "telemetry") == 4 && Counter("messages", "events") == 2 &&
           Counter("duplicates") == 2;
  }));
  EXPECT_EQ(Counter("messages", "status"), 2u);
  EXPECT_EQ(Counter("rejected"), 0u);

  // The API: each window once, newest first, as published.
  json windows = GetJson("/api/telemetry?device=box-a");
  ASSERT_TRUE(windows.is_object()) << windows;
  ASSERT_EQ(windows["windows"].size(), 3u) << windows.dump(1);
  EXPECT_EQ(windows["windows"][0]["id"], a[2].id);
  EXPECT_EQ(windows["windows"][2]["id"], a[0].id);
  EXPECT_EQ(windows["windows"][0]["fleet"], kFleet);
  EXPECT_EQ(windows["windows"][0]["count"], a[2].count);
  EXPECT_EQ(
      GetJson("/api/telemetry?device=box-a&since_ms=" + std::to_string(now - 10000))["windows"]
          .size(),
      2u);
  EXPECT_EQ(GetJson("/api/telemetry?limit=1")["windows"].size(), 1u);
  json events = GetJson("/api/events?device=box-a");
  ASSERT_EQ(events["events"].size(), 2u) << events.dump(1);
  EXPECT_EQ(events["events"][0]["event"], "verifying");
  EXPECT_EQ(events["events"][1]["event"], "downloading");
  EXPECT_EQ(events["events"][1]["target"], "group/lab");
  json device = Device("box-a");
  EXPECT_EQ(device["online"], true) << device;
  EXPECT_EQ(device["status"]["models"][0]["active"]["version"], "1.2.0") << device;

  // Merged over the windows: sums add, percentiles come from the summed buckets.
  telemetry::LatencySnapshot merged;
  std::uint64_t requests = 0, errors = 0;
  for (const auto& w : a) {
    merged.Merge(w.latency);
    requests += w.count;
    errors += w.errors;
  }
  json summary = GetJson("/api/summary");
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary["devices"]["total"], 2);
  EXPECT_EQ(summary["devices"]["online"], 2);
  json v12;
  for (const auto& m : summary["models"]) {
    if (m["version"] == "1.2.0") v12 = m;
  }
  ASSERT_TRUE(v12.is_object()) << summary.dump(1);
  EXPECT_EQ(v12["devices"], 1);
  EXPECT_EQ(v12["active_on"], 1);
  EXPECT_EQ(v12["requests"], requests);
  EXPECT_EQ(v12["errors"], errors);
  EXPECT_DOUBLE_EQ(v12["latency_ms"]["p50"].get<double>(), merged.p50);
  EXPECT_DOUBLE_EQ(v12["latency_ms"]["p99"].get<double>(), merged.p99);
  EXPECT_DOUBLE_EQ(v12["accuracy"].get<double>(), 37.0 / 40.0);

  // /metrics: the right values under the right labels (per device on request; by default the
  // same sums per group, model and version: neither device is in a group).
  const std::string aggregated = Metrics();
  EXPECT_TRUE(HasLine(aggregated, "edgefleet_fleet_devices{group=\"\",state=\"online\"} 2"))
      << aggregated;
  EXPECT_TRUE(HasLine(
      aggregated, "edgefleet_fleet_requests_total{group=\"\",model=\"digits\",version=\"1.2.0\"} " +
                      std::to_string(requests)))
      << aggregated;
  EXPECT_EQ(aggregated.find("device=\""), std::string::npos) << aggregated;
  const std::string metrics = Metrics("?per_device=1");
  const std::string l = "device=\"box-a\",group=\"\",model=\"digits\",version=\"1.2.0\"";
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_device_online{device=\"box-a\"} 1")) << metrics;
  EXPECT_TRUE(
      HasLine(metrics, "edgefleet_fleet_requests_total{" + l + "} " + std::to_string(requests)))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_errors_total{" + l + "} 3")) << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_latency_seconds_count{" + l + "} 9")) << metrics;
  // 0.3, 1, 2, 3, 4 ms are <= 5 ms; 11.9 twice and 30 and 120 are not.
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_latency_seconds_bucket{" + l + ",le=\"0.005\"} 5"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_latency_seconds_bucket{" + l + ",le=\"+Inf\"} 9"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_feedback_labeled_total{" + l + "} 40")) << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_feedback_correct_total{" + l + "} 37")) << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_collector_messages_total{kind=\"telemetry\"} 4"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_collector_duplicates_total 2")) << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_collector_rejected_total 0")) << metrics;
  EXPECT_EQ(LinesStartingWith(metrics, "edgefleet_fleet_device_last_seen_seconds{").size(), 2u)
      << metrics;

  // `edgefleet devices` reads the database while collect runs.
  ProcessResult r = Cli({"devices", "--db", Db("collector"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json rows = json::parse(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;
  EXPECT_EQ(rows[0]["device"], "box-a");
  EXPECT_EQ(rows[0]["online"], true);
  EXPECT_EQ(rows[0]["model"], "digits");
  EXPECT_EQ(rows[0]["version"], "1.2.0");
  EXPECT_EQ(rows[0]["slot"], "B");
  EXPECT_EQ(rows[0]["requests"], requests);
  EXPECT_EQ(rows[0]["windows"], 3);
  EXPECT_DOUBLE_EQ(rows[0]["p50_ms"].get<double>(), merged.p50);
  EXPECT_DOUBLE_EQ(rows[0]["p99_ms"].get<double>(), merged.p99);
  EXPECT_DOUBLE_EQ(rows[0]["accuracy"].get<double>(), 37.0 / 40.0);
  EXPECT_EQ(rows[1]["device"], "box-b");
  EXPECT_EQ(rows[1]["version"], "1.1.0");
  EXPECT_TRUE(rows[1]["accuracy"].is_null()) << "no feedback: no accuracy";
  // --window 15s keeps box-a's two newest windows (ts now-10s and now).
  r = Cli({"devices", "--db", Db("collector"), "--json", "--window", "15s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  rows = json::parse(r.out);
  EXPECT_EQ(rows[0]["windows"], 2) << r.out;
  EXPECT_DOUBLE_EQ(rows[0]["accuracy"].get<double>(), 28.0 / 30.0);

  r = Cli({"devices", "--db", Db("collector")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto table = LinesStartingWith(r.out, "box-a ");
  ASSERT_EQ(table.size(), 1u) << r.out;
  for (const char* cell : {" yes ", " digits ", " 1.2.0 ", " B ", " 92.5% ", "s ago"}) {
    EXPECT_NE(table[0].find(cell), std::string::npos) << cell << " missing in:\n" << r.out;
  }
  EXPECT_EQ(r.out.rfind("DEVICE ", 0), 0u) << r.out;
  table = LinesStartingWith(r.out, "box-b ");
  ASSERT_EQ(table.size(), 1u) << r.out;
  EXPECT_NE(table[0].find(" 1.1.0 "), std::string::npos) << r.out;
  StopCollectorCleanly();
}

// /metrics grows with groups and versions, not devices: three devices in two group sets sum
// into one series per group set and version; per_device=1 gives each device's series, whose sum
// is the aggregate.
TEST_P(CollectorEngineTest, MetricsAggregateDevicesPerGroupUnlessPerDeviceIsAsked) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  const std::vector<std::pair<std::string, std::vector<std::string>>> devices = {
      {"box-a", {"lab"}}, {"box-b", {"lab"}}, {"box-c", {"lab", "eu"}}};
  for (const auto& [name, groups] : devices) {
    telemetry::StatusMessage status = Status(name, "1.2.0", now);
    status.groups = groups;
    MustPublish(Topic(name, "status"), telemetry::EncodeStatus(status), true);
    MustPublish(Topic(name, "telemetry"),
                telemetry::EncodeTelemetry(Window(name, "1.2.0", now, {1.0, 2.0, 30.0}, 1, 4, 3)));
  }
  ASSERT_TRUE(WaitFor("three statuses and windows stored", seconds(20), [&] {
    return Counter("messages", "status") == 3 && Counter("messages", "telemetry") == 3;
  }));
  const std::string metrics = Metrics();
  const std::string lab = "group=\"lab\",model=\"digits\",version=\"1.2.0\"";
  const std::string eu_lab = "group=\"eu,lab\",model=\"digits\",version=\"1.2.0\"";
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_devices{group=\"lab\",state=\"online\"} 2"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_devices{group=\"eu,lab\",state=\"online\"} 1"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_requests_total{" + lab + "} 8")) << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_errors_total{" + lab + "} 2")) << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_requests_total{" + eu_lab + "} 4")) << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_latency_seconds_count{" + lab + "} 6")) << metrics;
  EXPECT_TRUE(
      HasLine(metrics, "edgefleet_fleet_latency_seconds_bucket{" + lab + ",le=\"0.005\"} 4"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_feedback_correct_total{" + lab + "} 6")) << metrics;
  EXPECT_EQ(metrics.find("device=\""), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("edgefleet_fleet_device_online"), std::string::npos) << metrics;

  const std::string each = Metrics("?per_device=1");
  EXPECT_TRUE(HasLine(each, "edgefleet_fleet_requests_total{device=\"box-a\"," + lab + "} 4"))
      << each;
  EXPECT_TRUE(HasLine(each, "edgefleet_fleet_requests_total{device=\"box-b\"," + lab + "} 4"))
      << each;
  EXPECT_TRUE(HasLine(each, "edgefleet_fleet_requests_total{device=\"box-c\"," + eu_lab + "} 4"))
      << each;
  EXPECT_EQ(LinesStartingWith(each, "edgefleet_fleet_device_online{").size(), 3u) << each;
  // The same scrape without the opt-in stays aggregated; a bad value is refused.
  auto bad = Get("/metrics?per_device=yes");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("per_device"), std::string::npos) << bad->body;
  EXPECT_EQ(Get("/metrics?devices=1")->status, 400);
  StopCollectorCleanly();
}

TEST_F(CollectorTest, StatusOnlineOfflineAndOlderStatusDoesNotOverwrite) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  // The will is composed when the agent connects, so it is older than the birth after it.
  const std::string will = telemetry::EncodeStatus(LastWill("box-a", now - 60000));
  MustPublish(Topic("box-a", "status"), telemetry::EncodeStatus(Status("box-a", "1.2.0", now)),
              true);
  ASSERT_TRUE(
      WaitFor("box-a online", seconds(20), [&] { return Device("box-a")["online"] == true; }));

  MustPublish(Topic("box-a", "status"), will, true);
  ASSERT_TRUE(WaitFor("box-a offline after its last will", seconds(20),
                      [&] { return Device("box-a")["online"] == false; }));
  json d = Device("box-a");
  EXPECT_EQ(d["status"]["models"][0]["active"]["version"], "1.2.0") << "the will keeps the models";
  EXPECT_TRUE(d["offline_since_ms"].is_number()) << d;
  EXPECT_TRUE(
      HasLine(Metrics("?per_device=1"), "edgefleet_fleet_device_online{device=\"box-a\"} 0"));
  EXPECT_TRUE(HasLine(Metrics(), "edgefleet_fleet_devices{group=\"\",state=\"offline\"} 1"));

  // Reconnected (a newer birth), then an outbox resend of an older status: ignored as stale.
  MustPublish(Topic("box-a", "status"),
              telemetry::EncodeStatus(Status("box-a", "1.3.0", now + 1000, 2)), true);
  ASSERT_TRUE(WaitFor("box-a online with 1.3.0", seconds(20), [&] {
    json x = Device("box-a");
    return x["online"] == true && x["connection"] == 2;
  }));
  MustPublish(Topic("box-a", "status"), telemetry::EncodeStatus(Status("box-a", "1.0.0", now, 1)));
  ASSERT_TRUE(WaitFor("the older status counted as stale", seconds(20),
                      [&] { return Counter("stale") == 1; }));
  d = Device("box-a");
  EXPECT_EQ(d["status"]["models"][0]["active"]["version"], "1.3.0") << d;
  EXPECT_EQ(d["status_ts"], now + 1000);

  // A clean shutdown (offline with the connection counter) is a newer status like any other.
  auto clean = LastWill("box-a", now + 2000);
  clean.connection = 2;
  MustPublish(Topic("box-a", "status"), telemetry::EncodeStatus(clean), true);
  ASSERT_TRUE(WaitFor("box-a offline after a clean shutdown", seconds(20),
                      [&] { return Device("box-a")["online"] == false; }));

  // A collector started later gets the retained status from the broker.
  std::unique_ptr<BackgroundProcess> late;
  const int late_port = StartCollector(late, "late");
  ASSERT_GT(late_port, 0);
  ASSERT_TRUE(WaitFor(
      "the late collector has box-a offline", seconds(20),
      [&] {
        json doc = GetJson("/api/devices", late_port);
        return doc.is_object() && doc["devices"].size() == 1 &&
               doc["devices"][0]["online"] == false;
      },
      "late"));
  StopCollectorCleanly();
}

TEST_F(CollectorTest, HostilePayloadsAreRefusedAndLoggedAndGoodOnesAfterThemStored) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  json wrong_type =
      json::parse(telemetry::EncodeTelemetry(Window("box-a", "1.0.0", now, {1}, 0, 0, 0)));
  wrong_type["count"] = "many";
  const std::string other_device =
      telemetry::EncodeTelemetry(Window("box-b", "1.0.0", now, {1}, 0, 0, 0));
  const std::string telemetry_as_event =
      telemetry::EncodeTelemetry(Window("box-a", "1.0.0", now, {1}, 0, 0, 0));
  auto lying = Window("box-a", "1.0.0", now, {1}, 0, 5, 9);  // 9 correct of 5 labeled
  const std::string deep = std::string(30000, '[') + std::string(30000, ']');
  const std::string huge = "{\"pad\":\"" + std::string(70 * 1024, 'x') + "\"}";

  const std::vector<std::pair<std::string, std::string>> hostile = {
      {Topic("box-a", "telemetry"), "not json at all"},
      {Topic("box-a", "telemetry"), "{}"},
      {Topic("box-a", "telemetry"), wrong_type.dump()},
      {Topic("box-a", "telemetry"), other_device},
      {Topic("box-a", "telemetry"), telemetry::EncodeTelemetry(lying)},
      {Topic("box-a", "events"), telemetry_as_event},
      {Topic("box-a", "status"), "[1,2,3]"},
      {Topic("box-a", "status"), deep},
      {Topic("box-a", "telemetry"), huge},
      {Topic("box-a", "events"), std::string("\x00\xff\x01\"\n", 5)},
  };
  for (const auto& [topic, payload] : hostile) MustPublish(topic, payload);
  const auto good = Window("box-a", "1.0.0", now, {2.0}, 0, 0, 0);
  MustPublish(Topic("box-a", "telemetry"), telemetry::EncodeTelemetry(good));

  ASSERT_TRUE(WaitFor("the good window stored after the hostile ones", seconds(20), [&] {
    return Counter("messages", "telemetry") == 1 && Counter("rejected") == hostile.size();
  }));
  json windows = GetJson("/api/telemetry");
  ASSERT_EQ(windows["windows"].size(), 1u) << windows.dump(1);
  EXPECT_EQ(windows["windows"][0]["id"], good.id);
  EXPECT_EQ(Counter("messages", "events"), 0u);
  EXPECT_EQ(Counter("messages", "status"), 0u);

  // One key=value line per refusal, naming the topic and what was wrong.
  const std::string log = Log();
  const auto lines = [&] {
    std::vector<std::string> out;
    for (const auto& line : LinesStartingWith(log, "ts=")) {
      if (line.find("event=message_rejected") != std::string::npos) out.push_back(line);
    }
    return out;
  }();
  ASSERT_EQ(lines.size(), hostile.size()) << log;
  for (const auto& line : lines) {
    EXPECT_NE(line.find(" topic=edgefleet/v1/demo/device/box-a/"), std::string::npos) << line;
    EXPECT_NE(line.find(" error="), std::string::npos) << line;
  }
  EXPECT_NE(log.find("count"), std::string::npos) << "the wrong type names its field:\n" << log;
  EXPECT_NE(log.find("payload says 'box-b' but the topic is device 'box-a'"), std::string::npos)
      << log;
  EXPECT_NE(log.find("9 correct of 5 labeled"), std::string::npos) << log;
  EXPECT_TRUE(collector_->Running());
  EXPECT_TRUE(
      HasLine(Metrics(), "edgefleet_collector_rejected_total " + std::to_string(hostile.size())));
  StopCollectorCleanly();
}

TEST_F(CollectorTest, ThousandsOfWindowsAreStoredInBatches) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  constexpr int kWindows = 5000;
  const std::int64_t now = NowMs();
  std::vector<std::string> payloads;
  for (int i = 0; i < kWindows; ++i) {
    payloads.push_back(telemetry::EncodeTelemetry(
        Window("box-" + std::to_string(i % 50), "1.0.0", now - i, {1.0, 2.0}, 0, 1, 1)));
  }
  // Published the way agents publish: through the project's outbox and MQTT client (QoS 1, up
  // to 100 in flight), each window on its device's topic (the device comes from the topic).
  std::vector<telemetry::OutgoingMessage> rows;
  for (int i = 0; i < kWindows; ++i) {
    rows.push_back({Topic("box-" + std::to_string(i % 50), "telemetry"),
                    payloads[static_cast<std::size_t>(i)]});
  }
  auto outbox = telemetry::Outbox::Open(dir_ / "outbox.db", {});
  ASSERT_TRUE(outbox) << outbox.error().message;
  ASSERT_TRUE((*outbox)->Append(rows));
  telemetry::MqttOptions mqtt;
  mqtt.host = broker_->host();
  mqtt.port = broker_->port();
  mqtt.client_id = "fleet-simulator";
  const auto start = std::chrono::steady_clock::now();
  auto publisher = telemetry::MqttClient::Start(mqtt, outbox->get(), {});
  ASSERT_TRUE(publisher) << publisher.error().message;
  const bool stored = WaitFor("every window stored", seconds(60), [&] {
    return Counter("messages", "telemetry") + Counter("duplicates") >= kWindows &&
           Counter("queued") == 0;
  });
  ASSERT_TRUE(stored) << "counters: " << Counters().dump() << "\nbroker log tail:\n"
                      << broker_->Log().substr(broker_->Log().size() -
                                               std::min<std::size_t>(broker_->Log().size(), 4000));
  EXPECT_EQ(Counter("messages", "telemetry"), kWindows);
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The writer gathers for 1 s from a batch's oldest message (fewer than max_batch arrive), and
  // each batch's oldest arrived after the one before was taken: at most one commit per second of
  // the time it took, plus the first.
  const std::uint64_t batches = Counter("batches");
  EXPECT_GE(batches, 1u);
  EXPECT_LE(static_cast<double>(batches), elapsed_s + 1) << "in " << elapsed_s << " s";
  std::printf(
      "[   INFO   ] %d windows from 50 devices published (outbox + MQTT client) and "
      "stored in %.2f s (%.0f/s)\n",
      kWindows, elapsed_s, kWindows / elapsed_s);
  (*publisher)->Stop();
  // At least once: a PUBACK lost in flight would be a duplicate, never a second count.
  json summary = GetJson("/api/summary");
  ASSERT_EQ(summary["models"].size(), 1u);
  EXPECT_EQ(summary["models"][0]["requests"], 2 * kWindows);
  EXPECT_EQ(summary["devices"]["total"], 50);
  StopCollectorCleanly();
}

// Loss between a device's outbox and the database is visible: the numbers never stored are
// counted per device (API, summary, /metrics, a warning in the log), a late one fills its gap, a
// redelivered one counts once, a new stream counts from its own first number, and messages
// without numbers (older agents) count nothing.
TEST_F(CollectorTest, SequenceNumbersNeverStoredAreCountedAsMissing) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  const std::string stream = "0123456789abcdef";
  auto numbered_window = [&](std::uint64_t n) {
    auto w = Window("box-a", "1.0.0", now - 100000 + static_cast<std::int64_t>(n), {1.0}, 0, 0, 0);
    w.seq = {stream, n};
    return telemetry::EncodeTelemetry(w);
  };
  // 1, 2, 4, 5 as windows (2 twice: a resend), 6 as an event; 3 is missing.
  const std::string two = numbered_window(2);
  PublishLines(Topic("box-a", "telemetry"),
               {numbered_window(1), two, numbered_window(4), numbered_window(5), two});
  auto event = Event("box-a", "downloading", now);
  event.seq = {stream, 6};
  MustPublish(Topic("box-a", "events"), telemetry::EncodeEvent(event));
  // box-b is an older agent: no numbers.
  MustPublish(Topic("box-b", "telemetry"),
              telemetry::EncodeTelemetry(Window("box-b", "1.0.0", now, {1.0}, 0, 0, 0)));
  ASSERT_TRUE(WaitFor("6 windows and an event stored", seconds(20), [&] {
    return Counter("messages", "telemetry") == 5 && Counter("messages", "events") == 1 &&
           Counter("duplicates") == 1;
  }));
  json a = Device("box-a");
  EXPECT_EQ(a["numbered"], 5) << a;
  EXPECT_EQ(a["missing"], 1) << a;
  json b = Device("box-b");
  EXPECT_EQ(b["numbered"], 0) << b;
  EXPECT_EQ(b["missing"], 0) << b;
  json summary = GetJson("/api/summary");
  EXPECT_EQ(summary["messages"], json::parse(R"({"numbered":5,"missing":1,"devices_missing":1})"))
      << summary.dump(1);
  std::string metrics = Metrics("?per_device=1");
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_device_messages_missing{device=\"box-a\"} 1"))
      << metrics;
  EXPECT_EQ(metrics.find("edgefleet_fleet_device_messages_missing{device=\"box-b\"}"),
            std::string::npos)
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_fleet_messages_missing 1")) << metrics;
  // The collector says so in its log within its 10 s check.
  ASSERT_TRUE(WaitFor("the missing message logged", seconds(20), [&] {
    return Log().find("event=messages_missing missing=1 new=1 devices=1") != std::string::npos;
  }));

  // 3 arrives late (a broker that had queued it): the gap is filled.
  MustPublish(Topic("box-a", "telemetry"), numbered_window(3));
  ASSERT_TRUE(WaitFor("the gap filled", seconds(20), [&] {
    return Device("box-a")["missing"] == 0 && Device("box-a")["numbered"] == 6;
  }));
  // A new stream (the box's state directory was wiped) counts from its own first number: 10
  // and 12 arrive, 11 is missing; nothing before 10 is.
  const std::string wiped = "fedcba9876543210";
  for (std::uint64_t n : {10u, 12u}) {
    auto w = Window("box-a", "1.0.0", now + static_cast<std::int64_t>(n), {1.0}, 0, 0, 0);
    w.seq = {wiped, n};
    MustPublish(Topic("box-a", "telemetry"), telemetry::EncodeTelemetry(w));
  }
  ASSERT_TRUE(WaitFor("the new stream's gap counted", seconds(20), [&] {
    return Device("box-a")["missing"] == 1 && Device("box-a")["numbered"] == 8;
  }));
  ASSERT_NO_FATAL_FAILURE(StopCollectorCleanly());
  EXPECT_NE(Log().find("event=collector_stopped"), std::string::npos);
  EXPECT_NE(Log().find(" missing=1\n"), std::string::npos) << Log();
}

// Issue 15 acceptance 2: a collector that cannot keep up says so before anything is dropped,
// and what is lost while it is starved is visible. A second connection holding the database's
// write lock keeps the writer from storing: the collector says it is behind (log, summary,
// /metrics) and, once the lock is gone, that it caught up, with nothing lost. Then the process
// is stopped (SIGSTOP) while a device publishes more than the broker queues for it
// (max_queued_messages 20): the broker drops the rest, and after SIGCONT the collector shows the
// broker's own drop counter and the device's missing numbers, and its stop line says missing.
TEST_F(CollectorTest, AStarvedCollectorSaysItIsBehindAndShowsWhatWasDropped) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(false, "sys_interval 1\nmax_queued_messages 20"));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  const std::string stream = "00000000000000c1";
  auto numbered = [&](std::uint64_t n) {
    auto w = Window("box-a", "1.0.0", now + static_cast<std::int64_t>(n), {1.0}, 0, 0, 0);
    w.seq = {stream, n};
    return telemetry::EncodeTelemetry(w);
  };
  MustPublish(Topic("box-a", "telemetry"), numbered(1));
  ASSERT_TRUE(WaitFor("the first window", seconds(20),
                      [&] { return Counter("messages", "telemetry") == 1; }));
  EXPECT_EQ(Counters()["behind"], false);

  {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open((dir_ / "collector.db").c_str(), &raw);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> lock(raw, &sqlite3_close);
    ASSERT_EQ(rc, SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(lock.get(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    std::vector<std::string> lines;
    for (std::uint64_t n = 2; n <= 11; ++n) lines.push_back(numbered(n));
    PublishLines(Topic("box-a", "telemetry"), lines);
    ASSERT_TRUE(WaitFor("the collector says it is behind", seconds(30),
                        [&] { return Log().find("event=collector_behind") != std::string::npos; }));
    json c = Counters();
    EXPECT_EQ(c["behind"], true) << c;
    EXPECT_GE(c["lag_ms"].get<std::int64_t>(), 5000) << c;
    EXPECT_TRUE(HasLine(Metrics(), "edgefleet_collector_behind 1"));
    ASSERT_EQ(sqlite3_exec(lock.get(), "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  ASSERT_TRUE(WaitFor("caught up, all 11 stored", seconds(30), [&] {
    return Counter("messages", "telemetry") == 11 &&
           Log().find("event=collector_caught_up") != std::string::npos;
  }));
  EXPECT_EQ(Counters()["behind"], false);
  EXPECT_EQ(Device("box-a")["missing"], 0);

  // Starved: the broker keeps 20 (plus what is in flight) for it and drops the rest.
  collector_->Signal(SIGSTOP);
  std::vector<std::string> lines;
  for (std::uint64_t n = 12; n <= 211; ++n) lines.push_back(numbered(n));
  PublishLines(Topic("box-a", "telemetry"), lines);
  collector_->Signal(SIGCONT);
  // A gap shows once a later number arrives: the device's next window (an agent sends one per
  // window even when idle).
  ASSERT_TRUE(WaitFor("the queued windows stored", seconds(30), [&] {
    return Counter("messages", "telemetry") > 11 && Counters()["queued"] == 0;
  }));
  MustPublish(Topic("box-a", "telemetry"), numbered(212));
  json device;
  ASSERT_TRUE(WaitFor("the dropped windows counted missing", seconds(30), [&] {
    device = Device("box-a");
    return device.is_object() && device["numbered"].is_number() && device["missing"].is_number() &&
           device["numbered"].get<int>() + device["missing"].get<int>() == 212;
  })) << device;
  EXPECT_GT(device["missing"].get<int>(), 0) << device;
  // Whatever arrived is stored; the rest is missing, none of it silently.
  EXPECT_EQ(device["numbered"].get<std::uint64_t>(), Counter("messages", "telemetry"));
  ASSERT_TRUE(WaitFor("the broker's drop counter read", seconds(20), [&] {
    const json c = Counters();
    return c.is_object() && c["broker_dropped"].is_number() &&
           c["broker_dropped"].get<std::int64_t>() > 0;
  })) << Counters();
  EXPECT_GE(Counters()["broker_dropped"].get<std::int64_t>(),
            device["missing"].get<std::int64_t>());
  EXPECT_NE(Log().find("event=broker_dropped"), std::string::npos) << Log();
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("edgefleet_broker_dropped_messages "), std::string::npos) << metrics;
  ASSERT_NO_FATAL_FAILURE(StopCollectorCleanly());
  EXPECT_NE(Log().find(" missing=" + device["missing"].dump() + "\n"), std::string::npos) << Log();
}

// /api/devices pages and filters: by name, `limit` per page and `after` the previous page's
// `next`; online, group, model and version filters combine; `matching` counts every page.
TEST_P(CollectorEngineTest, DevicesArePagedAndFiltered) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  // box-0..box-4: even ones in group "lab" on 1.1.0, odd ones in "field" on 1.0.0; box-4 is
  // offline (its last will).
  for (int i = 0; i < 5; ++i) {
    const std::string device = "box-" + std::to_string(i);
    auto status = Status(device, i % 2 == 0 ? "1.1.0" : "1.0.0", now);
    status.groups = {i % 2 == 0 ? "lab" : "field"};
    MustPublish(Topic(device, "status"), telemetry::EncodeStatus(status), true);
  }
  MustPublish(Topic("box-4", "status"), telemetry::EncodeStatus(LastWill("box-4", now - 1)), true);
  ASSERT_TRUE(WaitFor("5 devices, box-4 offline", seconds(20), [&] {
    json d = GetJson("/api/devices?online=false");
    return d.is_object() && d["devices"].size() == 1 && GetJson("/api/devices")["matching"] == 5;
  }));
  auto names = [](const json& page) {
    std::vector<std::string> out;
    for (const auto& d : page["devices"]) out.push_back(d["device"]);
    return out;
  };
  json page = GetJson("/api/devices?limit=2");
  EXPECT_EQ(names(page), (std::vector<std::string>{"box-0", "box-1"}));
  EXPECT_EQ(page["matching"], 5);
  ASSERT_EQ(page["next"], "box-1");
  page = GetJson("/api/devices?limit=2&after=box-1");
  EXPECT_EQ(names(page), (std::vector<std::string>{"box-2", "box-3"}));
  page = GetJson("/api/devices?limit=2&after=" + page["next"].get<std::string>());
  EXPECT_EQ(names(page), std::vector<std::string>{"box-4"});
  EXPECT_TRUE(page["next"].is_null()) << page;

  // The last will keeps the stored status: box-4 is still in lab, offline.
  EXPECT_EQ(names(GetJson("/api/devices?group=lab")),
            (std::vector<std::string>{"box-0", "box-2", "box-4"}));
  EXPECT_EQ(names(GetJson("/api/devices?group=lab&online=true")),
            (std::vector<std::string>{"box-0", "box-2"}));
  EXPECT_EQ(names(GetJson("/api/devices?model=digits&version=1.0.0")),
            (std::vector<std::string>{"box-1", "box-3"}));
  EXPECT_EQ(names(GetJson("/api/devices?version=1.1.0&online=true&limit=1")),
            std::vector<std::string>{"box-0"});
  EXPECT_EQ(GetJson("/api/devices?version=1.1.0&online=true&limit=1")["matching"], 2);
  EXPECT_TRUE(GetJson("/api/devices?model=other")["devices"].empty());
  EXPECT_TRUE(GetJson("/api/devices?group=lab%27%20OR%201=1--")["devices"].empty());
  for (const char* bad : {"/api/devices?online=yes", "/api/devices?limit=0", "/api/devices?limit=x",
                          "/api/devices?group=a&group=b"}) {
    auto r = Get(bad);
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->status, 400) << bad << ": " << r->body;
  }
}

TEST_F(CollectorTest, SigtermStopsFlushesAndExitsZero) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  MustPublish(Topic("box-a", "telemetry"),
              telemetry::EncodeTelemetry(Window("box-a", "1.0.0", now, {1.0}, 0, 0, 0)));
  ASSERT_TRUE(
      WaitFor("window stored", seconds(20), [&] { return Counter("messages", "telemetry") == 1; }));
  ASSERT_NO_FATAL_FAILURE(StopCollectorCleanly());
  ProcessResult r = Cli({"devices", "--db", Db("collector"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)[0]["requests"], 1) << r.out;

  // Started again on the same database: the window is still there and not counted again.
  fs::remove(dir_ / "collector.port");
  fs::rename(dir_ / "collector.log", dir_ / "collector.1.log");
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  json windows = GetJson("/api/telemetry");
  EXPECT_EQ(windows["windows"].size(), 1u) << windows;
  collector_->Signal(SIGINT);
  auto code = collector_->Wait(seconds(20));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
}

// A message waiting for its batch to fill is stored when the collector stops, without waiting
// out the gathering time.
TEST_F(CollectorTest, AWindowWaitingForItsBatchIsStoredAtStop) {
  extra_args_ = {"--batch-wait-ms", "60000"};
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  MustPublish(Topic("box-a", "telemetry"),
              telemetry::EncodeTelemetry(Window("box-a", "1.0.0", NowMs(), {1.0}, 0, 0, 0)));
  ASSERT_TRUE(WaitFor("window received", seconds(20), [&] { return Counter("queued") == 1; }));
  EXPECT_EQ(Counter("messages", "telemetry"), 0u);
  EXPECT_EQ(Counter("batches"), 0u);
  const auto stop = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(StopCollectorCleanly());
  EXPECT_LT(std::chrono::steady_clock::now() - stop, seconds(20));
  ProcessResult r = Cli({"devices", "--db", Db("collector"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)[0]["requests"], 1) << r.out;
}

TEST_F(CollectorTest, BadFlagsAndFilesAreRefusedWithTheirReason) {
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string needle;
  };
  testing::WriteFile(dir_ / "not-a-db", "hello, not sqlite, just some text that is long enough");
  const std::string db = (dir_ / "c.db").string();
  const std::string pg = "postgresql://edge:s3cret@127.0.0.1:1/fleet";
  const std::vector<Case> cases = {
      {{"collect", "--fleet", "demo", "--db", db, "--http", "127.0.0.1:0"}, 2, "--broker"},
      {{"collect", "--broker", "localhost", "--fleet", "demo", "--db", db, "--http", "127.0.0.1:0"},
       1,
       "--broker: expected HOST:PORT"},
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db", db, "--http",
        "127.0.0.1:70000"},
       1,
       "--http: expected HOST:PORT"},
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "a/b", "--db", db, "--http",
        "127.0.0.1:0"},
       1,
       "--fleet"},
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db",
        (dir_ / "not-a-db").string(), "--http", "127.0.0.1:0"},
       1,
       "not-a-db"},
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db", db, "--http",
        "127.0.0.1:0", "--ca-file", (dir_ / "missing.crt").string()},
       1,
       "missing.crt"},
      {{"devices", "--db", (dir_ / "nothing.db").string()}, 1, "no such collector database"},
      {{"devices", "--db", (dir_ / "not-a-db").string()}, 1, "not-a-db"},
      {{"devices", "--db", db, "--window", "5 minutes"}, 1, "--window"},
      {{"devices"}, 2, "--db"},
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db", pg, "--http",
        "127.0.0.1:0"},
       1,
       "--spool: required with a PostgreSQL --db"},
      // Nothing listens on port 1: the URL is named, its password is not.
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db", pg, "--spool",
        (dir_ / "s").string(), "--http", "127.0.0.1:0"},
       1,
       "postgresql://edge:***@127.0.0.1:1/fleet: connect: "},
      {{"devices", "--db", pg}, 1, "postgresql://edge:***@127.0.0.1:1/fleet: connect: "},
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db", db, "--http",
        "127.0.0.1:0", "--share", "a/b"},
       1,
       "--share: expected a group name of 1-64 letters, digits, '.', '_' or '-', found 'a/b'"},
      {{"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db", db, "--http",
        "127.0.0.1:0", "--batch-wait-ms", "-1"},
       2,
       "--batch-wait-ms: Value -1 not in range 0 to 60000"},
  };
  for (const auto& c : cases) {
    ProcessResult r = Cli(c.args);
    std::string command;
    for (const auto& a : c.args) command += a + " ";
    EXPECT_EQ(r.exit_code, c.exit_code) << command << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos)
        << command << ": stderr lacks '" << c.needle << "':\n"
        << r.err;
    EXPECT_EQ(r.err.find("s3cret"), std::string::npos) << command << ": " << r.err;
  }
  // An agent journal (another SQLite file) is not a collector database either.
  {
    ProcessResult r = RunProcess(
        {"sqlite3", (dir_ / "other.db").string(), "CREATE TABLE t (x); INSERT INTO t VALUES (1);"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ProcessResult r = Cli({"devices", "--db", (dir_ / "other.db").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a collector database"), std::string::npos) << r.err;
  r = Cli({"collect", "--broker", "127.0.0.1:1883", "--fleet", "demo", "--db",
           (dir_ / "other.db").string(), "--http", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a collector database"), std::string::npos) << r.err;
}

TEST_F(CollectorTest, ApiRefusesBadQueriesAndUnknownPaths) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  for (const char* path :
       {"/api/telemetry?limit=0", "/api/telemetry?limit=abc", "/api/telemetry?since_ms=12x",
        "/api/events?model=digits", "/api/summary?window=forever", "/api/devices?x=1"}) {
    auto r = Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 400) << path;
    json doc = json::parse(r->body, nullptr, false);
    EXPECT_TRUE(doc.is_object() && doc["error"].is_string()) << path << ": " << r->body;
  }
  auto r = Get("/api/nothing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("/api/devices"), std::string::npos) << r->body;
  // Raw bytes from the request (a Latin-1 byte, an escape, a right-to-left override) come back
  // escaped in valid JSON, never raw (the JSON encoder threw on them before).
  auto hostile = Get("/api/n%e9%1b%e2%80%ae");
  ASSERT_TRUE(hostile);
  EXPECT_EQ(hostile->status, 404);
  json hostile_doc = json::parse(hostile->body, nullptr, false);
  ASSERT_TRUE(hostile_doc.is_object()) << hostile->body;
  EXPECT_NE(hostile_doc.value("error", "").find("'/api/n\\xe9\\x1b\\u202e'"), std::string::npos)
      << hostile->body;
  auto bad_key = Get("/api/devices?%ff=1");
  ASSERT_TRUE(bad_key);
  EXPECT_EQ(bad_key->status, 400);
  EXPECT_TRUE(json::parse(bad_key->body, nullptr, false).is_object()) << bad_key->body;
  json empty = GetJson("/api/summary?window=5m");
  EXPECT_EQ(empty["window"], "5m");
  EXPECT_EQ(empty["devices"]["total"], 0);
  EXPECT_TRUE(empty["models"].empty());
}

// Acceptance 3: TLS with client certificates and the shipped ACL. A device cannot publish under
// another device's name, the collector never sees such a message, and a client that does not
// trust the broker's CA gets nowhere.
TEST_F(CollectorTest, TlsAndTheAclKeepEachDeviceToItsOwnTopics) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/true));
  ASSERT_NO_FATAL_FAILURE(StartCollector(As("collector")));

  // A subscriber with the collector's identity, to see what the broker delivers.
  const fs::path sub_log = dir_ / "sub.log";
  BackgroundProcess sub(
      {"/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()), "-q",
       "1", "-i", "spy", "-v", "-t", "edgefleet/v1/+/device/+/telemetry", "--cafile",
       pki_.ca_cert.string(), "--cert", pki_.ClientCert("collector").string(), "--key",
       pki_.ClientKey("collector").string()},
      sub_log);
  // mosquitto_sub says nothing when it subscribed; a retained probe on a topic it reads does.
  const std::int64_t now = NowMs();
  const auto own = Window("box-a", "1.0.0", now, {1.0, 2.0}, 0, 0, 0);
  const auto forged = Window("box-b", "6.6.6", now, {9.0}, 0, 0, 0);
  ASSERT_TRUE(WaitFor("the spy subscribed", seconds(20), [&] {
    ProcessResult probe = Publish(Topic("box-a", "telemetry"), "probe", false, As("box-a"));
    return probe.exit_code == 0 && testing::ReadFile(sub_log).find("probe") != std::string::npos;
  }));

  // box-a writes under box-b's name (refused by the broker's ACL: mosquitto acknowledges and
  // drops it), then under its own.
  ProcessResult r =
      Publish(Topic("box-b", "telemetry"), telemetry::EncodeTelemetry(forged), false, As("box-a"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Publish(Topic("box-a", "telemetry"), telemetry::EncodeTelemetry(own), false, As("box-a"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitFor("box-a's window stored", seconds(20),
                      [&] { return GetJson("/api/telemetry")["windows"].size() == 1; }));
  // Delivered in order on one connection: the forged one would have come first.
  json windows = GetJson("/api/telemetry");
  EXPECT_EQ(windows["windows"][0]["id"], own.id) << windows.dump(1);
  EXPECT_TRUE(GetJson("/api/telemetry?device=box-b")["windows"].empty());
  EXPECT_TRUE(Device("box-b").is_null()) << Device("box-b");
  ASSERT_TRUE(WaitFor("the spy got box-a's window", seconds(20), [&] {
    return testing::ReadFile(sub_log).find(own.id) != std::string::npos;
  }));
  const std::string seen = testing::ReadFile(sub_log);
  EXPECT_EQ(seen.find("device/box-b/telemetry"), std::string::npos) << seen;
  EXPECT_EQ(seen.find(forged.id), std::string::npos) << seen;
  // A client that trusts another CA cannot connect: mosquitto_pub fails...
  Identity wrong = As("box-a");
  wrong.ca = pki_.other_ca_cert;
  r = Publish(Topic("box-a", "telemetry"), telemetry::EncodeTelemetry(own), false, wrong);
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  // ...and a collector with the other CA serves its API but never logs a connection.
  std::unique_ptr<BackgroundProcess> lost;
  Identity collector_wrong = As("collector");
  collector_wrong.ca = pki_.other_ca_cert;
  const int lost_port = StartCollector(lost, "lost", collector_wrong);
  ASSERT_GT(lost_port, 0);
  std::this_thread::sleep_for(seconds(3));
  EXPECT_EQ(Log("lost").find("event=broker_connected"), std::string::npos) << Log("lost");
  auto summary = Get("/api/summary", lost_port);
  ASSERT_TRUE(summary);
  EXPECT_EQ(json::parse(summary->body)["collector"]["connected"], false);
  // A client without a certificate is refused too (require_certificate).
  r = Publish(Topic("box-a", "telemetry"), "x", false, Identity{pki_.ca_cert, {}, {}});
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  StopCollectorCleanly();
}

// deploy/mosquitto/mosquitto.conf, with only its paths and port changed, starts a broker that
// enforces TLS client certificates and the ACL.
TEST_F(CollectorTest, TheProductionBrokerConfigRuns) {
  pki_ = testing::MakeTestPki(dir_ / "pki", {"collector", "box-a"});
  std::string conf = testing::ReadFile(kProductionConf);
  const int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  auto replace = [&](const std::string& from, const std::string& to) {
    const auto at = conf.find(from);
    ASSERT_NE(at, std::string::npos) << "mosquitto.conf lacks '" << from << "'";
    conf.replace(at, from.size(), to);
  };
  replace("listener 8883", "listener " + std::to_string(port) + " 127.0.0.1");
  replace("/etc/mosquitto/edgefleet/ca.crt", pki_.ca_cert.string());
  replace("/etc/mosquitto/edgefleet/broker.crt", pki_.server_cert.string());
  replace("/etc/mosquitto/edgefleet/broker.key", pki_.server_key.string());
  replace("/etc/mosquitto/edgefleet/acl", kAclFile.string());
  replace("/var/lib/mosquitto/", (dir_ / "data").string() + "/");
  replace("log_dest syslog", "log_dest stdout");
  // As root, mosquitto would switch to the `mosquitto` user, which cannot read the test's PKI.
  if (geteuid() == 0) conf += "\nuser root\n";
  fs::create_directories(dir_ / "data");
  testing::WriteFile(dir_ / "prod.conf", conf);
  BackgroundProcess broker({"/usr/sbin/mosquitto", "-c", (dir_ / "prod.conf").string()},
                           dir_ / "prod.log");
  auto pub = [&](const std::string& cn, const std::string& topic) {
    return RunProcess(
        {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-q", "1", "-i", cn, "-t",
         topic, "-m", "x", "--cafile", pki_.ca_cert.string(), "--cert",
         pki_.ClientCert(cn).string(), "--key", pki_.ClientKey(cn).string()},
        seconds(10));
  };
  ASSERT_TRUE(WaitFor(
      "the production broker accepts box-a over TLS", seconds(20),
      [&] { return pub("box-a", Topic("box-a", "events")).exit_code == 0; }, "prod"))
      << testing::ReadFile(dir_ / "prod.log");
  EXPECT_TRUE(broker.Running()) << testing::ReadFile(dir_ / "prod.log");
  // No certificate, no connection.
  ProcessResult r =
      RunProcess({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port), "-q", "1", "-t",
                  Topic("box-a", "events"), "-m", "x", "--cafile", pki_.ca_cert.string()},
                 seconds(10));
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
}

}  // namespace
}  // namespace edgefleet
