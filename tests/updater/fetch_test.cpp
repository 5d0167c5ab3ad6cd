// Tests of updater/fetch against a real HTTP server on a loopback port. The server (cpp-httplib)
// does its own Range handling so each test decides how it misbehaves (cut the connection, ignore
// Range, send too much, trickle, fail with a status) and counts the body bytes it sent, which is
// what the resume acceptance numbers are measured with.
#include "updater/fetch.hpp"
#include "updater/growing_file.hpp"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "manifests/crypto.hpp"
#include "tests/support/temp_dir.hpp"
#include "updater/disk.hpp"

namespace edgefleet::updater {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using edgefleet::testing::ReadFile;
using edgefleet::testing::TempDir;
using edgefleet::testing::WriteFile;
using std::chrono::milliseconds;

constexpr std::uint64_t kNever = UINT64_MAX;

// A peer closing mid-response must show up as an error, not kill the test process.
[[maybe_unused]] const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string RandomBytes(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// Serves one file at /file with test-controlled behaviour; /missing is a plain 404.
class FileServer final {
 public:
  explicit FileServer(std::string data) : data_(std::move(data)) {
    server_.set_keep_alive_max_count(1);  // one request per connection: cuts are per transfer
    server_.Get("/file",
                [this](const httplib::Request& req, httplib::Response& res) { Serve(req, res); });
    server_.Get("/to-file", [](const httplib::Request&, httplib::Response& res) {
      res.set_redirect("file:///etc/passwd");
    });
    server_.Get("/to-http", [this](const httplib::Request&, httplib::Response& res) {
      res.set_redirect(Url("/file"));
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!server_.is_running() && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(5));
    }
  }
  ~FileServer() {
    stopping_ = true;
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  FileServer(const FileServer&) = delete;
  FileServer& operator=(const FileServer&) = delete;

  bool running() const { return port_ > 0 && server_.is_running(); }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  // Knobs, set by a test before the fetch it is about.
  std::atomic<bool> honour_range{true};
  std::atomic<std::uint64_t> cut_at{kNever};  // close when the file offset reaches it (once)
  std::atomic<std::uint64_t> extra_bytes{0};  // sent after the file, without Content-Length
  std::atomic<std::int64_t> claimed_length{-1};
  std::atomic<int> fail_status{0};
  std::atomic<int> fail_count{0};      // the next N requests get fail_status
  std::atomic<int> bad_range_once{0};  // 1: answer 416 once; 2: a 206 from the wrong offset once
  std::atomic<std::size_t> chunk{64 * 1024};
  std::atomic<int> delay_ms{0};  // after each chunk

  // Counters.
  std::atomic<std::uint64_t> bytes_sent{0};
  std::atomic<int> requests{0};

 private:
  void Serve(const httplib::Request& req, httplib::Response& res) {
    ++requests;
    if (fail_count.load() > 0) {
      --fail_count;
      res.status = fail_status.load();
      return;
    }
    const std::uint64_t size = data_.size();
    std::uint64_t from = 0;
    bool partial = false;
    const std::string range = req.get_header_value("Range");
    if (honour_range && range.rfind("bytes=", 0) == 0 && range.back() == '-') {
      from = std::stoull(range.substr(6, range.size() - 7));
      partial = true;
      int mode = bad_range_once.exchange(0);
      if (from >= size || mode == 1) {
        res.status = 416;
        res.set_header("Content-Range", "bytes */" + std::to_string(size));
        return;
      }
      if (mode == 2) from = from / 2;  // the header below is honest about the wrong start
    }
    res.status = partial ? 206 : 200;
    if (partial) {
      res.set_header("Content-Range", "bytes " + std::to_string(from) + "-" +
                                          std::to_string(size - 1) + "/" + std::to_string(size));
    }
    const std::uint64_t extra = extra_bytes.load();
    if (claimed_length.load() >= 0) {
      res.set_header("Content-Length", std::to_string(claimed_length.load()));
    } else if (extra == 0) {
      res.set_header("Content-Length", std::to_string(size - from));
    }
    // A provider without length: httplib leaves Range alone and writes exactly what we hand it.
    res.set_content_provider("application/octet-stream",
                             [this, from, size, extra](size_t offset, httplib::DataSink& sink) {
                               const std::uint64_t pos = from + offset;
                               const std::uint64_t end = size + extra;
                               if (pos >= end) {
                                 sink.done();
                                 return true;
                               }
                               std::uint64_t n = std::min<std::uint64_t>(chunk.load(), end - pos);
                               const std::uint64_t cut = cut_at.load();
                               if (cut != kNever && pos < cut && pos + n > cut) n = cut - pos;
                               if (cut != kNever && pos == cut) {
                                 cut_at = kNever;
                                 return false;  // closes the connection mid-body
                               }
                               std::string piece;
                               if (pos < size)
                                 piece = data_.substr(pos, std::min<std::uint64_t>(n, size - pos));
                               piece.resize(n, 'X');
                               if (!sink.write(piece.data(), piece.size())) return false;
                               bytes_sent += n;
                               for (int waited = 0; waited < delay_ms.load() && !stopping_;
                                    waited += 10) {
                                 std::this_thread::sleep_for(milliseconds(10));
                               }
                               return !stopping_.load();
                             });
  }

  const std::string data_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
};

class FetchTest : public ::testing::Test {
 protected:
  static constexpr std::size_t kSize = (1 << 20) + 123;

  FetchTest() : data_(RandomBytes(kSize, 7)), sha_(manifests::Sha256Hex(data_)), server_(data_) {}

  void SetUp() override { ASSERT_TRUE(server_.running()); }

  // Fast retries and no disk reserve, so that tests take milliseconds, not minutes.
  static FetchOptions Options() {
    FetchOptions options;
    options.retry.max_attempts = 5;
    options.retry.base_delay = milliseconds(10);
    options.retry.max_delay = milliseconds(50);
    options.connect_timeout = milliseconds(2000);
    options.disk_reserve_bytes = 0;
    return options;
  }
  static Fetcher Make(FetchOptions options) {
    auto fetcher = Fetcher::Create(std::move(options));
    EXPECT_TRUE(fetcher) << fetcher.error().message;
    return std::move(fetcher).value();
  }
  FetchRequest Request(const std::string& path = "/file") const {
    return FetchRequest{server_.Url(path), dest(), kSize, sha_};
  }
  fs::path dest() const { return dir_ / "bundle.efb"; }
  fs::path part() const { return dir_ / "bundle.efb.part"; }
  std::uint64_t PartSize() const { return fs::exists(part()) ? fs::file_size(part()) : 0; }

  // Leaves a part file holding the first half: the server cuts at 50 %, one attempt allowed.
  void LeaveHalfPart() {
    server_.cut_at = kSize / 2;
    FetchOptions options = Options();
    options.retry.max_attempts = 1;
    auto result = Make(options).Fetch(Request());
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, ErrorCode::kIo) << result.error().message;
    ASSERT_EQ(PartSize(), kSize / 2);
    ASSERT_FALSE(fs::exists(dest()));
  }

  TempDir dir_;
  const std::string data_;
  const std::string sha_;
  FileServer server_;
};

TEST_F(FetchTest, DownloadsWholeFileAndChecksHash) {
  std::vector<FetchProgress> progress;
  FetchOptions options = Options();
  options.on_progress = [&](const FetchProgress& p) { progress.push_back(p); };
  auto result = Make(options).Fetch(Request());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->attempts, 1);
  EXPECT_EQ(result->bytes_fetched, kSize);
  EXPECT_FALSE(result->resumed);
  EXPECT_FALSE(result->started_over);
  EXPECT_EQ(ReadFile(dest()), data_);
  EXPECT_FALSE(fs::exists(part()));
  EXPECT_EQ(server_.bytes_sent.load(), kSize);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().bytes, kSize);
  EXPECT_EQ(progress.back().total, kSize);
  EXPECT_EQ(progress.back().attempt, 1);

  // A second call finds the verified file in place and fetches nothing.
  auto again = Make(Options()).Fetch(Request());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->attempts, 0);
  EXPECT_EQ(server_.requests.load(), 1);
}

// Acceptance 3 (download half), within one call: the retry resumes where the cut happened.
TEST_F(FetchTest, CutAtHalfResumesWithinOneCall) {
  server_.cut_at = kSize / 2;
  auto result = Make(Options()).Fetch(Request());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->attempts, 2);
  EXPECT_TRUE(result->resumed);
  EXPECT_EQ(result->resumed_from, kSize / 2);
  EXPECT_EQ(result->bytes_fetched, kSize);
  EXPECT_EQ(ReadFile(dest()), data_);
  const std::uint64_t again = server_.bytes_sent.load() - kSize;
  std::printf("resume within a call: server sent %llu bytes for a %zu-byte file (%llu again)\n",
              static_cast<unsigned long long>(server_.bytes_sent.load()), kSize,
              static_cast<unsigned long long>(again));
  EXPECT_LT(again, kSize / 20);
}

// Acceptance 3 (download half), across a restart: a new Fetcher on the same destination.
TEST_F(FetchTest, CutAtHalfResumesAfterRestart) {
  ASSERT_NO_FATAL_FAILURE(LeaveHalfPart());
  const std::uint64_t sent_before = server_.bytes_sent.load();
  auto result = Make(Options()).Fetch(Request());  // "after the restart": a fresh object
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->attempts, 1);
  EXPECT_TRUE(result->resumed);
  EXPECT_EQ(result->resumed_from, kSize / 2);
  EXPECT_EQ(result->bytes_fetched, kSize - kSize / 2);
  EXPECT_EQ(ReadFile(dest()), data_);
  EXPECT_FALSE(fs::exists(part()));
  const std::uint64_t total = server_.bytes_sent.load();
  const std::uint64_t again = total - kSize;
  std::printf("resume after restart: %llu bytes before the cut, %llu after, %llu again\n",
              static_cast<unsigned long long>(sent_before),
              static_cast<unsigned long long>(total - sent_before),
              static_cast<unsigned long long>(again));
  EXPECT_LT(again, kSize / 20);
}

TEST_F(FetchTest, ServerIgnoringRangeStartsOver) {
  ASSERT_NO_FATAL_FAILURE(LeaveHalfPart());
  server_.honour_range = false;
  auto result = Make(Options()).Fetch(Request());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->started_over);
  EXPECT_FALSE(result->resumed);
  EXPECT_EQ(result->bytes_fetched, kSize);
  EXPECT_EQ(ReadFile(dest()), data_);
}

TEST_F(FetchTest, Status416StartsOver) {
  ASSERT_NO_FATAL_FAILURE(LeaveHalfPart());
  server_.bad_range_once = 1;
  auto result = Make(Options()).Fetch(Request());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->started_over);
  EXPECT_EQ(result->attempts, 2);
  EXPECT_EQ(ReadFile(dest()), data_);
}

TEST_F(FetchTest, ContentRangeFromWrongOffsetStartsOver) {
  ASSERT_NO_FATAL_FAILURE(LeaveHalfPart());
  server_.bad_range_once = 2;
  auto result = Make(Options()).Fetch(Request());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->started_over);
  EXPECT_EQ(result->attempts, 2);
  EXPECT_EQ(ReadFile(dest()), data_);
}

// Acceptance 4 (download half): endless data.
TEST_F(FetchTest, MoreBytesThanDeclaredAreRefused) {
  server_.extra_bytes = 1000;  // no Content-Length: only the byte count can tell
  auto result = Make(Options()).Fetch(Request());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kLimit);
  EXPECT_NE(
      result.error().message.find("more bytes than the declared size " + std::to_string(kSize)),
      std::string::npos)
      << result.error().message;
  EXPECT_EQ(server_.requests.load(), 1);  // not retried
  EXPECT_FALSE(fs::exists(dest()));
  EXPECT_FALSE(fs::exists(part()));
}

TEST_F(FetchTest, ContentLengthAboveDeclaredIsRefusedBeforeTheBody) {
  server_.claimed_length = static_cast<std::int64_t>(kSize) + 1;
  std::uint64_t most = 0;
  FetchOptions options = Options();
  options.on_progress = [&](const FetchProgress& p) { most = std::max(most, p.bytes); };
  auto result = Make(options).Fetch(Request());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kLimit);
  EXPECT_NE(result.error().message.find("Content-Length " + std::to_string(kSize + 1) +
                                        " exceeds the declared size " + std::to_string(kSize)),
            std::string::npos)
      << result.error().message;
  EXPECT_EQ(most, 0u);
  EXPECT_EQ(server_.requests.load(), 1);
  EXPECT_FALSE(fs::exists(dest()));
  EXPECT_FALSE(fs::exists(part()));
}

// `edgefleet rollout start` fetches a bundle it knows nothing of: the size is only a limit, and
// what arrived is reported, hashed as it streamed.
FetchRequest LimitRequest(FetchRequest request, std::uint64_t limit) {
  request.size = limit;
  request.sha256.clear();
  request.size_is_limit = true;
  return request;
}

TEST_F(FetchTest, ASizeLimitFetchReportsTheSizeAndHashOfWhatArrived) {
  std::vector<FetchProgress> progress;
  FetchOptions options = Options();
  options.on_progress = [&](const FetchProgress& p) { progress.push_back(p); };
  auto result = Make(options).Fetch(LimitRequest(Request(), 8 * kSize));
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->size, kSize);
  EXPECT_EQ(result->sha256, sha_);
  EXPECT_EQ(ReadFile(dest()), data_);
  EXPECT_FALSE(fs::exists(part()));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().bytes, kSize);
  EXPECT_EQ(progress.back().total, 0u) << "the size is not known";

  // Exactly at the limit is allowed; one byte less is refused, before the body when the server
  // says its length, by the byte count when it does not.
  ASSERT_TRUE(Make(Options()).Fetch(LimitRequest(Request(), kSize)));
  auto over = Make(Options()).Fetch(LimitRequest(Request(), kSize - 1));
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::kLimit) << over.error().message;
  server_.extra_bytes = 1000;  // no Content-Length
  fs::remove(dest());
  over = Make(Options()).Fetch(LimitRequest(Request(), kSize + 999));
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::kLimit) << over.error().message;
  EXPECT_FALSE(fs::exists(dest()));
  EXPECT_FALSE(fs::exists(part()));

  auto hashed = LimitRequest(Request(), kSize);
  hashed.sha256 = sha_;
  auto refused = Make(Options()).Fetch(hashed);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("sha256: must be empty"), std::string::npos);
}

// Without a hash, pieces from two transfers cannot be proven to belong together: a part file left
// over is discarded and a cut transfer starts over, and the result is still the whole file.
TEST_F(FetchTest, ASizeLimitFetchNeverResumes) {
  ASSERT_NO_FATAL_FAILURE(LeaveHalfPart());
  server_.cut_at = kSize / 3;
  auto result = Make(Options()).Fetch(LimitRequest(Request(), 8 * kSize));
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->attempts, 2);
  EXPECT_FALSE(result->resumed);
  EXPECT_TRUE(result->started_over);
  EXPECT_EQ(result->size, kSize);
  EXPECT_EQ(result->sha256, sha_);
  EXPECT_EQ(ReadFile(dest()), data_);
}

// Acceptance 4 (download half): slow retrieval.
TEST_F(FetchTest, TrickleBelowTheSpeedFloorIsRefusedPromptly) {
  server_.chunk = 100;
  server_.delay_ms = 100;  // 1 kB/s
  FetchOptions options = Options();
  options.low_speed_limit = 10'000;
  options.low_speed_time = std::chrono::seconds(2);
  options.retry.max_attempts = 1;
  const auto start = Clock::now();
  auto result = Make(options).Fetch(Request());
  const double elapsed = Seconds(Clock::now() - start);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kLimit);
  EXPECT_NE(result.error().message.find("too slow"), std::string::npos) << result.error().message;
  EXPECT_LT(elapsed, 4.0);
  EXPECT_GE(elapsed, 1.5);
  EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(FetchTest, RetriesTwo503sThenSucceeds) {
  server_.fail_status = 503;
  server_.fail_count = 2;
  auto result = Make(Options()).Fetch(Request());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->attempts, 3);
  EXPECT_EQ(server_.requests.load(), 3);
  EXPECT_EQ(ReadFile(dest()), data_);
}

TEST_F(FetchTest, GivesUpAfterTheAttemptCap) {
  server_.fail_status = 500;
  server_.fail_count = 100;
  FetchOptions options = Options();
  options.retry.max_attempts = 3;
  auto result = Make(options).Fetch(Request());
  ASSERT_FALSE(result);
  EXPECT_EQ(server_.requests.load(), 3);
  EXPECT_NE(result.error().message.find("after 3 attempts"), std::string::npos)
      << result.error().message;
  EXPECT_NE(result.error().message.find("HTTP 500"), std::string::npos);
}

TEST_F(FetchTest, NotFoundFailsAtOnce) {
  auto result = Make(Options()).Fetch(Request("/missing"));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kNotFound);
  EXPECT_NE(result.error().message.find("HTTP 404"), std::string::npos) << result.error().message;
  EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(FetchTest, ForbiddenIsNotRetried) {
  server_.fail_status = 403;
  server_.fail_count = 100;
  auto result = Make(Options()).Fetch(Request());
  ASSERT_FALSE(result);
  EXPECT_EQ(server_.requests.load(), 1);
  EXPECT_NE(result.error().message.find("HTTP 403"), std::string::npos) << result.error().message;
}

TEST_F(FetchTest, WrongShaIsRefusedAndThePartRemoved) {
  FetchRequest request = Request();
  request.sha256 = manifests::Sha256Hex("something else");
  auto result = Make(Options()).Fetch(request);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIntegrity);
  EXPECT_NE(result.error().message.find("expected " + request.sha256 + ", found " + sha_),
            std::string::npos)
      << result.error().message;
  EXPECT_FALSE(fs::exists(dest()));
  EXPECT_FALSE(fs::exists(part()));
}

TEST_F(FetchTest, RedirectsGoToHttpButNeverToFiles) {
  auto ok = Make(Options()).Fetch(Request("/to-http"));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ReadFile(dest()), data_);
  fs::remove(dest());

  auto refused = Make(Options()).Fetch(Request("/to-file"));
  ASSERT_FALSE(refused);
  EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(FetchTest, FileUrlDownloadsAndResumes) {
  const fs::path source = dir_ / "source.efb";
  WriteFile(source, data_);
  FetchRequest request{"file://" + source.string(), dest(), kSize, sha_};
  auto whole = Make(Options()).Fetch(request);
  ASSERT_TRUE(whole) << whole.error().message;
  EXPECT_EQ(whole->bytes_fetched, kSize);
  EXPECT_EQ(ReadFile(dest()), data_);

  request.dest = dir_ / "second.efb";
  WriteFile(dir_ / "second.efb.part", data_.substr(0, kSize / 3));
  auto resumed = Make(Options()).Fetch(request);
  ASSERT_TRUE(resumed) << resumed.error().message;
  EXPECT_TRUE(resumed->resumed);
  EXPECT_EQ(resumed->resumed_from, kSize / 3);
  EXPECT_EQ(resumed->bytes_fetched, kSize - kSize / 3);
  EXPECT_EQ(ReadFile(request.dest), data_);

  request.url = "file://" + (dir_ / "absent.efb").string();
  request.dest = dir_ / "third.efb";
  auto missing = Make(Options()).Fetch(request);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound) << missing.error().message;
}

// Acceptance 4 (download half): a full disk.
TEST_F(FetchTest, NotEnoughDiskIsRefusedBeforeAnyByte) {
  auto free_bytes = FreeBytes(dir_.path());
  ASSERT_TRUE(free_bytes) << free_bytes.error().message;
  FetchOptions options = Options();
  options.disk_reserve_bytes = *free_bytes + (1ull << 30);
  auto result = Make(options).Fetch(Request());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kIo);
  const std::string& message = result.error().message;
  EXPECT_NE(message.find("not enough free disk"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(kSize) + " needed"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(options.disk_reserve_bytes) + " reserve"),
            std::string::npos)
      << message;
  EXPECT_EQ(server_.requests.load(), 0);
  EXPECT_FALSE(fs::exists(part()));
}

TEST_F(FetchTest, CancellationStopsPromptlyAndKeepsThePart) {
  server_.chunk = 16 * 1024;
  server_.delay_ms = 50;  // about 320 kB/s: the whole file would take over 3 s
  std::atomic<bool> cancel{false};
  FetchOptions options = Options();
  options.cancel = &cancel;
  Clock::time_point cancelled_at{};
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(500));
    cancelled_at = Clock::now();
    cancel = true;
  });
  auto result = Make(options).Fetch(Request());
  const auto returned_at = Clock::now();
  canceller.join();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("cancelled"), std::string::npos) << result.error().message;
  EXPECT_LT(Seconds(returned_at - cancelled_at), 1.5);
  const std::uint64_t kept = PartSize();
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, kSize);
  EXPECT_FALSE(fs::exists(dest()));

  server_.delay_ms = 0;
  auto resumed = Make(Options()).Fetch(Request());
  ASSERT_TRUE(resumed) << resumed.error().message;
  EXPECT_TRUE(resumed->resumed);
  EXPECT_EQ(resumed->resumed_from, kept);
  EXPECT_EQ(ReadFile(dest()), data_);
}

TEST_F(FetchTest, BandwidthLimitIsRoughlyRespectedAndProgressThrottled) {
  constexpr std::uint64_t kLimit = 512 * 1024;
  int calls = 0;
  FetchProgress last;
  FetchOptions options = Options();
  options.max_bytes_per_second = kLimit;
  options.on_progress = [&](const FetchProgress& p) {
    ++calls;
    last = p;
  };
  const auto start = Clock::now();
  auto result = Make(options).Fetch(Request());
  const double elapsed = Seconds(Clock::now() - start);
  ASSERT_TRUE(result) << result.error().message;
  const double rate = static_cast<double>(kSize) / elapsed;
  std::printf("bandwidth limit %llu B/s: %.0f B/s over %.2f s, %d progress calls\n",
              static_cast<unsigned long long>(kLimit), rate, elapsed, calls);
  // The first read cycle is not limited (curl measures after it), so allow some excess.
  EXPECT_LT(rate, 1.5 * static_cast<double>(kLimit));
  EXPECT_GT(elapsed, 1.2);
  EXPECT_GT(rate, 0.5 * static_cast<double>(kLimit));
  EXPECT_LE(calls, static_cast<int>(elapsed / 0.25) + 3);
  EXPECT_GE(calls, 3);
  EXPECT_EQ(last.bytes, kSize);
  EXPECT_GT(last.bytes_per_second, 0.0);
}

// A reader following the part file through a GrowingFile (the one-pass update): what it reads,
// and whether it had bytes before the download finished.
struct FollowResult {
  Result<std::string> bytes = std::string();
  bool read_before_end = false;
};

FollowResult FetchFollowing(const Fetcher& fetcher, FetchRequest request) {
  GrowingFile follower;
  request.follower = &follower;
  std::atomic<bool> fetch_done{false};
  FollowResult out;
  std::thread reader([&] {
    GrowingFileSource source(follower);
    std::string got;
    std::vector<std::byte> buffer(4096);
    while (true) {
      Result<std::size_t> n = source.Read(buffer);
      if (!n) {
        out.bytes = Unexpected(n.error());
        return;
      }
      if (*n == 0) break;
      if (!fetch_done.load()) out.read_before_end = true;
      got.append(reinterpret_cast<const char*>(buffer.data()), *n);
    }
    out.bytes = std::move(got);
  });
  auto fetched = fetcher.Fetch(request);
  fetch_done = true;
  follower.Finished(fetched ? std::optional<fs::path>(request.dest) : std::nullopt);
  reader.join();
  EXPECT_TRUE(fetched) << fetched.error().message;
  return out;
}

TEST_F(FetchTest, AFollowerReadsTheBundleWhileItArrives) {
  server_.chunk = 16 * 1024;
  server_.delay_ms = 2;  // about 70 chunks: the reader must not wait for the end
  FollowResult followed = FetchFollowing(Make(Options()), Request());
  ASSERT_TRUE(followed.bytes) << followed.bytes.error().message;
  EXPECT_EQ(*followed.bytes, data_);
  EXPECT_TRUE(followed.read_before_end);
}

TEST_F(FetchTest, AFollowerOfAResumedDownloadReadsFromByteZero) {
  ASSERT_NO_FATAL_FAILURE(LeaveHalfPart());
  FollowResult followed = FetchFollowing(Make(Options()), Request());
  ASSERT_TRUE(followed.bytes) << followed.bytes.error().message;
  EXPECT_EQ(*followed.bytes, data_);
}

TEST_F(FetchTest, AFollowerIsToldWhenTheDownloadStartsOver) {
  ASSERT_NO_FATAL_FAILURE(LeaveHalfPart());
  server_.honour_range = false;  // the server resends from byte 0: the part file is truncated
  FollowResult followed = FetchFollowing(Make(Options()), Request());
  ASSERT_FALSE(followed.bytes);
  EXPECT_EQ(followed.bytes.error().code, ErrorCode::kAborted);
  EXPECT_EQ(ReadFile(dest()), data_);  // the download itself succeeded
}

TEST_F(FetchTest, AFollowerOfAFileAlreadyInPlaceReadsItWhole) {
  ASSERT_TRUE(Make(Options()).Fetch(Request()));
  FollowResult followed = FetchFollowing(Make(Options()), Request());
  ASSERT_TRUE(followed.bytes) << followed.bytes.error().message;
  EXPECT_EQ(*followed.bytes, data_);
  EXPECT_EQ(server_.requests.load(), 1);
}

TEST(GrowingFile, AFailedDownloadEndsTheReadWithAborted) {
  GrowingFile follower;
  std::optional<Result<std::size_t>> got;
  std::thread reader([&] {
    GrowingFileSource source(follower);
    std::vector<std::byte> buffer(16);
    got = source.Read(buffer);  // blocks: nothing was written yet
  });
  follower.Finished(std::nullopt);
  reader.join();
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(*got);
  EXPECT_EQ(got->error().code, ErrorCode::kAborted);
}

TEST(FetcherCreate, RefusesBadOptionsAndRequests) {
  FetchOptions options;
  options.retry.max_attempts = 0;
  auto bad = Fetcher::Create(options);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("retry.max_attempts"), std::string::npos);

  options = FetchOptions{};
  options.tls.ca_file = "/nonexistent/ca.pem";
  auto missing = Fetcher::Create(options);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("tls.ca_file"), std::string::npos);

  auto fetcher = Fetcher::Create(FetchOptions{});
  ASSERT_TRUE(fetcher) << fetcher.error().message;
  TempDir dir;
  const std::string sha = manifests::Sha256Hex("x");
  auto ftp = fetcher->Fetch({"ftp://example.invalid/x", dir / "x", 1, sha});
  ASSERT_FALSE(ftp);
  EXPECT_EQ(ftp.error().code, ErrorCode::kInvalidArgument);
  auto short_sha = fetcher->Fetch({"http://127.0.0.1:1/x", dir / "x", 1, "abc"});
  ASSERT_FALSE(short_sha);
  EXPECT_NE(short_sha.error().message.find("sha256"), std::string::npos);
}

}  // namespace
}  // namespace edgefleet::updater
