#include "deploy/collector/collector_spool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "manifests/files.hpp"

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kHeaderBytes = 4 + 4 + 8;
// Larger than any MQTT payload the collector accepts, far below what a torn length could claim.
constexpr std::uint32_t kMaxFieldBytes = 1u << 20;

void PutLe(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t GetLe(const std::string& in, std::size_t at, int bytes) {
  std::uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value |=
        static_cast<std::uint64_t>(static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)]))
        << (8 * i);
  }
  return value;
}

Unexpected IoError(const fs::path& path, std::string_view what, int err) {
  return Fail(ErrorCode::kIo,
              path.string() + ": spool: " + std::string(what) + ": " + std::strerror(err));
}

// The generation of "<base>.<n>", or 0 when `path` is not one of the spool's files.
std::uint64_t GenerationOf(const fs::path& base, const fs::path& path) {
  const std::string prefix = base.filename().string() + ".";
  const std::string name = path.filename().string();
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return 0;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::stoull(digits);
}

// Whole records of one file; a torn or implausible tail ends the read.
Result<std::vector<CollectorSpool::Record>> ReadRecords(const fs::path& path,
                                                        std::uint64_t generation) {
  EF_ASSIGN_OR_RETURN(const std::string bytes, manifests::ReadSmallFile(path, 1ull << 40));
  std::vector<CollectorSpool::Record> out;
  std::size_t at = 0;
  while (bytes.size() - at >= kHeaderBytes) {
    const auto topic_len = static_cast<std::uint32_t>(GetLe(bytes, at, 4));
    const auto payload_len = static_cast<std::uint32_t>(GetLe(bytes, at + 4, 4));
    if (topic_len > kMaxFieldBytes || payload_len > kMaxFieldBytes) break;
    const std::size_t end = at + kHeaderBytes + topic_len + payload_len;
    if (end > bytes.size()) break;
    CollectorSpool::Record r;
    r.received_ms = static_cast<std::int64_t>(GetLe(bytes, at + 8, 8));
    r.topic = bytes.substr(at + kHeaderBytes, topic_len);
    r.payload = bytes.substr(at + kHeaderBytes + topic_len, payload_len);
    r.generation = generation;
    out.push_back(std::move(r));
    at = end;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<CollectorSpool>> CollectorSpool::Open(const fs::path& base,
                                                             std::vector<Record>& leftover) {
  auto spool = std::unique_ptr<CollectorSpool>(new CollectorSpool(base));
  const fs::path dir = base.has_parent_path() ? base.parent_path() : fs::path(".");
  std::vector<std::pair<std::uint64_t, fs::path>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (const std::uint64_t g = GenerationOf(base, it->path()); g > 0) {
      found.emplace_back(g, it->path());
    }
  }
  if (ec) return IoError(dir, "list", ec.value());
  std::sort(found.begin(), found.end());
  std::lock_guard lock(spool->mu_);
  for (const auto& [generation, path] : found) {
    EF_ASSIGN_OR_RETURN(std::vector<Record> records, ReadRecords(path, generation));
    File f;
    f.generation = generation;
    f.path = path;
    f.pending = records.size();
    spool->files_.push_back(f);
    for (Record& r : records) leftover.push_back(std::move(r));
  }
  EF_RETURN_IF_ERROR(spool->StartGenerationLocked(found.empty() ? 1 : found.back().first + 1));
  spool->ReleaseLocked();  // files that held nothing whole
  return spool;
}

CollectorSpool::~CollectorSpool() {
  std::lock_guard lock(mu_);
  ReleaseLocked();
  for (File& f : files_) {
    if (f.fd >= 0) ::close(f.fd);
    f.fd = -1;
  }
}

Status CollectorSpool::StartGenerationLocked(std::uint64_t generation) {
  File f;
  f.generation = generation;
  f.path = base_.string() + "." + std::to_string(generation);
  f.fd = ::open(f.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (f.fd < 0) return IoError(f.path, "create", errno);
  if (!files_.empty() && files_.back().fd >= 0) {
    ::close(files_.back().fd);
    files_.back().fd = -1;
  }
  files_.push_back(f);
  return Ok();
}

// Deletes the older files whose records are all done; empties the newest when it is.
void CollectorSpool::ReleaseLocked() {
  while (files_.size() > 1 && files_.front().pending == 0) {
    std::error_code ec;
    fs::remove(files_.front().path, ec);
    files_.pop_front();
  }
  File& newest = files_.back();
  if (files_.size() == 1 && newest.pending == 0 && newest.bytes > 0 && newest.fd >= 0 &&
      ::ftruncate(newest.fd, 0) == 0) {
    newest.bytes = 0;
  }
}

Result<std::uint64_t> CollectorSpool::Append(std::string_view topic, std::string_view payload,
                                             std::int64_t received_ms) {
  if (topic.size() > kMaxFieldBytes || payload.size() > kMaxFieldBytes) {
    return Fail(ErrorCode::kInvalidArgument, "spool: record larger than 1 MiB");
  }
  std::string record;
  record.reserve(kHeaderBytes + topic.size() + payload.size());
  PutLe(record, topic.size(), 4);
  PutLe(record, payload.size(), 4);
  PutLe(record, static_cast<std::uint64_t>(received_ms), 8);
  record.append(topic);
  record.append(payload);
  std::lock_guard lock(mu_);
  if (files_.back().bytes >= kRotateBytes) {
    EF_RETURN_IF_ERROR(StartGenerationLocked(files_.back().generation + 1));
  }
  File& f = files_.back();
  const ssize_t n = ::write(f.fd, record.data(), record.size());
  if (n != static_cast<ssize_t>(record.size())) {
    const int err = n < 0 ? errno : ENOSPC;
    // A torn record would hide the ones after it: cut it off.
    if (n > 0 && ::ftruncate(f.fd, static_cast<off_t>(f.bytes)) != 0) {
      return IoError(f.path, "cut a torn record", errno);
    }
    return IoError(f.path, "append", err);
  }
  f.bytes += record.size();
  ++f.pending;
  return f.generation;
}

void CollectorSpool::Done(std::uint64_t generation, std::uint64_t count) {
  std::lock_guard lock(mu_);
  for (File& f : files_) {
    if (f.generation == generation) {
      f.pending -= std::min(f.pending, count);
      break;
    }
  }
  ReleaseLocked();
}

std::uint64_t CollectorSpool::Pending() const {
  std::lock_guard lock(mu_);
  std::uint64_t n = 0;
  for (const File& f : files_) n += f.pending;
  return n;
}

}  // namespace edgefleet::deploy
