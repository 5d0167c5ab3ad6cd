// The HTTP layer's response bodies from disk (FileRange), HEAD, TLS, and its URL helpers: real
// loopback sockets, files in a temp dir, the real curl and openssl.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "http/server.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::http {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

std::string RandomBytes(std::size_t n) {
  std::mt19937 rng(11);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// GET /file?first=N&length=M answers that range of `path` from disk.
Router FileRoutes(const fs::path& path) {
  Router router;
  router.Get("/file", Lane::kInline, [path](const Request& req, Response& res) {
    std::uint64_t first = 0, length = fs::file_size(path);
    for (const auto& [name, value] : ParseQuery(req.query)) {
      if (name == "first") first = std::stoull(value);
      if (name == "length") length = std::stoull(value);
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open");
    res.content_type = "application/octet-stream";
    res.SetHeader("X-Range", std::to_string(first) + "+" + std::to_string(length));
    res.file = std::make_shared<FileRange>(fd, first, length);
  });
  return router;
}

TEST(HttpUrl, PercentDecodeAndQueryStrings) {
  EXPECT_EQ(PercentDecode("/a%20b/%2e%2E/%2Fx", false), "/a b/../\x2fx");
  EXPECT_EQ(PercentDecode("a+b%2Bc", false), "a+b+c");
  EXPECT_EQ(PercentDecode("a+b%2Bc", true), "a b+c");
  EXPECT_EQ(PercentDecode("100%", false), "100%") << "a lone % stays";
  EXPECT_EQ(PercentDecode("%zz%4", false), "%zz%4");
  EXPECT_EQ(PercentDecode("%00", false), std::string(1, '\0'));
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(ParseQuery(""), Pairs{});
  EXPECT_EQ(ParseQuery("a=1&&b=x%20y+z&flag&c="),
            (Pairs{{"a", "1"}, {"b", "x y z"}, {"flag", ""}, {"c", ""}}));
  EXPECT_EQ(ParseQuery("k%3D=v%26w"), (Pairs{{"k=", "v&w"}}));
  EXPECT_EQ(ParseQuery("a=1&a=2"), (Pairs{{"a", "1"}, {"a", "2"}})) << "duplicates kept in order";
}

TEST(HttpServer, AFileRangeGoesOutFromDiskAndHeadSendsOnlyItsLength) {
  testing::TempDir temp;
  const fs::path path = temp.path() / "blob.bin";
  const std::string bytes = RandomBytes(5 * 1024 * 1024 + 3);  // many 64 KiB chunks and a tail
  testing::WriteFile(path, bytes);
  auto server = Server::Start(FileRoutes(path), {});
  ASSERT_TRUE(server) << server.error().message;
  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_keep_alive(true);
  auto whole = client.Get("/file");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->status, 200);
  EXPECT_TRUE(whole->body == bytes) << "got " << whole->body.size() << " bytes";
  EXPECT_EQ(whole->get_header_value("Content-Length"), std::to_string(bytes.size()));
  auto part = client.Get("/file?first=65530&length=70000");
  ASSERT_TRUE(part);
  EXPECT_TRUE(part->body == bytes.substr(65530, 70000));
  auto empty = client.Get("/file?first=10&length=0");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 200);
  EXPECT_EQ(empty->body, "");
  EXPECT_EQ(empty->get_header_value("Content-Length"), "0");

  // HEAD: the GET's headers and length, then the next request on the same connection works.
  auto head = client.Head("/file?first=1&length=1234");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->get_header_value("Content-Length"), "1234");
  EXPECT_EQ(head->get_header_value("X-Range"), "1+1234");
  EXPECT_EQ(head->body, "");
  auto after = client.Get("/file?first=0&length=4");
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->body == bytes.substr(0, 4)) << "HEAD left a body on the connection";
}

TEST(HttpServer, AFileThatShrinksWhileSentEndsTheConnectionShort) {
  testing::TempDir temp;
  const fs::path path = temp.path() / "blob.bin";
  testing::WriteFile(path, RandomBytes(64 * 1024));
  // The route promises 4 MiB of a 64 KiB file: the client must see a short body, never a
  // complete-looking wrong one.
  auto server = Server::Start(FileRoutes(path), {});
  ASSERT_TRUE(server) << server.error().message;
  httplib::Client client("127.0.0.1", (*server)->port());
  auto res = client.Get("/file?first=0&length=4194304");
  EXPECT_FALSE(res && res->status == 200 && res->body.size() == 4194304u);
  // The server goes on serving.
  httplib::Client next("127.0.0.1", (*server)->port());
  auto ok = next.Get("/file?first=0&length=10");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body.size(), 10u);
}

TEST(HttpServer, TlsWithTheGivenCertificateAndAClearErrorForABadOne) {
  testing::TempDir temp;
  const fs::path cert = temp.path() / "cert.pem", key = temp.path() / "key.pem";
  auto gen = testing::RunProcess(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
       key.string(), "-out", cert.string()},
      seconds(30));
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const fs::path blob = temp.path() / "blob.bin";
  const std::string bytes = RandomBytes(300 * 1024);
  testing::WriteFile(blob, bytes);
  ServerOptions options;
  options.tls_cert_file = cert.string();
  options.tls_key_file = key.string();
  auto server = Server::Start(FileRoutes(blob), options);
  ASSERT_TRUE(server) << server.error().message;
  const std::string url = "https://127.0.0.1:" + std::to_string((*server)->port()) + "/file";
  auto got = testing::RunProcess(
      {"curl", "-sS", "--max-time", "10", "--cacert", cert.string(), "-o",
       (temp.path() / "out.bin").string(), url, "-o", (temp.path() / "out2.bin").string(), url},
      seconds(20));
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(testing::ReadFile(temp.path() / "out.bin") == bytes);
  EXPECT_TRUE(testing::ReadFile(temp.path() / "out2.bin") == bytes) << "keep-alive over TLS";
  // Plain HTTP to the TLS port is not answered as HTTP.
  auto plain =
      testing::RunProcess({"curl", "-sS", "--max-time", "5",
                           "http://127.0.0.1:" + std::to_string((*server)->port()) + "/file"},
                          seconds(10));
  EXPECT_NE(plain.exit_code, 0);

  options.tls_key_file = blob.string();  // not a key
  auto bad = Server::Start(FileRoutes(blob), options);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("blob.bin"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("private key"), std::string::npos) << bad.error().message;
  options.tls_key_file.clear();
  bad = Server::Start(FileRoutes(blob), options);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("both"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace edgefleet::http
