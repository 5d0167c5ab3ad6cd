// serve: the bundle server (deploy/serve/bundle_server.hpp): the files of one directory over
// HTTP(S), streamed from disk with single-range support.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "deploy/common/files.hpp"
#include "deploy/common/stop_signals.hpp"
#include "deploy/serve/bundle_server.hpp"
#include "http/server.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;
using manifests::LogValue;

// The byte range [first, first + length) of a file of `size` bytes.
struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};

enum class RangeKind { kNone, kSatisfiable, kUnsatisfiable };

std::optional<std::uint64_t> ParseNumber(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

// One "bytes=N-", "bytes=N-M" or "bytes=-K" range (RFC 9110 14.1.2). Anything else (several
// ranges, other units, malformed text) is kNone: the whole file is sent with 200, which RFC 9110
// allows for a Range header the server does not support.
RangeKind ParseRange(const std::string& header, std::uint64_t size, ByteRange& out) {
  constexpr std::string_view kPrefix = "bytes=";
  std::string_view spec(header);
  if (spec.substr(0, kPrefix.size()) != kPrefix) return RangeKind::kNone;
  spec.remove_prefix(kPrefix.size());
  while (!spec.empty() && spec.front() == ' ') spec.remove_prefix(1);
  while (!spec.empty() && spec.back() == ' ') spec.remove_suffix(1);
  if (spec.find(',') != std::string_view::npos) return RangeKind::kNone;
  const std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return RangeKind::kNone;
  const std::string_view first_text = spec.substr(0, dash);
  const std::string_view last_text = spec.substr(dash + 1);
  if (first_text.empty()) {  // suffix: the last K bytes
    const auto suffix = ParseNumber(last_text);
    if (!suffix) return RangeKind::kNone;
    if (*suffix == 0 || size == 0) return RangeKind::kUnsatisfiable;
    out.length = std::min(*suffix, size);
    out.first = size - out.length;
    return RangeKind::kSatisfiable;
  }
  const auto first = ParseNumber(first_text);
  if (!first) return RangeKind::kNone;
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!last_text.empty()) {
    const auto parsed = ParseNumber(last_text);
    if (!parsed || *parsed < *first) return RangeKind::kNone;
    last = std::min(*parsed, last);
  }
  if (*first >= size) return RangeKind::kUnsatisfiable;
  out.first = *first;
  out.length = last - *first + 1;
  return RangeKind::kSatisfiable;
}

// Why a request path does not name a file that may be served.
enum class Refusal { kNone, kForbidden, kNotFound };

// Maps the (percent-decoded) request path to a regular file under `root` (canonical). Refuses
// "..", "." and empty segments, absolute paths after the leading '/', NUL bytes, and anything
// whose symlinks resolve outside `root`.
Refusal Resolve(const fs::path& root, const std::string& request_path, fs::path& out) {
  if (request_path.empty() || request_path.front() != '/') return Refusal::kForbidden;
  const std::string_view rel = std::string_view(request_path).substr(1);
  if (rel.empty() || rel.find('\0') != std::string_view::npos ||
      rel.find('\\') != std::string_view::npos) {
    return Refusal::kForbidden;
  }
  std::size_t start = 0;
  while (start <= rel.size()) {
    std::size_t end = rel.find('/', start);
    if (end == std::string_view::npos) end = rel.size();
    const std::string_view segment = rel.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return Refusal::kForbidden;
    start = end + 1;
  }
  std::error_code ec;
  const fs::path resolved = fs::canonical(root / fs::path(std::string(rel)), ec);
  if (ec) return Refusal::kNotFound;
  const std::string& r = root.native();
  const std::string& p = resolved.native();
  const bool inside =
      p.size() > r.size() && p.compare(0, r.size(), r) == 0 && (r == "/" || p[r.size()] == '/');
  if (!inside) return Refusal::kForbidden;
  out = resolved;
  return Refusal::kNone;
}

std::string ContentType(const fs::path& path) {
  return path.extension() == ".json" ? "application/json" : "application/octet-stream";
}

void SetError(http::Response& res, int status, const std::string& message) {
  res.status = status;
  res.body = nlohmann::json{{"error", message}}.dump() + "\n";
  res.content_type = "application/json";
}

// The top-level regular files of `root`: [{"name", "size"}], names sorted.
std::string Index(const fs::path& root) {
  std::vector<std::pair<std::string, std::uintmax_t>> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::error_code entry_ec;
    if (!entry.is_regular_file(entry_ec) || entry.is_symlink(entry_ec)) continue;
    const std::uintmax_t size = entry.file_size(entry_ec);
    if (entry_ec) continue;
    files.emplace_back(entry.path().filename().string(), size);
  }
  std::sort(files.begin(), files.end());
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [name, size] : files) list.push_back({{"name", name}, {"size", size}});
  return nlohmann::json{{"files", list}}.dump(2, ' ', false,
                                              nlohmann::json::error_handler_t::replace) +
         "\n";
}

void ServeFile(const fs::path& root, const http::Request& req, http::Response& res) {
  if (req.path == "/") {
    res.status = 200;
    res.body = Index(root);
    return;
  }
  fs::path file;
  switch (Resolve(root, http::PercentDecode(req.path, /*plus_as_space=*/false), file)) {
    case Refusal::kForbidden:
      return SetError(res, 403, "forbidden path");
    case Refusal::kNotFound:
      return SetError(res, 404, "not found");
    case Refusal::kNone:
      break;
  }
  // O_NONBLOCK: opening a FIFO someone put in the directory must not hang this thread.
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return SetError(res, 404, "not found");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return SetError(res, 403, "not a regular file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  res.SetHeader("Accept-Ranges", "bytes");
  res.SetHeader("ETag", "\"" + std::to_string(size) + "-" + std::to_string(st.st_mtim.tv_sec) +
                            "." + std::to_string(st.st_mtim.tv_nsec) + "\"");

  ByteRange range{0, size};
  res.status = 200;
  if (req.HasHeader("Range")) {
    switch (ParseRange(req.Header("Range"), size, range)) {
      case RangeKind::kNone:
        range = {0, size};
        break;
      case RangeKind::kUnsatisfiable:
        ::close(fd);
        res.status = 416;
        res.content_type.clear();
        res.SetHeader("Content-Range", "bytes */" + std::to_string(size));
        return;
      case RangeKind::kSatisfiable:
        res.status = 206;
        res.SetHeader("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                           std::to_string(range.first + range.length - 1) + "/" +
                                           std::to_string(size));
        break;
    }
  }
  res.content_type = ContentType(file);
  res.file = std::make_shared<http::FileRange>(fd, range.first, range.length);
}

}  // namespace

Status CheckServeAddress(const std::string& http) {
  Result<HostPort> parsed = ParseHostPort("--http", http, 0);
  if (!parsed) return Unexpected(parsed.error());
  return Ok();
}

Status Serve(const ServeOptions& options) {
  EF_ASSIGN_OR_RETURN(const HostPort http, ParseHostPort("--http", options.http, 0));
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "--tls-cert and --tls-key: give both or neither");
  }
  std::error_code ec;
  if (!fs::is_directory(options.dir, ec)) {
    return Fail(ErrorCode::kNotFound, "--dir: " + options.dir.string() + ": no such directory");
  }
  const fs::path root = fs::canonical(options.dir, ec);
  if (ec) {
    return Fail(ErrorCode::kIo, "--dir: " + options.dir.string() + ": " + ec.message());
  }

  if (!options.tls_cert.empty()) {
    for (const fs::path& f : {options.tls_cert, options.tls_key}) {
      if (!fs::is_regular_file(f, ec)) {
        return Fail(ErrorCode::kNotFound, f.string() + ": no such file");
      }
    }
  }

  const StopSignals stop;  // before the server's threads start
  UseKeyValueLog("edgefleet-serve");

  http::Router router;
  router.Get(".*", http::Lane::kInline,
             [root](const http::Request& req, http::Response& res) { ServeFile(root, req, res); });
  http::ServerOptions server_options;
  server_options.host = http.host;
  server_options.port = http.port;
  server_options.tls_cert_file = options.tls_cert.string();
  server_options.tls_key_file = options.tls_key.string();
  server_options.io_threads = 2;
  // A download goes at the client's pace; one that takes nothing for this long is closed.
  server_options.write_deadline = std::chrono::seconds(60);
  server_options.on_response = [](const http::Request& req, const http::Response& res) {
    std::uint64_t bytes = 0;
    if (!req.head) bytes = res.file ? res.file->length() : res.body.size();
    spdlog::info("event=served method={} path={} status={} bytes={} range={}", LogValue(req.method),
                 LogValue(req.path), res.status, bytes,
                 LogValue(req.HasHeader("Range") ? req.Header("Range") : "-"));
  };
  Result<std::unique_ptr<http::Server>> server =
      http::Server::Start(std::move(router), std::move(server_options));
  if (!server) {
    if (server.error().code == ErrorCode::kIo) {
      return Fail(ErrorCode::kIo,
                  "--http: cannot listen on " + options.http + " (" + server.error().message + ")");
    }
    return Unexpected(server.error());
  }
  const int port = (*server)->port();
  spdlog::info("event=serve_started http_port={} dir={} tls={}", port, LogValue(root.string()),
               options.tls_cert.empty() ? "off" : "on");
  // The port file comes last: whoever waits for it finds the server listening and its start
  // logged.
  if (options.port_file) {
    Status written = WriteFileAtomically(*options.port_file, std::to_string(port) + "\n");
    if (!written) return written;
  }

  int signo = 0;
  while (signo == 0) signo = stop.Wait(std::chrono::seconds(1));
  spdlog::info("event=stopping signal={}", StopSignals::Name(signo));
  (*server)->Stop();
  spdlog::info("event=serve_stopped");
  return Ok();
}

}  // namespace edgefleet::deploy
