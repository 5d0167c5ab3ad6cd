// Issue 14's attack on the local API, at its full size: 64 connections that send one header byte
// every 2 s plus 64 idle TCP connections, held for 60 s (each reopened when the server closes
// it), while 4 well-behaved keep-alive clients infer on the digits model and a probe checks
// readiness. Every probe must answer within 100 ms, the clients' p99 must stay within 2x their
// p99 measured without the attack in the same run, and the server must close each slow or idle
// connection at its request deadline (10 s). Label `load`, RUN_SERIAL: a timing test that needs
// the machine to itself, run in the release pass only (scripts/test.sh).
//
// The clients are well-behaved apps, not a load generator: each sends one request every 2 ms
// (2,000 requests/s in all, about a third of what the box can serve), so the server has room,
// and what the comparison sees is what the attack costs them, not how much CPU time the machine
// lost to its neighbours. (Clients that send back to back keep both cores busy; on a shared CI
// host a 60 s stretch that lost 30 % of its CPU showed as a 3.4x p99 with the server unchanged.)
// The quiet p99 is measured both before and after the attack, so a drift of the host over the
// run falls on both sides of the comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/served_api.hpp"
#include "tests/support/connection_attack.hpp"

namespace edgefleet {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

// Four keep-alive clients inferring raw PNGs for `duration`, each one request every 2 ms on a
// fixed schedule (a client that falls behind sends at once until it has caught up); returns
// every latency in ms.
std::vector<double> Infer(Served& served, Clock::duration duration, std::atomic<int>& failures) {
  constexpr auto kInterval = std::chrono::microseconds(2000);
  const auto images = LoadHeldoutPngs();
  std::mutex mu;
  std::vector<double> all;
  std::vector<std::thread> clients;
  const auto end = Clock::now() + duration;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      auto client = served.Client();
      client->set_keep_alive(true);
      std::vector<double> mine;
      auto next = Clock::now() + kInterval * c / 4;
      for (std::size_t i = static_cast<std::size_t>(c); Clock::now() < end; i += 4) {
        std::this_thread::sleep_until(next);
        next += kInterval;
        const auto t0 = Clock::now();
        auto res =
            client->Post("/v2/models/digits/infer", images[i % images.size()].png, "image/png");
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (!res || res->status != 200) ++failures;
      }
      std::lock_guard lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : clients) t.join();
  return all;
}

TEST(LocalApiAttack, SixtyFourSlowAndSixtyFourIdleConnectionsStopNothing) {
  Served served;
  ASSERT_NO_FATAL_FAILURE(served.Load("v1", runtime::Slot::kA));
  ASSERT_TRUE(served.host().Activate("digits", runtime::Slot::kA));
  agent::LocalApiOptions options;
  options.request_deadline_ms = 10000;
  ASSERT_NO_FATAL_FAILURE(served.Start(options));
  const int port = served.api().port();

  std::atomic<int> failures{0};
  std::vector<double> quiet = Infer(served, seconds(10), failures);
  ASSERT_EQ(failures.load(), 0);
  ASSERT_GT(quiet.size(), 100u);

  // The attack: each of its connections closed by the server is counted and reopened.
  testing::ConnectionAttack attack(
      port,
      "POST /v2/models/digits/infer HTTP/1.1\r\nHost: box\r\nContent-Type: image/png\r\n"
      "Content-Length: 100\r\n\r\n");
  std::atomic<bool> stop{false};
  std::atomic<double> worst_probe_ms{0};
  std::atomic<int> probes{0}, probe_failures{0};
  std::thread prober([&] {
    auto client = served.Client();
    client->set_keep_alive(true);
    while (!stop) {
      const auto t0 = Clock::now();
      auto res = client->Get("/v2/health/ready");
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (ms > worst_probe_ms) worst_probe_ms = ms;
      ++probes;
      if (!res || res->status != 200) ++probe_failures;
      std::this_thread::sleep_for(milliseconds(250));
    }
  });
  std::this_thread::sleep_for(seconds(1));  // the attack is in place
  // Six windows of 10 s: the comparison takes the median of their p99s, so a stretch in which
  // the host lent its CPU elsewhere weighs as one window, while a cost of the attack, which is
  // the same all along, shows in every window.
  std::vector<double> attacked, window_p99s;
  for (int w = 0; w < 6; ++w) {
    const std::vector<double> window = Infer(served, seconds(10), failures);
    window_p99s.push_back(Percentile(window, 0.99));
    attacked.insert(attacked.end(), window.begin(), window.end());
  }
  stop = true;
  prober.join();
  attack.Stop();
  const std::vector<double> closed_after_s = attack.ClosedAfterSeconds();
  const std::vector<double> quiet_after = Infer(served, seconds(10), failures);
  const double quiet_before_p99 = Percentile(quiet, 0.99);
  const double quiet_after_p99 = Percentile(quiet_after, 0.99);
  quiet.insert(quiet.end(), quiet_after.begin(), quiet_after.end());

  const double quiet_p99 = Percentile(quiet, 0.99);
  const double attacked_p99 = Percentile(window_p99s, 0.5);
  std::string windows;
  for (double p : window_p99s) {
    char one[32];
    std::snprintf(one, sizeof(one), "%s%.3f", windows.empty() ? "" : " ", p);
    windows += one;
  }
  std::printf(
      "quiet: %zu requests p50 %.3f p99 %.3f ms (before %.3f, after %.3f); attacked: %zu "
      "requests p50 %.3f p99 %.3f ms, p99 of its 10 s windows %s, median %.3f ms (%.2fx); %d "
      "probes, worst %.1f ms; %zu connections closed by the server, after %.1f-%.1f s\n",
      quiet.size(), Percentile(quiet, 0.5), quiet_p99, quiet_before_p99, quiet_after_p99,
      attacked.size(), Percentile(attacked, 0.5), Percentile(attacked, 0.99), windows.c_str(),
      attacked_p99, attacked_p99 / quiet_p99, probes.load(), worst_probe_ms.load(),
      closed_after_s.size(),
      closed_after_s.empty() ? 0 : *std::min_element(closed_after_s.begin(), closed_after_s.end()),
      closed_after_s.empty() ? 0 : *std::max_element(closed_after_s.begin(), closed_after_s.end()));
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(probe_failures.load(), 0);
  EXPECT_GE(probes.load(), 200);
  EXPECT_LT(worst_probe_ms.load(), 100.0) << "a readiness probe waited";
  EXPECT_LE(attacked_p99, 2.0 * quiet_p99) << "the attack slowed the well-behaved clients";
  // 128 connections closed about every 10 s for 60 s: each at its deadline, none earlier.
  EXPECT_GE(closed_after_s.size(), 128u * 5);
  for (double s : closed_after_s) {
    EXPECT_GE(s, 9.5) << "closed before its deadline";
    EXPECT_LE(s, 11.5) << "held past its deadline";
  }
}

}  // namespace
}  // namespace edgefleet
