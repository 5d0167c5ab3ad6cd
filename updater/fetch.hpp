// Downloading bundles (libcurl): http, https and file URLs, resumable, hash-checked, capped.
//
// The signed desired state names a URL, an exact size and a SHA-256; Fetcher::Fetch makes the
// file at `dest` hold exactly those bytes or leaves no file at `dest`. Bytes go to
// `<dest>.part` and are hashed as they stream; the part is renamed to `dest` only after size and
// hash match. What it defends against (TUF's attack list):
//   - endless data: never more than the declared size is written; a Content-Length or
//     Content-Range total above it is refused before the body is read, and the transfer is
//     aborted the moment a byte beyond the declared size arrives;
//   - slow retrieval: a transfer below `low_speed_limit` bytes/s for `low_speed_time` fails;
//   - arbitrary content: the SHA-256 is checked before the rename; a mismatch deletes the part;
//   - redirects to local files: redirects may go to http/https only, and at most
//     `max_redirects` times.
// A failure or restart leaves the part file; the next Fetch resumes from its size with a Range
// request. A server that ignores Range (200 instead of 206), answers 416, or sends a
// Content-Range that does not start where asked makes the download start over from byte 0.
// Retryable failures (connection errors, timeouts, HTTP 408, 429, 5xx) are retried with
// exponential backoff and full jitter, each retry resuming; other failures end the call at once.
//
// Thread safety: a Fetcher is immutable after Create; Fetch may be called from several threads
// at once for different destinations (each call owns its curl handle and files). Two calls on the
// same destination at once are not supported. Progress callbacks run on the calling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>

#include "manifests/result.hpp"
#include "updater/growing_file.hpp"

namespace edgefleet::updater {

struct TlsOptions {
  // PEM bundle of trusted CAs; empty: libcurl's built-in default (the system store).
  std::filesystem::path ca_file;
  // PEM client certificate and key for mutual TLS; both empty: no client certificate. The key may
  // be left empty when the certificate file holds the key too.
  std::filesystem::path client_cert;
  std::filesystem::path client_key;
};

struct RetryPolicy {
  // Total transfers per Fetch call, the first included (>= 1).
  int max_attempts = 5;
  // Before retry n (n >= 1) the call sleeps a uniform random time in
  // [0, min(max_delay, base_delay * 2^(n-1))] ("full jitter": a fleet that lost its server at the
  // same moment does not come back in lockstep). A Retry-After header raises the sleep, up to
  // max_delay.
  std::chrono::milliseconds base_delay{500};
  std::chrono::milliseconds max_delay{30'000};
};

// What the progress callback sees.
struct FetchProgress {
  std::uint64_t bytes = 0;        // bytes in the part file so far (resumed bytes included)
  std::uint64_t total = 0;        // the declared size
  double bytes_per_second = 0.0;  // network bytes of this call / time since the call started
  int attempt = 0;                // 1-based transfer number within this call
};

struct FetchOptions {
  TlsOptions tls;
  RetryPolicy retry;
  std::chrono::milliseconds connect_timeout{15'000};
  // The slow-retrieval defence; aktualizr's defaults. low_speed_limit 0 disables it.
  std::uint64_t low_speed_limit = 5'000;  // bytes per second
  std::chrono::seconds low_speed_time{60};
  // Receive bandwidth cap in bytes per second; 0: unlimited. Keeps a download from starving the
  // box's other traffic (telemetry, inference clients).
  std::uint64_t max_bytes_per_second = 0;
  // Free disk that must remain after the download (see disk.hpp).
  std::uint64_t disk_reserve_bytes = 64ull << 20;
  // 0 forbids redirects.
  int max_redirects = 5;
  // Progress is reported at most this often, and once more when the file is complete.
  std::chrono::milliseconds progress_interval{250};
  std::function<void(const FetchProgress&)> on_progress;
  // When set and it becomes true (e.g. from a SIGTERM handler), the transfer stops within about a
  // second, also during a backoff sleep; the part file stays for a later resume.
  const std::atomic<bool>* cancel = nullptr;
  std::string user_agent = "edgefleet-agent";
};

// What to fetch: from the signed desired state.
struct FetchRequest {
  std::string url;             // http://, https:// or file://
  std::filesystem::path dest;  // final path; its directory must exist
  std::uint64_t size = 0;      // exact size in bytes
  std::string sha256;          // 64 lowercase hex chars
  // When set, told every size the part file reaches and when it is truncated to start over, so
  // another thread can read the bundle as it arrives (growing_file.hpp). The caller reports the
  // end (GrowingFile::Finished) once Fetch returned.
  GrowingFile* follower = nullptr;
  // false: no fsync before the part file is renamed to `dest`. For a caller that keeps what it
  // needs durably elsewhere (the agent's slot, written while following the download): a file
  // torn by a power cut is found by the hash check a later Fetch makes of a `dest` in place.
  bool sync = true;
  // true: the size and hash are not known yet (`edgefleet rollout start` learns them from the
  // bundle it fetches): `size` is only the most the file may hold, `sha256` stays empty, and
  // FetchResult::size and ::sha256 say what arrived. Every defence above holds but the hash
  // check; nothing is resumed (a part file left over, or a retry, starts from byte 0, since no
  // hash can prove the pieces belong together), and only the disk reserve is checked up front.
  bool size_is_limit = false;
};

struct FetchResult {
  std::uint64_t bytes_fetched = 0;  // body bytes this call received over the network (or file)
  bool resumed = false;             // a Range request was honoured in this call
  std::uint64_t resumed_from = 0;   // offset of the first honoured Range request (if resumed)
  bool started_over = false;        // a partial download was discarded (no Range support, 416..)
  int attempts = 0;                 // transfers made; 0 when `dest` already held the file
  std::uint64_t size = 0;           // bytes in `dest` (FetchRequest::size_is_limit only)
  std::string sha256;               // their SHA-256, lowercase hex (size_is_limit only)
};

class Fetcher final {
 public:
  // Validates the options (kInvalidArgument naming the field; kNotFound for a missing TLS file)
  // and initialises libcurl once per process (kInternal if that fails).
  static Result<Fetcher> Create(FetchOptions options);

  // Downloads `request.url` to `request.dest` (see the top of this file). When `dest` already
  // holds a file of the declared size and hash, returns at once with attempts == 0.
  // Fails with:
  //   kInvalidArgument  a bad request (empty URL, unsupported scheme, malformed sha256, size 0);
  //   kIo               not enough free disk (free, needed and reserve named), a local write
  //                     error, a network failure after the last attempt, an HTTP error status,
  //                     or cancellation (message starts with "cancelled");
  //   kNotFound         HTTP 404/410 or a missing file:// source;
  //   kLimit            more bytes than declared, or slower than the speed floor;
  //   kIntegrity        size or SHA-256 differ from the declared ones (expected vs found).
  // Every message starts with the URL. On kIntegrity and kLimit for too many bytes the part
  // file is deleted; on other failures it is kept for a resume.
  Result<FetchResult> Fetch(const FetchRequest& request) const;

  const FetchOptions& options() const { return options_; }

 private:
  explicit Fetcher(FetchOptions options) : options_(std::move(options)) {}
  FetchOptions options_;
};

}  // namespace edgefleet::updater
