// Issue 14's attack on an HTTP server, for the tests that hold it against the agent's local API,
// `edgefleet collect` and `edgefleet serve`: `slow` connections that each send one byte of a
// request header every 2 s, and `idle` TCP connections that send nothing. A connection the server
// closes is recorded with how long it lived, and reopened at once, so the attack keeps its size
// for as long as it runs. Runs on its own thread from construction to Stop().
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace edgefleet::testing {

class ConnectionAttack final {
 public:
  // Opens the connections to 127.0.0.1:`port` at once; the slow ones drip `header`.
  ConnectionAttack(int port, std::string header, int slow = 64, int idle = 64);
  ~ConnectionAttack();  // Stop()
  ConnectionAttack(const ConnectionAttack&) = delete;
  ConnectionAttack& operator=(const ConnectionAttack&) = delete;

  // Ends the attack and closes its connections. Idempotent.
  void Stop();
  // Seconds each server-closed connection lived, so far.
  std::vector<double> ClosedAfterSeconds() const;

 private:
  void Run(int slow, int idle);

  const int port_;
  const std::string header_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<double> closed_after_s_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace edgefleet::testing
