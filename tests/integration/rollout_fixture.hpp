// The fixture of the `edgefleet rollout` end-to-end tests: a fleet's keys, a real mosquitto
// broker, bundles served over loopback HTTP, and real `edgefleet-agent` processes ("boxes") whose
// state the tests read back (`edgefleet-agent status`, the broker's retained messages).
#pragma once

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "tests/integration/agent_harness.hpp"
#include "tests/support/background_process.hpp"
#include "tests/support/mosquitto_broker.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

namespace edgefleet::rollout_testing {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::WaitFor;

struct Box {
  std::string name;
  json backends = {"opencv"};  // the config's `backends`
  fs::path config, state, log;
  std::unique_ptr<testing::BackgroundProcess> process;
};

inline bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// A log that a child process may not have created yet.
inline std::string ReadIfThere(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec) ? testing::ReadFile(path) : std::string();
}

class RolloutE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::MakeFleet(tmp_.path(), fleet_);
    deploy_key_ = tmp_ / "deploy.key";
    ASSERT_TRUE(manifests::SavePrivateKey(*fleet_.deploy, deploy_key_));
    broker_ = std::make_unique<testing::MosquittoBroker>(tmp_ / "broker");
    ASSERT_TRUE(broker_->running());
    const fs::path work = tmp_ / "bundles";
    fs::create_directories(work);
    auto short_watch = [](json& b, const fs::path&) {
      b["watch"] = testing::ShortWatch();
#ifdef EDGEFLEET_FLEET_SCALE
      // 50 agents on 2 cores: a digits forward (~0.01 ms) measures 4-15 ms of scheduling noise,
      // so candidate/active latency ratios say nothing (a CI run saw 3.26 > 3.0 on a restore of
      // the same model's previous version). This test is about waves, halts and restores; the
      // latency gate is tested where it means something (agent_e2e, runtime.Parity*).
      b["parity"]["max_latency_factor"] = 1000.0;
#endif
    };
    v1_ = testing::MakeBundle(fleet_, "v1", work, short_watch);
    v2_ = testing::MakeBundle(fleet_, "v2", work, short_watch);
    broken_ = testing::MakeBundle(fleet_, "broken", work, short_watch);
    for (const testing::Bundle* b : {&v1_, &v2_, &broken_}) {
      server_.Add("/digits-" + b->version + ".efb", b->bytes);
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const Box& b : boxes_) {
        std::cerr << "---- " << b.name << " log tail\n" << testing::Tail(b.log, 15);
      }
    }
    for (Box& b : boxes_) b.process.reset();
  }

  std::string Url(const testing::Bundle& b) { return server_.Url("/digits-" + b.version + ".efb"); }

  void WriteBoxConfig(const Box& b, const json& download_extra = json::object()) {
    json download = {{"connect_timeout_s", 5},
                     {"max_attempts", 20},
                     {"backoff_initial_ms", 100},
                     {"backoff_max_ms", 400}};
    for (const auto& [k, v] : download_extra.items()) download[k] = v;
    json config = {{"device", b.name},
                   {"fleet", "demo"},
                   {"groups", {"lab"}},
                   {"state_dir", b.state.string()},
                   {"trust_root", fleet_.root_json.string()},
                   {"backends", b.backends},
                   {"api", {{"host", "127.0.0.1"}, {"port", 0}}},
                   {"download", download},
                   {"runtime", {{"threads", 1}, {"parallel_runs", 1}}},
                   {"watch", {{"max_extension_factor", 1}}},
                   {"mqtt",
                    {{"host", "127.0.0.1"},
                     {"port", broker_->port()},
                     {"keepalive_s", 5},
                     {"reconnect_min_ms", 100},
                     {"reconnect_max_ms", 500}}},
                   {"telemetry", {{"window_s", 2}}}};
    testing::WriteFile(b.config, config.dump(2));
  }

  // Boxes box-1..box-n, started and up; `backends(i)`, when given, is box-i's `backends`.
  void AddBoxes(int n, const std::function<json(int)>& backends = {}) {
    for (int i = 1; i <= n; ++i) {
      Box b;
      char name[16];
      std::snprintf(name, sizeof name, n >= 10 ? "box-%02d" : "box-%d", i);
      b.name = name;
      const fs::path dir = tmp_ / b.name;
      fs::create_directories(dir);
      b.config = dir / "agent.json";
      b.state = dir / "state";
      b.log = dir / "agent.log";
      if (backends) b.backends = backends(i);
      WriteBoxConfig(b);
      boxes_.push_back(std::move(b));
    }
    for (Box& b : boxes_) Start(b);
    for (Box& b : boxes_) ASSERT_TRUE(WaitUp(b)) << b.name;
  }

  void Start(Box& b) {
    fs::remove(b.state / "api.port");
    b.process = std::make_unique<testing::BackgroundProcess>(
        std::vector<std::string>{EDGEFLEET_AGENT, "run", "--config", b.config.string()}, b.log);
  }

  // Up: the API answers (its port file is written once it listens) and the broker has the
  // device's retained birth status (the rollout finds devices by it).
  bool WaitUp(Box& b) {
    return WaitFor(b.name + " up", seconds(60), [&] {
      std::error_code ec;
      return b.process->Running() && fs::exists(b.state / "api.port", ec) &&
             Retained("edgefleet/v1/demo/device/" + b.name + "/status").value("online", false);
    });
  }

  std::vector<std::string> RolloutArgs(const testing::Bundle& b, const std::string& waves,
                                       const std::string& id) {
    return {EDGEFLEET_CLI,
            "rollout",
            "start",
            "--model",
            "digits",
            "--bundle",
            Url(b),
            "--group",
            "lab",
            "--waves",
            waves,
            "--fleet",
            "demo",
            "--broker",
            "127.0.0.1:" + std::to_string(broker_->port()),
            "--deploy-key",
            deploy_key_.string(),
            "--db",
            Db().string(),
            "--id",
            id,
            "--trust",
            fleet_.root_json.string(),
            "--wave-timeout",
            "3m",
            "--discover",
            "1s"};
  }

  testing::ProcessResult Rollout(const testing::Bundle& b, const std::string& waves,
                                 const std::string& id, seconds limit = seconds(240)) {
    auto r = testing::RunProcess(RolloutArgs(b, waves, id), limit);
    EXPECT_FALSE(r.timed_out) << id << ": rollout did not finish within " << limit.count() << " s";
    return r;
  }

  fs::path Db() const { return tmp_ / "rollouts.db"; }

  // Three boxes on v1, then `rollout start` of v2 in waves of one box in the background, up to
  // the canary's release; the driver's output goes to `log`.
  [[maybe_unused]] std::unique_ptr<testing::BackgroundProcess> StartV2UpToTheCanary(
      const fs::path& log) {
    AddBoxes(3);
    auto first = Rollout(v1_, "100%", "v1");
    EXPECT_EQ(first.exit_code, 0) << first.out << first.err;
    auto driver =
        std::make_unique<testing::BackgroundProcess>(RolloutArgs(v2_, "10%,50%,100%", "v2"), log);
    EXPECT_TRUE(WaitFor("the canary released", seconds(60), [&] {
      return Contains(ReadIfThere(log), "device=box-1 wave=1 event=released");
    }));
    return driver;
  }

  json RolloutStatus(const std::string& id) {
    auto r = testing::RunProcess(
        {EDGEFLEET_CLI, "rollout", "status", id, "--db", Db().string(), "--json"}, seconds(30));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json doc = json::parse(r.out, nullptr, false);
    return doc.is_discarded() ? json::object() : doc;
  }

  static json Device(const json& status, const std::string& name) {
    for (const json& d : status.value("device_list", json::array())) {
      if (d.value("device", "") == name) return d;
    }
    ADD_FAILURE() << "device " << name << " not in the rollout's list";
    return json::object();
  }

  json AgentStatus(const Box& b) {
    auto r = testing::RunProcess(
        {EDGEFLEET_AGENT, "status", "--config", b.config.string(), "--json"}, seconds(30));
    json doc = json::parse(r.out, nullptr, false);
    return doc.is_discarded() ? json::object() : doc;
  }

  std::string ActiveVersion(const Box& b) {
    for (const json& m : AgentStatus(b).value("models", json::array())) {
      if (m.value("name", "") == "digits" && m.contains("active") && m["active"].is_object()) {
        return m["active"].value("version", "");
      }
    }
    return "";
  }

  // Versions of every deployment the agent's journal recorded.
  std::vector<std::string> DeployedVersions(const Box& b) {
    std::vector<std::string> out;
    for (const json& d : AgentStatus(b).value("deployments", json::array())) {
      out.push_back(d.value("version", ""));
    }
    return out;
  }

  json Retained(const std::string& topic) {
    auto r = testing::RunProcess(
        {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()), "-t", topic,
         "-C", "1", "-W", "2", "--retained-only"},
        seconds(10));
    json doc = json::parse(r.out, nullptr, false);
    return doc.is_discarded() ? json::object() : doc;
  }

  testing::TempDir tmp_;
  testing::Fleet fleet_;
  fs::path deploy_key_;
  std::unique_ptr<testing::MosquittoBroker> broker_;
  testing::BundleServer server_;
  testing::Bundle v1_, v2_, broken_;
  std::vector<Box> boxes_;
};

}  // namespace edgefleet::rollout_testing
