#include "updater/fetch.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "manifests/crypto.hpp"
#include "manifests/unique_fd.hpp"
#include "updater/disk.hpp"

namespace edgefleet::updater {
namespace {

using Clock = std::chrono::steady_clock;
using CurlHandle = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;

// curl_global_init is not safe to race with itself; every Fetcher goes through this once.
Status GlobalInit() {
  static std::once_flag once;
  static CURLcode code = CURLE_OK;
  std::call_once(once, [] { code = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (code != CURLE_OK) {
    return Fail(ErrorCode::kInternal, std::string("curl_global_init: ") + curl_easy_strerror(code));
  }
  return Ok();
}

std::string Errno(int err) { return std::strerror(err); }

using manifests::UniqueFd;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.remove_suffix(1);
  }
  return text;
}

std::optional<std::uint64_t> ParseU64(std::string_view text) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

// "bytes first-last/total" or "bytes */total"; total may be "*" (unknown).
struct ContentRange {
  std::optional<std::uint64_t> first;
  std::optional<std::uint64_t> last;
  std::optional<std::uint64_t> total;
};

std::optional<ContentRange> ParseContentRange(std::string_view value) {
  value = Trim(value);
  if (value.size() < 6 || !IEquals(value.substr(0, 6), "bytes ")) return std::nullopt;
  value = Trim(value.substr(6));
  const auto slash = value.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  ContentRange range;
  const std::string_view span = value.substr(0, slash);
  const std::string_view total = value.substr(slash + 1);
  if (total != "*") {
    range.total = ParseU64(total);
    if (!range.total) return std::nullopt;
  }
  if (span != "*") {
    const auto dash = span.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    range.first = ParseU64(span.substr(0, dash));
    range.last = ParseU64(span.substr(dash + 1));
    if (!range.first || !range.last || *range.last < *range.first) return std::nullopt;
  }
  return range;
}

enum class Scheme { kHttp, kFile };

std::optional<Scheme> SchemeOf(std::string_view url) {
  const auto colon = url.find("://");
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view scheme = url.substr(0, colon);
  if (IEquals(scheme, "http") || IEquals(scheme, "https")) return Scheme::kHttp;
  if (IEquals(scheme, "file")) return Scheme::kFile;
  return std::nullopt;
}

// What one transfer decided when it did not simply finish.
enum class Verdict {
  kNone,       // no decision yet (or the transfer ended normally)
  kRetry,      // transient: back off, then resume
  kStartOver,  // the partial bytes cannot be continued: truncate and fetch from byte 0
  kFatal,      // retrying cannot help
};

// State that lives for one Fetch call, across attempts. The part file plus `sha` are the download
// in progress; `written` is always the part file's size.
struct Download {
  const FetchRequest* request = nullptr;
  const FetchOptions* options = nullptr;
  Scheme scheme = Scheme::kHttp;
  int fd = -1;
  std::unique_ptr<manifests::Sha256> sha;
  std::uint64_t written = 0;
  FetchResult result;
  Clock::time_point started = Clock::now();
  Clock::time_point last_progress{};
  bool cancelled = false;
  WriteBehind write_behind;  // so the fsync before the rename has little left to do

  void ReportProgress(bool force) {
    if (!options->on_progress) return;
    const auto now = Clock::now();
    if (!force && now - last_progress < options->progress_interval) return;
    last_progress = now;
    const double seconds = std::chrono::duration<double>(now - started).count();
    FetchProgress progress;
    progress.bytes = written;
    progress.total = request->size_is_limit ? 0 : request->size;
    progress.bytes_per_second =
        seconds > 0 ? static_cast<double>(result.bytes_fetched) / seconds : 0.0;
    progress.attempt = result.attempts;
    options->on_progress(progress);
  }

  // Tells the follower, if any, how far the part file reaches.
  void Grew() const {
    if (request->follower != nullptr && written > 0) {
      request->follower->Grew(request->dest.string() + ".part", written);
    }
  }

  // Drops the partial bytes: after this the download is at byte 0 with a fresh hash.
  Status Truncate() {
    if (request->follower != nullptr) request->follower->Restarted();
    if (::ftruncate(fd, 0) != 0) {
      return Fail(ErrorCode::kIo, "truncate part file: " + Errno(errno));
    }
    sha = std::make_unique<manifests::Sha256>();
    if (written > 0) result.started_over = true;
    written = 0;
    return Ok();
  }
};

// State of one transfer (one curl_easy_perform).
struct Attempt {
  Download* download = nullptr;
  std::uint64_t range_from = 0;  // the Range we asked for (0: none)
  // Headers of the response being read; reset by each status line (redirects, 100 Continue).
  long status = 0;
  std::optional<std::uint64_t> content_length;
  std::string content_range;
  std::optional<std::uint64_t> retry_after_s;
  bool has_location = false;
  bool body_allowed = false;  // the final headers were accepted; body bytes may be written
  std::uint64_t body_bytes = 0;
  Verdict verdict = Verdict::kNone;
  Error error;

  void Decide(Verdict v, ErrorCode code, std::string message) {
    verdict = v;
    error = Error{code, std::move(message)};
  }

  // Judges the final response headers before any body byte is read. Returns false to abort.
  bool AcceptHeaders() {
    const std::uint64_t size = download->request->size;
    const std::string http = "HTTP " + std::to_string(status);
    if (status == 408 || status == 429 || (status >= 500 && status <= 599)) {
      Decide(Verdict::kRetry, ErrorCode::kIo, http);
      return false;
    }
    if (status == 416) {
      // Our Range starts inside the declared size, so either the file changed or the server
      // disagrees about its size. A total that differs from the declared size is final.
      const auto range = ParseContentRange(content_range);
      if (range && range->total && *range->total != size) {
        Decide(Verdict::kFatal, ErrorCode::kIntegrity,
               "size: expected " + std::to_string(size) + " bytes, server has " +
                   std::to_string(*range->total) + " (HTTP 416 for a Range from " +
                   std::to_string(range_from) + ")");
      } else {
        Decide(Verdict::kStartOver, ErrorCode::kIo,
               "HTTP 416 for a Range from byte " + std::to_string(range_from));
      }
      return false;
    }
    if (status == 404 || status == 410) {
      Decide(Verdict::kFatal, ErrorCode::kNotFound, http);
      return false;
    }
    if (status < 200 || status > 299) {
      Decide(Verdict::kFatal, ErrorCode::kIo, http);
      return false;
    }
    if (status == 206) {
      const auto range = ParseContentRange(content_range);
      if (!range || !range->first) {
        Decide(Verdict::kStartOver, ErrorCode::kIo,
               "HTTP 206 with an unusable Content-Range '" + content_range + "'");
        return false;
      }
      if (range->total && *range->total > size) {
        Decide(Verdict::kFatal, ErrorCode::kLimit,
               "Content-Range total " + std::to_string(*range->total) +
                   " exceeds the declared size " + std::to_string(size));
        return false;
      }
      if (range->total && *range->total < size && !download->request->size_is_limit) {
        Decide(Verdict::kFatal, ErrorCode::kIntegrity,
               "size: expected " + std::to_string(size) + " bytes, Content-Range total is " +
                   std::to_string(*range->total));
        return false;
      }
      if (*range->first != range_from) {
        // Appending bytes from another offset would corrupt the file; starting over is safe.
        Decide(Verdict::kStartOver, ErrorCode::kIo,
               "Content-Range starts at " + std::to_string(*range->first) + ", asked for " +
                   std::to_string(range_from));
        return false;
      }
      if (*range->last >= size || (content_length && *content_length > size - range_from)) {
        Decide(Verdict::kFatal, ErrorCode::kLimit,
               "a 206 from byte " + std::to_string(range_from) + " announces " +
                   std::to_string(content_length.value_or(*range->last - *range->first + 1)) +
                   " bytes, more than the declared size " + std::to_string(size) + " allows");
        return false;
      }
      if (range_from > 0 && !download->result.resumed) {
        download->result.resumed = true;
        download->result.resumed_from = range_from;
      }
    } else {
      // A 2xx other than 206 carries the whole file from byte 0.
      if (content_length && *content_length > size) {
        Decide(Verdict::kFatal, ErrorCode::kLimit,
               "Content-Length " + std::to_string(*content_length) + " exceeds the declared size " +
                   std::to_string(size));
        return false;
      }
      if (content_length && *content_length < size && !download->request->size_is_limit) {
        Decide(Verdict::kFatal, ErrorCode::kIntegrity,
               "size: expected " + std::to_string(size) + " bytes, Content-Length is " +
                   std::to_string(*content_length));
        return false;
      }
      if (download->written > 0) {
        // The server ignored our Range (or we sent none over a non-empty part): start over.
        // Done here, before the first body byte, so nothing is appended to stale bytes.
        if (auto st = download->Truncate(); !st) {
          Decide(Verdict::kFatal, st.error().code, st.error().message);
          return false;
        }
      }
    }
    body_allowed = true;
    return true;
  }
};

size_t OnHeader(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* attempt = static_cast<Attempt*>(userdata);
  const size_t n = size * nitems;
  if (attempt->download->scheme != Scheme::kHttp) return n;
  const std::string_view line = Trim(std::string_view(buffer, n));
  if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
    // A new response (after a redirect or an interim 1xx): forget the previous one's headers.
    attempt->status = 0;
    attempt->content_length.reset();
    attempt->content_range.clear();
    attempt->retry_after_s.reset();
    attempt->has_location = false;
    const auto space = line.find(' ');
    if (space != std::string_view::npos) {
      const auto code = ParseU64(line.substr(space + 1, 3));
      if (code) attempt->status = static_cast<long>(*code);
    }
    return n;
  }
  if (line.empty()) {
    if (attempt->status >= 100 && attempt->status <= 199) return n;
    const bool redirect = attempt->status >= 300 && attempt->status <= 399 &&
                          attempt->has_location && attempt->download->options->max_redirects > 0;
    if (redirect) return n;  // curl follows it, within the protocol and count limits set
    return attempt->AcceptHeaders() ? n : 0;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return n;
  const std::string_view name = Trim(line.substr(0, colon));
  const std::string_view value = Trim(line.substr(colon + 1));
  if (IEquals(name, "Content-Length")) {
    attempt->content_length = ParseU64(value);
    // An unparseable length is not trusted as "small": the write callback's cap still holds.
  } else if (IEquals(name, "Content-Range")) {
    attempt->content_range = std::string(value);
  } else if (IEquals(name, "Retry-After")) {
    attempt->retry_after_s = ParseU64(value);  // the HTTP-date form is ignored
  } else if (IEquals(name, "Location")) {
    attempt->has_location = true;
  }
  return n;
}

size_t OnBody(char* data, size_t size, size_t nmemb, void* userdata) {
  auto* attempt = static_cast<Attempt*>(userdata);
  Download& download = *attempt->download;
  const size_t n = size * nmemb;
  if (download.scheme == Scheme::kHttp && !attempt->body_allowed) {
    attempt->Decide(Verdict::kFatal, ErrorCode::kInternal, "body bytes before accepted headers");
    return 0;
  }
  if (download.scheme == Scheme::kFile && attempt->range_from > 0 && attempt->body_bytes == 0 &&
      !download.result.resumed) {
    download.result.resumed = true;
    download.result.resumed_from = attempt->range_from;
  }
  const std::uint64_t size_declared = download.request->size;
  if (n > size_declared - download.written) {
    // The endless-data defence: not one byte beyond the declared size reaches the disk.
    attempt->Decide(Verdict::kFatal, ErrorCode::kLimit,
                    "more bytes than the declared size " + std::to_string(size_declared) +
                        " (had " + std::to_string(download.written) + ", " + std::to_string(n) +
                        " more arrived)");
    return 0;
  }
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::write(download.fd, data + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      attempt->Decide(Verdict::kFatal, ErrorCode::kIo,
                      download.request->dest.string() + ".part: write: " + Errno(errno));
      return 0;
    }
    done += static_cast<size_t>(w);
  }
  download.sha->Update(std::string_view(data, n));
  download.written += n;
  // Only a download that is fsynced at its end gains from starting its write-back early; an
  // unsynced one would only compete for the disk with what the caller must make durable.
  if (download.request->sync) download.write_behind.Wrote(download.fd, download.written);
  download.Grew();
  download.result.bytes_fetched += n;
  attempt->body_bytes += n;
  return n;
}

int OnTransferInfo(void* userdata, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* attempt = static_cast<Attempt*>(userdata);
  Download& download = *attempt->download;
  // curl calls this at least once a second even when no byte moves, so a cancellation is seen
  // promptly also on a stalled connection.
  if (download.options->cancel != nullptr && download.options->cancel->load()) {
    download.cancelled = true;
    return 1;
  }
  download.ReportProgress(false);
  return 0;
}

bool IsRetryable(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

// Collects the first failing curl_easy_setopt so that setup reads as a flat list.
class Setup {
 public:
  explicit Setup(CURL* curl) : curl_(curl) {}
  template <typename T>
  void Set(CURLoption option, T value) {
    if (code_ != CURLE_OK) return;
    code_ = curl_easy_setopt(curl_, option, value);
    if (code_ != CURLE_OK) failed_option_ = static_cast<int>(option);
  }
  Status status() const {
    if (code_ == CURLE_OK) return Ok();
    return Fail(ErrorCode::kInternal, "curl_easy_setopt(" + std::to_string(failed_option_) +
                                          "): " + curl_easy_strerror(code_));
  }

 private:
  CURL* curl_;
  CURLcode code_ = CURLE_OK;
  int failed_option_ = 0;
};

// Runs one transfer from `download.written`. Returns the verdict; Verdict::kNone means the
// transfer ended without an error (the caller checks whether the file is complete).
Verdict RunAttempt(Download& download, Attempt& attempt) {
  const FetchOptions& options = *download.options;
  CurlHandle curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) {
    attempt.Decide(Verdict::kFatal, ErrorCode::kInternal, "curl_easy_init failed");
    return attempt.verdict;
  }
  char error_buffer[CURL_ERROR_SIZE] = {};
  const std::string range = std::to_string(attempt.range_from) + "-";
  Setup s(curl.get());
  s.Set(CURLOPT_URL, download.request->url.c_str());
  s.Set(CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: we run in a threaded agent
  // The first URL may be file:// only when the caller asked for it; redirects never reach the
  // local file system, whatever the server says.
  s.Set(CURLOPT_PROTOCOLS_STR, download.scheme == Scheme::kHttp ? "http,https" : "file");
  s.Set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  s.Set(CURLOPT_FOLLOWLOCATION, options.max_redirects > 0 ? 1L : 0L);
  s.Set(CURLOPT_MAXREDIRS, static_cast<long>(options.max_redirects));
  s.Set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
  if (options.low_speed_limit > 0) {
    s.Set(CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options.low_speed_limit));
    s.Set(CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.low_speed_time.count()));
  }
  if (options.max_bytes_per_second > 0) {
    s.Set(CURLOPT_MAX_RECV_SPEED_LARGE, static_cast<curl_off_t>(options.max_bytes_per_second));
    // curl checks the limit between read cycles of up to 100 buffers; with the default 16 KiB
    // buffer a fast link delivers over 1.5 MB before the first check. Buffers of 1/256 of the
    // limit keep a cycle under half a second's worth, so the cap holds over short spans too.
    s.Set(CURLOPT_BUFFERSIZE, static_cast<long>(std::clamp<std::uint64_t>(
                                  options.max_bytes_per_second / 256, 1024, CURL_MAX_WRITE_SIZE)));
  } else {
    // 512 KiB reads: a 100 MB bundle arrives in about 200 write callbacks instead of 6,000
    // (each one hashes, writes and wakes the reader that unpacks while the download runs),
    // for half a MiB of memory during a download.
    s.Set(CURLOPT_BUFFERSIZE, 512L * 1024);
  }
  s.Set(CURLOPT_TCP_KEEPALIVE, 1L);
  // A proxy's "200 Connection established" must not reach OnHeader, where it would read as a
  // server ignoring our Range.
  s.Set(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  s.Set(CURLOPT_USERAGENT, options.user_agent.c_str());
  if (!options.tls.ca_file.empty()) s.Set(CURLOPT_CAINFO, options.tls.ca_file.c_str());
  if (!options.tls.client_cert.empty()) s.Set(CURLOPT_SSLCERT, options.tls.client_cert.c_str());
  if (!options.tls.client_key.empty()) s.Set(CURLOPT_SSLKEY, options.tls.client_key.c_str());
  if (attempt.range_from > 0) s.Set(CURLOPT_RANGE, range.c_str());
  s.Set(CURLOPT_HEADERFUNCTION, &OnHeader);
  s.Set(CURLOPT_HEADERDATA, static_cast<void*>(&attempt));
  s.Set(CURLOPT_WRITEFUNCTION, &OnBody);
  s.Set(CURLOPT_WRITEDATA, static_cast<void*>(&attempt));
  s.Set(CURLOPT_XFERINFOFUNCTION, &OnTransferInfo);
  s.Set(CURLOPT_XFERINFODATA, static_cast<void*>(&attempt));
  s.Set(CURLOPT_NOPROGRESS, 0L);
  s.Set(CURLOPT_ERRORBUFFER, error_buffer);
  if (auto st = s.status(); !st) {
    attempt.Decide(Verdict::kFatal, st.error().code, st.error().message);
    return attempt.verdict;
  }

  const CURLcode code = curl_easy_perform(curl.get());
  if (download.cancelled || attempt.verdict != Verdict::kNone) return attempt.verdict;
  if (code == CURLE_OK) return Verdict::kNone;

  const std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
  if (code == CURLE_OPERATION_TIMEDOUT && attempt.body_allowed) {
    attempt.Decide(Verdict::kRetry, ErrorCode::kLimit,
                   "too slow: below " + std::to_string(options.low_speed_limit) + " bytes/s for " +
                       std::to_string(options.low_speed_time.count()) +
                       " s (slow-retrieval defence; curl: " + detail + ")");
  } else if (IsRetryable(code)) {
    attempt.Decide(Verdict::kRetry, ErrorCode::kIo, detail);
  } else if (code == CURLE_FILE_COULDNT_READ_FILE) {
    attempt.Decide(Verdict::kFatal, ErrorCode::kNotFound, detail);
  } else if (code == CURLE_BAD_DOWNLOAD_RESUME || code == CURLE_RANGE_ERROR) {
    attempt.Decide(Verdict::kStartOver, ErrorCode::kIo, detail);
  } else {
    attempt.Decide(Verdict::kFatal, ErrorCode::kIo, detail);
  }
  return attempt.verdict;
}

// Sleeps `delay` in short slices; returns false when cancelled meanwhile.
bool SleepUnlessCancelled(std::chrono::milliseconds delay, const std::atomic<bool>* cancel) {
  const auto until = Clock::now() + delay;
  while (Clock::now() < until) {
    if (cancel != nullptr && cancel->load()) return false;
    std::this_thread::sleep_for(
        std::min<Clock::duration>(std::chrono::milliseconds(50), until - Clock::now()));
  }
  return cancel == nullptr || !cancel->load();
}

std::chrono::milliseconds Backoff(const RetryPolicy& retry, int retry_number,
                                  std::optional<std::uint64_t> retry_after_s) {
  // Capped before shifting so that a large attempt count cannot overflow.
  const int shift = std::min(retry_number - 1, 30);
  const std::int64_t base = retry.base_delay.count();
  const std::int64_t cap = std::min<std::int64_t>(
      retry.max_delay.count(), base > (INT64_MAX >> shift) ? INT64_MAX : base << shift);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> pick(0, std::max<std::int64_t>(cap, 0));
  std::int64_t ms = pick(rng);
  if (retry_after_s) {
    const std::int64_t asked =
        *retry_after_s > 86'400 ? INT64_MAX : static_cast<std::int64_t>(*retry_after_s) * 1000;
    ms = std::max(ms, std::min(asked, retry.max_delay.count()));
  }
  return std::chrono::milliseconds(ms);
}

// Reads the existing part file through SHA-256. This is how the hash state survives a restart:
// the part file is the only state, and re-hashing it costs one local read instead of a download.
Status HashExisting(Download& download, std::uint64_t bytes) {
  std::vector<char> buffer(1 << 20);
  std::uint64_t offset = 0;
  while (offset < bytes) {
    const size_t want = static_cast<size_t>(std::min<std::uint64_t>(buffer.size(), bytes - offset));
    const ssize_t got = ::pread(download.fd, buffer.data(), want, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      return Fail(ErrorCode::kIo, download.request->dest.string() + ".part: read: " +
                                      (got < 0 ? Errno(errno) : std::string("unexpected end")));
    }
    download.sha->Update(std::string_view(buffer.data(), static_cast<size_t>(got)));
    offset += static_cast<std::uint64_t>(got);
  }
  download.written = bytes;
  return Ok();
}

// Makes a rename durable: without syncing the directory, a power cut can forget it.
void SyncDirectory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

Result<Fetcher> Fetcher::Create(FetchOptions options) {
  if (options.retry.max_attempts < 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "fetch options: retry.max_attempts: must be >= 1, is " +
                    std::to_string(options.retry.max_attempts));
  }
  if (options.retry.base_delay.count() < 0 || options.retry.max_delay < options.retry.base_delay) {
    return Fail(ErrorCode::kInvalidArgument,
                "fetch options: retry: need 0 <= base_delay <= max_delay, have " +
                    std::to_string(options.retry.base_delay.count()) + " ms and " +
                    std::to_string(options.retry.max_delay.count()) + " ms");
  }
  if (options.connect_timeout.count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "fetch options: connect_timeout: must be > 0");
  }
  if (options.low_speed_limit > 0 && options.low_speed_time.count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "fetch options: low_speed_time: must be > 0 when low_speed_limit is set");
  }
  if (options.max_redirects < 0) {
    return Fail(ErrorCode::kInvalidArgument, "fetch options: max_redirects: must be >= 0");
  }
  const std::pair<const char*, const std::filesystem::path*> files[] = {
      {"tls.ca_file", &options.tls.ca_file},
      {"tls.client_cert", &options.tls.client_cert},
      {"tls.client_key", &options.tls.client_key}};
  for (const auto& [name, path] : files) {
    std::error_code ec;
    if (!path->empty() && !std::filesystem::is_regular_file(*path, ec)) {
      return Fail(ErrorCode::kNotFound,
                  std::string("fetch options: ") + name + ": no such file: " + path->string());
    }
  }
  if (!options.tls.client_key.empty() && options.tls.client_cert.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "fetch options: tls.client_key: given without tls.client_cert");
  }
  EF_RETURN_IF_ERROR(GlobalInit());
  return Fetcher(std::move(options));
}

Result<FetchResult> Fetcher::Fetch(const FetchRequest& request) const {
  const std::string& url = request.url;
  auto fail = [&url](ErrorCode code, const std::string& message) {
    return Fail(code, (url.empty() ? std::string("(no url)") : url) + ": " + message);
  };
  const auto scheme = SchemeOf(url);
  if (!scheme) return fail(ErrorCode::kInvalidArgument, "url: expected http, https or file");
  const bool limit = request.size_is_limit;
  if (limit ? !request.sha256.empty() : !manifests::IsLowerHex(request.sha256, 64)) {
    return fail(ErrorCode::kInvalidArgument,
                limit ? "sha256: must be empty when the size is only a limit"
                      : "sha256: expected 64 lowercase hex digits");
  }
  if (request.size == 0) return fail(ErrorCode::kInvalidArgument, "size: must be > 0");
  if (request.dest.filename().empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "dest: no file name in '" + request.dest.string() + "'");
  }
  const std::filesystem::path part = request.dest.string() + ".part";
  const std::filesystem::path dir =
      request.dest.has_parent_path() ? request.dest.parent_path() : std::filesystem::path(".");

  // A previous call may have finished just before a crash cut off its caller: accept that file.
  std::error_code ec;
  if (!limit && std::filesystem::is_regular_file(request.dest, ec) &&
      std::filesystem::file_size(request.dest, ec) == request.size && !ec) {
    auto hash = manifests::Sha256File(request.dest);
    if (hash && *hash == request.sha256) {
      std::filesystem::remove(part, ec);  // a leftover of an older attempt, if any
      return FetchResult{};
    }
  }

  // Free disk before the first byte: only what the part file still lacks is needed.
  std::uint64_t part_bytes = 0;
  struct stat part_stat {};
  if (::stat(part.c_str(), &part_stat) == 0 && S_ISREG(part_stat.st_mode)) {
    part_bytes = static_cast<std::uint64_t>(part_stat.st_size);
  }
  if (part_bytes > request.size || limit) part_bytes = 0;  // not a prefix of ours: discarded
  if (auto st =
          CheckFreeSpace(dir, limit ? 0 : request.size - part_bytes, options_.disk_reserve_bytes);
      !st) {
    return fail(st.error().code, st.error().message);
  }

  UniqueFd fd(::open(part.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (fd.get() < 0) return fail(ErrorCode::kIo, part.string() + ": open: " + Errno(errno));
  struct stat opened {};
  if (::fstat(fd.get(), &opened) != 0) {
    return fail(ErrorCode::kIo, part.string() + ": stat: " + Errno(errno));
  }

  Download download;
  download.request = &request;
  download.options = &options_;
  download.scheme = *scheme;
  download.fd = fd.get();
  download.sha = std::make_unique<manifests::Sha256>();
  auto existing = static_cast<std::uint64_t>(opened.st_size);
  if (existing > request.size || (limit && existing > 0)) {
    download.written = existing;  // so that Truncate records the start-over
    if (auto st = download.Truncate(); !st)
      return fail(st.error().code, part.string() + ": " + st.error().message);
    existing = 0;
  }
  if (auto st = HashExisting(download, existing); !st)
    return fail(st.error().code, st.error().message);
  download.Grew();  // a resumed download's reader starts on the bytes already there

  auto remove_part = [&] {
    fd.Close();
    std::filesystem::remove(part, ec);
  };

  Error last_error;
  bool complete = false;  // a transfer ended normally (size_is_limit)
  while (!complete && (limit || download.written < request.size)) {
    if (options_.cancel != nullptr && options_.cancel->load()) {
      download.cancelled = true;
      break;
    }
    if (download.result.attempts >= options_.retry.max_attempts) {
      return fail(last_error.code, "gave up after " + std::to_string(download.result.attempts) +
                                       " attempts; last: " + last_error.message);
    }
    ++download.result.attempts;
    if (limit && download.written > 0) {
      if (auto st = download.Truncate(); !st) return fail(st.error().code, st.error().message);
    }
    Attempt attempt;
    attempt.download = &download;
    attempt.range_from = download.written;
    const Verdict verdict = RunAttempt(download, attempt);
    if (download.cancelled) break;
    switch (verdict) {
      case Verdict::kNone:
        complete = limit;
        if (!limit && download.written < request.size) {
          // The body ended early without the transport noticing (no Content-Length, or a
          // shorter local file): resumable for HTTP, final for a file that is what it is.
          const std::string message = "size: expected " + std::to_string(request.size) +
                                      " bytes, the transfer ended at " +
                                      std::to_string(download.written);
          if (download.scheme == Scheme::kFile) {
            remove_part();
            return fail(ErrorCode::kIntegrity, message);
          }
          last_error = Error{ErrorCode::kIo, message};
          if (download.result.attempts < options_.retry.max_attempts &&
              !SleepUnlessCancelled(Backoff(options_.retry, download.result.attempts, std::nullopt),
                                    options_.cancel)) {
            download.cancelled = true;
          }
        }
        break;
      case Verdict::kRetry:
        last_error = attempt.error;
        if (download.result.attempts < options_.retry.max_attempts &&
            !SleepUnlessCancelled(
                Backoff(options_.retry, download.result.attempts, attempt.retry_after_s),
                options_.cancel)) {
          download.cancelled = true;
        }
        break;
      case Verdict::kStartOver:
        last_error = attempt.error;
        if (auto st = download.Truncate(); !st) return fail(st.error().code, st.error().message);
        break;
      case Verdict::kFatal:
        // Content the server should never have sent: nothing of it is kept.
        if (attempt.error.code == ErrorCode::kIntegrity ||
            attempt.error.code == ErrorCode::kLimit) {
          remove_part();
        }
        return fail(attempt.error.code, attempt.error.message);
    }
    if (download.cancelled) break;
  }
  if (download.cancelled) {
    return fail(ErrorCode::kIo, "cancelled at " + std::to_string(download.written) +
                                    (limit ? " of at most " : " of ") +
                                    std::to_string(request.size) +
                                    " bytes; the part file is kept for a resume");
  }

  const std::string found = download.sha->FinishHex();
  if (limit) {
    download.result.size = download.written;
    download.result.sha256 = found;
  } else if (found != request.sha256) {
    remove_part();
    return fail(ErrorCode::kIntegrity, "sha256: expected " + request.sha256 + ", found " + found);
  }
  download.ReportProgress(true);
  if (request.sync && ::fsync(fd.get()) != 0)
    return fail(ErrorCode::kIo, part.string() + ": fsync: " + Errno(errno));
  if (fd.Close() != 0) return fail(ErrorCode::kIo, part.string() + ": close: " + Errno(errno));
  std::filesystem::rename(part, request.dest, ec);
  if (ec) {
    return fail(ErrorCode::kIo,
                "rename " + part.string() + " to " + request.dest.string() + ": " + ec.message());
  }
  if (request.sync) SyncDirectory(dir);
  return download.result;
}

}  // namespace edgefleet::updater
