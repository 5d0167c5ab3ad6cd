// Tests for telemetry/mqtt_client and the test broker (tests/support/mosquitto_broker), against a
// real mosquitto broker on a free loopback port. No mocks.
#include "telemetry/mqtt_client.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "telemetry/outbox.hpp"
#include "tests/support/mosquitto_broker.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::telemetry {
namespace {

using edgefleet::testing::BrokerOptions;
using edgefleet::testing::MakeTestPki;
using edgefleet::testing::MosquittoBroker;
using edgefleet::testing::ProcessResult;
using edgefleet::testing::RunProcess;
using edgefleet::testing::TempDir;
using edgefleet::testing::TestPki;

// mosquitto_pub/mosquitto_sub arguments for a plain or TLS broker.
std::vector<std::string> ClientArgs(const char* tool, const MosquittoBroker& broker,
                                    const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {
      tool, "-h", broker.host(), "-p", std::to_string(broker.port()), "-V", "mqttv311"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

ProcessResult Pub(const MosquittoBroker& broker, const std::vector<std::string>& extra) {
  return RunProcess(ClientArgs("mosquitto_pub", broker, extra), std::chrono::seconds(10));
}

// Waits (at most `wait_s`) for `count` messages on `topic`; retained ones arrive at once.
ProcessResult Sub(const MosquittoBroker& broker, const std::string& topic, int count,
                  const std::vector<std::string>& extra = {}, int wait_s = 5) {
  std::vector<std::string> args = {
      "-t", topic, "-C", std::to_string(count), "-W", std::to_string(wait_s)};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunProcess(ClientArgs("mosquitto_sub", broker, args), std::chrono::seconds(wait_s + 10));
}

// A persistent (clean session off) QoS 1 subscription the broker fills while nobody reads it,
// across broker restarts (persistence is on): an ordered record of what reached the broker.
void OpenRecord(const MosquittoBroker& broker, const std::string& id, const std::string& filter) {
  ProcessResult r = RunProcess(
      ClientArgs("mosquitto_sub", broker, {"-c", "-i", id, "-q", "1", "-t", filter, "-E"}),
      std::chrono::seconds(10));
  ASSERT_EQ(r.exit_code, 0) << r.err;
}
// The record's "<topic> <payload>" lines, in the order the broker received them.
std::vector<std::string> ReadRecord(const MosquittoBroker& broker, const std::string& id,
                                    const std::string& filter, int count) {
  ProcessResult r = Sub(broker, filter, count, {"-c", "-i", id, "-q", "1", "-v"}, 10);
  EXPECT_EQ(r.exit_code, 0) << "expected " << count << " messages; " << r.err << r.out;
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Polls `done` every 10 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& done,
             std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// What the handlers saw, for the test thread to read.
class Recorder final {
 public:
  MqttHandlers Handlers() {
    MqttHandlers h;
    h.on_message = [this](const MqttMessage& m) {
      std::lock_guard lock(mu_);
      messages_.push_back(m);
    };
    h.on_rejected = [this](const std::string& topic, const std::string& reason) {
      std::lock_guard lock(mu_);
      rejected_.push_back(topic + ": " + reason);
    };
    h.on_connection = [this](bool up, const std::string& reason) {
      std::lock_guard lock(mu_);
      (up ? ups_ : downs_).push_back(reason);
    };
    return h;
  }
  std::vector<MqttMessage> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  std::vector<std::string> rejected() const {
    std::lock_guard lock(mu_);
    return rejected_;
  }
  std::vector<std::string> downs() const {
    std::lock_guard lock(mu_);
    return downs_;
  }
  std::size_t ups() const {
    std::lock_guard lock(mu_);
    return ups_.size();
  }
  std::string Summary() const {
    std::lock_guard lock(mu_);
    std::string text = std::to_string(ups_.size()) + " up; down reasons:";
    for (const auto& d : downs_) text += "\n  " + d;
    return text;
  }

 private:
  mutable std::mutex mu_;
  std::vector<MqttMessage> messages_;
  std::vector<std::string> rejected_;
  std::vector<std::string> ups_;
  std::vector<std::string> downs_;
};

MqttOptions OptionsFor(const MosquittoBroker& broker, const std::string& client_id) {
  MqttOptions o;
  o.host = broker.host();
  o.port = broker.port();
  o.client_id = client_id;
  o.reconnect_min = std::chrono::milliseconds(50);
  o.reconnect_max = std::chrono::milliseconds(400);
  o.connect_timeout = std::chrono::seconds(5);
  return o;
}

std::unique_ptr<MqttClient> StartOrFail(MqttOptions options, Outbox* outbox,
                                        MqttHandlers handlers) {
  auto client = MqttClient::Start(std::move(options), outbox, std::move(handlers));
  if (!client) {
    ADD_FAILURE() << client.error().message;
    return nullptr;
  }
  return std::move(client).value();
}

std::unique_ptr<Outbox> OpenOutbox(const std::filesystem::path& path) {
  auto outbox = Outbox::Open(path, {});
  if (!outbox) {
    ADD_FAILURE() << outbox.error().message;
    return nullptr;
  }
  return std::move(outbox).value();
}

std::uint64_t Pending(Outbox& outbox) {
  auto stats = outbox.Stats();
  EXPECT_TRUE(stats) << stats.error().message;
  return stats ? stats->pending : ~std::uint64_t{0};
}

// Appends payloads "<prefix>-<i>" for i in [from, to) on `topic`, one batch.
void AppendNumbered(Outbox& outbox, const std::string& topic, const std::string& prefix, int from,
                    int to) {
  std::vector<OutgoingMessage> batch;
  for (int i = from; i < to; ++i) {
    OutgoingMessage m;
    m.topic = topic;
    m.payload = prefix + "-" + std::to_string(i);
    batch.push_back(std::move(m));
  }
  Status st = outbox.Append(batch);
  ASSERT_TRUE(st) << st.error().message;
}

BrokerOptions WithTls(const TestPki* pki) {
  BrokerOptions options;
  options.tls = pki;
  return options;
}

// A broker that requires client certificates, with its PKI (a client certificate for "box-1").
class TlsBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(pki.ca_cert.empty());
    ASSERT_TRUE(broker.running()) << broker.Log();
  }
  TempDir tmp;
  TestPki pki = MakeTestPki(tmp / "pki", {"box-1"});  // before the broker, which points at it
  MosquittoBroker broker{tmp / "broker", WithTls(&pki)};
};

TEST(MosquittoBroker, StopAndStartAgainOnTheSamePortKeepsRetainedMessages) {
  TempDir tmp;
  MosquittoBroker broker(tmp.path());
  ASSERT_TRUE(broker.running()) << broker.Log();
  const int port = broker.port();
  ASSERT_GT(port, 0);

  ProcessResult pub = Pub(broker, {"-t", "t/retained", "-m", "before", "-r", "-q", "1"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  ProcessResult sub = Sub(broker, "t/retained", 1);
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  EXPECT_EQ(sub.out, "before\n");

  broker.Stop();
  EXPECT_FALSE(broker.running());
  pub = Pub(broker, {"-t", "t/retained", "-m", "while down"});
  EXPECT_NE(pub.exit_code, 0) << "a stopped broker accepted a publish";

  broker.Start();
  ASSERT_TRUE(broker.running()) << broker.Log();
  EXPECT_EQ(broker.port(), port);
  // Persistence: the retained message survived the restart.
  sub = Sub(broker, "t/retained", 1);
  ASSERT_EQ(sub.exit_code, 0) << sub.err << broker.Log();
  EXPECT_EQ(sub.out, "before\n");

  // And once more, quickly (the port may be in TIME_WAIT from the connections above).
  broker.Stop();
  broker.Start();
  ASSERT_TRUE(broker.running()) << broker.Log();
  pub = Pub(broker, {"-t", "t/retained", "-m", "after", "-r", "-q", "1"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  sub = Sub(broker, "t/retained", 1);
  EXPECT_EQ(sub.out, "after\n");
}

TEST_F(TlsBrokerTest, MosquittoRequiresAClientCertificateFromItsCa) {
  const std::vector<std::string> good = {"--cafile", pki.ca_cert.string(),
                                         "--cert",   pki.ClientCert("box-1").string(),
                                         "--key",    pki.ClientKey("box-1").string()};
  std::vector<std::string> args = {"-t", "t/tls", "-m", "hello", "-r", "-q", "1"};
  args.insert(args.end(), good.begin(), good.end());
  ProcessResult pub = Pub(broker, args);
  ASSERT_EQ(pub.exit_code, 0) << pub.err << broker.Log();
  ProcessResult sub = Sub(broker, "t/tls", 1, good);
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  EXPECT_EQ(sub.out, "hello\n");
  // The certificate's CN is the MQTT username.
  EXPECT_NE(broker.Log().find("u'box-1'"), std::string::npos) << broker.Log();

  // No client certificate: refused.
  pub = Pub(broker, {"-t", "t/tls", "-m", "x", "--cafile", pki.ca_cert.string()});
  EXPECT_NE(pub.exit_code, 0);
  // The wrong CA: the client refuses the server.
  pub = Pub(broker, {"-t", "t/tls", "-m", "x", "--cafile", pki.other_ca_cert.string(), "--cert",
                     pki.ClientCert("box-1").string(), "--key", pki.ClientKey("box-1").string()});
  EXPECT_NE(pub.exit_code, 0);
}

// ---- MqttClient ----

// A plain broker in a temp dir for each test.
class MqttClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(broker.running()) << broker.Log(); }
  TempDir tmp;
  MosquittoBroker broker{tmp / "broker"};
};

TEST_F(MqttClientTest, PublishesOutboxRowsAndDeletesThemOnPuback) {
  auto outbox = OpenOutbox(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  constexpr int kCount = 300;
  // More rows than max_inflight, some QoS 0: the pump pages through them.
  AppendNumbered(*outbox, "t/telemetry", "m", 0, kCount - 10);
  OutgoingMessage qos0;
  qos0.topic = "t/telemetry";
  qos0.qos = 0;
  for (int i = kCount - 10; i < kCount; ++i) {
    qos0.payload = "m-" + std::to_string(i);
    ASSERT_TRUE(outbox->Append(qos0));
  }

  // An independent observer: mosquitto_sub, subscribed before anything is published.
  ProcessResult observed;
  std::thread observer([&] {
    observed = RunProcess(ClientArgs("mosquitto_sub", broker,
                                     {"-i", "observer", "-q", "1", "-t", "t/#", "-C",
                                      std::to_string(kCount), "-W", "20"}),
                          std::chrono::seconds(30));
  });
  if (!WaitFor([&] {
        return broker.Log().find("Received SUBSCRIBE from observer") != std::string::npos;
      })) {
    observer.join();  // ends at its own -W bound
    FAIL() << "mosquitto_sub never subscribed: " << observed.err << broker.Log();
  }

  Recorder rec;
  MqttOptions options = OptionsFor(broker, "box-1");
  options.max_inflight = 32;
  auto client = StartOrFail(options, outbox.get(), rec.Handlers());
  ASSERT_TRUE(client);
  const bool drained = WaitFor([&] { return Pending(*outbox) == 0; });
  observer.join();
  ASSERT_TRUE(drained) << "pending " << Pending(*outbox) << "; " << rec.Summary();

  std::set<std::string> seen;
  std::istringstream in(observed.out);
  for (std::string line; std::getline(in, line);) seen.insert(line);
  EXPECT_EQ(observed.exit_code, 0) << observed.err;
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    EXPECT_TRUE(seen.count("m-" + std::to_string(i))) << "missing m-" << i;
  }
  const MqttCounters c = client->Counters();
  EXPECT_EQ(c.connections, 1u);
  EXPECT_EQ(c.acked, static_cast<std::uint64_t>(kCount));
  EXPECT_GE(c.published, static_cast<std::uint64_t>(kCount));
  auto stats = outbox->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->acked_total, static_cast<std::uint64_t>(kCount));
  EXPECT_TRUE(client->connected());

  // A row appended later goes out at once on Wake(); without it the client would notice the row
  // only at its next rescan (up to a second), so three quick deliveries in a row show the wake.
  for (int i = 0; i < 3; ++i) {
    AppendNumbered(*outbox, "t/telemetry", "late", i, i + 1);
    const auto woke = std::chrono::steady_clock::now();
    client->Wake();
    ASSERT_TRUE(WaitFor([&] { return Pending(*outbox) == 0; }));
    EXPECT_LT(std::chrono::steady_clock::now() - woke, std::chrono::milliseconds(200)) << i;
  }
}

// Three clients publish one outbox, each the topics that hash to it (MqttOptions::shard): every
// row is published by its shard's client and deleted once, and each topic's messages reach a
// subscriber in the order they were appended.
TEST_F(MqttClientTest, ShardedClientsShareOneOutboxAndKeepEachTopicInOrder) {
  auto outbox = OpenOutbox(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  constexpr int kTopics = 12, kEach = 25, kShards = 3;
  for (int i = 0; i < kEach; ++i) {
    for (int t = 0; t < kTopics; ++t) {
      AppendNumbered(*outbox, "s/" + std::to_string(t), "s" + std::to_string(t), i, i + 1);
    }
  }
  std::vector<std::uint64_t> rows_of(kShards, 0);
  for (int t = 0; t < kTopics; ++t) {
    rows_of[OutboxShard("s/" + std::to_string(t), kShards)] += kEach;
  }
  ASSERT_GT(*std::min_element(rows_of.begin(), rows_of.end()), 0u) << "every shard has topics";

  ProcessResult observed;
  std::thread observer([&] {
    observed = RunProcess(ClientArgs("mosquitto_sub", broker,
                                     {"-i", "observer", "-q", "1", "-t", "s/#", "-v", "-C",
                                      std::to_string(kTopics * kEach), "-W", "20"}),
                          std::chrono::seconds(30));
  });
  if (!WaitFor([&] {
        return broker.Log().find("Received SUBSCRIBE from observer") != std::string::npos;
      })) {
    observer.join();
    FAIL() << "mosquitto_sub never subscribed: " << observed.err << broker.Log();
  }
  std::vector<std::unique_ptr<MqttClient>> clients;
  for (int k = 0; k < kShards; ++k) {
    MqttOptions options = OptionsFor(broker, "pub-" + std::to_string(k));
    options.max_inflight = 8;
    options.shard = static_cast<std::size_t>(k);
    options.shards = kShards;
    clients.push_back(StartOrFail(options, outbox.get(), {}));
    ASSERT_TRUE(clients.back());
  }
  const bool drained = WaitFor([&] { return Pending(*outbox) == 0; });
  observer.join();
  ASSERT_TRUE(drained) << "pending " << Pending(*outbox);
  for (int k = 0; k < kShards; ++k) {
    EXPECT_EQ(clients[k]->Counters().acked, rows_of[k]) << "shard " << k;
    EXPECT_EQ(clients[k]->Counters().published, rows_of[k]) << "shard " << k;
  }
  auto stats = outbox->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->acked_total, static_cast<std::uint64_t>(kTopics * kEach));

  EXPECT_EQ(observed.exit_code, 0) << observed.err;
  std::map<std::string, int> next;  // per topic, the index expected next
  int lines = 0;
  std::istringstream in(observed.out);
  for (std::string line; std::getline(in, line); ++lines) {
    const std::string topic = line.substr(0, line.find(' '));
    const int index = std::stoi(line.substr(line.rfind('-') + 1));
    EXPECT_EQ(index, next[topic]++) << line;
  }
  EXPECT_EQ(lines, kTopics * kEach);
}

TEST_F(MqttClientTest, BrokerOutageKeepsRowsAndLosesNoneAfterRestart) {
  OpenRecord(broker, "record", "t/#");
  auto outbox = OpenOutbox(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  Recorder rec;
  auto client = StartOrFail(OptionsFor(broker, "box-1"), outbox.get(), rec.Handlers());
  ASSERT_TRUE(client);

  AppendNumbered(*outbox, "t/telemetry", "a", 0, 50);
  client->Wake();
  ASSERT_TRUE(WaitFor([&] { return Pending(*outbox) == 0; })) << rec.Summary();

  broker.Stop();
  ASSERT_TRUE(WaitFor([&] { return !client->connected(); })) << rec.Summary();
  AppendNumbered(*outbox, "t/telemetry", "b", 0, 100);
  client->Wake();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // several reconnect attempts
  EXPECT_EQ(Pending(*outbox), 100u);
  EXPECT_GE(rec.downs().size(), 2u) << rec.Summary();

  broker.Start();
  ASSERT_TRUE(broker.running()) << broker.Log();
  ASSERT_TRUE(WaitFor([&] { return Pending(*outbox) == 0; }, std::chrono::seconds(15)))
      << "pending " << Pending(*outbox) << "; " << rec.Summary();
  EXPECT_EQ(client->Counters().connections, 2u);

  std::set<std::string> seen;
  for (const auto& line : ReadRecord(broker, "record", "t/#", 150)) seen.insert(line);
  EXPECT_GE(seen.size(), 150u);
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(seen.count("t/telemetry a-" + std::to_string(i))) << i;
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.count("t/telemetry b-" + std::to_string(i))) << i;
}

TEST_F(MqttClientTest, BirthGoesFirstOnEveryConnection) {
  OpenRecord(broker, "record", "t/#");
  auto outbox = OpenOutbox(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  AppendNumbered(*outbox, "t/telemetry", "a", 0, 20);  // queued before the first connection

  std::vector<std::uint64_t> births;  // network thread only until Stop
  MqttOptions options = OptionsFor(broker, "box-1");
  options.birth = [&births](std::uint64_t connection) -> std::optional<MqttMessage> {
    births.push_back(connection);
    return MqttMessage{"t/status", "online " + std::to_string(connection), 1, true};
  };
  Recorder rec;
  auto client = StartOrFail(options, outbox.get(), rec.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return Pending(*outbox) == 0; })) << rec.Summary();

  broker.Stop();
  ASSERT_TRUE(WaitFor([&] { return !client->connected(); }));
  AppendNumbered(*outbox, "t/telemetry", "b", 0, 20);
  broker.Start();
  ASSERT_TRUE(WaitFor([&] { return Pending(*outbox) == 0; }, std::chrono::seconds(15)))
      << rec.Summary();
  client->Stop();
  EXPECT_EQ(client->Counters().connections, 2u);
  EXPECT_EQ(births, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(rec.ups(), 2u);

  const std::vector<std::string> lines = ReadRecord(broker, "record", "t/#", 42);
  ASSERT_EQ(lines.size(), 42u);
  EXPECT_EQ(lines[0], "t/status online 1");
  // Rows of the first connection, then the second birth before any row of the second.
  const auto second = std::find(lines.begin(), lines.end(), "t/status online 2");
  ASSERT_NE(second, lines.end());
  for (auto it = lines.begin() + 1; it != second; ++it) {
    EXPECT_EQ(it->rfind("t/telemetry a-", 0), 0u) << *it;
  }
  for (auto it = second + 1; it != lines.end(); ++it) {
    EXPECT_EQ(it->rfind("t/telemetry b-", 0), 0u) << *it;
  }
  // The birth is retained: a late subscriber sees the newest.
  EXPECT_EQ(Sub(broker, "t/status", 1).out, "online 2\n");
}

TEST_F(MqttClientTest, CleanStopDoesNotSendTheWill) {
  // A will needs an unclean end of the connection; the test of the will itself (SIGKILL of a
  // process that runs our client) is WillIsSentWhenTheProcessDies below.
  OpenRecord(broker, "record", "t/#");
  MqttOptions options = OptionsFor(broker, "box-1");
  options.will = MqttMessage{"t/status", "offline", 1, true};
  options.birth = [](std::uint64_t) -> std::optional<MqttMessage> {
    return MqttMessage{"t/status", "online", 1, true};
  };
  Recorder rec;
  auto client = StartOrFail(options, nullptr, rec.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return client->connected(); })) << rec.Summary();
  client->Stop();
  client->Stop();  // idempotent
  EXPECT_FALSE(client->connected());
  ASSERT_TRUE(WaitFor([&] {
    return broker.Log().find("Client box-1 disconnected.") != std::string::npos;
  })) << broker.Log();
  EXPECT_EQ(broker.Log().find("Client box-1 closed its connection"), std::string::npos);
  // Only the birth reached the record, and the retained status is still "online".
  std::vector<std::string> lines = ReadRecord(broker, "record", "t/#", 1);
  EXPECT_EQ(lines, std::vector<std::string>{"t/status online"});
  EXPECT_EQ(Sub(broker, "t/status", 1).out, "online\n");
}

TEST_F(MqttClientTest, WillIsSentWhenTheProcessDies) {
  // A child process runs our client and is SIGKILLed: the broker sees the socket close without
  // DISCONNECT and publishes the will. Forked before this process has any thread of its own.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const MqttOptions base = OptionsFor(broker, "doomed");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    MqttOptions options = base;
    options.will = MqttMessage{"t/status", "offline", 1, true};
    options.birth = [](std::uint64_t) -> std::optional<MqttMessage> {
      return MqttMessage{"t/status", "online", 1, true};
    };
    MqttHandlers handlers;
    handlers.on_connection = [fd = ready[1]](bool up, const std::string&) {
      if (up) {
        const char byte = 1;
        if (write(fd, &byte, 1) != 1) _exit(3);
      }
    };
    auto client = MqttClient::Start(options, nullptr, handlers);
    if (!client) _exit(2);
    for (;;) pause();
  }
  close(ready[1]);
  // The child connected (1), died (0), or is stuck (poll times out: -1).
  char byte = 0;
  pollfd wait_ready{ready[0], POLLIN, 0};
  const ssize_t got = poll(&wait_ready, 1, 10000) == 1 ? read(ready[0], &byte, 1) : -1;
  close(ready[0]);
  if (got == 1) {
    // The birth is on its way before the handler runs; wait for it to be retained.
    EXPECT_TRUE(WaitFor([&] { return Sub(broker, "t/status", 1).out == "online\n"; }));
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_EQ(got, 1) << "the child client never connected; " << broker.Log();
  EXPECT_TRUE(WaitFor([&] { return Sub(broker, "t/status", 1).out == "offline\n"; }))
      << broker.Log();
}

TEST_F(MqttClientTest, RenewsSubscriptionsAfterReconnectAndRejectsOversizedMessages) {
  MqttOptions options = OptionsFor(broker, "box-1");
  options.subscriptions = {"t/desired", "t/group/+/desired"};
  options.max_incoming_bytes = 100;
  Recorder rec;
  auto client = StartOrFail(options, nullptr, rec.Handlers());
  ASSERT_TRUE(client);
  // Retained, so it arrives whether the SUBACK came before the publish or after.
  ASSERT_EQ(Pub(broker, {"-t", "t/desired", "-m", "doc-1", "-r", "-q", "1"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return rec.messages().size() == 1; })) << rec.Summary();
  EXPECT_EQ(rec.messages()[0].payload, "doc-1");
  EXPECT_EQ(rec.messages()[0].topic, "t/desired");

  ASSERT_EQ(
      Pub(broker, {"-t", "t/group/g1/desired", "-m", std::string(101, 'x'), "-q", "1"}).exit_code,
      0);
  ASSERT_TRUE(WaitFor([&] { return rec.rejected().size() == 1; })) << rec.Summary();
  EXPECT_EQ(rec.rejected()[0], "t/group/g1/desired: payload of 101 bytes exceeds the limit of 100");
  ASSERT_EQ(
      Pub(broker, {"-t", "t/group/g1/desired", "-m", std::string(100, 'y'), "-q", "1"}).exit_code,
      0);
  ASSERT_TRUE(WaitFor([&] { return rec.messages().size() == 2; })) << rec.Summary();
  EXPECT_EQ(rec.messages()[1].payload, std::string(100, 'y'));
  // Not subscribed: never delivered.
  ASSERT_EQ(Pub(broker, {"-t", "t/other", "-m", "nope", "-q", "1"}).exit_code, 0);

  broker.Stop();
  broker.Start();
  ASSERT_TRUE(broker.running()) << broker.Log();
  ASSERT_TRUE(WaitFor([&] { return client->Counters().connections == 2; })) << rec.Summary();
  // The clean session forgot the subscription; only a renewed one gets this.
  ASSERT_EQ(Pub(broker, {"-t", "t/group/g2/desired", "-m", "doc-2", "-r", "-q", "1"}).exit_code, 0);
  // The retained doc-1 comes again with the new subscription, then doc-2.
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& m : rec.messages()) {
      if (m.payload == "doc-2") return true;
    }
    return false;
  })) << rec.Summary();
  const MqttCounters c = client->Counters();
  EXPECT_EQ(c.rejected, 1u);
  EXPECT_EQ(c.received, rec.messages().size());
  for (const auto& m : rec.messages()) EXPECT_NE(m.topic, "t/other");
}

// libmosquitto 2.0.11 writes a QoS 1 message's PUBACK before it calls on_message; with
// ack_after_handler (the collector) the PUBACK waits until the handler has returned, so a
// process killed inside the handler has acknowledged nothing it did not keep. Seen from the
// broker's own log (whole seconds): a handler that takes 2.5 s delays the PUBACK by 2 s or more,
// and without the option it does not.
TEST_F(MqttClientTest, AckAfterHandlerHoldsThePubackUntilTheHandlerReturns) {
  auto seconds_of = [&](const std::string& needle) -> std::optional<long long> {
    const std::string log = broker.Log();
    const std::size_t at = log.find(needle);
    if (at == std::string::npos) return std::nullopt;
    const std::size_t line = log.rfind('\n', at);
    return std::stoll(log.substr(line == std::string::npos ? 0 : line + 1));
  };
  for (const bool hold : {true, false}) {
    const std::string id = hold ? "acker-late" : "acker-early";
    MqttOptions options = OptionsFor(broker, id);
    options.subscriptions = {"t/" + id};
    options.ack_after_handler = hold;
    std::atomic<int> handled{0};
    MqttHandlers handlers;
    handlers.on_message = [&](const MqttMessage&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      ++handled;
    };
    auto client = StartOrFail(options, nullptr, std::move(handlers));
    ASSERT_TRUE(client);
    ASSERT_TRUE(WaitFor([&] { return client->Counters().connections == 1; }));
    // Retained: it arrives whether the SUBACK came before the publish or after.
    ASSERT_EQ(Pub(broker, {"-t", "t/" + id, "-m", "m", "-r", "-q", "1"}).exit_code, 0);
    ASSERT_TRUE(WaitFor([&] { return handled == 1; }, std::chrono::seconds(15)));
    ASSERT_TRUE(WaitFor([&] { return seconds_of("Received PUBACK from " + id).has_value(); }))
        << broker.Log();
    const long long sent = *seconds_of("Sending PUBLISH to " + id);
    const long long acked = *seconds_of("Received PUBACK from " + id);
    if (hold) {
      EXPECT_GE(acked - sent, 2) << broker.Log();
    } else {
      EXPECT_LE(acked - sent, 1) << broker.Log();
    }
    client->Stop();
  }
}

TEST(MqttClient, ReportsRefusedCredentialsAndKeepsRetrying) {
  TempDir tmp;
  const auto passwords = tmp / "passwords";
  ProcessResult made =
      RunProcess({"mosquitto_passwd", "-b", "-c", passwords.string(), "box-1", "right"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  BrokerOptions broker_options;
  broker_options.extra_config = "password_file " + passwords.string();
  MosquittoBroker broker(tmp / "broker", broker_options);
  ASSERT_TRUE(broker.running()) << broker.Log();

  MqttOptions options = OptionsFor(broker, "box-1");
  options.username = "box-1";
  options.password = "wrong";
  // Every recorder outlives the clients that call it.
  Recorder rec;
  Recorder ok;
  auto client = StartOrFail(options, nullptr, rec.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return rec.downs().size() >= 3; })) << rec.Summary();
  client->Stop();
  EXPECT_EQ(rec.ups(), 0u);
  EXPECT_EQ(client->Counters().connections, 0u);
  const std::string reason = rec.downs()[0];
  EXPECT_NE(reason.find("refused"), std::string::npos) << reason;
  EXPECT_NE(reason.find("not authorised"), std::string::npos) << reason;

  options.password = "right";
  client = StartOrFail(options, nullptr, ok.Handlers());
  ASSERT_TRUE(client);
  EXPECT_TRUE(WaitFor([&] { return client->connected(); })) << ok.Summary();
}

TEST_F(MqttClientTest, ReportsNoBrokerAndStopsPromptlyDuringBackoff) {
  broker.Stop();
  MqttOptions options = OptionsFor(broker, "box-1");
  options.reconnect_min = std::chrono::milliseconds(20);
  options.reconnect_max = std::chrono::seconds(30);
  Recorder rec;
  auto client = StartOrFail(options, nullptr, rec.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return rec.downs().size() >= 3; })) << rec.Summary();
  EXPECT_NE(rec.downs()[0].find("Connection refused"), std::string::npos) << rec.Summary();
  EXPECT_NE(rec.downs()[0].find(std::to_string(broker.port())), std::string::npos);
  const auto before = std::chrono::steady_clock::now();
  client->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(500));
}

TEST_F(TlsBrokerTest, MqttClientConnectsWithClientCertificateAndNeverWithTheWrongCa) {
  auto outbox = OpenOutbox(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  AppendNumbered(*outbox, "t/telemetry", "secure", 0, 10);

  MqttOptions options = OptionsFor(broker, "box-1");
  options.ca_file = pki.ca_cert;
  options.cert_file = pki.ClientCert("box-1");
  options.key_file = pki.ClientKey("box-1");
  // Every recorder outlives the clients that call it.
  Recorder rec;
  Recorder wrong;
  Recorder anonymous;
  auto client = StartOrFail(options, outbox.get(), rec.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return Pending(*outbox) == 0; })) << rec.Summary() << broker.Log();
  EXPECT_TRUE(client->connected());
  // The broker took the certificate's CN as the username.
  EXPECT_NE(broker.Log().find("u'box-1'"), std::string::npos) << broker.Log();
  client->Stop();

  // The wrong CA: the broker's certificate does not verify; never connected, reason says why.
  options.ca_file = pki.other_ca_cert;
  client = StartOrFail(options, nullptr, wrong.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return wrong.downs().size() >= 2; })) << wrong.Summary();
  client->Stop();
  EXPECT_EQ(wrong.ups(), 0u);
  const std::string reason = wrong.downs()[0];
  EXPECT_NE(reason.find("TLS"), std::string::npos) << reason;
  EXPECT_NE(reason.find("certificate verify failed"), std::string::npos) << reason;

  // No client certificate: the broker ends the handshake.
  options.ca_file = pki.ca_cert;
  options.cert_file.clear();
  options.key_file.clear();
  client = StartOrFail(options, nullptr, anonymous.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return anonymous.downs().size() >= 2; })) << anonymous.Summary();
  client->Stop();
  EXPECT_EQ(anonymous.ups(), 0u) << anonymous.Summary();
  EXPECT_NE(anonymous.downs()[0].find("TLS handshake failed"), std::string::npos)
      << anonymous.Summary();
}

TEST_F(MqttClientTest, ReportsABirthMessageItCannotPublish) {
  MqttOptions options = OptionsFor(broker, "box-1");
  options.birth = [](std::uint64_t) -> std::optional<MqttMessage> {
    return MqttMessage{"t/+/status", "online", 1, true};
  };
  Recorder rec;
  auto client = StartOrFail(options, nullptr, rec.Handlers());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return !rec.downs().empty(); })) << rec.Summary();
  client->Stop();
  EXPECT_NE(rec.downs()[0].find("birth message on \"t/+/status\""), std::string::npos)
      << rec.Summary();
  EXPECT_EQ(rec.ups(), 0u);
}

TEST(MqttClient, StartRefusesUnusableOptions) {
  TempDir tmp;
  auto refused = [](MqttOptions o) {
    auto client = MqttClient::Start(std::move(o), nullptr, {});
    EXPECT_FALSE(client);
    if (client) return std::string();
    EXPECT_EQ(client.error().code, ErrorCode::kInvalidArgument);
    return client.error().message;
  };
  MqttOptions good;
  good.host = "127.0.0.1";
  good.client_id = "box-1";

  MqttOptions o = good;
  o.host.clear();
  EXPECT_NE(refused(o).find("host"), std::string::npos);
  o = good;
  o.client_id.clear();
  EXPECT_NE(refused(o).find("client_id"), std::string::npos);
  o = good;
  o.ca_file = tmp / "missing-ca.pem";
  EXPECT_NE(refused(o).find("missing-ca.pem: cannot read"), std::string::npos);
  o = good;
  o.ca_file = tmp / "ca.pem";
  edgefleet::testing::WriteFile(o.ca_file, "not a pem");
  o.cert_file = tmp / "ca.pem";
  EXPECT_NE(refused(o).find("cert_file and key_file"), std::string::npos);
  o = good;
  o.subscriptions = {"ok/#", "bad/#/more"};
  EXPECT_NE(refused(o).find("subscriptions[1]"), std::string::npos);
  o = good;
  o.will = MqttMessage{"t/+/status", "offline", 1, true};
  EXPECT_NE(refused(o).find("will topic"), std::string::npos);
  o = good;
  o.max_inflight = 0;
  EXPECT_NE(refused(o).find("max_inflight"), std::string::npos);
  o = good;
  o.shard = 3;
  o.shards = 3;
  EXPECT_NE(refused(o).find("shard 3 of 3 does not exist"), std::string::npos);
}

}  // namespace
}  // namespace edgefleet::telemetry
