// The collector's operator side end to end: rollout status messages over the real broker into
// the real `edgefleet collect` (stored, newest wins, hostile ones refused), /api/rollouts and
// /api/series against numbers published here, the dashboard page and its assets with their
// headers, and the Grafana dashboard and Prometheus config shipped in deploy/ checked against a
// real collector's /metrics, and promtool. Rollouts, series and the page in chromium are checked
// on both store engines: SQLite and a real PostgreSQL server.
#include <algorithm>
#include <cmath>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "telemetry/latency_histogram.hpp"
#include "telemetry/payloads.hpp"
#include "tests/deploy/collector_fixture.hpp"
#include "tests/support/grafana.hpp"

namespace edgefleet {
namespace {

using namespace collector_testing;  // NOLINT(build/namespaces): the fixture's helpers
using collector_testing::Status;    // not edgefleet::Status (Result<void>)

const fs::path kSourceDir = EDGEFLEET_SOURCE_DIR;

std::string RolloutTopic(const std::string& id, const std::string& fleet = kFleet) {
  return "edgefleet/v1/" + fleet + "/rollout/" + id + "/status";
}

// A rollout status as `edgefleet rollout` publishes it: three devices in two waves.
json Rollout(const std::string& id, std::int64_t ts, std::int64_t started_ts,
             const std::string& state, const std::string& version = "1.1.0") {
  return {{"id", id},
          {"ts", ts},
          {"fleet", kFleet},
          {"group", "lab"},
          {"model", "digits"},
          {"version", version},
          {"bundle", "http://127.0.0.1:8000/digits-" + version + ".tar"},
          {"state", state},
          {"reason", state == "halted" ? "canary failed: 1 of 1 devices" : ""},
          {"started_ts", started_ts},
          {"finished_ts", state == "running" ? 0 : ts},
          {"success_threshold", 0.9},
          {"error_threshold", 0.1},
          {"wave", 2},
          {"waves",
           {{{"percent", 33.3},
             {"devices", 1},
             {"succeeded", 1},
             {"failed", 0},
             {"pending", 0},
             {"state", "done"}},
            {{"percent", 100},
             {"devices", 2},
             {"succeeded", 0},
             {"failed", 1},
             {"pending", 1},
             {"state", "running"}}}},
          {"devices",
           {{"total", 3},
            {"succeeded", 1},
            {"failed", 1},
            {"updating", 1},
            {"waiting", 0},
            {"restored", 0}}},
          {"failures", {{{"device", "box-b"}, {"reason", "parity: accuracy 0.42 < 0.95"}}}}};
}

// Names of the samples in a Prometheus text exposition (not the # HELP/# TYPE lines).
json FindSeries(const json& doc, const std::string& model, const std::string& version) {
  for (const auto& s : doc["series"]) {
    if (s["model"] == model && s["version"] == version) return s;
  }
  return json();
}

// floor(t / step) * step, also for negative t.
std::int64_t FloorTo(std::int64_t t, std::int64_t step) {
  const std::int64_t r = ((t % step) + step) % step;
  return t - r;
}

TEST_P(CollectorEngineTest, RolloutStatusIsStoredAndTheNewestTsWins) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  const std::string id = "digits-1.1.0-20261121T093000Z";
  MustPublish(RolloutTopic(id), Rollout(id, now, now - 60000, "running").dump(), true);
  ASSERT_TRUE(WaitFor("the first rollout status stored", seconds(20),
                      [&] { return Counter("messages", "rollouts") == 1; }));
  json newest = Rollout(id, now + 2000, now - 60000, "halted");
  MustPublish(RolloutTopic(id), newest.dump(), true);
  // Delivered late (an older status of the same rollout): stale, the halted one stays.
  MustPublish(RolloutTopic(id), Rollout(id, now + 1000, now - 60000, "completed").dump());
  ASSERT_TRUE(WaitFor("the newer one stored and the older one counted stale", seconds(20), [&] {
    return Counter("messages", "rollouts") == 2 && Counter("stale") == 1;
  }));
  // The same message again (a retained message redelivered) changes nothing.
  MustPublish(RolloutTopic(id), newest.dump(), true);
  ASSERT_TRUE(WaitFor("the repeat counted duplicate", seconds(20),
                      [&] { return Counter("duplicates") == 1; }));
  EXPECT_EQ(Counter("messages", "rollouts"), 2u);
  EXPECT_EQ(Counter("rejected"), 0u);

  json doc = GetJson("/api/rollouts");
  ASSERT_TRUE(doc.is_object()) << doc;
  ASSERT_EQ(doc["rollouts"].size(), 1u) << doc.dump(1);
  json r = doc["rollouts"][0];
  EXPECT_EQ(r["id"], id);
  EXPECT_EQ(r["state"], "halted");
  EXPECT_EQ(r["ts"], now + 2000);
  EXPECT_EQ(r["reason"], "canary failed: 1 of 1 devices");
  EXPECT_EQ(r["fleet"], kFleet);
  EXPECT_TRUE(r["received_ms"].is_number_integer()) << r;
  EXPECT_GE(r["received_ms"].get<std::int64_t>(), now - 60000);
  r.erase("received_ms");  // "fleet" is the topic's, the same as the payload's
  EXPECT_EQ(r, newest) << "the message as published";

  // A second rollout, started later, is listed first; limit applies.
  const std::string id2 = "digits-1.2.0-20261121T100000Z";
  MustPublish(RolloutTopic(id2), Rollout(id2, now + 3000, now, "running", "1.2.0").dump(), true);
  ASSERT_TRUE(WaitFor("the second rollout stored", seconds(20),
                      [&] { return Counter("messages", "rollouts") == 3; }));
  doc = GetJson("/api/rollouts");
  ASSERT_EQ(doc["rollouts"].size(), 2u) << doc.dump(1);
  EXPECT_EQ(doc["rollouts"][0]["id"], id2);
  EXPECT_EQ(doc["rollouts"][1]["id"], id);
  doc = GetJson("/api/rollouts?limit=1");
  ASSERT_EQ(doc["rollouts"].size(), 1u);
  EXPECT_EQ(doc["rollouts"][0]["id"], id2);
  for (const char* bad : {"/api/rollouts?limit=0", "/api/rollouts?limit=1001",
                          "/api/rollouts?limit=x", "/api/rollouts?state=running"}) {
    auto res = Get(bad);
    ASSERT_TRUE(res) << bad;
    EXPECT_EQ(res->status, 400) << bad << ": " << res->body;
  }

  // /metrics: the stored kind and both rollouts' gauges.
  const std::string metrics = Metrics();
  EXPECT_TRUE(HasLine(metrics, "edgefleet_collector_messages_total{kind=\"rollouts\"} 3"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_collector_stale_total 1")) << metrics;
  const std::string l = "rollout=\"" + id + "\",model=\"digits\",version=\"1.1.0\"";
  for (const auto& [state, value] : std::vector<std::pair<std::string, int>>{
           {"succeeded", 1}, {"failed", 1}, {"updating", 1}, {"waiting", 0}, {"restored", 0}}) {
    EXPECT_TRUE(HasLine(metrics, "edgefleet_rollout_devices{" + l + ",state=\"" + state + "\"} " +
                                     std::to_string(value)))
        << state << "\n"
        << metrics;
  }
  EXPECT_TRUE(
      HasLine(metrics, "edgefleet_rollout_info{" + l + ",group=\"lab\",state=\"halted\"} 1"))
      << metrics;
  EXPECT_TRUE(HasLine(metrics, "edgefleet_rollout_info{rollout=\"" + id2 +
                                   "\",model=\"digits\",version=\"1.2.0\",group=\"lab\","
                                   "state=\"running\"} 1"))
      << metrics;
  EXPECT_EQ(LinesStartingWith(metrics, "edgefleet_rollout_info{").size(), 2u) << metrics;
  // Rollouts are not devices.
  EXPECT_TRUE(GetJson("/api/devices")["devices"].empty());

  // A collector started later gets the retained statuses from the broker.
  std::unique_ptr<BackgroundProcess> late;
  const int late_port = StartCollector(late, "late");
  ASSERT_GT(late_port, 0);
  ASSERT_TRUE(WaitFor(
      "the late collector has both rollouts", seconds(20),
      [&] {
        json d = GetJson("/api/rollouts", late_port);
        return d.is_object() && d["rollouts"].size() == 2 && d["rollouts"][1]["state"] == "halted";
      },
      "late"));
  StopCollectorCleanly();
}

TEST_F(CollectorTest, HostileRolloutStatusesAreRefusedAndCounted) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  const std::string id = "digits-1.1.0-x";
  auto with = [&](const std::function<void(json&)>& edit) {
    json r = Rollout(id, now, now, "running");
    edit(r);
    return r.dump();
  };
  json many_failures = json::array();
  for (int i = 0; i < 21; ++i) {
    many_failures.push_back({{"device", "box-" + std::to_string(i)}, {"reason", "x"}});
  }
  const std::vector<std::pair<std::string, std::string>> hostile = {
      {RolloutTopic(id), "not json"},
      {RolloutTopic(id), "[1,2,3]"},
      {RolloutTopic(id), "{}"},
      {RolloutTopic(id), with([](json& r) { r["id"] = "another-rollout"; })},
      {RolloutTopic(id), with([](json& r) { r["fleet"] = "other"; })},
      {RolloutTopic(id), with([](json& r) { r["ts"] = "yesterday"; })},
      {RolloutTopic(id), with([](json& r) { r["state"] = "exploded"; })},
      {RolloutTopic(id), with([](json& r) { r["waves"][1]["failed"] = -1; })},
      {RolloutTopic(id), with([](json& r) { r["waves"][0]["percent"] = 150; })},
      {RolloutTopic(id), with([](json& r) { r["devices"]["total"] = 3.5; })},
      {RolloutTopic(id), with([](json& r) { r["success_threshold"] = 2; })},
      {RolloutTopic(id), with([&](json& r) { r["failures"] = many_failures; })},
      {RolloutTopic(id), with([](json& r) { r.erase("model"); })},
      {RolloutTopic(id), "{\"pad\":\"" + std::string(1 << 20, 'x') + "\"}"},
      {RolloutTopic("bad*id"), with([](json& r) { r["id"] = "bad*id"; })},
  };
  for (const auto& [topic, payload] : hostile) MustPublish(topic, payload);
  const std::string good = Rollout(id, now, now, "running").dump();
  MustPublish(RolloutTopic(id), good);
  ASSERT_TRUE(WaitFor("the good status stored after the hostile ones", seconds(30), [&] {
    return Counter("messages", "rollouts") == 1 && Counter("rejected") == hostile.size();
  }));
  json doc = GetJson("/api/rollouts");
  ASSERT_EQ(doc["rollouts"].size(), 1u) << doc.dump(1);
  EXPECT_EQ(doc["rollouts"][0]["id"], id);
  EXPECT_EQ(doc["rollouts"][0]["state"], "running");
  EXPECT_TRUE(
      HasLine(Metrics(), "edgefleet_collector_rejected_total " + std::to_string(hostile.size())));

  const std::string log = Log();
  std::vector<std::string> refusals;
  for (const auto& line : LinesStartingWith(log, "ts=")) {
    if (line.find("event=message_rejected") != std::string::npos) refusals.push_back(line);
  }
  ASSERT_EQ(refusals.size(), hostile.size()) << log;
  for (const auto& line : refusals) {
    EXPECT_NE(line.find(" topic=edgefleet/v1/demo/rollout/"), std::string::npos) << line;
  }
  for (const char* reason :
       {"payload says 'another-rollout' but the topic is rollout 'digits-1.1.0-x'",
        "payload says 'other' but the topic is fleet 'demo'", "ts", "exploded", "waves[1].failed",
        "waves[0].percent: expected 0 to 100", "devices.total", "success_threshold", "at most 20",
        "model", "bad*id"}) {
    EXPECT_NE(log.find(reason), std::string::npos) << "no refusal mentions " << reason << "\n"
                                                   << log;
  }
  EXPECT_TRUE(collector_->Running());
  StopCollectorCleanly();
}

TEST_P(CollectorEngineTest, SeriesSumsEveryDevicesWindowsPerModelVersionAndBucket) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  // Bucket starts are multiples of 10 s; `base` is one, a minute ago.
  const std::int64_t base = FloorTo(NowMs(), 10000) - 60000;
  auto golden = [](telemetry::TelemetryWindow w, double accuracy) {
    w.golden_accuracy = accuracy;
    return w;
  };
  const std::vector<telemetry::TelemetryWindow> a = {
      Window("box-a", "1.0.0", base + 1000, {1.0, 2.0, 3.0}, 1, 10, 9),
      Window("box-a", "1.0.0", base + 10000, {4.0}, 0, 0, 0),
      golden(Window("box-a", "1.1.0", base + 20000, {0.2, 0.3}, 0, 4, 4), 0.97),
      Window("box-a", "1.0.0", base - 20 * 60000, {9.0}, 0, 0, 0),  // before the default start
  };
  const std::vector<telemetry::TelemetryWindow> b = {
      Window("box-b", "1.0.0", base + 9999, {30.0, 40.0, 500.0}, 2, 10, 5),
      golden(Window("box-b", "1.1.0", base + 25000, {0.4}, 0, 0, 0), 0.95),
  };
  auto other = Window("box-b", "1.0.0", base + 5000, {7.0}, 0, 0, 0);
  other.model = "other";
  std::vector<std::string> pa, pb;
  for (const auto& w : a) pa.push_back(telemetry::EncodeTelemetry(w));
  for (const auto& w : b) pb.push_back(telemetry::EncodeTelemetry(w));
  pb.push_back(telemetry::EncodeTelemetry(other));
  PublishLines(Topic("box-a", "telemetry"), pa);
  PublishLines(Topic("box-b", "telemetry"), pb);
  ASSERT_TRUE(WaitFor("7 windows stored", seconds(20),
                      [&] { return Counter("messages", "telemetry") == 7; }));

  json doc = GetJson("/api/series?model=digits");
  ASSERT_TRUE(doc.is_object()) << doc;
  EXPECT_EQ(doc["since_ms"], base + 25000 - 15 * 60000) << "newest window minus 15 minutes";
  EXPECT_EQ(doc["bucket_s"], 10);
  ASSERT_EQ(doc["series"].size(), 2u) << doc.dump(1);
  const json v10 = FindSeries(doc, "digits", "1.0.0");
  ASSERT_TRUE(v10.is_object()) << doc.dump(1);
  ASSERT_EQ(v10["points"].size(), 2u) << v10.dump(1);
  // Bucket `base`: box-a's first window and box-b's (ts base+9999), latencies merged.
  telemetry::LatencySnapshot merged = a[0].latency;
  merged.Merge(b[0].latency);
  const json& p0 = v10["points"][0];
  EXPECT_EQ(p0["t"], base);
  EXPECT_EQ(p0["count"], a[0].count + b[0].count);
  EXPECT_EQ(p0["errors"], 3);
  EXPECT_DOUBLE_EQ(p0["p50"].get<double>(), merged.p50);
  EXPECT_DOUBLE_EQ(p0["p95"].get<double>(), merged.p95);
  EXPECT_DOUBLE_EQ(p0["p99"].get<double>(), merged.p99);
  EXPECT_GT(p0["p99"].get<double>(), p0["p50"].get<double>()) << p0;
  EXPECT_EQ(p0["labeled"], 20);
  EXPECT_EQ(p0["correct"], 14);
  EXPECT_DOUBLE_EQ(p0["accuracy"].get<double>(), 14.0 / 20.0);
  EXPECT_TRUE(p0["golden_accuracy"].is_null()) << p0;
  const json& p1 = v10["points"][1];
  EXPECT_EQ(p1["t"], base + 10000);
  EXPECT_EQ(p1["count"], 1);
  EXPECT_DOUBLE_EQ(p1["p50"].get<double>(), a[1].latency.p50);
  EXPECT_TRUE(p1["accuracy"].is_null()) << "no feedback: no accuracy";
  const json v11 = FindSeries(doc, "digits", "1.1.0");
  ASSERT_EQ(v11["points"].size(), 1u) << doc.dump(1);
  EXPECT_EQ(v11["points"][0]["t"], base + 20000);
  EXPECT_EQ(v11["points"][0]["count"], 3);
  EXPECT_NEAR(v11["points"][0]["golden_accuracy"].get<double>(), 0.96, 1e-12);
  EXPECT_DOUBLE_EQ(v11["points"][0]["accuracy"].get<double>(), 1.0);

  // Wider buckets merge; an explicit start includes the old window; other models on request.
  doc = GetJson("/api/series?model=digits&bucket_s=60&since_ms=0");
  const json wide = FindSeries(doc, "digits", "1.0.0");
  ASSERT_TRUE(wide.is_object()) << doc.dump(1);
  std::vector<std::int64_t> expected_t = {FloorTo(base - 20 * 60000, 60000)};
  for (std::int64_t ts : {base + 1000, base + 9999, base + 10000}) {
    if (FloorTo(ts, 60000) != expected_t.back()) expected_t.push_back(FloorTo(ts, 60000));
  }
  std::vector<std::int64_t> got_t;
  std::uint64_t total = 0;
  for (const auto& p : wide["points"]) {
    got_t.push_back(p["t"].get<std::int64_t>());
    total += p["count"].get<std::uint64_t>();
  }
  EXPECT_EQ(got_t, expected_t) << wide.dump(1);
  EXPECT_EQ(total, a[0].count + a[1].count + a[3].count + b[0].count);
  doc = GetJson("/api/series");
  EXPECT_EQ(doc["series"].size(), 3u) << doc.dump(1);
  EXPECT_TRUE(FindSeries(doc, "other", "1.0.0").is_object()) << doc.dump(1);
  doc = GetJson("/api/series?model=nothing");
  EXPECT_TRUE(doc["series"].empty()) << doc;
  for (const char* bad :
       {"/api/series?bucket_s=0", "/api/series?bucket_s=86401", "/api/series?bucket_s=ten",
        "/api/series?since_ms=1e3", "/api/series?device=box-a"}) {
    auto res = Get(bad);
    ASSERT_TRUE(res) << bad;
    EXPECT_EQ(res->status, 400) << bad << ": " << res->body;
  }
  StopCollectorCleanly();
}

TEST_F(CollectorTest, DashboardPageAndAssetsAreServedWithSecurityHeaders) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  std::string page;
  for (const char* path : {"/", "/dashboard"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/html; charset=utf-8") << path;
    EXPECT_EQ(res->get_header_value("Content-Security-Policy"), "default-src 'self'") << path;
    EXPECT_EQ(res->get_header_value("X-Content-Type-Options"), "nosniff") << path;
    if (page.empty()) page = res->body;
    EXPECT_EQ(res->body, page) << path;
  }
  EXPECT_EQ(page,
            testing::ReadFile(kSourceDir / "deploy" / "collector" / "dashboard" / "index.html"))
      << "the binary serves the page in the source tree";
  for (const char* id :
       {"id=\"devices\"", "id=\"latency-chart\"", "id=\"accuracy-chart\"", "id=\"rollouts\"",
        "id=\"events\"", "id=\"count-total\"", "id=\"count-online\"", "id=\"count-offline\"",
        "id=\"collector-status\"", "<script src=\"assets/app.js\" defer></script>",
        "href=\"assets/style.css\""}) {
    EXPECT_NE(page.find(id), std::string::npos) << id << " missing in the page";
  }
  // Nothing the CSP would block: no inline script, style or handler.
  EXPECT_EQ(page.find("<script>"), std::string::npos);
  EXPECT_EQ(page.find("<style"), std::string::npos);
  EXPECT_EQ(page.find(" style="), std::string::npos);
  EXPECT_FALSE(std::regex_search(page, std::regex(" on[a-z]+="))) << "inline event handler";

  auto js = Get("/assets/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(js->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(js->body,
            testing::ReadFile(kSourceDir / "deploy" / "collector" / "dashboard" / "app.js"));
  // The script builds its DOM from text only and talks to nothing but this collector.
  for (const char* unsafe : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                             "eval(", "new Function"}) {
    EXPECT_EQ(js->body.find(unsafe), std::string::npos) << unsafe;
  }
  std::string urls = js->body;
  const std::string svg_ns = "http://www.w3.org/2000/svg";
  urls.erase(urls.find(svg_ns), svg_ns.size());
  EXPECT_FALSE(std::regex_search(urls, std::regex("https?://"))) << "an external URL";
  for (const char* endpoint :
       {"api/summary", "api/devices", "api/series", "api/rollouts", "api/events?limit=30"}) {
    EXPECT_NE(js->body.find(endpoint), std::string::npos) << endpoint;
  }

  auto css = Get("/assets/style.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->status, 200);
  EXPECT_EQ(css->get_header_value("Content-Type"), "text/css; charset=utf-8");
  for (const char* path : {"/assets/nope.js", "/assets/", "/assets/../collector.db",
                           "/assets/%2e%2e%2fcollector.db", "/assets/app.js/x", "/index.html"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path << ": " << res->body;
    EXPECT_EQ(res->get_header_value("X-Content-Type-Options"), "nosniff") << path;
  }
  StopCollectorCleanly();
}

// The page's script against a real collector, in Debian's headless chromium (installed by
// scripts/install-deps.sh): the DOM contract the browser test and operators rely on, and hostile
// text shown as text.
TEST_P(CollectorEngineTest, DashboardScriptRendersTheFleetInChromium) {
  const fs::path chromium = "/usr/bin/chromium";
  ASSERT_TRUE(fs::exists(chromium))
      << "no " << chromium << " (scripts/install-deps.sh installs it)";
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  MustPublish(Topic("box-a", "status"), telemetry::EncodeStatus(Status("box-a", "1.1.0", now)),
              true);
  MustPublish(Topic("box-b", "status"), telemetry::EncodeStatus(Status("box-b", "1.0.0", now)),
              true);
  PublishLines(Topic("box-a", "telemetry"),
               {telemetry::EncodeTelemetry(Window("box-a", "1.1.0", now - 20000, {1.0}, 0, 4, 3)),
                telemetry::EncodeTelemetry(Window("box-a", "1.1.0", now, {2.0}, 0, 4, 4))});
  auto failed = Event("box-b", "failed", now);
  failed.reason = "<img src=x onerror=alert(1)>";
  MustPublish(Topic("box-b", "events"), telemetry::EncodeEvent(failed));
  MustPublish(RolloutTopic("r1"), Rollout("r1", now, now, "halted").dump(), true);
  ASSERT_TRUE(WaitFor("everything stored", seconds(20), [&] {
    return Counter("messages", "status") == 2 && Counter("messages", "telemetry") == 2 &&
           Counter("messages", "events") == 1 && Counter("messages", "rollouts") == 1;
  }));
  ProcessResult r = RunProcess({chromium.string(), "--headless", "--no-sandbox", "--disable-gpu",
                                "--virtual-time-budget=5000", "--dump-dom",
                                "http://127.0.0.1:" + std::to_string(port_) + "/"},
                               seconds(90));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string& dom = r.out;
  for (const char* needle :
       {"<tr data-device=\"box-a\" data-versions=\"digits=1.1.0\">",
        "<tr data-device=\"box-b\" data-versions=\"digits=1.0.0\">", "digits 1.1.0 (B)",
        "<td class=\"online\">online</td>", "<dd id=\"count-total\">2</dd>",
        "<dd id=\"count-online\">2</dd>", "class=\"connected\">broker connected<",
        "<path class=\"series\" data-series=\"digits@1.1.0\" data-stat=\"p50\"",
        "<path class=\"series\" data-series=\"digits@1.1.0\" data-stat=\"accuracy\"",
        "<div class=\"rollout\" data-rollout=\"r1\" data-state=\"halted\">",
        "<div class=\"wave current\" data-wave=\"2\" data-state=\"running\">",
        "<li data-device=\"box-b\">", "<tr data-event=\"failed\" class=\"bad\">",
        "&lt;img src=x onerror=alert(1)&gt;"}) {
    EXPECT_NE(dom.find(needle), std::string::npos) << needle << " not in the page:\n" << dom;
  }
  EXPECT_EQ(dom.find("<img"), std::string::npos) << "a reason became markup";
  EXPECT_EQ(dom.find("no data yet"), std::string::npos) << "charts not drawn";
  StopCollectorCleanly();
}

// deploy/grafana/edgefleet-dashboard.json queries only metrics a real collector serves.
TEST_F(CollectorTest, GrafanaDashboardUsesOnlyMetricsTheCollectorServes) {
  const json dashboard =
      json::parse(testing::ReadFile(kSourceDir / "deploy" / "grafana" / "edgefleet-dashboard.json"),
                  nullptr, false);
  ASSERT_TRUE(dashboard.is_object()) << "the Grafana dashboard is not a JSON object";
  ASSERT_TRUE(dashboard["panels"].is_array());
  const std::set<std::string> used = testing::GrafanaMetricNames(dashboard);
  for (const char* needed :
       {"edgefleet_fleet_devices", "edgefleet_fleet_requests_total", "edgefleet_fleet_errors_total",
        "edgefleet_fleet_latency_seconds_bucket", "edgefleet_fleet_feedback_correct_total",
        "edgefleet_fleet_feedback_labeled_total", "edgefleet_rollout_devices"}) {
    EXPECT_EQ(used.count(needed), 1u) << "the dashboard does not show " << needed;
  }

  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  MustPublish(Topic("box-a", "status"), telemetry::EncodeStatus(Status("box-a", "1.1.0", now)),
              true);
  MustPublish(Topic("box-a", "telemetry"),
              telemetry::EncodeTelemetry(Window("box-a", "1.1.0", now, {1.0, 2.0}, 1, 2, 1)));
  MustPublish(RolloutTopic("r1"), Rollout("r1", now, now, "running").dump(), true);
  ASSERT_TRUE(WaitFor("status, window and rollout stored", seconds(20), [&] {
    return Counter("messages", "status") == 1 && Counter("messages", "telemetry") == 1 &&
           Counter("messages", "rollouts") == 1;
  }));
  const std::set<std::string> served = testing::MetricSampleNames(Metrics());
  for (const std::string& name : used) {
    EXPECT_EQ(served.count(name), 1u)
        << "the Grafana dashboard uses " << name << ", which the collector does not serve";
  }
  StopCollectorCleanly();
}

// deploy/prometheus/prometheus.yml and every Grafana query pass promtool (Debian's prometheus
// package, installed by scripts/install-deps.sh for this test).
TEST(PrometheusFiles, ConfigAndGrafanaQueriesPassPromtool) {
  const fs::path promtool = "/usr/bin/promtool";
  ASSERT_TRUE(fs::exists(promtool))
      << "no " << promtool << " (scripts/install-deps.sh installs Debian's prometheus)";
  testing::TempDir dir;
  const fs::path config = kSourceDir / "deploy" / "prometheus" / "prometheus.yml";
  ProcessResult r =
      RunProcess({promtool.string(), "check", "config", config.string()}, seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(testing::ReadFile(config).find("job_name: edgefleet-collector"), std::string::npos);
  EXPECT_NE(testing::ReadFile(config).find("\"127.0.0.1:8080\""), std::string::npos);

  // Each panel query of both dashboards as a recording rule (JSON is YAML), the $model and
  // $instance variables as "match all".
  json rules = json::array();
  for (const char* file : {"edgefleet-dashboard.json", "edgefleet-agent-dashboard.json"}) {
    const json dashboard = json::parse(testing::ReadFile(kSourceDir / "deploy" / "grafana" / file));
    for (const auto& panel : dashboard["panels"]) {
      for (const auto& target : panel["targets"]) {
        std::string expr = target["expr"].get<std::string>();
        for (const std::string var : {"$model", "$instance"}) {
          for (std::size_t at; (at = expr.find(var)) != std::string::npos;) {
            expr.replace(at, var.size(), ".*");
          }
        }
        rules.push_back(
            {{"record", "edgefleet:check:" + std::to_string(rules.size())}, {"expr", expr}});
      }
    }
  }
  ASSERT_GE(rules.size(), 20u);
  testing::WriteFile(dir.path() / "rules.yml",
                     json{{"groups", {{{"name", "grafana"}, {"rules", rules}}}}}.dump(1));
  r = RunProcess({promtool.string(), "check", "rules", (dir.path() / "rules.yml").string()},
                 seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(std::to_string(rules.size()) + " rules found"), std::string::npos) << r.out;
  EXPECT_NE(testing::ReadFile(config).find("job_name: edgefleet-agent"), std::string::npos);
}

}  // namespace
}  // namespace edgefleet
