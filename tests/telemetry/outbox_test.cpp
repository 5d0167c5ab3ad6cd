// Tests for telemetry/outbox: a real SQLite file in a temp directory.
#include "telemetry/outbox.hpp"

#include <sqlite3.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace edgefleet::telemetry {
namespace {

using edgefleet::testing::TempDir;
using edgefleet::testing::WriteFile;

OutgoingMessage Msg(std::string topic, std::string payload, int qos = 1) {
  OutgoingMessage m;
  m.topic = std::move(topic);
  m.payload = std::move(payload);
  m.qos = qos;
  return m;
}

std::unique_ptr<Outbox> OpenOrFail(const std::filesystem::path& path, OutboxLimits limits = {}) {
  auto outbox = Outbox::Open(path, limits);
  if (!outbox) {
    ADD_FAILURE() << outbox.error().message;
    return nullptr;
  }
  return std::move(outbox).value();
}

std::vector<OutboxRow> All(Outbox& outbox) {
  auto rows = outbox.After(0, 1000000);
  EXPECT_TRUE(rows) << rows.error().message;
  return rows ? *rows : std::vector<OutboxRow>{};
}

std::vector<std::string> Payloads(const std::vector<OutboxRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.payload);
  return out;
}

OutboxStats StatsOf(Outbox& outbox) {
  auto stats = outbox.Stats();
  EXPECT_TRUE(stats) << stats.error().message;
  return stats ? *stats : OutboxStats{};
}

TEST(Outbox, RoundTripKeepsEveryField) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  OutgoingMessage m = Msg("edgefleet/v1/f/device/d/status", std::string("on\0line\xff", 8), 0);
  m.retain = true;
  const auto before = std::chrono::system_clock::now();
  ASSERT_TRUE(outbox->Append(m));
  std::vector<OutboxRow> rows = All(*outbox);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_GT(rows[0].id, 0);
  EXPECT_EQ(rows[0].topic, m.topic);
  EXPECT_EQ(rows[0].payload, m.payload);  // binary, embedded NUL included
  EXPECT_EQ(rows[0].qos, 0);
  EXPECT_TRUE(rows[0].retain);
  const auto created =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(rows[0].created_ms));
  EXPECT_LE(std::chrono::abs(created - before), std::chrono::seconds(5));
  // An empty payload stays empty (not NULL).
  ASSERT_TRUE(outbox->Append(Msg("t", "")));
  rows = All(*outbox);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].payload, "");
}

TEST(Outbox, AfterReturnsRowsInOrderPagedByCursor) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  std::vector<OutgoingMessage> batch;
  for (int i = 0; i < 10; ++i)
    batch.push_back(Msg("t/" + std::to_string(i % 3), std::to_string(i)));
  ASSERT_TRUE(outbox->Append(batch));
  ASSERT_TRUE(outbox->Append(Msg("t/x", "10")));

  std::vector<std::string> seen;
  std::int64_t cursor = 0;
  for (;;) {
    auto page = outbox->After(cursor, 4);
    ASSERT_TRUE(page) << page.error().message;
    if (page->empty()) break;
    EXPECT_LE(page->size(), 4u);
    for (const auto& row : *page) {
      EXPECT_GT(row.id, cursor);
      cursor = row.id;
      seen.push_back(row.payload);
    }
  }
  EXPECT_EQ(seen,
            (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}));
  auto none = outbox->After(cursor, 0);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST(Outbox, AckDeletesOnlyTheGivenRowsAndIgnoresDuplicates) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  ASSERT_TRUE(outbox->Append(std::vector{Msg("t", "a"), Msg("t", "b"), Msg("t", "c")}));
  std::vector<OutboxRow> rows = All(*outbox);
  ASSERT_EQ(rows.size(), 3u);

  const std::vector<std::int64_t> first = {rows[0].id, rows[2].id};
  ASSERT_TRUE(outbox->Ack(first));
  EXPECT_EQ(Payloads(All(*outbox)), std::vector<std::string>{"b"});
  OutboxStats s = StatsOf(*outbox);
  EXPECT_EQ(s.pending, 1u);
  EXPECT_EQ(s.acked_total, 2u);

  // The same acks again plus an id that never existed: nothing changes, nothing counted.
  const std::vector<std::int64_t> again = {rows[0].id, rows[2].id, rows[2].id + 1000};
  ASSERT_TRUE(outbox->Ack(again));
  s = StatsOf(*outbox);
  EXPECT_EQ(s.pending, 1u);
  EXPECT_EQ(s.acked_total, 2u);
  EXPECT_EQ(s.appended_total, 3u);
}

TEST(Outbox, IdsNeverRepeatAfterTheNewestRowWasAcked) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  ASSERT_TRUE(outbox->Append(Msg("t", "a")));
  const std::int64_t first = All(*outbox).at(0).id;
  ASSERT_TRUE(outbox->Ack(std::vector{first}));
  ASSERT_TRUE(outbox->Append(Msg("t", "b")));
  // A publisher whose cursor is at `first` must see the new row.
  auto after = outbox->After(first, 10);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_GT(after->at(0).id, first);
}

TEST(Outbox, CountBoundDropsTheOldestAndCountsThemAcrossReopen) {
  TempDir tmp;
  const OutboxLimits limits{.max_messages = 5, .max_age = std::chrono::hours(1)};
  {
    auto outbox = OpenOrFail(tmp / "outbox.db", limits);
    ASSERT_TRUE(outbox);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(outbox->Append(Msg("t", std::to_string(i))));
    std::vector<OutgoingMessage> batch;
    for (int i = 4; i < 12; ++i) batch.push_back(Msg("t", std::to_string(i)));
    ASSERT_TRUE(outbox->Append(batch));  // 12 rows for a bound of 5: the 7 oldest go
    EXPECT_EQ(Payloads(All(*outbox)), (std::vector<std::string>{"7", "8", "9", "10", "11"}));
    OutboxStats s = StatsOf(*outbox);
    EXPECT_EQ(s.pending, 5u);
    EXPECT_EQ(s.dropped_total, 7u);
    EXPECT_EQ(s.appended_total, 12u);
  }
  auto reopened = OpenOrFail(tmp / "outbox.db", limits);
  ASSERT_TRUE(reopened);
  OutboxStats s = StatsOf(*reopened);
  EXPECT_EQ(s.pending, 5u);
  EXPECT_EQ(s.dropped_total, 7u);
  EXPECT_EQ(s.appended_total, 12u);
  ASSERT_TRUE(reopened->Append(Msg("t", "12")));
  s = StatsOf(*reopened);
  EXPECT_EQ(s.pending, 5u);
  EXPECT_EQ(s.dropped_total, 8u);
  EXPECT_EQ(Payloads(All(*reopened)).front(), "8");
}

TEST(Outbox, AgeBoundDropsOldRowsOnAppendAndOnRead) {
  TempDir tmp;
  const OutboxLimits limits{.max_messages = 1000, .max_age = std::chrono::seconds(1)};
  {
    auto outbox = OpenOrFail(tmp / "outbox.db", limits);
    ASSERT_TRUE(outbox);
    ASSERT_TRUE(outbox->Append(std::vector{Msg("t", "old1"), Msg("t", "old2")}));
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    ASSERT_TRUE(outbox->Append(Msg("t", "new")));
    EXPECT_EQ(Payloads(All(*outbox)), std::vector<std::string>{"new"});
    OutboxStats s = StatsOf(*outbox);
    EXPECT_EQ(s.dropped_total, 2u);
    EXPECT_EQ(s.pending, 1u);
    // Nothing appended now: a read alone expires the row once it is too old.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    auto rows = outbox->After(0, 10);
    ASSERT_TRUE(rows);
    EXPECT_TRUE(rows->empty());
    s = StatsOf(*outbox);
    EXPECT_EQ(s.dropped_total, 3u);
    EXPECT_EQ(s.pending, 0u);
  }
  auto reopened = OpenOrFail(tmp / "outbox.db", limits);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(StatsOf(*reopened).dropped_total, 3u);
}

TEST(Outbox, SupersedeReplacesQueuedSupersedingRowsOfTheSameTopicOnly) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  auto status = [](std::string payload) {
    OutgoingMessage m = Msg("status", std::move(payload));
    m.supersede = true;
    m.retain = true;
    return m;
  };
  ASSERT_TRUE(outbox->Append(
      std::vector{status("s1"), Msg("telemetry", "t1"), status("s2"), Msg("status", "plain")}));
  ASSERT_TRUE(outbox->Append(std::vector{status("s3"), Msg("telemetry", "t2")}));
  // s1 and s2 replaced; the row on "status" appended without supersede stays.
  EXPECT_EQ(Payloads(All(*outbox)), (std::vector<std::string>{"t1", "plain", "s3", "t2"}));
  OutboxStats s = StatsOf(*outbox);
  EXPECT_EQ(s.superseded_total, 2u);
  EXPECT_EQ(s.dropped_total, 0u);
  EXPECT_EQ(s.pending, 4u);
  EXPECT_EQ(s.appended_total, 6u);
  // Within one batch too: only the last of three survives.
  ASSERT_TRUE(outbox->Append(std::vector{status("s4"), status("s5"), status("s6")}));
  EXPECT_EQ(Payloads(All(*outbox)), (std::vector<std::string>{"t1", "plain", "t2", "s6"}));
  EXPECT_EQ(StatsOf(*outbox).superseded_total, 5u);
}

TEST(Outbox, ReopenKeepsRowsAndOrder) {
  TempDir tmp;
  std::int64_t last_id = 0;
  {
    auto outbox = OpenOrFail(tmp / "outbox.db");
    ASSERT_TRUE(outbox);
    ASSERT_TRUE(outbox->Append(std::vector{Msg("a", "1"), Msg("b", "2"), Msg("c", "3")}));
    last_id = All(*outbox).back().id;
  }
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  std::vector<OutboxRow> rows = All(*outbox);
  EXPECT_EQ(Payloads(rows), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(StatsOf(*outbox).pending, 3u);
  ASSERT_TRUE(outbox->Append(Msg("d", "4")));
  EXPECT_GT(All(*outbox).back().id, last_id);
}

TEST(Outbox, RefusesAFileThatIsNotAnOutbox) {
  TempDir tmp;
  const auto garbage = tmp / "garbage.db";
  WriteFile(garbage, std::string(4096, 'x'));
  auto opened = Outbox::Open(garbage, {});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kIo);
  EXPECT_NE(opened.error().message.find(garbage.string()), std::string::npos)
      << opened.error().message;

  // A real SQLite database, but someone else's.
  const auto other = tmp / "other.db";
  {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open(other.c_str(), &raw);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
    ASSERT_EQ(rc, SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db.get(), "CREATE TABLE deployments (id INTEGER)", nullptr, nullptr, nullptr),
        SQLITE_OK);
  }
  opened = Outbox::Open(other, {});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kIo);
  EXPECT_NE(opened.error().message.find(other.string()), std::string::npos);
  EXPECT_NE(opened.error().message.find("deployments"), std::string::npos)
      << opened.error().message;

  // A directory that does not exist.
  opened = Outbox::Open(tmp / "missing" / "outbox.db", {});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kIo);
}

TEST(Outbox, RefusesZeroLimits) {
  TempDir tmp;
  OutboxLimits limits;
  limits.max_messages = 0;
  auto opened = Outbox::Open(tmp / "o.db", limits);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(opened.error().message.find("max_messages"), std::string::npos);
  limits = OutboxLimits{.max_messages = 10, .max_age = std::chrono::seconds(0)};
  opened = Outbox::Open(tmp / "o.db", limits);
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().message.find("max_age"), std::string::npos);
}

TEST(Outbox, ABatchWithABadMessageAppendsNothing) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  std::vector<OutgoingMessage> batch = {Msg("t", "1"), Msg("t", "2"), Msg("t", "3", 3)};
  Status st = outbox->Append(batch);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(st.error().message.find("message 2"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("qos 3"), std::string::npos) << st.error().message;

  batch = {Msg("t", "1"), Msg("", "2")};
  st = outbox->Append(batch);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("empty topic"), std::string::npos) << st.error().message;

  batch = {Msg("t", "1"), Msg("t/+/status", "2")};
  st = outbox->Append(batch);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("t/+/status"), std::string::npos) << st.error().message;
  batch = {Msg("t/#", "1")};
  EXPECT_FALSE(outbox->Append(batch));
  batch = {Msg(std::string("t/\xff"), "1")};
  EXPECT_FALSE(outbox->Append(batch));

  EXPECT_TRUE(All(*outbox).empty());
  EXPECT_EQ(StatsOf(*outbox).appended_total, 0u);
}

TEST(Outbox, ABatchFailingInSqliteLeavesNoTrace) {
  // SQLite refuses the second row of a batch: the batch fails with kIo and none of it (nor any
  // counter) is written.
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  ASSERT_TRUE(outbox->Append(Msg("t", "kept")));
  // A trigger (made by a second connection) that fails the 2nd insert of the batch makes SQLite
  // itself fail half-way.
  {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open((tmp / "outbox.db").c_str(), &raw);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> other(raw, &sqlite3_close);
    ASSERT_EQ(rc, SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other.get(),
                           "CREATE TRIGGER fail_boom BEFORE INSERT ON outbox WHEN NEW.payload = "
                           "CAST('boom' AS BLOB) BEGIN SELECT RAISE(ABORT, 'injected'); END",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
  }

  Status st = outbox->Append(std::vector{Msg("t", "a"), Msg("t", "boom"), Msg("t", "c")});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kIo);
  EXPECT_NE(st.error().message.find("injected"), std::string::npos) << st.error().message;
  EXPECT_EQ(Payloads(All(*outbox)), std::vector<std::string>{"kept"});
  OutboxStats s = StatsOf(*outbox);
  EXPECT_EQ(s.appended_total, 1u);
  EXPECT_EQ(s.pending, 1u);
  // And the outbox still works afterwards.
  ASSERT_TRUE(outbox->Append(Msg("t", "after")));
  EXPECT_EQ(Payloads(All(*outbox)), (std::vector<std::string>{"kept", "after"}));
}

TEST(Outbox, ConcurrentAppendAndAckFromThreads) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  constexpr int kPerThread = 200;
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_TRUE(outbox->Append(Msg("t", std::to_string(t) + "-" + std::to_string(i))));
      }
    });
  }
  std::uint64_t acked = 0;
  std::int64_t cursor = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (acked < 2 * kPerThread && std::chrono::steady_clock::now() < deadline) {
    auto rows = outbox->After(cursor, 50);
    if (!rows) {
      ADD_FAILURE() << rows.error().message;
      break;  // the writers are joined below either way
    }
    std::vector<std::int64_t> ids;
    for (const auto& r : *rows) {
      ids.push_back(r.id);
      cursor = r.id;
    }
    Status st = outbox->Ack(ids);
    if (!st) {
      ADD_FAILURE() << st.error().message;
      break;
    }
    acked += ids.size();
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(acked, 2u * kPerThread);
  OutboxStats s = StatsOf(*outbox);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.acked_total, 2u * kPerThread);
}

// A numbered message: its payload is "<stream>/<n>", built by the outbox.
OutgoingMessage Numbered(std::string topic) {
  OutgoingMessage m;
  m.topic = std::move(topic);
  m.numbered = [](const Sequence& seq) { return seq.stream + "/" + std::to_string(seq.n); };
  return m;
}

TEST(Outbox, NumberedMessagesCountOneTwoThreeInAStreamThatOutlivesAReopen) {
  TempDir tmp;
  std::string stream;
  {
    auto outbox = OpenOrFail(tmp / "outbox.db");
    ASSERT_TRUE(outbox);
    stream = outbox->SequenceStream();
    ASSERT_EQ(stream.size(), 16u);
    EXPECT_EQ(stream.find_first_not_of("0123456789abcdef"), std::string::npos) << stream;
    // Status rows (not numbered) between them take no number.
    std::vector<OutgoingMessage> batch = {Numbered("t"), Msg("s", "status"), Numbered("e")};
    ASSERT_TRUE(outbox->Append(batch));
    ASSERT_TRUE(outbox->Append(Numbered("t")));
    // A batch refused inside its transaction (a built payload too large) takes no number.
    OutgoingMessage huge;
    huge.topic = "t";
    huge.numbered = [](const Sequence&) { return std::string(256u << 20, 'x'); };
    std::vector<OutgoingMessage> refused = {Numbered("t"), huge};
    auto failed = outbox->Append(refused);
    ASSERT_FALSE(failed);
    EXPECT_NE(failed.error().message.find("larger than an MQTT packet"), std::string::npos)
        << failed.error().message;
    EXPECT_EQ(StatsOf(*outbox).numbered_total, 3u);
  }
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  EXPECT_EQ(outbox->SequenceStream(), stream);
  ASSERT_TRUE(outbox->Append(Numbered("t")));
  EXPECT_EQ(Payloads(All(*outbox)),
            (std::vector<std::string>{stream + "/1", "status", stream + "/2", stream + "/3",
                                      stream + "/4"}));
  EXPECT_EQ(StatsOf(*outbox).numbered_total, 4u);

  // Another file is another stream, from 1.
  auto other = OpenOrFail(tmp / "other.db");
  ASSERT_TRUE(other);
  EXPECT_NE(other->SequenceStream(), stream);
  ASSERT_TRUE(other->Append(Numbered("t")));
  EXPECT_EQ(Payloads(All(*other)), std::vector<std::string>{other->SequenceStream() + "/1"});
}

TEST(Outbox, AFileFromBeforeNumberingGetsAStream) {
  TempDir tmp;
  {
    auto outbox = OpenOrFail(tmp / "outbox.db");
    ASSERT_TRUE(outbox);
    ASSERT_TRUE(outbox->Append(Msg("t", "old")));
  }
  // What a build before sequence numbers wrote: no next_seq, no seq_stream.
  {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open((tmp / "outbox.db").c_str(), &raw);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
    ASSERT_EQ(rc, SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db.get(), "DELETE FROM outbox_meta WHERE key IN ('next_seq', 'seq_stream')",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
  }
  auto outbox = OpenOrFail(tmp / "outbox.db");
  ASSERT_TRUE(outbox);
  EXPECT_EQ(outbox->SequenceStream().size(), 16u);
  ASSERT_TRUE(outbox->Append(Numbered("t")));
  EXPECT_EQ(Payloads(All(*outbox)),
            (std::vector<std::string>{"old", outbox->SequenceStream() + "/1"}));
}

TEST(Outbox, NumberedRowsTheBoundsDropLeaveTheirNumbersMissing) {
  TempDir tmp;
  auto outbox = OpenOrFail(tmp / "outbox.db", {3, std::chrono::hours(1)});
  ASSERT_TRUE(outbox);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(outbox->Append(Numbered("t")));
  const std::string s = outbox->SequenceStream();
  // 1 and 2 were dropped: the numbers that arrive start at 3, so a collector sees the gap only
  // when it saw 1 or 2 before; the outbox counts the drops either way.
  EXPECT_EQ(Payloads(All(*outbox)), (std::vector<std::string>{s + "/3", s + "/4", s + "/5"}));
  EXPECT_EQ(StatsOf(*outbox).dropped_total, 2u);
}

}  // namespace
}  // namespace edgefleet::telemetry
