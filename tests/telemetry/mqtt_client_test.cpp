// Tests for telemetry/mqtt_client and the test broker (tests/support/mosquitto_broker), against a
// real mosquitto broker on a free loopback port. No mocks.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

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
  std::vector<std::string> argv = {tool, "-h", broker.host(), "-p", std::to_string(broker.port()),
                                   "-V", "mqttv311"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

ProcessResult Pub(const MosquittoBroker& broker, const std::vector<std::string>& extra) {
  return RunProcess(ClientArgs("mosquitto_pub", broker, extra), std::chrono::seconds(10));
}

// Waits (at most 5 s) for `count` messages on `topic`; retained ones arrive at once.
ProcessResult Sub(const MosquittoBroker& broker, const std::string& topic, int count,
                  const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"-t", topic, "-C", std::to_string(count), "-W", "5"};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunProcess(ClientArgs("mosquitto_sub", broker, args), std::chrono::seconds(10));
}

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

TEST(MosquittoBroker, TlsRequiresAClientCertificateFromItsCa) {
  TempDir tmp;
  const TestPki pki = MakeTestPki(tmp / "pki", {"box-1"});
  ASSERT_FALSE(pki.ca_cert.empty());
  BrokerOptions options;
  options.tls = &pki;
  MosquittoBroker broker(tmp / "broker", options);
  ASSERT_TRUE(broker.running()) << broker.Log();

  const std::vector<std::string> good = {"--cafile", pki.ca_cert.string(), "--cert",
                                         pki.ClientCert("box-1").string(), "--key",
                                         pki.ClientKey("box-1").string()};
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

}  // namespace
}  // namespace edgefleet::telemetry
