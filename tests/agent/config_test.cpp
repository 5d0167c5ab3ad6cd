#include "agent/config.hpp"

#include <gtest/gtest.h>

namespace edgefleet::agent {
namespace {

const std::filesystem::path kPath = "/etc/edgefleet/agent.json";

TEST(ConfigTest, MinimalGetsDefaultsAndResolvesPaths) {
  auto c = ParseConfig(
      R"({"device":"box-1","fleet":"demo","state_dir":"state","trust_root":"/keys/root.json"})",
      kPath);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->state_dir, "/etc/edgefleet/state");
  EXPECT_EQ(c->trust_root, "/keys/root.json");
  EXPECT_TRUE(c->backends.empty());      // every library of the backends_dir
  EXPECT_TRUE(c->backends_dir.empty());  // DefaultBackendsDir()
  EXPECT_EQ(c->backend_options_json, "{}");
  EXPECT_EQ(c->api.host, "127.0.0.1");
  EXPECT_EQ(c->api.port, 0);
  EXPECT_TRUE(c->api.shared_memory);
  EXPECT_EQ(c->api.max_image_bytes, 16 << 20);
  EXPECT_EQ(c->desired_state.poll_ms, 1000);
  EXPECT_TRUE(c->desired_state.file.empty());
  EXPECT_EQ(c->download.max_attempts, 5);
  EXPECT_EQ(c->download.reserve_bytes, 67108864);
  EXPECT_EQ(c->runtime.parallel_runs, 2);
  EXPECT_DOUBLE_EQ(c->watch.max_extension_factor, 10);
  EXPECT_DOUBLE_EQ(c->watch.min_p95_increase_ms, 1.0);
}

TEST(ConfigTest, FullExample) {
  auto c = ParseConfig(R"({"device": "box-1", "fleet": "demo", "groups": ["lab"],
 "state_dir": "state", "trust_root": "root.json", "backends": ["opencv", "tflite"],
 "backends_dir": "backends", "backend_options": {"onnxruntime": {"threads": 2}},
 "api": {"host": "127.0.0.1", "port": 8000, "shared_memory": false, "max_image_bytes": 8388608,
         "unix_socket": "/run/edgefleet/api.sock", "unix_socket_mode": "0640",
         "unix_socket_group": "edgefleet-apps"},
 "desired_state": {"file": "desired.json", "url": "", "poll_ms": 250},
 "download": {"connect_timeout_s": 10, "low_speed_bytes_per_s": 5000, "low_speed_time_s": 60,
              "max_bytes_per_s": 0, "reserve_bytes": 67108864, "max_attempts": 5,
              "backoff_initial_ms": 500, "backoff_max_ms": 30000,
              "ca_file": "ca.pem", "client_cert": "", "client_key": ""},
 "runtime": {"threads": 1, "parallel_runs": 2},
 "watch": {"max_extension_factor": 10, "min_p95_increase_ms": 2.5}})",
                       kPath);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->groups, std::vector<std::string>{"lab"});
  EXPECT_EQ(c->backends, (std::vector<std::string>{"opencv", "tflite"}));
  EXPECT_EQ(c->backends_dir, "/etc/edgefleet/backends");
  EXPECT_EQ(BackendOptionsFor(*c, "onnxruntime"), R"({"threads":2})");
  EXPECT_EQ(BackendOptionsFor(*c, "opencv"), "{}");
  EXPECT_EQ(c->api.port, 8000);
  EXPECT_FALSE(c->api.shared_memory);
  EXPECT_EQ(c->api.max_image_bytes, 8 << 20);
  EXPECT_EQ(c->api.unix_socket, "/run/edgefleet/api.sock");
  EXPECT_EQ(c->api.unix_socket_mode, 0640u);
  EXPECT_EQ(c->api.unix_socket_group, "edgefleet-apps");
  EXPECT_DOUBLE_EQ(c->watch.min_p95_increase_ms, 2.5);
  EXPECT_EQ(c->desired_state.file, "/etc/edgefleet/desired.json");
  EXPECT_EQ(c->desired_state.poll_ms, 250);
  EXPECT_EQ(c->download.ca_file, "/etc/edgefleet/ca.pem");
  EXPECT_TRUE(c->download.client_cert.empty());
}

TEST(ConfigTest, AUnixSocketModeIsOctalForOwnerAndGroupOnly) {
  for (const char* bad : {"0666", "660x", "", "99", "01777", "4660"}) {
    auto c = ParseConfig(std::string(R"({"device": "b", "fleet": "f", "state_dir": "s",
        "trust_root": "r.json", "api": {"unix_socket": "api.sock", "unix_socket_mode": ")") +
                             bad + "\"}}",
                         kPath);
    ASSERT_FALSE(c) << bad;
    EXPECT_NE(c.error().message.find("api.unix_socket_mode: expected octal permissions"),
              std::string::npos)
        << c.error().message;
  }
  auto c = ParseConfig(R"({"device": "b", "fleet": "f", "state_dir": "s", "trust_root": "r.json",
      "api": {"unix_socket": "api.sock", "unix_socket_mode": "600"}})",
                       kPath);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->api.unix_socket_mode, 0600u);
  EXPECT_EQ(c->api.unix_socket, "/etc/edgefleet/api.sock") << "relative to the config file";
}

TEST(ConfigTest, EveryProblemWithItsPath) {
  auto c = ParseConfig(R"({"fleet":"demo","state_dir":"s","trust_root":"r","colour":1,
    "api":{"port":70000,"tls":true,"shared_memory":"yes","max_image_bytes":100},
    "watch":{"min_p95_increase_ms":-1,"max_extension_factor":0.5},"download":{"max_attempts":0},
    "desired_state":{"file":"a","url":"http://x/y"},"backends":["TFLite"],
    "backend_options":{"opencv":3,"Bad Name":{},"onnxruntime":{"edgefleet_cache_dir":"/"}}})",
                       kPath);
  ASSERT_FALSE(c);
  const std::string& m = c.error().message;
  EXPECT_EQ(c.error().code, ErrorCode::kParse);
  EXPECT_NE(m.find("device: missing required field"), std::string::npos) << m;
  EXPECT_NE(m.find("colour: unknown field"), std::string::npos) << m;
  EXPECT_NE(m.find("api.tls: unknown field"), std::string::npos) << m;
  EXPECT_NE(m.find("api.shared_memory"), std::string::npos) << m;
  EXPECT_NE(m.find("watch.min_p95_increase_ms: expected a number in [0, 60000], found -1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("watch.max_extension_factor: expected a number in [1, 1000], found 0.5"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("api.port: expected an integer in [0, 65535], found 70000"), std::string::npos)
      << m;
  EXPECT_NE(m.find("api.max_image_bytes: expected an integer in [4096, 1073741824], found 100"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("download.max_attempts"), std::string::npos) << m;
  EXPECT_NE(m.find("desired_state: expected at most one"), std::string::npos) << m;
  EXPECT_NE(m.find("backends[0]: expected a backend name ([a-z0-9_-]{1,32}), found \"TFLite\""),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("backend_options.opencv: expected an object, found integer"), std::string::npos)
      << m;
  EXPECT_NE(m.find("found \"Bad Name\""), std::string::npos) << m;
  EXPECT_NE(m.find("backend_options.onnxruntime.edgefleet_cache_dir: keys starting with "
                   "edgefleet_ are the agent's own"),
            std::string::npos)
      << m;
  EXPECT_EQ(m.rfind("/etc/edgefleet/agent.json: ", 0), 0u) << m;
}

TEST(ConfigTest, MalformedJsonAndWrongTypes) {
  EXPECT_EQ(ParseConfig("{", kPath).error().code, ErrorCode::kParse);
  auto c =
      ParseConfig(R"({"device":"Box 1","fleet":"demo","state_dir":3,"trust_root":"r"})", kPath);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("device"), std::string::npos);
  EXPECT_NE(c.error().message.find("state_dir: wrong type"), std::string::npos)
      << c.error().message;
}

TEST(ConfigTest, TheDefaultBackendsDirSitsBesideTheExecutable) {
  // lib/edgefleet/backends next to bin/: the build tree's own plugins for a built test binary.
  const auto exe = std::filesystem::read_symlink("/proc/self/exe");
  EXPECT_EQ(
      DefaultBackendsDir(),
      (exe.parent_path().parent_path() / "lib" / "edgefleet" / "backends").lexically_normal());
}

}  // namespace
}  // namespace edgefleet::agent
