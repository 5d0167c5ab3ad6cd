// The real `edgefleet-agent run` process against a real mosquitto broker and the real
// `edgefleet collect` process (issue 5, acceptance 1, 2 and 4; 3 for the agent's side): signed
// desired state published retained with the real mosquitto_pub, telemetry and events checked in
// the collector's database through its HTTP API, the broker stopped and started for outages.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/agent_harness.hpp"
#include "tests/support/mosquitto_broker.hpp"
#include "tests/support/process.hpp"

namespace edgefleet {
namespace {

const std::string kGroupTopic = "edgefleet/v1/demo/group/lab/desired";
const std::string kDeviceDesired = "edgefleet/v1/demo/device/box-1/desired";
const std::string kStatusTopic = "edgefleet/v1/demo/device/box-1/status";

class AgentMqttE2E : public AgentE2E {
 protected:
  // Starts the broker (plain loopback, or TLS with client certificates and deploy/'s ACL).
  void StartBroker(bool tls, bool acl = true) {
    tls_ = tls;
    if (tls) {
      pki_ = testing::MakeTestPki(tmp_ / "pki", {"box-1", "collector", "operator", "box-2"});
      testing::BrokerOptions options;
      options.tls = &pki_;
      if (acl) options.acl_file = fs::path(EDGEFLEET_SOURCE_DIR) / "deploy" / "mosquitto" / "acl";
      broker_ = std::make_unique<testing::MosquittoBroker>(tmp_ / "broker", options);
    } else {
      broker_ = std::make_unique<testing::MosquittoBroker>(tmp_ / "broker");
    }
    ASSERT_TRUE(broker_->running());
  }

  // The agent's config with MQTT on and telemetry windows of `window_s`; no desired file.
  void ConfigureMqtt(double window_s, const fs::path& ca = {}) {
    json mqtt = {{"host", "127.0.0.1"},
                 {"port", broker_->port()},
                 {"keepalive_s", 5},
                 {"reconnect_min_ms", 100},
                 {"reconnect_max_ms", 500}};
    if (tls_) {
      mqtt["ca_file"] = (ca.empty() ? pki_.ca_cert : ca).string();
      mqtt["cert_file"] = pki_.ClientCert("box-1").string();
      mqtt["key_file"] = pki_.ClientKey("box-1").string();
    }
    WriteConfig(
        {}, {{"mqtt", mqtt}, {"telemetry", {{"window_s", window_s}}}, {"desired_state", nullptr}});
  }

  void StartCollector() {
    collector_port_file_ = tmp_ / "collector.port";
    fs::remove(collector_port_file_);
    std::vector<std::string> argv = {
        EDGEFLEET_CLI, "collect",     "--broker",    "127.0.0.1:" + std::to_string(broker_->port()),
        "--fleet",     "demo",        "--db",        (tmp_ / "collector.db").string(),
        "--http",      "127.0.0.1:0", "--port-file", collector_port_file_.string()};
    if (tls_) {
      for (const std::string& a :
           {std::string("--ca-file"), pki_.ca_cert.string(), std::string("--cert-file"),
            pki_.ClientCert("collector").string(), std::string("--key-file"),
            pki_.ClientKey("collector").string()}) {
        argv.push_back(a);
      }
    }
    collector_ = std::make_unique<BackgroundProcess>(argv, tmp_ / "collector.log");
    ASSERT_TRUE(WaitFor("collector port file", seconds(20), [&] {
      std::error_code ec;
      if (!fs::exists(collector_port_file_, ec)) return false;
      const std::string text = testing::ReadFile(collector_port_file_);
      if (text.empty()) return false;
      collector_port_ = std::stoi(text);
      return true;
    }));
  }

  json CollectorGet(const std::string& path) {
    httplib::Client c("127.0.0.1", collector_port_);
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(20, 0);
    auto r = c.Get(path);
    if (!r || r->status != 200) return json();
    json doc = json::parse(r->body, nullptr, false);
    return doc.is_discarded() ? json() : doc;
  }

  // The collector's events for box-1, oldest first (the API lists newest first).
  json CollectorEvents() {
    json doc = CollectorGet("/api/events?device=box-1&limit=10000");
    if (doc.is_object() && doc.contains("events")) doc = doc["events"];
    if (!doc.is_array()) return json::array();
    std::reverse(doc.begin(), doc.end());
    return doc;
  }

  // The collector's telemetry windows for box-1.
  json CollectorWindows() {
    json doc = CollectorGet("/api/telemetry?device=box-1&limit=100000");
    if (doc.is_object() && doc.contains("windows")) doc = doc["windows"];
    return doc.is_array() ? doc : json::array();
  }

  json CollectorDevice(const std::string& device) {
    json doc = CollectorGet("/api/devices");
    if (doc.is_object() && doc.contains("devices")) doc = doc["devices"];
    if (!doc.is_array()) return json();
    for (const auto& d : doc) {
      if (d.value("device", "") == device) return d;
    }
    return json();
  }

  // mosquitto_pub as the operator (TLS: the operator's certificate).
  testing::ProcessResult Publish(const std::string& topic, const std::string& payload,
                                 bool retain = true, const std::string& identity = "operator") {
    std::vector<std::string> argv = {
        "mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()), "-q", "1", "-t",
        topic,           "-s"};
    if (retain) argv.push_back("-r");
    if (tls_) {
      for (const std::string& a : {std::string("--cafile"), pki_.ca_cert.string(),
                                   std::string("--cert"), pki_.ClientCert(identity).string(),
                                   std::string("--key"), pki_.ClientKey(identity).string()}) {
        argv.push_back(a);
      }
    }
    return testing::RunProcess(argv, seconds(20), payload);
  }

  // The retained status as the broker holds it (mosquitto_sub as the collector).
  json RetainedStatus() {
    std::vector<std::string> argv = {"mosquitto_sub",
                                     "-h",
                                     "127.0.0.1",
                                     "-p",
                                     std::to_string(broker_->port()),
                                     "-t",
                                     kStatusTopic,
                                     "-C",
                                     "1",
                                     "-W",
                                     "5"};
    if (tls_) {
      for (const std::string& a : {std::string("--cafile"), pki_.ca_cert.string(),
                                   std::string("--cert"), pki_.ClientCert("collector").string(),
                                   std::string("--key"), pki_.ClientKey("collector").string()}) {
        argv.push_back(a);
      }
    }
    auto r = testing::RunProcess(argv, seconds(15));
    json doc = json::parse(r.out, nullptr, false);
    return doc.is_discarded() ? json() : doc;
  }

  // Offline install of a bundle before the agent runs (fast setup for outage tests).
  void InstallOffline(const Bundle& bundle) {
    auto r = testing::RunProcess(
        {EDGEFLEET_AGENT, "install", "--config", config_path_.string(), bundle.path.string()},
        seconds(120));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // A plain broker, the collector, and the agent serving v1 (installed offline) with telemetry
  // windows of `window_s`, online in the collector.
  void ServeV1WithCollector(double window_s) {
    ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
    ConfigureMqtt(window_s);
    v1_ = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
    ASSERT_NO_FATAL_FAILURE(InstallOffline(v1_));
    ASSERT_NO_FATAL_FAILURE(StartCollector());
    StartAgent();
    ASSERT_TRUE(WaitFor("box-1 online in the collector", seconds(30), [&] {
      json d = CollectorDevice("box-1");
      return d.is_object() && d.value("online", false);
    }));
  }

  // `n` PNG inferences over one keep-alive connection, paced over at least `span` so that
  // they fall into several telemetry windows; returns how many answered 200.
  int Serve(int n, milliseconds span = milliseconds(0)) {
    const auto start = Clock::now();
    httplib::Client c("127.0.0.1", port_);
    c.set_keep_alive(true);
    c.set_tcp_nodelay(true);
    c.set_read_timeout(20, 0);
    int ok = 0;
    for (int i = 0; i < n; ++i) {
      const Png& png = Heldout()[static_cast<std::size_t>(i) % Heldout().size()];
      auto r = c.Post("/v2/models/digits/infer", png.bytes, "image/png");
      if (r && r->status == 200) ++ok;
      if (span.count() > 0) std::this_thread::sleep_until(start + span * (i + 1) / n);
    }
    return ok;
  }

  // Sum of count= over the agent's event=telemetry_window log lines, and how many there were.
  std::pair<std::uint64_t, std::size_t> LoggedWindows() {
    static const std::regex kLine(R"(event=telemetry_window model=digits version=\S+ count=(\d+))");
    const std::string text = LogText();
    std::uint64_t sum = 0;
    std::size_t lines = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), kLine);
         it != std::sregex_iterator(); ++it) {
      sum += std::stoull((*it)[1].str());
      ++lines;
    }
    return {sum, lines};
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- collector log tail\n" << testing::Tail(tmp_ / "collector.log", 30);
      if (broker_) std::cerr << "---- broker log tail\n" << broker_->Log().substr(0, 4000);
    }
    AgentE2E::TearDown();
    collector_.reset();
    broker_.reset();
  }

  bool tls_ = false;
  testing::TestPki pki_;
  std::unique_ptr<testing::MosquittoBroker> broker_;
  std::unique_ptr<BackgroundProcess> collector_;
  fs::path collector_port_file_;
  int collector_port_ = 0;
};

// A count in the collector's JSON, or `otherwise` when the object or the field is not there
// yet (json::value throws on null).
std::uint64_t CountIn(const json& object, const char* key, std::uint64_t otherwise = 0) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number_unsigned()) {
    return otherwise;
  }
  return object[key].get<std::uint64_t>();
}

// Acceptance 1 (over TLS with client certificates and deploy/'s ACL, acceptance 3 for the agent):
// a signed desired state published retained to the group topic installs v1, then v2; every
// transition of v2's deployment reaches the collector as an event; the retained status says v2.
TEST_F(AgentMqttE2E, GroupDesiredStateInstallsV2AndEveryStepReachesTheCollector) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/true));
  ConfigureMqtt(1.0);
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  StartAgent();
  ASSERT_TRUE(WaitFor("box-1 online in the collector", seconds(30), [&] {
    json d = CollectorDevice("box-1");
    return d.is_object() && d.value("online", false);
  }));

  auto short_watch = [](json& b, const fs::path&) { b["watch"] = testing::ShortWatch(); };
  v1_ = testing::MakeBundle(fleet_, "v1", tmp_.path(), short_watch);
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), short_watch);
  server_.Add("/v1.efb", v1_.bytes);
  server_.Add("/v2.efb", v2.bytes);

  const json group = {{"group", "lab"}};
  auto r = Publish(kGroupTopic,
                   testing::DesiredStateDoc(*fleet_.deploy, 1,
                                            {testing::DesiredModel(v1_, server_.Url("/v1.efb"))},
                                            std::chrono::hours(1), group));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json d1 = WaitTerminal("1.0.0", 0, seconds(90), true);
  ASSERT_EQ(d1.value("state", ""), "committed") << d1.dump(1);

  r = Publish(kGroupTopic,
              testing::DesiredStateDoc(*fleet_.deploy, 2,
                                       {testing::DesiredModel(v2, server_.Url("/v2.efb"))},
                                       std::chrono::hours(1), group));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json d2 = WaitTerminal("1.1.0", 0, seconds(120), true);
  ASSERT_EQ(d2.value("state", ""), "committed") << d2.dump(1);
  EXPECT_EQ(ServedVersion(), "1.1.0");

  // Every transition the journal recorded for v2's deployment is an event in the collector.
  const std::int64_t dep_id = d2.value("id", std::int64_t{0});
  std::vector<std::string> journal_steps;
  for (const auto& t : d2["transitions"]) journal_steps.push_back(t.value("to", ""));
  ASSERT_GE(journal_steps.size(), 8u) << d2.dump(1);
  // Each event names the state it left ("from"), so the chain from "" rebuilds the agent's
  // order even where steps a millisecond apart share a timestamp in the collector.
  std::map<std::string, std::vector<std::string>> next;  // from -> events that left it
  std::size_t step_events = 0;
  bool parity_report = false;
  json parity_event;
  WaitFor("every step of deployment " + std::to_string(dep_id) + " in the collector", seconds(30),
          [&] {
            next.clear();
            step_events = 0;
            parity_report = false;
            for (const auto& e : CollectorEvents()) {
              if (e.value("deployment", std::int64_t{0}) != dep_id) continue;
              if (e.value("event", "") == "parity_report") {
                parity_report = true;
                parity_event = e;
                continue;
              }
              next[e.value("from", "")].push_back(e.value("event", ""));
              ++step_events;
            }
            return step_events >= journal_steps.size() && parity_report;
          });
  std::vector<std::string> chain;
  for (std::string state; next.count(state) && chain.size() <= step_events;) {
    ASSERT_EQ(next[state].size(), 1u) << "several events left state '" << state << "'";
    state = next[state].front();
    chain.push_back(state);
  }
  EXPECT_EQ(step_events, journal_steps.size()) << "events in the collector vs journal steps";
  EXPECT_EQ(chain, journal_steps) << "collector events vs journal transitions, in order";
  EXPECT_TRUE(parity_report) << "the parity report event did not reach the collector";
  // Every variant this box can run was loaded and proven (both of digits': opencv runs the
  // opset-13 export's Gemm in the form the exporter wrote, by its form table), each with its
  // latency; the one served is marked and named in the report.
  const json& parity = parity_event["parity"];
  ASSERT_TRUE(parity.contains("variants")) << parity_event.dump();
  EXPECT_EQ(parity["variants"].size(), 2u) << parity.dump();
  int chosen = 0;
  for (const auto& v : parity["variants"]) {
    EXPECT_EQ(v["backend"], "opencv") << v.dump();
    EXPECT_TRUE(v["latency_median_ms"].is_number()) << v.dump();
    EXPECT_TRUE(v["pass"].get<bool>()) << v.dump();
    if (v["chosen"].get<bool>()) {
      ++chosen;
      EXPECT_EQ(v["variant"], parity["variant"]) << parity.dump();
    }
  }
  EXPECT_EQ(chosen, 1) << parity.dump();
  for (const auto& e : CollectorEvents()) {
    if (e.value("deployment", std::int64_t{0}) == dep_id) {
      EXPECT_EQ(e.value("target", ""), "group/lab") << e.dump();
      EXPECT_EQ(e.value("serial", 0), 2) << e.dump();
    }
  }

  // The retained status (what the broker hands any new subscriber) says v2 is active, with the
  // bundle's sha256, and v1 is the standby.
  json status;
  WaitFor("retained status with 1.1.0 active", seconds(20), [&] {
    status = RetainedStatus();
    if (!status.is_object() || !status.contains("models")) return false;
    for (const auto& m : status["models"]) {
      if (m.value("name", "") == "digits" && m["active"].is_object() &&
          m["active"].value("version", "") == "1.1.0")
        return true;
    }
    return false;
  });
  ASSERT_TRUE(status.is_object()) << "no retained status";
  EXPECT_TRUE(status.value("online", false));
  for (const auto& m : status["models"]) {
    if (m.value("name", "") != "digits") continue;
    EXPECT_EQ(m["active"].value("sha256", ""), v2.sha256);
    ASSERT_TRUE(m["standby"].is_object()) << status.dump(1);
    EXPECT_EQ(m["standby"].value("version", ""), "1.0.0");
  }
  json device = CollectorDevice("box-1");
  EXPECT_TRUE(device.value("online", false)) << device.dump(1);

  // A clean stop says offline (retained) instead of leaving the last will to the broker.
  StopAgent();
  WaitFor("box-1 offline in the collector", seconds(20), [&] {
    json d = CollectorDevice("box-1");
    return d.is_object() && !d.value("online", true);
  });
}

// Acceptance 3, the agent's side: with a CA that did not sign the broker's certificate the
// agent never connects and says why; it keeps serving its model.
TEST_F(AgentMqttE2E, WrongCaIsRefusedAndTheAgentKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/true, /*acl=*/false));
  v1_ = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  ConfigureMqtt(1.0, pki_.other_ca_cert);
  ASSERT_NO_FATAL_FAILURE(InstallOffline(v1_));
  StartAgent();
  WaitFor("a TLS refusal in the agent log", seconds(20),
          [&] { return LogText().find("event=mqtt_disconnected") != std::string::npos; });
  const std::string log = LogText();
  EXPECT_EQ(log.find("event=mqtt_connected"), std::string::npos) << testing::Tail(log_, 20);
  EXPECT_TRUE(ContainsAny(log, {"certificate", "tls", "ssl"})) << testing::Tail(log_, 20);
  EXPECT_EQ(Serve(20), 20);
}

// Acceptance 2: the broker is down while the agent serves 10,000 inferences over many telemetry
// windows, and the agent is SIGKILLed in the middle of the outage; when the broker returns the
// collector holds every window exactly once and the counts add up to what was served.
TEST_F(AgentMqttE2E, BrokerOutageAndSigkillLoseNoWindow) {
  ASSERT_NO_FATAL_FAILURE(ServeV1WithCollector(0.25));

  broker_->Stop();
  int served = Serve(5000, seconds(2));
  ASSERT_EQ(served, 5000);
  // The window holding the last request has closed (it is in the outbox) before the kill: a
  // SIGKILL loses only the window still open, and this test counts what the agent reported.
  ASSERT_TRUE(WaitFor("the agent's windows account for 5000 requests", seconds(20),
                      [&] { return LoggedWindows().first == 5000; }));
  agent_->KillGroup();
  agent_.reset();
  StartAgent();
  served += Serve(5000, seconds(2));
  ASSERT_EQ(served, 10000);
  ASSERT_TRUE(WaitFor("the agent's windows account for 10000 requests", seconds(20),
                      [&] { return LoggedWindows().first == 10000; }));
  const auto [logged_sum, logged_windows] = LoggedWindows();
  ASSERT_GE(logged_windows, 10u) << "the outage did not span several windows";

  broker_->Start();
  auto collected = [&] {
    std::uint64_t sum = 0;
    std::size_t windows = 0;
    for (const auto& w : CollectorWindows()) {
      if (w.value("model", "") != "digits") continue;
      sum += w.value("count", std::uint64_t{0});
      ++windows;
    }
    return std::pair{sum, windows};
  };
  ASSERT_TRUE(WaitFor("the collector's windows add up to 10000", seconds(60),
                      [&] { return collected().first >= 10000; }));
  // The agent keeps closing (idle) windows; a clean stop closes the last one, so the log then
  // lists every window the agent ever made.
  StopAgent();
  const std::size_t final_windows = LoggedWindows().second;
  ASSERT_GE(final_windows, logged_windows);
  WaitFor("the collector holds every logged window", seconds(30),
          [&] { return collected().second >= final_windows; });
  // Exactly once: no window twice (ids are unique in the collector), none missing, and the
  // counts add up to what was served.
  std::set<std::string> ids;
  for (const auto& w : CollectorWindows()) {
    if (w.value("model", "") == "digits") {
      EXPECT_TRUE(ids.insert(w.value("id", "")).second) << "window twice: " << w.dump();
    }
  }
  const auto [collected_sum, collected_windows] = collected();
  EXPECT_EQ(collected_sum, 10000u);
  EXPECT_EQ(collected_windows, final_windows);
  EXPECT_EQ(ids.size(), final_windows);
  EXPECT_EQ(logged_sum, 10000u);
  // The numbering survived the kill (the next number is stored with the rows): the collector
  // finds no number missing.
  json device = CollectorDevice("box-1");
  EXPECT_GE(CountIn(device, "numbered"), final_windows) << device.dump(1);
  EXPECT_EQ(CountIn(device, "missing", 1), 0u) << device.dump(1);
}

// Loss is visible: an outage longer than the outbox's bound drops the oldest queued windows on
// the box; when the broker returns, the collector counts their numbers as missing (API, summary,
// log), no more than the agent's own drop counter says it dropped.
TEST_F(AgentMqttE2E, WindowsTheOutboxDroppedAreCountedMissingInTheCollector) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  json mqtt = {{"host", "127.0.0.1"},
               {"port", broker_->port()},
               {"keepalive_s", 5},
               {"reconnect_min_ms", 100},
               {"reconnect_max_ms", 500}};
  WriteConfig({}, {{"mqtt", mqtt},
                   {"telemetry", {{"window_s", 0.1}, {"outbox_max_messages", 20}}},
                   {"desired_state", nullptr}});
  v1_ = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  ASSERT_NO_FATAL_FAILURE(InstallOffline(v1_));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  StartAgent();
  ASSERT_TRUE(WaitFor("box-1's first numbered windows in the collector", seconds(30),
                      [&] { return CountIn(CollectorDevice("box-1"), "numbered") >= 3; }));
  EXPECT_EQ(CountIn(CollectorDevice("box-1"), "missing", 1), 0u);

  broker_->Stop();
  // About 40 windows of 0.1 s, one per window while idle: twice what the outbox keeps.
  std::this_thread::sleep_for(seconds(4));
  broker_->Start();
  json device;
  ASSERT_TRUE(WaitFor("the dropped windows counted missing", seconds(60), [&] {
    device = CollectorDevice("box-1");
    return CountIn(device, "missing") >= 10;
  })) << device.dump(1);
  // The agent reports what its outbox dropped, in its status (at each connection) and in every
  // window (as the window closed); the missing numbers are among them (a dropped row may also
  // have been a status, which carries no number). Rows can still be dropped after the birth
  // record while the queue drains (a slow box keeps appending windows), so the newest count is
  // the highest any message carried.
  auto agent_dropped = [&] {
    std::uint64_t dropped = CountIn(device["status"]["outbox"], "dropped");
    for (const auto& w : CollectorWindows()) {
      if (w.contains("outbox")) dropped = std::max(dropped, CountIn(w["outbox"], "dropped"));
    }
    return dropped;
  };
  ASSERT_TRUE(WaitFor("the agent's drop counter", seconds(20), [&] {
    device = CollectorDevice("box-1");
    return device.is_object() && device["status"].is_object() &&
           agent_dropped() >= CountIn(device, "missing");
  })) << device.dump(1);
  json summary = CollectorGet("/api/summary");
  EXPECT_EQ(summary["messages"]["devices_missing"], 1) << summary.dump(1);
  EXPECT_EQ(summary["messages"]["missing"], device["missing"]) << summary.dump(1);
  ASSERT_TRUE(WaitFor("the collector's warning", seconds(20), [&] {
    return testing::ReadFile(tmp_ / "collector.log").find("event=messages_missing") !=
           std::string::npos;
  }));
}

// A clean stop while the broker is down queues the status "offline"; the next run must not
// publish that stale status after its own birth record (the outbox is FIFO behind the birth):
// once the new run's telemetry has arrived, the broker's retained status and the collector say
// online.
TEST_F(AgentMqttE2E, CleanStopDuringAnOutageDoesNotLeaveTheDeviceOffline) {
  ASSERT_NO_FATAL_FAILURE(ServeV1WithCollector(0.5));

  broker_->Stop();
  StopAgent();  // its "offline" status stays queued: no broker to take it
  StartAgent();
  std::this_thread::sleep_for(milliseconds(1200));  // windows of the new run queue up offline
  const std::size_t windows_before = CollectorWindows().size();
  broker_->Start();
  // Telemetry queued after the new run started arrives after anything queued before it.
  ASSERT_TRUE(WaitFor("the new run's telemetry in the collector", seconds(30),
                      [&] { return CollectorWindows().size() >= windows_before + 2; }));
  json status = RetainedStatus();
  ASSERT_TRUE(status.is_object()) << "no retained status";
  EXPECT_TRUE(status.value("online", false)) << status.dump(1);
  json device = CollectorDevice("box-1");
  EXPECT_TRUE(device.value("online", false)) << device.dump(1);
}

// Acceptance 4: malformed or hostile payloads on the desired topics are logged and ignored, and
// the agent keeps serving the model it has.
TEST_F(AgentMqttE2E, HostilePayloadsAreLoggedAndIgnored) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(/*tls=*/false));
  ConfigureMqtt(1.0);
  v1_ = testing::MakeBundle(fleet_, "v1", tmp_.path(), nullptr);
  // The short watch window keeps the final deployment (proof the agent still acts) quick.
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), [](json& b, const fs::path&) {
    b["watch"] = testing::ShortWatch();
  });
  server_.Add("/v2.efb", v2.bytes);
  ASSERT_NO_FATAL_FAILURE(InstallOffline(v1_));
  StartAgent();
  ASSERT_TRUE(WaitFor("connected", seconds(20),
                      [&] { return LogText().find("event=mqtt_connected") != std::string::npos; }));

  const json v2_entry = testing::DesiredModel(v2, server_.Url("/v2.efb"));
  json unsigned_doc = json::parse(testing::DesiredStateDoc(*fleet_.deploy, 5, {v2_entry}));
  unsigned_doc["signatures"] = json::array();
  json wrong_types = json::parse(testing::DesiredStateDoc(*fleet_.deploy, 6, {v2_entry}));
  wrong_types["signed"]["serial"] = "six";
  struct Case {
    std::string name;
    std::string topic;
    std::string payload;
    std::string logged;  // what the agent's log must say about it
  };
  const std::vector<Case> cases = {
      {"not JSON", kDeviceDesired, "{\"signed\": [unterminated", "result=refused"},
      {"huge", kDeviceDesired, std::string(1 << 20, 'x'), "event=mqtt_message_rejected"},
      {"wrong types", kGroupTopic, wrong_types.dump(), "result=refused"},
      {"unsigned", kDeviceDesired, unsigned_doc.dump(), "result=refused"},
      {"signed by a stranger", kGroupTopic,
       testing::DesiredStateDoc(*fleet_.stranger, 7, {v2_entry}, std::chrono::hours(1),
                                {{"group", "lab"}}),
       "result=refused"},
      {"JSON array", kDeviceDesired, "[1,2,3]", "result=refused"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::size_t before = LogText().size();
    auto r = Publish(c.topic, c.payload, /*retain=*/true);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(WaitFor(c.name + " logged", seconds(15), [&] {
      return LogText().substr(before).find(c.logged) != std::string::npos;
    }));
    EXPECT_EQ(Serve(10), 10) << "the agent stopped serving after " << c.name;
  }
  EXPECT_TRUE(agent_->Running());
  EXPECT_EQ(ServedVersion(), "1.0.0");
  json status = Status();
  EXPECT_EQ(MaxDeploymentId(status), 1u)
      << "a hostile payload started a deployment: " << status.dump(1);
  // The agent still acts on a good document after all that.
  auto r = Publish(kDeviceDesired, testing::DesiredStateDoc(*fleet_.deploy, 8, {v2_entry}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json d = WaitTerminal("1.1.0", 1, seconds(120), true);
  EXPECT_EQ(d.value("state", ""), "committed") << d.dump(1);
}

}  // namespace
}  // namespace edgefleet
