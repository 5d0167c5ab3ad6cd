// `edgefleet serve` end to end: the real process on a free port, fetched with the real curl and
// with the agent's own downloader (updater::Fetcher), bytes compared for every range form.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "manifests/crypto.hpp"
#include "tests/support/background_process.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "updater/fetch.hpp"

namespace edgefleet {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BackgroundProcess;
using testing::ProcessResult;
using testing::RunProcess;
using testing::TempDir;

std::string RandomBytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = tmp_ / "files";
    fs::create_directories(files_ / "sub");
    bundle_ = RandomBytes(3 * 1024 * 1024 + 17, 7);
    testing::WriteFile(files_ / "model-1.2.0.efb", bundle_);
    testing::WriteFile(files_ / "sub" / "note.txt", "hello\n");
    testing::WriteFile(tmp_ / "secret.txt", "outside\n");
  }

  void TearDown() override {
    if (server_ && server_->Running()) StopCleanly();
  }

  void Start(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        EDGEFLEET_CLI, "serve",       "--dir",       files_.string(),
        "--http",      "127.0.0.1:0", "--port-file", (tmp_ / "port").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    server_ = std::make_unique<BackgroundProcess>(argv, tmp_ / "serve.log");
    const auto deadline = std::chrono::steady_clock::now() + seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      std::error_code ec;
      if (fs::exists(tmp_ / "port", ec)) {
        port_ = std::stoi(testing::ReadFile(tmp_ / "port"));
        break;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    ASSERT_GT(port_, 0) << Log();
    EXPECT_NE(Log().find("event=serve_started http_port=" + std::to_string(port_)),
              std::string::npos)
        << Log();
  }

  void StopCleanly() {
    server_->Signal(SIGTERM);
    auto code = server_->Wait(seconds(20));
    ASSERT_TRUE(code.has_value()) << "serve did not exit after SIGTERM\n" << Log();
    EXPECT_EQ(*code, 0) << Log();
    EXPECT_NE(Log().find("event=serve_stopped"), std::string::npos) << Log();
    for (const char* bad : {"Sanitizer", "runtime error:"}) {
      EXPECT_EQ(Log().find(bad), std::string::npos) << Log();
    }
  }

  std::string Log() const {
    std::error_code ec;
    return fs::exists(tmp_ / "serve.log", ec) ? testing::ReadFile(tmp_ / "serve.log") : "";
  }

  std::string Url(const std::string& path, const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(port_) + path;
  }

  struct Reply {
    int status = 0;
    std::string headers;  // lower-cased
    std::string body;
  };

  // The real curl; --path-as-is so "/../" reaches the server as typed.
  Reply Curl(const std::string& path, std::vector<std::string> extra = {}) {
    const fs::path body = tmp_ / "body", headers = tmp_ / "headers";
    fs::remove(body);
    fs::remove(headers);
    std::vector<std::string> argv = {"curl",        "-sS", "--path-as-is",   "-o",
                                     body.string(), "-D",  headers.string(), "-w",
                                     "%{http_code}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(Url(path));
    ProcessResult r = RunProcess(argv, seconds(60));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Reply reply;
    reply.status = std::atoi(r.out.c_str());
    std::error_code ec;
    if (fs::exists(headers, ec)) reply.headers = testing::ReadFile(headers);
    for (char& c : reply.headers)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (fs::exists(body, ec)) reply.body = testing::ReadFile(body);
    return reply;
  }

  static bool HasHeader(const Reply& r, const std::string& line) {
    return r.headers.find(line + "\r\n") != std::string::npos;
  }

  TempDir tmp_;
  fs::path files_;
  std::string bundle_;
  std::unique_ptr<BackgroundProcess> server_;
  int port_ = 0;
};

TEST_F(ServeTest, WholeFileRangesOfEveryFormAndHead) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::string size = std::to_string(bundle_.size());

  Reply whole = Curl("/model-1.2.0.efb");
  EXPECT_EQ(whole.status, 200);
  EXPECT_TRUE(whole.body == bundle_) << "whole file differs";
  EXPECT_TRUE(HasHeader(whole, "content-length: " + size)) << whole.headers;
  EXPECT_TRUE(HasHeader(whole, "accept-ranges: bytes")) << whole.headers;
  EXPECT_NE(whole.headers.find("etag: \""), std::string::npos) << whole.headers;

  struct Case {
    std::string range;
    std::size_t first, length;
  };
  const std::size_t n = bundle_.size();
  for (const Case& c : std::vector<Case>{{"bytes=0-0", 0, 1},
                                         {"bytes=0-9", 0, 10},
                                         {"bytes=100-", 100, n - 100},
                                         {"bytes=1048570-1048585", 1048570, 16},
                                         {"bytes=-25", n - 25, 25},
                                         {"bytes=-99999999", 0, n},
                                         {"bytes=" + std::to_string(n - 3) + "-99999999", n - 3, 3},
                                         {"bytes=" + std::to_string(n - 1) + "-", n - 1, 1}}) {
    SCOPED_TRACE(c.range);
    Reply r = Curl("/model-1.2.0.efb", {"-H", "Range: " + c.range});
    EXPECT_EQ(r.status, 206);
    EXPECT_TRUE(r.body == bundle_.substr(c.first, c.length))
        << "range bytes differ; got " << r.body.size() << " bytes";
    EXPECT_TRUE(HasHeader(r, "content-length: " + std::to_string(c.length))) << r.headers;
    EXPECT_TRUE(HasHeader(r, "content-range: bytes " + std::to_string(c.first) + "-" +
                                 std::to_string(c.first + c.length - 1) + "/" + size))
        << r.headers;
  }

  for (const std::string& range :
       std::vector<std::string>{"bytes=" + size + "-", "bytes=99999999-", "bytes=-0"}) {
    SCOPED_TRACE(range);
    Reply r = Curl("/model-1.2.0.efb", {"-H", "Range: " + range});
    EXPECT_EQ(r.status, 416);
    EXPECT_TRUE(HasHeader(r, "content-range: bytes */" + size)) << r.headers;
    EXPECT_TRUE(r.body.empty());
  }

  // Several ranges are not supported: the whole file with 200 (RFC 9110 allows ignoring Range).
  Reply multi = Curl("/model-1.2.0.efb", {"-H", "Range: bytes=0-1,5-6"});
  EXPECT_EQ(multi.status, 200);
  EXPECT_TRUE(multi.body == bundle_);

  Reply head = Curl("/model-1.2.0.efb", {"-I"});
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(HasHeader(head, "content-length: " + size)) << head.headers;
  EXPECT_TRUE(HasHeader(head, "accept-ranges: bytes")) << head.headers;
  // With -I curl writes the headers to -o too: anything beyond them would be a body.
  std::string head_output = head.body;
  for (char& c : head_output) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(head_output, head.headers);
  Reply head_range = Curl("/model-1.2.0.efb", {"-I", "-H", "Range: bytes=10-19"});
  EXPECT_EQ(head_range.status, 206);
  EXPECT_TRUE(HasHeader(head_range, "content-length: 10")) << head_range.headers;

  Reply nested = Curl("/sub/note.txt");
  EXPECT_EQ(nested.status, 200);
  EXPECT_EQ(nested.body, "hello\n");
  Reply index = Curl("/");
  EXPECT_EQ(index.status, 200);
  EXPECT_NE(index.body.find("\"model-1.2.0.efb\""), std::string::npos) << index.body;

  EXPECT_NE(Log().find("event=served method=GET path=/model-1.2.0.efb status=206 bytes=10 "
                       "range=\"bytes=0-9\""),
            std::string::npos)
      << Log();
  StopCleanly();
}

TEST_F(ServeTest, RefusesPathsOutsideTheDirectoryAndNonRegularFiles) {
  fs::create_symlink(tmp_ / "secret.txt", files_ / "escape.txt");
  fs::create_symlink("/etc", files_ / "etc");
  fs::create_symlink("model-1.2.0.efb", files_ / "latest.efb");  // inside: allowed
  ASSERT_EQ(::mkfifo((files_ / "pipe").c_str(), 0600), 0);
  ASSERT_NO_FATAL_FAILURE(Start());

  for (const std::string& path : std::vector<std::string>{
           "/../etc/passwd", "/%2e%2e/etc/passwd", "/%2E%2E/secret.txt", "/sub/../../secret.txt",
           "/sub/%2e%2e/%2e%2e/secret.txt", "//etc/passwd", "/%2fetc/passwd", "/escape.txt",
           "/etc/passwd", "/./model-1.2.0.efb", "/sub", "/pipe"}) {
    for (const bool with_range : {false, true}) {
      SCOPED_TRACE(path + (with_range ? " with Range" : ""));
      std::vector<std::string> extra;
      if (with_range) extra = {"-H", "Range: bytes=0-3"};
      Reply r = Curl(path, extra);
      EXPECT_TRUE(r.status == 403 || r.status == 404) << r.status;
      EXPECT_EQ(r.body.find("root:"), std::string::npos);
      EXPECT_EQ(r.body.find("outside"), std::string::npos);
      EXPECT_NE(r.body.find("\"error\""), std::string::npos) << r.body;
    }
  }
  EXPECT_EQ(Curl("/missing.efb").status, 404);
  Reply inside = Curl("/latest.efb", {"-H", "Range: bytes=0-3"});
  EXPECT_EQ(inside.status, 206);
  EXPECT_TRUE(inside.body == bundle_.substr(0, 4));
  StopCleanly();
}

TEST_F(ServeTest, AgentFetcherDownloadsAndResumesFromAPartFile) {
  ASSERT_NO_FATAL_FAILURE(Start());
  updater::FetchOptions options;
  options.disk_reserve_bytes = 0;
  options.retry.max_attempts = 1;
  auto fetcher = updater::Fetcher::Create(options);
  ASSERT_TRUE(fetcher) << fetcher.error().message;
  const std::string sha = manifests::Sha256Hex(bundle_);

  updater::FetchRequest request{Url("/model-1.2.0.efb"), tmp_ / "whole.efb", bundle_.size(), sha};
  auto whole = fetcher->Fetch(request);
  ASSERT_TRUE(whole) << whole.error().message;
  EXPECT_FALSE(whole->resumed);
  EXPECT_TRUE(testing::ReadFile(tmp_ / "whole.efb") == bundle_);

  const std::size_t kept = 1234567;
  request.dest = tmp_ / "resumed.efb";
  testing::WriteFile(tmp_ / "resumed.efb.part", bundle_.substr(0, kept));
  auto resumed = fetcher->Fetch(request);
  ASSERT_TRUE(resumed) << resumed.error().message;
  EXPECT_TRUE(resumed->resumed);
  EXPECT_EQ(resumed->resumed_from, kept);
  EXPECT_EQ(resumed->bytes_fetched, bundle_.size() - kept);
  EXPECT_FALSE(resumed->started_over);
  EXPECT_TRUE(testing::ReadFile(tmp_ / "resumed.efb") == bundle_);
  auto file_sha = manifests::Sha256File(tmp_ / "resumed.efb");
  ASSERT_TRUE(file_sha);
  EXPECT_EQ(*file_sha, sha);
  EXPECT_NE(Log().find("range=\"bytes=" + std::to_string(kept) + "-\""), std::string::npos)
      << Log();
  StopCleanly();
}

std::uint64_t VmHwmKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

TEST_F(ServeTest, StreamsA100MiBFileWithSmallMemory) {
  constexpr std::uint64_t kSize = 100ull << 20;
  const fs::path big = files_ / "big.efb";
  {
    std::ofstream out(big, std::ios::binary);
    // Sparse-ish: a marked block every 10 MiB, holes in between.
    for (std::uint64_t off = 0; off < kSize; off += 10ull << 20) {
      out.seekp(static_cast<std::streamoff>(off));
      out << "block@" << off;
    }
    out.seekp(static_cast<std::streamoff>(kSize - 4));
    out << "end!";
  }
  ASSERT_EQ(fs::file_size(big), kSize);
  {
    // Under AddressSanitizer freed chunks sit in a 256 MiB quarantine, so the sanitizer's own
    // memory would be measured; a small quarantine keeps the check about our streaming. Other
    // builds ignore the variable. The child inherits it; it is restored right after.
    const char* old = std::getenv("ASAN_OPTIONS");
    const std::string saved = old != nullptr ? old : "";
    const std::string value = (saved.empty() ? "" : saved + ":") + "quarantine_size_mb=1";
    ::setenv("ASAN_OPTIONS", value.c_str(), 1);
    Start();
    if (old != nullptr) {
      ::setenv("ASAN_OPTIONS", saved.c_str(), 1);
    } else {
      ::unsetenv("ASAN_OPTIONS");
    }
  }
  ASSERT_FALSE(HasFatalFailure());
  // The peak before any download: the process with its libraries (and, under sanitizers, their
  // runtime). Streaming means the 100 MiB download adds little to it; slurping adds >= 100 MiB.
  const std::uint64_t start_hwm_kib = VmHwmKiB(server_->pid());
  ASSERT_GT(start_hwm_kib, 0u);

  const fs::path got = tmp_ / "big.copy";
  ProcessResult r = RunProcess(
      {"curl", "-sS", "-o", got.string(), "-w", "%{http_code}", Url("/big.efb")}, seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "200");
  ASSERT_EQ(fs::file_size(got), kSize);
  auto want = manifests::Sha256File(big);
  auto have = manifests::Sha256File(got);
  ASSERT_TRUE(want && have);
  EXPECT_EQ(*have, *want);
  fs::remove(got);

  Reply tail = Curl("/big.efb", {"-H", "Range: bytes=-4"});
  EXPECT_EQ(tail.status, 206);
  EXPECT_EQ(tail.body, "end!");
  Reply mid = Curl("/big.efb", {"-H", "Range: bytes=52428800-52428810"});
  EXPECT_EQ(mid.status, 206);
  EXPECT_EQ(mid.body, "block@52428");

  const std::uint64_t hwm_kib = VmHwmKiB(server_->pid());
  ASSERT_GE(hwm_kib, start_hwm_kib);
  EXPECT_LT(hwm_kib - start_hwm_kib, 64u * 1024)
      << "serve's peak RSS grew from " << start_hwm_kib << " to " << hwm_kib << " KiB";
  std::cout << "serve VmHWM: " << start_hwm_kib << " KiB at start, " << hwm_kib
            << " KiB after a 100 MiB download\n";
  StopCleanly();
}

TEST_F(ServeTest, HttpsWithTheGivenCertificate) {
  ProcessResult gen = RunProcess(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
       (tmp_ / "key.pem").string(), "-out", (tmp_ / "cert.pem").string()},
      seconds(30));
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  ASSERT_NO_FATAL_FAILURE(Start(
      {"--tls-cert", (tmp_ / "cert.pem").string(), "--tls-key", (tmp_ / "key.pem").string()}));
  ProcessResult r = RunProcess({"curl", "-sS", "--cacert", (tmp_ / "cert.pem").string(), "-H",
                                "Range: bytes=5-14", Url("/model-1.2.0.efb", "https")},
                               seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.err << Log();
  EXPECT_TRUE(r.out == bundle_.substr(5, 10));

  updater::FetchOptions options;
  options.disk_reserve_bytes = 0;
  options.retry.max_attempts = 1;
  options.tls.ca_file = tmp_ / "cert.pem";
  auto fetcher = updater::Fetcher::Create(options);
  ASSERT_TRUE(fetcher) << fetcher.error().message;
  auto got = fetcher->Fetch({Url("/model-1.2.0.efb", "https"), tmp_ / "tls.efb", bundle_.size(),
                             manifests::Sha256Hex(bundle_)});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_TRUE(testing::ReadFile(tmp_ / "tls.efb") == bundle_);
  StopCleanly();
}

TEST(ServeCli, BadFlagsExit2AndAMissingDirectoryExits1) {
  TempDir tmp;
  ProcessResult no_dir = RunProcess({EDGEFLEET_CLI, "serve", "--http", "127.0.0.1:0"});
  EXPECT_EQ(no_dir.exit_code, 2) << no_dir.err;
  ProcessResult bad_http =
      RunProcess({EDGEFLEET_CLI, "serve", "--dir", tmp.path().string(), "--http", "nope"});
  EXPECT_EQ(bad_http.exit_code, 2) << bad_http.err;
  ProcessResult big_port =
      RunProcess({EDGEFLEET_CLI, "serve", "--dir", tmp.path().string(), "--http", "h:70000"});
  EXPECT_EQ(big_port.exit_code, 2) << big_port.err;
  ProcessResult half_tls = RunProcess({EDGEFLEET_CLI, "serve", "--dir", tmp.path().string(),
                                       "--http", "127.0.0.1:0", "--tls-cert", "c.pem"});
  EXPECT_EQ(half_tls.exit_code, 2) << half_tls.err;
  const std::string missing = (tmp / "no-such-dir").string();
  ProcessResult gone =
      RunProcess({EDGEFLEET_CLI, "serve", "--dir", missing, "--http", "127.0.0.1:0"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find(missing), std::string::npos) << gone.err;
}

TEST(ServeCli, SigintStopsWithExit0) {
  TempDir tmp;
  BackgroundProcess p({EDGEFLEET_CLI, "serve", "--dir", tmp.path().string(), "--http",
                       "127.0.0.1:0", "--port-file", (tmp / "port").string()},
                      tmp / "serve.log");
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  while (!fs::exists(tmp / "port") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(fs::exists(tmp / "port")) << testing::ReadFile(tmp / "serve.log");
  p.Signal(SIGINT);
  auto code = p.Wait(seconds(20));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << testing::ReadFile(tmp / "serve.log");
}

}  // namespace
}  // namespace edgefleet
