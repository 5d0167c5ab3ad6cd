// Benchmark (issue 5, acceptance 5): the agent's publish path against mosquitto_pub, to the same
// local mosquitto broker, N messages of ~600 bytes at QoS 1, runs interleaved:
//   peer: `mosquitto_pub -l -q 1` reading N lines from a file on stdin (process start, connect,
//         publish, and it waits for the last PUBACK before it disconnects);
//   ours: a fresh Outbox file, MqttClient::Start, the N messages appended in batches of 100
//         (Wake after each), until every row was acknowledged and deleted.
// Run through bench/mqtt_publish_rate.sh, which starts the broker.
//
//   mqtt_publish_rate <host> <port> [messages=20000] [runs=3] [dir=$TMPDIR or /tmp]
//
// Prints messages/s for both, the ratio of the medians, and PASS when ours >= 0.5x the peer.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "telemetry/mqtt_client.hpp"
#include "telemetry/outbox.hpp"

namespace fs = std::filesystem;
using namespace edgefleet::telemetry;

namespace {

constexpr double kLimit = 0.5;
constexpr std::size_t kBatch = 100;
constexpr const char* kTopic = "edgefleet/v1/bench/device/box-1/telemetry";
constexpr auto kRunTimeout = std::chrono::seconds(120);

// Same size for every message, no newline (mosquitto_pub -l sends one message per line).
std::string Payload(std::size_t i) {
  std::string p = R"({"id":"bench-)" + std::to_string(1000000000 + i) +
                  R"(","device":"box-1","model":"digits","version":"1.2.0","latency_ms":{)";
  p.resize(600, 'x');
  p += "\"}}";
  return p;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Seconds for mosquitto_pub to send every line of `lines` and exit; negative on failure.
double RunPeer(const std::string& host, int port, const fs::path& lines) {
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    const int in = open(lines.c_str(), O_RDONLY);
    const int null = open("/dev/null", O_WRONLY);
    if (in < 0 || null < 0) _exit(126);
    dup2(in, 0);
    dup2(null, 1);
    execlp("mosquitto_pub", "mosquitto_pub", "-h", host.c_str(), "-p", std::to_string(port).c_str(),
           "-V", "mqttv311", "-i", "bench-peer", "-q", "1", "-t", kTopic, "-l",
           static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const double s = Seconds(start);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "mosquitto_pub failed (status %d)\n", status);
    return -1;
  }
  return s;
}

// Seconds for our path; negative on failure.
double RunOurs(const std::string& host, int port, const fs::path& dir,
               const std::vector<OutgoingMessage>& messages) {
  const fs::path file = dir / "outbox.db";
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(file.string() + suffix);
  const auto start = std::chrono::steady_clock::now();
  auto outbox = Outbox::Open(file, {});
  if (!outbox) {
    std::fprintf(stderr, "%s\n", outbox.error().message.c_str());
    return -1;
  }
  MqttOptions options;
  options.host = host;
  options.port = port;
  options.client_id = "bench-ours";
  MqttHandlers handlers;
  handlers.on_connection = [](bool up, const std::string& reason) {
    if (!up && reason != "client stopped") std::fprintf(stderr, "ours: %s\n", reason.c_str());
  };
  auto client = MqttClient::Start(options, outbox->get(), handlers);
  if (!client) {
    std::fprintf(stderr, "%s\n", client.error().message.c_str());
    return -1;
  }
  for (std::size_t i = 0; i < messages.size(); i += kBatch) {
    const std::size_t n = std::min(kBatch, messages.size() - i);
    auto st = (*outbox)->Append(std::span(messages.data() + i, n));
    if (!st) {
      std::fprintf(stderr, "%s\n", st.error().message.c_str());
      return -1;
    }
    (*client)->Wake();
  }
  while ((*client)->Counters().acked < messages.size()) {
    if (std::chrono::steady_clock::now() - start > kRunTimeout) {
      std::fprintf(stderr, "ours: only %llu of %zu acknowledged after %lld s\n",
                   static_cast<unsigned long long>((*client)->Counters().acked), messages.size(),
                   static_cast<long long>(kRunTimeout.count()));
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  const double s = Seconds(start);
  auto stats = (*outbox)->Stats();
  if (!stats || stats->pending != 0) {
    std::fprintf(stderr, "ours: rows left in the outbox after every ack\n");
    return -1;
  }
  (*client)->Stop();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <host> <port> [messages] [runs] [dir]\n", argv[0]);
    return 2;
  }
  const std::string host = argv[1];
  const int port = std::atoi(argv[2]);
  const std::size_t n = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 20000;
  const int runs = argc > 4 ? std::atoi(argv[4]) : 3;
  const char* tmp = std::getenv("TMPDIR");
  const fs::path base = argc > 5 ? fs::path(argv[5]) : fs::path(tmp && *tmp ? tmp : "/tmp");
  const fs::path dir = base / ("edgefleet-mqtt-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);

  std::vector<OutgoingMessage> messages(n);
  {
    std::ofstream lines(dir / "lines.txt", std::ios::trunc);
    for (std::size_t i = 0; i < n; ++i) {
      messages[i].topic = kTopic;
      messages[i].payload = Payload(i);
      lines << messages[i].payload << '\n';
    }
  }
  std::printf(
      "publish rate: %zu messages of %zu bytes, QoS 1, to %s:%d; %d runs each, "
      "interleaved\n",
      n, messages[0].payload.size(), host.c_str(), port, runs);
  std::vector<double> peer, ours;
  bool failed = false;
  for (int r = 0; r < runs; ++r) {
    const double p = RunPeer(host, port, dir / "lines.txt");
    const double o = RunOurs(host, port, dir, messages);
    if (p <= 0 || o <= 0) failed = true;
    peer.push_back(static_cast<double>(n) / p);
    ours.push_back(static_cast<double>(n) / o);
    std::printf("run %d: mosquitto_pub %.0f msg/s (%.3f s), ours %.0f msg/s (%.3f s)\n", r + 1,
                peer.back(), p, ours.back(), o);
  }
  fs::remove_all(dir);
  const double ratio = Median(ours) / Median(peer);
  const bool pass = !failed && ratio >= kLimit;
  std::printf("median: mosquitto_pub %.0f msg/s, ours %.0f msg/s, ours/mosquitto_pub %.2fx\n",
              Median(peer), Median(ours), ratio);
  std::printf("%s: ours/mosquitto_pub %.2fx, limit >= %.2fx\n", pass ? "PASS" : "FAIL", ratio,
              kLimit);
  return pass ? 0 : 1;
}
