// The collector's end-to-end test fixture, shared by collector_test.cpp and dashboard_test.cpp:
// a real mosquitto broker (tests/support), the real `edgefleet collect` process, payloads from the
// real mosquitto_pub, answers over real HTTP; builders for the agents' messages.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "telemetry/latency_histogram.hpp"
#include "telemetry/payloads.hpp"
#include "tests/deploy/collector_engines.hpp"
#include "tests/support/background_process.hpp"
#include "tests/support/mosquitto_broker.hpp"
#include "tests/support/postgres_server.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::collector_testing {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BackgroundProcess;
using testing::ProcessResult;
using testing::RunProcess;

inline const fs::path kAclFile = fs::path(EDGEFLEET_SOURCE_DIR) / "deploy" / "mosquitto" / "acl";
inline const fs::path kProductionConf =
    fs::path(EDGEFLEET_SOURCE_DIR) / "deploy" / "mosquitto" / "mosquitto.conf";
inline constexpr const char* kFleet = "demo";

inline std::int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string Topic(const std::string& device, const std::string& leaf) {
  return telemetry::DeviceTopic(kFleet, device, leaf);
}

inline telemetry::StatusMessage Status(const std::string& device, const std::string& version,
                                       std::int64_t ts, std::uint64_t connection = 1) {
  telemetry::StatusMessage m;
  m.id = telemetry::NewMessageId();
  m.device = device;
  m.fleet = kFleet;
  m.ts = ts;
  m.online = true;
  m.agent_version = "0.1.0";
  m.backends = {{"opencv", "4.6.0", {"onnx"}, {"cpu"}}};
  m.models = {{"digits", telemetry::SlotInfo{"B", version, std::string(64, 'b')}, std::nullopt}};
  m.connection = connection;
  return m;
}

// The agent's last will: offline, connection 0, composed when it connected (an old ts).
inline telemetry::StatusMessage LastWill(const std::string& device, std::int64_t ts) {
  telemetry::StatusMessage m = Status(device, "", ts, 0);
  m.online = false;
  m.backends.clear();
  m.models.clear();
  return m;
}

inline telemetry::TelemetryWindow Window(const std::string& device, const std::string& version,
                                         std::int64_t ts, const std::vector<double>& latencies_ms,
                                         std::uint64_t errors, std::uint64_t labeled,
                                         std::uint64_t correct) {
  telemetry::TelemetryWindow w;
  w.id = telemetry::NewMessageId();
  w.device = device;
  w.ts = ts;
  w.start_ts = ts - 10000;
  w.window_s = 10;
  w.model = "digits";
  w.version = version;
  w.slot = "B";
  w.role = "active";
  telemetry::LatencyHistogram h;
  for (double ms : latencies_ms) h.Record(ms);
  w.latency = h.Snapshot();
  w.count = latencies_ms.size() + errors;
  w.errors = errors;
  w.throughput_rps = static_cast<double>(w.count) / 10.0;
  w.labeled = labeled;
  w.correct = correct;
  w.predictions = latencies_ms.size();
  w.confidence_mean = 0.8;
  w.confidence_std = 0.1;
  w.health = {80 << 20, 12.5, 55.0, 1 << 30};
  return w;
}

inline telemetry::EventMessage Event(const std::string& device, const std::string& event,
                                     std::int64_t ts) {
  telemetry::EventMessage e;
  e.id = telemetry::NewMessageId();
  e.device = device;
  e.ts = ts;
  e.event = event;
  e.deployment = 7;
  e.model = "digits";
  e.version = "1.2.0";
  e.serial = 3;
  e.target = "group/lab";
  return e;
}

// Who publishes or subscribes: no TLS, or TLS with a CA and optionally a client certificate.
struct Identity {
  fs::path ca;
  fs::path cert;
  fs::path key;
};

class CollectorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    collector_.reset();
    broker_.reset();
  }

  // The broker queues as many QoS 1 messages for a slow subscriber as the production config
  // does (mosquitto's default of 1000 drops the rest when the collector falls behind a burst).
  // `extra`: more mosquitto.conf lines (a later line wins over the defaults).
  void StartBroker(bool tls, const std::string& extra = "") {
    testing::BrokerOptions options;
    options.extra_config = "max_queued_messages 100000\n" + extra;
    if (tls) {
      pki_ = testing::MakeTestPki(dir_ / "pki", {"collector", "box-a", "box-b", "operator"});
      options.tls = &pki_;
      options.acl_file = kAclFile;
    }
    fs::create_directories(dir_ / "broker");
    broker_ = std::make_unique<testing::MosquittoBroker>(dir_ / "broker", options);
    ASSERT_TRUE(broker_->running()) << broker_->Log();
  }

  Identity As(const std::string& cn) const {
    return {pki_.ca_cert, pki_.ClientCert(cn), pki_.ClientKey(cn)};
  }

  // The database collector `name` writes (its --db): <name>.db in the test's directory, or a
  // database of its own on a PostgreSQL server (CollectorEngineTest).
  virtual std::string Db(const std::string& name) { return (dir_ / (name + ".db")).string(); }

  std::vector<std::string> CollectArgs(const std::string& name, const Identity& id,
                                       const std::string& fleet = kFleet) {
    const std::string db = Db(name);
    std::vector<std::string> argv = {
        EDGEFLEET_CLI, "collect",     "--broker",    "127.0.0.1:" + std::to_string(broker_->port()),
        "--fleet",     fleet,         "--db",        db,
        "--http",      "127.0.0.1:0", "--port-file", (dir_ / (name + ".port")).string(),
        "--client-id", name};
    if (db.rfind("postgresql:", 0) == 0) {  // a database server needs a local spool
      for (const std::string& a : {std::string("--spool"), (dir_ / (name + ".spool")).string()}) {
        argv.push_back(a);
      }
    }
    argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
    if (!id.ca.empty()) {
      for (const std::string& a : {std::string("--ca-file"), id.ca.string()}) argv.push_back(a);
    }
    if (!id.cert.empty()) {
      for (const std::string& a : {std::string("--cert-file"), id.cert.string(),
                                   std::string("--key-file"), id.key.string()}) {
        argv.push_back(a);
      }
    }
    return argv;
  }

  // Starts `edgefleet collect` as `name` (database <name>.db, log <name>.log) and waits for its
  // port file; returns the HTTP port (0 on failure, after ADD_FAILURE).
  int StartCollector(std::unique_ptr<BackgroundProcess>& process, const std::string& name,
                     const Identity& id = {}) {
    const fs::path port_file = dir_ / (name + ".port");
    process = std::make_unique<BackgroundProcess>(CollectArgs(name, id), dir_ / (name + ".log"));
    int port = 0;
    WaitFor(
        name + " port file", seconds(20),
        [&] {
          std::error_code ec;
          if (!fs::exists(port_file, ec)) return false;
          port = std::stoi(testing::ReadFile(port_file));
          return port > 0;
        },
        name);
    return port;
  }

  void StartCollector(const Identity& id = {}) {
    port_ = StartCollector(collector_, "collector", id);
    ASSERT_GT(port_, 0);
    WaitFor("collector connected", seconds(20),
            [&] { return Log().find("event=broker_connected") != std::string::npos; });
  }

  // SIGTERM, exit 0 within 20 s, and nothing in its log from a sanitizer (under ASan+UBSan the
  // collector's own errors only show up here).
  void StopCollectorCleanly() {
    ASSERT_TRUE(collector_);
    collector_->Signal(SIGTERM);
    auto code = collector_->Wait(seconds(20));
    ASSERT_TRUE(code.has_value()) << "collect did not exit after SIGTERM\n" << Log();
    EXPECT_EQ(*code, 0) << Log();
    const std::string log = Log();
    for (const char* bad : {"Sanitizer", "runtime error:"}) {
      EXPECT_EQ(log.find(bad), std::string::npos) << log;
    }
    EXPECT_NE(log.find("event=collector_stopped"), std::string::npos) << log;
  }

  std::string Log(const std::string& name = "collector") const {
    std::error_code ec;
    if (!fs::exists(dir_ / (name + ".log"), ec)) return "";
    return testing::ReadFile(dir_ / (name + ".log"));
  }

  // Bounded poll; on timeout fails loudly with the collector's log.
  bool WaitFor(const std::string& what, milliseconds timeout, const std::function<bool()>& pred,
               const std::string& log = "collector") {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(milliseconds(50));
    }
    if (pred()) return true;
    ADD_FAILURE() << "timed out after " << timeout.count() << " ms waiting for: " << what << "\n"
                  << log << " log:\n"
                  << Log(log);
    return false;
  }

  std::vector<std::string> PubArgs(const Identity& id) const {
    std::vector<std::string> argv = {"mosquitto_pub",
                                     "-h",
                                     "127.0.0.1",
                                     "-p",
                                     std::to_string(broker_->port()),
                                     "-q",
                                     "1",
                                     "-i",
                                     "pub-" + std::to_string(++publishes_)};
    auto add = [&](const char* flag, const fs::path& file) {
      if (file.empty()) return;
      argv.push_back(flag);
      argv.push_back(file.string());
    };
    add("--cafile", id.ca);
    add("--cert", id.cert);
    add("--key", id.key);
    return argv;
  }

  // mosquitto_pub of one message (the payload on stdin, so any bytes and any size go).
  ProcessResult Publish(const std::string& topic, const std::string& payload, bool retain = false,
                        const Identity& id = {}) {
    std::vector<std::string> argv = PubArgs(id);
    for (const std::string& a : {std::string("-t"), topic, std::string("-s")}) argv.push_back(a);
    if (retain) argv.push_back("-r");
    return RunProcess(argv, seconds(20), payload);
  }
  void MustPublish(const std::string& topic, const std::string& payload, bool retain = false) {
    ProcessResult r = Publish(topic, payload, retain);
    ASSERT_EQ(r.exit_code, 0) << "mosquitto_pub " << topic << ": " << r.err;
  }

  // mosquitto_pub -l: one message per line, one connection.
  void PublishLines(const std::string& topic, const std::vector<std::string>& payloads) {
    std::string text;
    for (const auto& p : payloads) text += p + "\n";
    std::vector<std::string> argv = PubArgs({});
    for (const std::string& a : {std::string("-t"), topic, std::string("-l")}) argv.push_back(a);
    ProcessResult r = RunProcess(argv, seconds(60), text);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  httplib::Result Get(const std::string& path, int port = 0) {
    httplib::Client client("127.0.0.1", port ? port : port_);
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(20, 0);
    return client.Get(path);
  }
  // The JSON answer of a 200, else null.
  json GetJson(const std::string& path, int port = 0) {
    auto r = Get(path, port);
    if (!r || r->status != 200) return json();
    json doc = json::parse(r->body, nullptr, false);
    return doc.is_discarded() ? json() : doc;
  }
  // GET /metrics (`query`: "?per_device=1" for the per-device series).
  std::string Metrics(const std::string& query = "") {
    auto r = Get("/metrics" + query);
    return r && r->status == 200 ? r->body : "";
  }
  json Counters() {
    json s = GetJson("/api/summary");
    return s.is_object() ? s["collector"] : json();
  }
  std::uint64_t Counter(const std::string& name, const std::string& kind = "") {
    json c = Counters();
    if (!c.is_object()) return 0;
    const json& v = kind.empty() ? c[name] : c[name][kind];
    return v.is_number_unsigned() ? v.get<std::uint64_t>() : 0;
  }
  json Device(const std::string& device) {
    json doc = GetJson("/api/devices");
    if (!doc.is_object()) return json();
    for (const auto& d : doc["devices"]) {
      if (d["device"] == device) return d;
    }
    return json();
  }

  ProcessResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), EDGEFLEET_CLI);
    return RunProcess(args, seconds(30));
  }

  testing::TempDir dir_;
  std::vector<std::string> extra_args_;  // appended to every `edgefleet collect` command line
  testing::TestPki pki_;
  std::unique_ptr<testing::MosquittoBroker> broker_;
  std::unique_ptr<BackgroundProcess> collector_;
  int port_ = 0;
  mutable int publishes_ = 0;
};

// CollectorTest on each engine (instantiated once, in collector_test.cpp): over PostgreSQL, a
// real server in the test's directory, a database per collector, and the spool it requires.
class CollectorEngineTest : public CollectorTest, public ::testing::WithParamInterface<Engine> {
 protected:
  void SetUp() override {
    if (GetParam() != Engine::kPostgres) return;
    pg_ = std::make_unique<testing::PostgresServer>(dir_ / "pg");
    ASSERT_TRUE(pg_->running()) << pg_->Log();
  }
  void TearDown() override {
    CollectorTest::TearDown();  // the collectors stop before their database does
    pg_.reset();
  }

  std::string Db(const std::string& name) override {
    if (!pg_) return CollectorTest::Db(name);
    auto it = databases_.find(name);
    if (it == databases_.end()) it = databases_.emplace(name, pg_->CreateDatabase(name)).first;
    return it->second;
  }

  std::unique_ptr<testing::PostgresServer> pg_;
  std::map<std::string, std::string> databases_;  // collector name -> its database's URL
};

// Every line of `text` that starts with `prefix`.
inline std::vector<std::string> LinesStartingWith(const std::string& text,
                                                  const std::string& prefix) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
    start = end + 1;
  }
  return out;
}

inline bool HasLine(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

}  // namespace edgefleet::collector_testing
