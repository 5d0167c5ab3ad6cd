// The collector's spool: every message it receives is appended to a file before the MQTT
// callback returns, and the file is let go only when the writer has stored (or refused) every
// message in it. A collector killed with SIGKILL loses none of what the broker handed it: the
// bytes written are in the kernel, the next start reads them back (CollectorSpool::Open) and the
// store's deduplication (ids, status and rollout timestamps) makes a message stored twice count
// once.
//
// Why a spool and not "acknowledge after commit": a client cannot hold a QoS 1 PUBACK until a
// database commit seconds later without stalling what it reads meanwhile. libmosquitto 2.0.11
// (Debian 12) even writes the PUBACK before it calls the message callback (measured); the
// collector's client therefore runs libmosquitto in its threaded mode, where the PUBACK leaves
// only after the callback, and so after the append, has returned
// (telemetry::MqttOptions::ack_after_handler). A power cut may lose what the kernel had not
// written back; that is not covered.
//
// Files: <base>.<generation> (generation 1, 2, ...). Records are
// [u32 topic length][u32 payload length][i64 received ms][topic][payload], little-endian, each
// written with one write(2). A file is replaced by a new generation once it holds more than
// kRotateBytes, and deleted once every record in it is done; when nothing is pending in the file
// being appended to, it is truncated to 0 instead. A torn record at the end of a file (a kill in
// the middle of a write) is ignored when read back.
//
// Thread safety: every method may be called from any thread; one mutex guards the files.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

class CollectorSpool final {
 public:
  static constexpr std::uint64_t kRotateBytes = 64ull << 20;

  struct Record {
    std::string topic;
    std::string payload;
    std::int64_t received_ms = 0;
    std::uint64_t generation = 0;
  };

  // Opens the spool at `base` (files base.1, base.2, ...), reads back the records a previous run
  // left (oldest first, into `leftover`) and starts a new generation for appends. Fails with kIo
  // naming the file.
  static Result<std::unique_ptr<CollectorSpool>> Open(const std::filesystem::path& base,
                                                      std::vector<Record>& leftover);
  ~CollectorSpool();
  CollectorSpool(const CollectorSpool&) = delete;
  CollectorSpool& operator=(const CollectorSpool&) = delete;

  // Appends one record; returns its generation. Fails with kIo (disk full, file gone): the
  // message is then held in memory only.
  Result<std::uint64_t> Append(std::string_view topic, std::string_view payload,
                               std::int64_t received_ms);
  // `count` records of `generation` were stored or refused: they need not be read back.
  void Done(std::uint64_t generation, std::uint64_t count);
  // Records appended or read back and not done yet.
  std::uint64_t Pending() const;

 private:
  struct File {
    std::uint64_t generation = 0;
    std::filesystem::path path;
    int fd = -1;  // open for appending on the newest file only
    std::uint64_t bytes = 0;
    std::uint64_t pending = 0;
  };
  explicit CollectorSpool(std::filesystem::path base) : base_(std::move(base)) {}
  Status StartGenerationLocked(std::uint64_t generation);
  void ReleaseLocked();

  std::filesystem::path base_;
  mutable std::mutex mu_;
  std::deque<File> files_;  // oldest first; back() takes appends
};

}  // namespace edgefleet::deploy
