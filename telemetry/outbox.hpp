// The telemetry outbox: store and forward for every message the agent sends over MQTT.
//
// A message is a row in a SQLite file (WAL) before it is published, and its row is deleted only
// when the broker acknowledged it (PUBACK for the message id libmosquitto gave the publish), so a
// broker outage of days, an agent crash or a power cut loses nothing but what the bound says:
// at most `max_messages` rows are kept and none older than `max_age`; the rows the bound removes
// are counted (persistently) and reported. Delivery is at least once: a row whose
// acknowledgement was lost is published again, and the collector deduplicates by message id.
//
// Append() writes a batch in one transaction (callers batch: a telemetry window is one Append).
// A message with `supersede` set replaces the rows still queued for the same topic that were
// appended with `supersede` too (the retained status: only the newest matters); replaced rows are
// counted as superseded, not dropped. (Refined from "all rows of the topic" when the outbox was
// written: only superseding rows are indexed by topic, so a telemetry row is written once and
// deleted once without index pages, about twice the single-message append rate; a row appended
// without `supersede` is never replaced, which no caller wants otherwise.)
//
// Age is by insertion order: the oldest rows are dropped while they are older than max_age (after
// the clock stepped back, an old row queued behind a younger one goes when that one does).
//
// Thread safety: every method may be called from any thread; one mutex guards the connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::telemetry {

struct OutboxLimits {
  std::size_t max_messages = 100000;            // oldest rows beyond this are dropped
  std::chrono::seconds max_age{7 * 24 * 3600};  // older rows are dropped
};

// A message's place in the device's sequence. Telemetry windows and events are numbered 1, 2,
// 3, ... in the order they enter the outbox, within a stream named when the outbox file was
// created (a new file, say after the state directory was wiped, starts a new stream at 1), so
// the collector can count what never arrived: a number it never saw was lost on the way or
// dropped by the outbox's bounds.
struct Sequence {
  std::string stream;  // 16 lower-case hex digits, fixed for the outbox file
  std::uint64_t n = 0;
};

struct OutgoingMessage {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = false;
  bool supersede = false;  // delete the superseding rows still queued for `topic` first
  // When set, the message is numbered: Append gives it the next number of the sequence and
  // builds the payload with this function (`payload` is not used), in the transaction that
  // stores the row, so numbers are never skipped by a failed or rolled-back append.
  std::function<std::string(const Sequence&)> numbered = nullptr;
};

struct OutboxRow {
  std::int64_t id = 0;  // ascending in insertion order
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = false;
  std::int64_t created_ms = 0;  // Unix milliseconds when appended
};

struct OutboxStats {
  std::uint64_t pending = 0;           // rows waiting for publish or acknowledgement
  std::uint64_t appended_total = 0;    // since the file was created
  std::uint64_t acked_total = 0;       // deleted by an acknowledgement
  std::uint64_t dropped_total = 0;     // removed by the count or age bound
  std::uint64_t superseded_total = 0;  // replaced by a newer message on the same topic
  std::uint64_t numbered_total = 0;    // the last sequence number given (0: none yet)
};

class Outbox final {
 public:
  // Opens or creates the outbox file (schema created on first use). Fails with kIo when the
  // file cannot be opened or is not an outbox database, kUnsupported for an outbox schema this
  // build does not know, kInvalidArgument for a zero limit.
  static Result<std::unique_ptr<Outbox>> Open(const std::filesystem::path& path,
                                              OutboxLimits limits);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Appends the messages in one transaction, then enforces the bounds (count, age). Fails with
  // kIo (nothing appended) when SQLite fails, kInvalidArgument (nothing appended) for a topic
  // that cannot be published to (empty, wildcards, invalid UTF-8), qos not 0-2 or a payload
  // (as given, or as a numbered message's function built it) larger than an MQTT packet.
  Status Append(std::span<const OutgoingMessage> messages);
  Status Append(const OutgoingMessage& message) { return Append(std::span(&message, 1)); }
  // Up to `limit` rows with id > after_id, oldest first (expired rows are dropped first).
  Result<std::vector<OutboxRow>> After(std::int64_t after_id, std::size_t limit);
  // Deletes acknowledged rows in one transaction; unknown ids are ignored (a duplicate ack).
  Status Ack(std::span<const std::int64_t> ids);
  Result<OutboxStats> Stats();
  // The stream this file numbers its messages in.
  std::string SequenceStream() const;

 private:
  struct Impl;
  explicit Outbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::telemetry
