// Issue 14's attack on the operator's servers: 64 slow connections (one header byte every 2 s)
// plus 64 idle TCP connections against each of `edgefleet collect`'s HTTP port and
// `edgefleet serve`, held for 25 s (two of the layer's 10 s request deadlines), while a dashboard
// client polls the JSON API and /metrics and a box downloads a 3 MiB bundle over and over. Every
// answer must be complete and quick, and the server must close each slow or idle connection at
// its deadline. Label `load`, RUN_SERIAL: a timing test, run in the release pass only
// (scripts/test.sh); the real processes, broker and curl, as in collector_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "manifests/crypto.hpp"
#include "tests/deploy/collector_fixture.hpp"
#include "tests/support/connection_attack.hpp"
#include "tests/support/httplib_prime.hpp"

namespace edgefleet::collector_testing {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

class OperatorServersAttack : public CollectorTest {};

TEST_F(OperatorServersAttack, TheDashboardApiAndABundleDownloadKeepAnswering) {
  ASSERT_NO_FATAL_FAILURE(StartBroker(false));
  ASSERT_NO_FATAL_FAILURE(StartCollector());
  const std::int64_t now = NowMs();
  MustPublish(Topic("box-a", "status"), telemetry::EncodeStatus(Status("box-a", "1.2.0", now)),
              true);
  ASSERT_TRUE(WaitFor("box-a listed", seconds(20), [&] { return Device("box-a").is_object(); }));

  // `edgefleet serve` over a directory with one 3 MiB bundle.
  const fs::path files = dir_.path() / "files";
  fs::create_directories(files);
  std::string bundle(3 * 1024 * 1024 + 17, '\0');
  std::mt19937 rng(7);
  for (char& c : bundle) c = static_cast<char>(rng() & 0xff);
  testing::WriteFile(files / "model-1.2.0.efb", bundle);
  BackgroundProcess serve({EDGEFLEET_CLI, "serve", "--dir", files.string(), "--http", "127.0.0.1:0",
                           "--port-file", (dir_.path() / "serve.port").string()},
                          dir_.path() / "serve.log");
  int serve_port = 0;
  ASSERT_TRUE(WaitFor(
      "serve port file", seconds(20),
      [&] {
        std::error_code ec;
        if (!fs::exists(dir_.path() / "serve.port", ec)) return false;
        serve_port = std::stoi(testing::ReadFile(dir_.path() / "serve.port"));
        return serve_port > 0;
      },
      "serve"));

  testing::ConnectionAttack on_collector(
      port_, "GET /api/summary HTTP/1.1\r\nHost: operator\r\nAccept: application/json\r\n\r\n");
  testing::ConnectionAttack on_serve(
      serve_port, "GET /model-1.2.0.efb HTTP/1.1\r\nHost: operator\r\nRange: bytes=0-\r\n\r\n");
  std::this_thread::sleep_for(seconds(1));  // the attack is in place

  // The dashboard's polls and a box's downloads, side by side, for 25 s.
  const auto end = Clock::now() + seconds(25);
  std::vector<double> api_ms, download_ms;
  int api_failures = 0, download_failures = 0;
  testing::PrimeHttplibClient();
  std::thread box([&] {
    httplib::Client client("127.0.0.1", serve_port);
    client.set_keep_alive(true);
    client.set_read_timeout(20, 0);
    while (Clock::now() < end) {
      const auto t0 = Clock::now();
      auto r = client.Get("/model-1.2.0.efb");
      download_ms.push_back(Ms(Clock::now() - t0));
      if (!r || r->status != 200 || manifests::Sha256Hex(r->body) != manifests::Sha256Hex(bundle)) {
        ++download_failures;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
  });
  httplib::Client dashboard("127.0.0.1", port_);
  dashboard.set_keep_alive(true);
  dashboard.set_read_timeout(20, 0);
  while (Clock::now() < end) {
    for (const char* path : {"/api/summary", "/api/devices", "/metrics", "/"}) {
      const auto t0 = Clock::now();
      auto r = dashboard.Get(path);
      api_ms.push_back(Ms(Clock::now() - t0));
      if (!r || r->status != 200 || r->body.empty()) ++api_failures;
    }
    std::this_thread::sleep_for(milliseconds(200));
  }
  box.join();
  on_collector.Stop();
  on_serve.Stop();

  auto worst = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
  };
  std::vector<double> closed = on_collector.ClosedAfterSeconds();
  const std::size_t collector_closed = closed.size();
  const std::vector<double> serve_closed = on_serve.ClosedAfterSeconds();
  closed.insert(closed.end(), serve_closed.begin(), serve_closed.end());
  std::printf(
      "dashboard: %zu answers, worst %.1f ms; downloads: %zu of 3 MiB, worst %.1f ms; connections "
      "closed by the server: collect %zu, serve %zu, after %.1f-%.1f s\n",
      api_ms.size(), worst(api_ms), download_ms.size(), worst(download_ms), collector_closed,
      serve_closed.size(), closed.empty() ? 0 : *std::min_element(closed.begin(), closed.end()),
      worst(closed));
  EXPECT_EQ(api_failures, 0);
  EXPECT_EQ(download_failures, 0);
  EXPECT_GE(api_ms.size(), 200u);
  EXPECT_GE(download_ms.size(), 50u);
  // cpp-httplib, the library before the layer, gave these clients nothing for 5 s and more.
  EXPECT_LT(worst(api_ms), 500.0) << "a dashboard request waited behind the attack";
  EXPECT_LT(worst(download_ms), 2000.0) << "a download waited behind the attack";
  // 128 connections on each server, closed at about 10 and 20 s: each at its deadline.
  EXPECT_GE(collector_closed, 128u * 2);
  EXPECT_GE(serve_closed.size(), 128u * 2);
  for (double s : closed) {
    EXPECT_GE(s, 9.5) << "closed before its deadline";
    EXPECT_LE(s, 11.5) << "held past its deadline";
  }

  serve.Signal(SIGTERM);
  auto code = serve.Wait(seconds(20));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << testing::ReadFile(dir_.path() / "serve.log");
  StopCollectorCleanly();
}

}  // namespace
}  // namespace edgefleet::collector_testing
