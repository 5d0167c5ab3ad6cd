// The real `edgefleet-agent run` process end to end (agent/SPEC.md; issue 4 acceptance 1-4):
// bundles made by the real `edgefleet` CLI, served by a loopback HTTP server that answers Range
// itself, counts bytes and injects faults; signed desired-state documents written to the file the
// agent polls; observation only through the agent's local API, `status --json` and its log.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cctype>
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
#include "tests/support/httplib_prime.hpp"
#include "tests/support/process.hpp"
#include "tests/support/tar_builder.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet {
namespace {

// Acceptance 1: install, watch-window rollback on injected errors, commit, parity refusal.
TEST_F(AgentE2E, InstallRollbackOnBadWatchCommitAndParityRefusal) {
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(InstallV1());
  auto short_watch = [](json& b, const fs::path&) { b["watch"] = testing::ShortWatch(); };
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), short_watch);
  Bundle v3 = testing::MakeBundle(fleet_, "broken", tmp_.path(), short_watch);
  server_.Add("/v2.efb", v2.bytes);
  server_.Add("/v3.efb", v3.bytes);

  // v2 with errors injected through the real API during its watch window: rolled back.
  std::uint64_t before = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(v2, server_.Url("/v2.efb"))});
  ASSERT_TRUE(WaitFor("v2 watching", seconds(60), [&] {
    json d = FindDeployment(Status(), "1.1.0", before);
    return !d.is_null() && (d["state"] == "watching" || Terminal(d));
  }));
  json d;
  ASSERT_TRUE(WaitFor("v2 rolled back on online accuracy", seconds(40), [&] {
    Traffic(5, /*wrong=*/true);
    d = FindDeployment(Status(), "1.1.0", before);
    return Terminal(d);
  }));
  EXPECT_EQ(d["state"], "rolled_back") << d.dump(1);
  std::cout << "watch rollback: " << d.value("reason", "") << "\n";
  EXPECT_TRUE(ContainsAny(d.value("reason", ""), {"accuracy"})) << d.dump(1);
  EXPECT_EQ(ServedVersion(), "1.0.0");
  EXPECT_EQ(ActiveOf(Status()).value("version", ""), "1.0.0");

  // v2 again, new serial, good traffic: committed.
  before = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(v2, server_.Url("/v2.efb"))});
  d = WaitTerminal("1.1.0", before, seconds(60), true);
  ASSERT_EQ(d.value("state", ""), "committed") << d.dump(1);
  EXPECT_EQ(ServedVersion(), "1.1.0");
  json active = ActiveOf(Status());
  EXPECT_EQ(active.value("version", ""), "1.1.0");
  EXPECT_EQ(active.value("sha256", ""), v2.sha256);

  // The broken v3 is refused at parity; v2 answers every request meanwhile.
  before = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(v3, server_.Url("/v3.efb"))});
  std::map<std::string, int> during;
  ASSERT_TRUE(WaitFor("v3 refused", seconds(60), [&] {
    for (const auto& [v, n] : Traffic(3, false)) during[v] += n;
    d = FindDeployment(Status(), "1.2.0", before);
    return Terminal(d);
  }));
  EXPECT_EQ(d["state"], "failed") << d.dump(1);
  EXPECT_TRUE(ContainsAny(d.value("reason", ""), {"accuracy"})) << d.dump(1);
  std::cout << "parity refusal: " << d.value("reason", "")
            << "; served meanwhile: " << json(during).dump() << "\n";
  EXPECT_EQ(during.size(), 1u) << json(during).dump();
  EXPECT_GT(during["1.1.0"], 0);
  EXPECT_EQ(ServedVersion(), "1.1.0");
  EXPECT_EQ(ActiveOf(Status()).value("version", ""), "1.1.0");
  StopAgent();
}

// Issue 14, acceptance 3: a side client sending batch-0 and malformed requests every 20 ms
// through a watch window is refused with 400s that neither count against the model nor fill
// the log: the good 1.1.0 is committed, not rolled back.
TEST_F(AgentE2E, ClientFaultsDuringAWatchWindowDoNotRollBackAGoodModel) {
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(InstallV1());
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), [](json& b, const fs::path&) {
    b["watch"] = testing::ShortWatch();
  });
  server_.Add("/v2.efb", v2.bytes);
  const std::size_t log_before = LogText().size();

  std::atomic<bool> stop{false};
  std::map<int, int> side_statuses;
  testing::PrimeHttplibClient();
  std::thread side([&] {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(5, 0);
    const std::vector<std::string> bodies = {
        R"({"inputs":[{"name":"input","shape":[0,1,8,8],"datatype":"FP32","data":[]}]})",
        R"({"inputs":[{"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":[1,2]}]})",
        R"({"inputs":[)",
        R"({"inputs":[{"name":"nope","shape":[1],"datatype":"FP32","data":[1]}]})"};
    for (std::size_t k = 0; !stop.load(); ++k) {
      auto res =
          client.Post("/v2/models/digits/infer", bodies[k % bodies.size()], "application/json");
      side_statuses[res ? res->status : -1]++;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const std::uint64_t before = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(v2, server_.Url("/v2.efb"))});
  const json d = WaitTerminal("1.1.0", before, seconds(90), true);
  stop = true;
  side.join();
  EXPECT_EQ(d.value("state", ""), "committed") << d.dump(1);
  EXPECT_EQ(ServedVersion(), "1.1.0");
  // Every side request was a 400, and there were enough of them to matter.
  EXPECT_EQ(side_statuses.size(), 1u) << json(side_statuses).dump();
  EXPECT_GT(side_statuses[400], 50) << json(side_statuses).dump();
  // Client mistakes are not logged one line each (they are at debug level).
  const std::string log = LogText().substr(log_before);
  std::size_t lines = 0;
  for (std::size_t at = log.find("event=infer_failed"); at != std::string::npos;
       at = log.find("event=infer_failed", at + 1)) {
    ++lines;
  }
  EXPECT_LE(lines, 5u) << "infer_failed lines for " << side_statuses[400] << " bad requests";
  StopAgent();
}

// Acceptance 3: a download cut at 50 % resumes after a SIGKILL and restart.
// Backends issue: every variant the box can run is loaded and proven on the golden data, the
// fastest that passes is served, and a restart serves the same one. The bundle's first variant
// is the deliberately broken model (fails parity), so the choice is the second, and a restart
// that simply took the first runnable variant again would serve the broken one.
TEST_F(AgentE2E, MeasuresEveryVariantServesOneThatPassesAndKeepsItAcrossARestart) {
  StartAgent();
  Bundle two = testing::MakeBundle(fleet_, "v1", tmp_.path(), [](json& b, const fs::path& dir) {
    fs::copy_file(kDigits / "broken" / "model" / "digits_op10.onnx", dir / "model" / "broken.onnx");
    json broken = b["variants"][0];
    broken["id"] = "onnx-broken";
    broken["file"] = "model/broken.onnx";
    b["variants"] = json::array({broken, b["variants"][0]});
    b["watch"] = testing::ShortWatch();
  });
  server_.Add("/two.efb", two.bytes);
  Deploy({testing::DesiredModel(two, server_.Url("/two.efb"))});
  json d = WaitTerminal("1.0.0", 0, seconds(90), true);
  ASSERT_EQ(d.value("state", ""), "committed") << d.dump(1);
  bool loaded_step = false;
  for (const auto& t : d["transitions"]) {
    if (t.value("to", "") == "parity") {
      loaded_step = true;
      // Every variant with its latency or why it failed, e.g. "variant onnx-op10 on opencv,
      // fastest of 2 measured: onnx-broken on opencv failed: ...; onnx-op10 on opencv 0.210 ms".
      const std::string reason = t.value("reason", "");
      EXPECT_EQ(reason.rfind("variant onnx-op10 on opencv, fastest of 2 measured: ", 0), 0U)
          << reason;
      EXPECT_NE(reason.find("onnx-broken on opencv failed: "), std::string::npos) << reason;
      EXPECT_TRUE(std::regex_search(reason, std::regex("onnx-op10 on opencv [0-9]+\\.[0-9]{3} ms")))
          << reason;
    }
  }
  EXPECT_TRUE(loaded_step) << d.dump(1);
  const std::string log = LogText();
  EXPECT_NE(log.find("event=variant_measured id=" + std::to_string(d.value("id", 0)) +
                     " variant=onnx-broken backend=opencv pass=false"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("variant=onnx-op10 backend=opencv pass=true"), std::string::npos) << log;
  for (std::size_t i = 0; i < 5; ++i) {
    const InferResult r = Infer(i);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.top1, r.label);
  }

  StopAgent();
  StartAgent();
  EXPECT_NE(LogText().find("event=slot_loaded model=digits"), std::string::npos);
  EXPECT_NE(LogText().find("variant=onnx-op10 backend=opencv"), std::string::npos) << LogText();
  int correct = 0;
  for (std::size_t i = 0; i < 20; ++i) correct += Infer(i).top1 == Infer(i).label ? 1 : 0;
  EXPECT_GE(correct, 18) << "after the restart the broken variant is served";
}

TEST_F(AgentE2E, ResumesCutDownloadAfterKill) {
  WriteConfig({{"max_attempts", 1000}});
  Bundle big =
      testing::MakeBundle(fleet_, "v2", tmp_.path(),
                          [](json& b, const fs::path& dir) {
                            b["watch"] = testing::ShortWatch();
                            json padding = b["variants"][0];
                            padding["id"] = "padding";
                            padding["file"] = "model/padding.bin";
                            padding["format"] = "padding";  // not a model: not inspected
                            padding["opset"] = 10;
                            padding["operators"] = {"Conv"};
                            padding["backends"] = {{{"name", "tflite"}, {"version", ">=2.0.0"}}};
                            b["variants"].push_back(padding);
                            std::string bytes(8u << 20, '\0');
                            std::uint64_t x = 0x9E3779B97F4A7C15ull;
                            for (auto& c : bytes) {
                              x ^= x << 13;
                              x ^= x >> 7;
                              x ^= x << 17;
                              c = static_cast<char>(x);
                            }
                            testing::WriteFile(dir / "model/padding.bin", bytes);
                          },
                          {"--compression", "none"});
  const std::uint64_t size = big.bytes.size();
  ASSERT_GT(size, 8u << 20);
  server_.Add("/big.efb", big.bytes, ServeFaults{.cut_after = size / 2});
  StartAgent();
  Deploy({testing::DesiredModel(big, server_.Url("/big.efb"))});
  ASSERT_TRUE(WaitFor("cut at 50 % and the agent retrying against 503", seconds(60), [&] {
    return server_.BytesSent("/big.efb") >= size / 2 && server_.Unavailable("/big.efb") >= 2;
  }));
  agent_->KillGroup();
  agent_.reset();
  std::cout << "resume: after SIGKILL, downloads/:";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir_ / "downloads", ec)) {
    std::cout << " " << e.path().filename().string() << "=" << fs::file_size(e.path(), ec);
  }
  std::cout << "; requests before the kill (Range headers):";
  for (const auto& r : server_.RangeHeaders("/big.efb")) std::cout << " [" << r << "]";
  std::cout << "\n";
  const std::uint64_t before_restart = server_.BytesSent("/big.efb");
  EXPECT_EQ(before_restart, size / 2);
  server_.Heal("/big.efb");
  StartAgent();
  json d = WaitTerminal("1.1.0", 0, seconds(90), true);
  EXPECT_EQ(d.value("state", ""), "committed") << d.dump(1);
  EXPECT_EQ(ServedVersion(), "1.1.0");
  const std::uint64_t total = server_.BytesSent("/big.efb");
  const double ratio = static_cast<double>(total) / static_cast<double>(size);
  std::cout << "resume: bundle " << size << " bytes, sent before kill " << before_restart
            << ", sent in total " << total << " (" << ratio << " x), re-fetched "
            << (total - std::min(total, size)) << " bytes; ranges:";
  for (const auto& r : server_.RangeHeaders("/big.efb")) std::cout << " [" << r << "]";
  std::cout << "\n";
  EXPECT_LT(ratio, 1.05);
  StopAgent();
}

// Acceptance 4: hostile archives through the updater, each refused, v1 untouched.
TEST_F(AgentE2E, RefusesHostileArchives) {
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(InstallV1());
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), [](json& b, const fs::path&) {
    b["watch"] = testing::ShortWatch();
  });
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& f : v2.manifest["files"]) {
    files.emplace_back(f["path"], testing::ReadFile(kDigits / "v2" / f["path"].get<std::string>()));
  }
  manifests::SignedEnvelope good;
  good.signed_body = v2.manifest;
  ASSERT_TRUE(good.Sign(*fleet_.release));

  struct Case {
    std::string name;
    std::string bytes;
    std::vector<std::string> needles;
  };
  std::vector<Case> cases;
  {
    auto f = files;
    f[0].second[100] ^= 0x01;
    cases.push_back({"changed-byte", testing::BuildBundle(good, f), {"sha256", f[0].first}});
  }
  {
    auto f = files;
    f.emplace_back("model/extra.bin", "surprise");
    cases.push_back({"extra-file", testing::BuildBundle(good, f), {"extra"}});
  }
  {
    auto f = files;
    f.emplace_back("../x", "escape");
    cases.push_back({"dotdot", testing::BuildBundle(good, f), {"..", "unsafe"}});
  }
  {
    testing::TarBuilder tar;
    tar.File("manifest.json", good.ToJson().dump());
    for (const auto& [p, data] : files) tar.File(p, data);
    tar.Symlink("model/link", "/etc/passwd");
    cases.push_back({"symlink", tar.Bytes(), {"symlink", "link"}});
  }
  {
    auto f = files;
    f.pop_back();
    cases.push_back(
        {"missing-file", testing::BuildBundle(good, f), {"missing", files.back().first}});
  }
  {
    auto f = files;
    f.emplace_back("/etc/x", "escape");
    cases.push_back({"absolute", testing::BuildBundle(good, f), {"absolute", "/etc/x"}});
  }
  {
    testing::TarBuilder tar;
    tar.File("manifest.json", good.ToJson().dump());
    for (const auto& [p, data] : files) tar.File(p, data);
    tar.Hardlink("model/hard", files[0].first);
    cases.push_back({"hardlink", tar.Bytes(), {"hardlink"}});
  }
  {
    testing::TarBuilder tar;
    tar.File("manifest.json", good.ToJson().dump());
    for (const auto& [p, data] : files) tar.File(p, data);
    tar.File(files[0].first, files[0].second);
    cases.push_back({"duplicate", tar.Bytes(), {"duplicate"}});
  }
  {
    // The signed manifest declares the first file 10 bytes shorter than the entry really is.
    json body = v2.manifest;
    body["files"][0]["size"] = body["files"][0]["size"].get<std::uint64_t>() - 10;
    manifests::SignedEnvelope shorter;
    shorter.signed_body = body;
    ASSERT_TRUE(shorter.Sign(*fleet_.release));
    cases.push_back({"larger-than-declared", testing::BuildBundle(shorter, files), {"declares"}});
  }
  cases.push_back({"truncated", v2.bytes.substr(0, v2.bytes.size() / 2), {"truncat", "eof"}});
  {
    manifests::SignedEnvelope unsigned_env;
    unsigned_env.signed_body = v2.manifest;
    cases.push_back(
        {"unsigned", testing::BuildBundle(unsigned_env, files), {"signature", "signed"}});
  }
  {
    manifests::SignedEnvelope stranger;
    stranger.signed_body = v2.manifest;
    ASSERT_TRUE(stranger.Sign(*fleet_.stranger));
    cases.push_back({"unknown-key",
                     testing::BuildBundle(stranger, files),
                     {"signature", fleet_.stranger->KeyId().substr(0, 12)}});
  }

  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = "/hostile-" + c.name + ".efb";
    server_.Add(path, c.bytes);
    Bundle b = v2;
    b.bytes = c.bytes;
    b.sha256 = manifests::Sha256Hex(c.bytes);
    const std::uint64_t before = MaxDeploymentId(Status());
    Deploy({testing::DesiredModel(b, server_.Url(path))});
    json d = WaitTerminal("1.1.0", before, seconds(30), false);
    EXPECT_EQ(d.value("state", ""), "failed") << d.dump(1);
    EXPECT_TRUE(ContainsAny(d.value("reason", ""), c.needles))
        << "reason does not name the problem: " << d.dump(1);
    EXPECT_EQ(server_.BytesSent(path), c.bytes.size()) << "download itself should succeed";
    std::cout << "hostile " << c.name << ": " << d.value("state", "") << ": "
              << d.value("reason", "") << "\n";
    ExpectV1Untouched(c.name);
  }
  StopAgent();
}

// Acceptance 4: servers that send too much or too slowly.
TEST_F(AgentE2E, RefusesOverlongAndTricklingServers) {
  WriteConfig({{"low_speed_bytes_per_s", 50000}, {"low_speed_time_s", 2}, {"max_attempts", 1}});
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(InstallV1());
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), [](json& b, const fs::path&) {
    b["watch"] = testing::ShortWatch();
  });

  // 256 MiB past the declared size: an agent that kept reading would pull all of it, while one
  // that stops at the header leaves at most what the loopback socket buffers absorbed before the
  // server saw the connection close (a few MiB, depending on timing).
  server_.Add("/overlong.efb", v2.bytes, ServeFaults{.extra_bytes = 256u << 20});
  std::uint64_t before = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(v2, server_.Url("/overlong.efb"))});
  json d = WaitTerminal("1.1.0", before, seconds(30), false);
  EXPECT_EQ(d.value("state", ""), "failed") << d.dump(1);
  EXPECT_TRUE(ContainsAny(d.value("reason", ""), {"size", "declare", "bytes", "larger", "cap"}))
      << d.dump(1);
  EXPECT_LE(server_.BytesSent("/overlong.efb"), v2.bytes.size() + (16u << 20))
      << "the agent kept reading past the declared size";
  std::cout << "overlong: sent " << server_.BytesSent("/overlong.efb") << " of declared "
            << v2.bytes.size() << "; reason: " << d.value("reason", "") << "\n";
  ExpectV1Untouched("overlong");

  server_.Add("/trickle.efb", v2.bytes, ServeFaults{.bytes_per_s = 4000});
  before = MaxDeploymentId(Status());
  const auto start = Clock::now();
  Deploy({testing::DesiredModel(v2, server_.Url("/trickle.efb"))});
  d = WaitTerminal("1.1.0", before, seconds(30), false);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(d.value("state", ""), "failed") << d.dump(1);
  EXPECT_TRUE(ContainsAny(d.value("reason", ""), {"slow", "speed", "timeout", "timed out"}))
      << d.dump(1);
  EXPECT_LT(server_.BytesSent("/trickle.efb"), v2.bytes.size());
  std::cout << "trickle: refused after " << secs << " s, " << server_.BytesSent("/trickle.efb")
            << " bytes; reason: " << d.value("reason", "") << "\n";
  ExpectV1Untouched("trickle");
  StopAgent();
}

// Acceptance 4: desired-state documents that must not be acted on.
TEST_F(AgentE2E, RefusesExpiredForgedReplayedAndDowngradeDocuments) {
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(InstallV1());
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), [](json& b, const fs::path&) {
    b["watch"] = testing::ShortWatch();
  });
  Bundle old = testing::MakeBundle(fleet_, "v1", tmp_.path(), [](json& b, const fs::path&) {
    b["version"] = "0.9.0";
    b["watch"] = testing::ShortWatch();
  });
  server_.Add("/v2.efb", v2.bytes);
  server_.Add("/old.efb", old.bytes);
  const json v2_entry = testing::DesiredModel(v2, server_.Url("/v2.efb"));

  // Waits for the desired_state log line of `serial` written after `offset` in the log.
  auto wait_doc_line = [&](std::size_t offset, std::uint64_t serial) {
    std::string line;
    WaitFor("event=desired_state serial=" + std::to_string(serial), seconds(20), [&] {
      const std::string log = LogText();
      if (log.size() <= offset) return false;
      const std::string fresh = log.substr(offset);
      const std::string key = "event=desired_state serial=" + std::to_string(serial) + " ";
      auto at = fresh.find(key);
      if (at == std::string::npos) return false;
      auto eol = fresh.find('\n', at);
      line = fresh.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
      return true;
    });
    return line;
  };

  // Expired.
  std::size_t offset = LogText().size();
  ++serial_;
  testing::WriteAtomically(
      desired_, testing::DesiredStateDoc(*fleet_.deploy, serial_, {v2_entry}, seconds(-60)));
  std::string line = wait_doc_line(offset, serial_);
  std::cout << "expired: " << line << "\n";
  EXPECT_TRUE(ContainsAny(line, {"result=refused"})) << line;
  EXPECT_TRUE(ContainsAny(line, {"expired"})) << line;

  // Signed by a key the trust root does not know.
  offset = LogText().size();
  ++serial_;
  testing::WriteAtomically(desired_,
                           testing::DesiredStateDoc(*fleet_.stranger, serial_, {v2_entry}));
  ASSERT_TRUE(WaitFor("forged document refused in the log", seconds(20), [&] {
    const std::string log = LogText();
    return log.size() > offset && log.find("event=desired_state", offset) != std::string::npos;
  }));
  {
    const std::string fresh = LogText().substr(offset);
    line = fresh.substr(fresh.find("event=desired_state"));
    line = line.substr(0, line.find('\n'));
  }
  std::cout << "unknown key: " << line << "\n";
  EXPECT_TRUE(ContainsAny(line, {"result=refused"})) << line;
  EXPECT_TRUE(ContainsAny(line, {"signature"})) << line;
  EXPECT_EQ(server_.BytesSent("/v2.efb"), 0u);

  // A downgrade below the highest committed, without allow_downgrade.
  offset = LogText().size();
  const std::uint64_t before = MaxDeploymentId(Status());
  Deploy({testing::DesiredModel(old, server_.Url("/old.efb"))});
  ASSERT_TRUE(WaitFor("downgrade refused", seconds(20), [&] {
    json d = FindDeployment(Status(), "0.9.0", before);
    if (Terminal(d)) return true;
    const std::string log = LogText();
    return log.size() > offset && ContainsAny(log.substr(offset), {"downgrade"});
  }));
  {
    json d = FindDeployment(Status(), "0.9.0", before);
    const std::string fresh = LogText().substr(offset);
    std::cout << "downgrade: status " << d.dump() << "\n";
    EXPECT_TRUE(d.is_null() || d.value("state", "") == "failed") << d.dump();
    EXPECT_TRUE(ContainsAny(fresh + d.dump(), {"downgrade", "highest"})) << fresh;
  }
  EXPECT_EQ(server_.BytesSent("/old.efb"), 0u) << "downgrade refused only after downloading";

  // Replay: a document accepted (v1 again: nothing to do), then the same serial with v2.
  offset = LogText().size();
  const std::uint64_t replayed = Deploy({testing::DesiredModel(v1_, server_.Url("/v1.efb"))});
  line = wait_doc_line(offset, replayed);
  EXPECT_TRUE(ContainsAny(line, {"result=accepted", "result=ignored"})) << line;
  offset = LogText().size();
  testing::WriteAtomically(desired_,
                           testing::DesiredStateDoc(*fleet_.deploy, replayed, {v2_entry}));
  line = wait_doc_line(offset, replayed);
  std::cout << "replay: " << line << "\n";
  EXPECT_TRUE(ContainsAny(line, {"result=refused", "result=ignored"})) << line;
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(server_.BytesSent("/v2.efb"), 0u) << "a replayed serial was acted on";
  ExpectV1Untouched("documents");

  StopAgent();
}

// Acceptance 4: a full disk (a reserve no disk can satisfy): refused before a byte is downloaded.
TEST_F(AgentE2E, RefusesWhenDiskIsFull) {
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(InstallV1());
  StopAgent();
  Bundle v2 = testing::MakeBundle(fleet_, "v2", tmp_.path(), [](json& b, const fs::path&) {
    b["watch"] = testing::ShortWatch();
  });
  server_.Add("/v2.efb", v2.bytes);
  const json v2_entry = testing::DesiredModel(v2, server_.Url("/v2.efb"));
  WriteConfig({{"reserve_bytes", 1ull << 50}});
  StartAgent();
  EXPECT_EQ(ServedVersion(), "1.0.0");
  const std::size_t offset = LogText().size();
  const std::uint64_t before_disk = MaxDeploymentId(Status());
  Deploy({v2_entry});
  ASSERT_TRUE(WaitFor("full disk refusal", seconds(30), [&] {
    json d = FindDeployment(Status(), "1.1.0", before_disk);
    if (Terminal(d)) return true;
    const std::string log = LogText();
    return log.size() > offset && log.find("result=refused", offset) != std::string::npos;
  }));
  json d = FindDeployment(Status(), "1.1.0", before_disk);
  const std::string fresh = LogText().substr(offset);
  std::cout << "full disk: status " << d.dump() << "\n";
  EXPECT_TRUE(d.is_null() || d.value("state", "") == "failed") << d.dump();
  EXPECT_TRUE(ContainsAny(d.dump() + fresh, {"disk", "space", "reserve", "free"})) << fresh;
  EXPECT_EQ(server_.BytesSent("/v2.efb"), 0u) << "downloaded despite no room";
  ExpectV1Untouched("full disk");
  StopAgent();
}

// Acceptance 2: SIGKILL in every state of the update, restart, and check what survives.
TEST_F(AgentE2E, SurvivesSigkillInEveryUpdateState) {
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(InstallV1());
  const std::vector<std::string> targets = {"downloading", "verifying",  "unpacking", "loading",
                                            "parity",      "activating", "watching"};
  // Each state three times; once under ASan + UBSan (scripts/test.sh), where every restart of
  // the instrumented agent costs seconds and the recovery paths are the same on every round.
#if defined(__SANITIZE_ADDRESS__)
  const int kKills = static_cast<int>(targets.size());
#else
  const int kKills = 3 * static_cast<int>(targets.size());
#endif
  std::map<std::string, int> kills_at;  // the last state the log showed before the kill
  std::map<std::uint64_t, std::string> terminal_seen;
  int completed = 0, rolled_back = 0, other = 0;
  for (int k = 0; k < kKills; ++k) {
    const std::string target = targets[static_cast<std::size_t>(k) % targets.size()];
    SCOPED_TRACE("kill " + std::to_string(k) + " at " + target);
    const std::string version = "1.1." + std::to_string(k + 1);
    Bundle b = testing::MakeBundle(fleet_, "v2", tmp_.path(), [&](json& body, const fs::path&) {
      body["version"] = version;
      body["watch"] = testing::ShortWatch();
    });
    const std::string path = "/crash-" + version + ".efb";
    // Throttled so that `downloading` lasts about a second.
    server_.Add(path, b.bytes, ServeFaults{.bytes_per_s = b.bytes.size()});
    // Verifying and activating last milliseconds: for them the agent's fault point
    // (EDGEFLEET_FAULT_KILL_AT) kills it right after journaling the state; the other states are
    // hit by watching the log and sending SIGKILL from here.
    const bool fault_point = target == "verifying" || target == "activating";
    if (fault_point) {
      StopAgent();
      ::setenv("EDGEFLEET_FAULT_KILL_AT", target.c_str(), 1);
      StartAgent();
      ::unsetenv("EDGEFLEET_FAULT_KILL_AT");
    }
    const std::size_t offset = LogText().size();
    Deploy({testing::DesiredModel(b, server_.Url(path))});
    const std::string needle = "version=" + version;
    std::string last_state;
    const auto deadline = Clock::now() + seconds(30);
    bool hit = false;
    while (Clock::now() < deadline && !hit) {
      const std::string log = LogText();
      std::size_t at = offset;
      while ((at = log.find("event=deployment ", at)) != std::string::npos) {
        const auto eol = log.find('\n', at);
        const std::string line = log.substr(at, eol - at);
        at = eol;
        if (line.find(needle) == std::string::npos) continue;
        const auto to = line.find(" to=");
        last_state = line.substr(to + 4, line.find(' ', to + 4) - (to + 4));
        if (last_state == target) hit = true;
      }
      if (!hit) std::this_thread::sleep_for(milliseconds(5));
    }
    if (!hit) {
      ADD_FAILURE() << "never saw to=" << target << " for " << version << "; last " << last_state;
    }
    agent_->KillGroup();
    agent_.reset();
    kills_at[last_state]++;
    server_.SetFaults(path, {});
    ASSERT_NO_FATAL_FAILURE(StartAgent());

    // Right after the restart: a verified model serves, and it is the journal's active one.
    json status = Status();
    json active = ActiveOf(status);
    ASSERT_FALSE(active.is_null()) << status.dump(1);
    InferResult r = Infer(static_cast<std::size_t>(k));
    EXPECT_EQ(r.status, 200);
    // The committed active model, or the candidate the restarted agent is already watching. The
    // agent goes on working between the status read and the request (it may resume the same
    // deployment and activate it meanwhile), so both snapshots, before and after, count.
    const json after = Status();
    std::set<std::string> allowed;
    for (const json* snapshot : std::initializer_list<const json*>{&status, &after}) {
      const json a = ActiveOf(*snapshot);
      if (!a.is_null()) allowed.insert(a.value("version", ""));
      for (const auto& d : (*snapshot)["deployments"]) {
        const std::string state = d.value("state", "");
        if (state == "activating" || state == "watching" || state == "committed") {
          allowed.insert(d.value("version", ""));
        }
      }
    }
    EXPECT_TRUE(allowed.contains(r.version)) << "serving " << r.version << "\nbefore:\n"
                                             << status.dump(1) << "\nafter:\n"
                                             << after.dump(1);
    int open = 0;
    for (const auto& d : status["deployments"]) {
      const auto id = d["id"].get<std::uint64_t>();
      if (!Terminal(d) && d.value("state", "") != "abandoned") ++open;
      if (auto it = terminal_seen.find(id); it != terminal_seen.end()) {
        EXPECT_EQ(d.value("state", ""), it->second) << "terminal state changed: " << d.dump();
      }
    }
    EXPECT_LE(open, 1) << status.dump(1);
    // The update then completes or is cleanly rolled back / abandoned.
    json d = WaitTerminal(version, 0, seconds(40), true);
    const std::string state = d.value("state", "");
    if (state == "committed") {
      ++completed;
    } else if (state == "rolled_back") {
      ++rolled_back;
    } else {
      ++other;
    }
    status = Status();
    for (const auto& dep : status["deployments"]) {
      if (Terminal(dep) || dep.value("state", "") == "abandoned") {
        terminal_seen[dep["id"].get<std::uint64_t>()] = dep.value("state", "");
      }
    }
    EXPECT_EQ(ServedVersion(), ActiveOf(status).value("version", ""));
  }
  std::cout << "crash: " << kKills << " SIGKILLs; last state logged before each kill:";
  for (const auto& [state, n] : kills_at) std::cout << " " << state << "=" << n;
  std::cout << "; afterwards committed=" << completed << " rolled_back=" << rolled_back
            << " other=" << other << "\n";
  StopAgent();
}

}  // namespace
}  // namespace edgefleet
