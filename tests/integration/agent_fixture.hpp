// The fixture of the agent end-to-end tests: a real `edgefleet-agent run` process with its own
// state directory and config, the fleet's keys, a loopback bundle server, and helpers that talk to
// the agent only through its local API, `status --json` and its log. Shared by the update tests
// (desired state from a file) and the MQTT tests (desired state and telemetry over a broker).
#pragma once

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "tests/integration/agent_harness.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::BackgroundProcess;
using testing::Bundle;
using testing::BundleServer;
using testing::ServeFaults;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

inline const fs::path kDigits = fs::path(EDGEFLEET_TEST_DATA_DIR) / "digits";

struct Png {
  std::string bytes;
  int label = 0;
};

inline const std::vector<Png>& Heldout() {
  static const std::vector<Png> images = [] {
    std::vector<std::pair<std::string, fs::path>> names;
    for (const auto& e : fs::directory_iterator(kDigits / "heldout_png")) {
      if (e.path().extension() == ".png") names.emplace_back(e.path().filename(), e.path());
    }
    std::sort(names.begin(), names.end());
    std::vector<Png> out;
    for (const auto& [name, path] : names) {
      out.push_back({testing::ReadFile(path), std::stoi(name.substr(name.find('_') + 1))});
    }
    return out;
  }();
  return images;
}

inline std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline bool ContainsAny(const std::string& text, const std::vector<std::string>& needles) {
  const std::string t = Lower(text);
  return std::any_of(needles.begin(), needles.end(),
                     [&](const std::string& n) { return t.find(Lower(n)) != std::string::npos; });
}

struct InferResult {
  int status = 0;  // HTTP status, 0 on transport error
  std::string version;
  std::string id;
  int top1 = -1;
  int label = -1;
};

class AgentE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::MakeFleet(tmp_.path(), fleet_);
    state_dir_ = tmp_ / "state";
    desired_ = tmp_ / "desired.json";
    log_ = tmp_ / "agent.log";
    config_path_ = tmp_ / "agent.json";
    WriteConfig({});
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- agent log tail (" << log_ << ")\n" << testing::Tail(log_, 60);
    }
    agent_.reset();
  }

  // `extra` adds or replaces top-level config sections (e.g. "mqtt", "telemetry").
  void WriteConfig(const json& download, const json& extra = json::object()) {
    json dl = {{"connect_timeout_s", 5}, {"low_speed_bytes_per_s", 5000}, {"low_speed_time_s", 30},
               {"max_attempts", 100},    {"backoff_initial_ms", 100},     {"backoff_max_ms", 400}};
    for (const auto& [k, v] : download.items()) dl[k] = v;
    json config = {{"device", "box-1"},
                   {"fleet", "demo"},
                   {"groups", {"lab"}},
                   {"state_dir", state_dir_.string()},
                   {"trust_root", fleet_.root_json.string()},
                   {"backends", {"opencv"}},
                   {"api", {{"host", "127.0.0.1"}, {"port", 0}}},
                   {"desired_state", {{"file", desired_.string()}, {"poll_ms", 200}}},
                   {"download", dl},
                   {"runtime", {{"threads", 1}, {"parallel_runs", 2}}},
                   {"watch", {{"max_extension_factor", 5}}}};
    for (const auto& [k, v] : extra.items()) {
      if (v.is_null())
        config.erase(k);
      else
        config[k] = v;
    }
    testing::WriteFile(config_path_, config.dump(2));
  }

  void StartAgent() {
    fs::remove(state_dir_ / "api.port");
    agent_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{EDGEFLEET_AGENT, "run", "--config", config_path_.string()}, log_);
    port_ = 0;
    ASSERT_TRUE(WaitFor("api.port written and API live", seconds(30), [&] {
      if (!agent_->Running()) return false;
      std::error_code ec;
      if (!fs::exists(state_dir_ / "api.port", ec)) return false;
      std::string text = testing::ReadFile(state_dir_ / "api.port");
      if (text.empty()) return false;
      port_ = std::stoi(text);
      httplib::Client c("127.0.0.1", port_);
      auto r = c.Get("/v2/health/live");
      return r && r->status == 200;
    }));
  }

  void StopAgent() {
    agent_->Signal(SIGTERM);
    auto code = agent_->Wait(seconds(20));
    EXPECT_EQ(code, std::optional<int>(0)) << "agent did not stop cleanly on SIGTERM";
    agent_.reset();
  }

  json Status() {
    auto r = testing::RunProcess(
        {EDGEFLEET_AGENT, "status", "--config", config_path_.string(), "--json"}, seconds(30));
    if (r.exit_code != 0) return json{{"error", r.err}};
    json doc = json::parse(r.out, nullptr, false);
    return doc.is_discarded() ? json{{"error", "unparsable: " + r.out}} : doc;
  }

  std::string LogText() { return testing::ReadFile(log_); }

  // `edgefleet-agent install` of a bundle file with this test's config (offline, before or
  // without `run`): the agent's own load, checks and golden parity.
  testing::ProcessResult Install(const fs::path& bundle, seconds timeout = seconds(120)) {
    return testing::RunProcess(
        {EDGEFLEET_AGENT, "install", "--config", config_path_.string(), bundle.string()}, timeout);
  }

  // The agent's `event=desired_model serial=1 model=<model>` line (what it decided about a desired
  // model: accepted, or refused with the reason), awaited up to 60 s; "" and a failure on timeout.
  std::string AwaitDesiredModelLine(const std::string& model) {
    std::string line;
    WaitFor("the desired_model line of " + model, seconds(60), [&] {
      const std::string log = LogText();
      const auto at = log.find("event=desired_model serial=1 model=" + model + " ");
      if (at == std::string::npos) return false;
      line = log.substr(at, log.find('\n', at) - at);
      return true;
    });
    return line;
  }

  // Bounded poll; on timeout fails loudly with the last status and the log tail.
  bool WaitFor(const std::string& what, milliseconds timeout, const std::function<bool()>& pred) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    if (pred()) return true;
    ADD_FAILURE() << "timed out after " << timeout.count() << " ms waiting for: " << what
                  << "\nlast status: " << Status().dump(1) << "\nlog tail:\n"
                  << testing::Tail(log_, 40);
    return false;
  }

  std::uint64_t Deploy(const std::vector<json>& models) {
    ++serial_;
    testing::WriteAtomically(desired_, testing::DesiredStateDoc(*fleet_.deploy, serial_, models));
    return serial_;
  }

  std::unique_ptr<httplib::Client> Api() {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_connection_timeout(5, 0);
    c->set_read_timeout(20, 0);
    return c;
  }

  InferResult Infer(std::size_t i) {
    const Png& png = Heldout()[i % Heldout().size()];
    InferResult out;
    out.label = png.label;
    out.id = "t" + std::to_string(++request_counter_);
    auto r =
        Api()->Post("/v2/models/digits/infer", {{"X-Request-Id", out.id}}, png.bytes, "image/png");
    if (!r) return out;
    out.status = r->status;
    json body = json::parse(r->body, nullptr, false);
    if (r->status != 200 || !body.is_object()) return out;
    out.version = body.value("model_version", "");
    if (body.contains("id")) out.id = body["id"];
    const json& data = body["outputs"][0]["data"];
    int best = 0;
    for (std::size_t k = 1; k < data.size(); ++k) {
      if (data[k].get<double>() > data[static_cast<std::size_t>(best)].get<double>()) {
        best = static_cast<int>(k);
      }
    }
    out.top1 = best;
    return out;
  }

  int Feedback(const std::string& id, int label) {
    auto r = Api()->Post("/v2/models/digits/feedback", json{{"id", id}, {"label", label}}.dump(),
                         "application/json");
    return r ? r->status : 0;
  }

  // n inferences, each followed by feedback: the true label, or a wrong one when `wrong`.
  // Returns the versions that answered.
  std::map<std::string, int> Traffic(int n, bool wrong) {
    std::map<std::string, int> versions;
    for (int k = 0; k < n; ++k) {
      InferResult r = Infer(static_cast<std::size_t>(request_counter_));
      versions[r.status == 200 ? r.version : "HTTP " + std::to_string(r.status)]++;
      if (r.status == 200) Feedback(r.id, wrong ? (r.top1 + 1) % 10 : r.label);
    }
    return versions;
  }

  std::string ServedVersion() {
    InferResult r = Infer(0);
    return r.status == 200 ? r.version : "";
  }

  static std::uint64_t MaxDeploymentId(const json& status) {
    std::uint64_t id = 0;
    if (status.contains("deployments")) {
      for (const auto& d : status["deployments"])
        id = std::max(id, d.value("id", std::uint64_t{0}));
    }
    return id;
  }

  // The newest deployment of `version` with an id above `after` (null if none).
  static json FindDeployment(const json& status, const std::string& version, std::uint64_t after) {
    json best;
    if (!status.contains("deployments")) return best;
    for (const auto& d : status["deployments"]) {
      if (d.value("version", "") != version || d.value("id", std::uint64_t{0}) <= after) continue;
      if (best.is_null() || d["id"].get<std::uint64_t>() > best["id"].get<std::uint64_t>())
        best = d;
    }
    return best;
  }

  static bool Terminal(const json& d) {
    if (d.is_null()) return false;
    const std::string s = d.value("state", "");
    return s == "committed" || s == "failed" || s == "rolled_back";
  }

  static json ActiveOf(const json& status) {
    if (!status.contains("models")) return json();
    for (const auto& m : status["models"]) {
      if (m.value("name", "") == "digits") return m["active"];
    }
    return json();
  }

  // Waits for the deployment of `version` (id above `after`) to reach a terminal state; while
  // waiting, sends correct traffic when `drive` so a watch window can close.
  json WaitTerminal(const std::string& version, std::uint64_t after, seconds timeout, bool drive) {
    json d;
    WaitFor("deployment of " + version + " terminal", timeout, [&] {
      if (drive) Traffic(4, false);
      d = FindDeployment(Status(), version, after);
      return Terminal(d);
    });
    return d;
  }

  // v1 from the server, serving and committed.
  void InstallV1() {
    v1_ = testing::MakeBundle(fleet_, "v1", tmp_.path(),
                              [](json& b, const fs::path&) { b["watch"] = testing::ShortWatch(); });
    server_.Add("/v1.efb", v1_.bytes);
    Deploy({testing::DesiredModel(v1_, server_.Url("/v1.efb"))});
    json d = WaitTerminal("1.0.0", 0, seconds(60), true);
    ASSERT_EQ(d.value("state", ""), "committed") << d.dump(1);
    ASSERT_EQ(ServedVersion(), "1.0.0");
    v1_active_ = ActiveOf(Status());
    ASSERT_FALSE(v1_active_.is_null());
    EXPECT_EQ(v1_active_.value("version", ""), "1.0.0");
    EXPECT_EQ(v1_active_.value("sha256", ""), v1_.sha256);
  }

  // The active model is still v1, byte for byte, and serving.
  void ExpectV1Untouched(const std::string& context) {
    SCOPED_TRACE(context);
    EXPECT_EQ(ActiveOf(Status()), v1_active_);
    auto versions = Traffic(3, false);
    EXPECT_EQ(versions, (std::map<std::string, int>{{"1.0.0", 3}}));
  }

  testing::TempDir tmp_;
  testing::Fleet fleet_;
  BundleServer server_;
  std::unique_ptr<BackgroundProcess> agent_;
  fs::path state_dir_, desired_, log_, config_path_;
  int port_ = 0;
  std::uint64_t serial_ = 0;
  int request_counter_ = 0;
  Bundle v1_;
  json v1_active_;
};

}  // namespace edgefleet
