// The collector's checks and store in-process, on both engines (real SQLite files in a temp dir,
// and a real PostgreSQL server started in one, a new database per test): what a message must be
// to be stored, and the ordering rules of statuses, windows and events.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "deploy/collector/collector.hpp"
#include "deploy/collector/collector_sql.hpp"
#include "deploy/collector/collector_store.hpp"
#include "deploy/collector/pg_db.hpp"
#include "manifests/sqlite_db.hpp"
#include "telemetry/payloads.hpp"
#include "tests/deploy/collector_engines.hpp"
#include "tests/support/postgres_server.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::deploy {
namespace {

using collector_testing::Engine;
using collector_testing::EngineName;
using telemetry::DeviceTopic;

telemetry::StatusMessage Status(bool online, std::uint64_t connection, std::int64_t ts) {
  telemetry::StatusMessage m;
  m.id = telemetry::NewMessageId();
  m.device = "box-a";
  m.fleet = "demo";
  m.ts = ts;
  m.online = online;
  m.agent_version = "0.1.0";
  m.connection = connection;
  if (online) {
    m.models = {{"digits", telemetry::SlotInfo{"A", "1.0.0", std::string(64, 'a')}, std::nullopt}};
  }
  return m;
}

telemetry::TelemetryWindow Window(std::int64_t ts, std::uint64_t count) {
  telemetry::TelemetryWindow w;
  w.id = telemetry::NewMessageId();
  w.device = "box-a";
  w.ts = ts;
  w.start_ts = ts - 1000;
  w.window_s = 1;
  w.model = "digits";
  w.version = "1.0.0";
  w.slot = "A";
  w.role = "active";
  w.count = count;
  telemetry::LatencyHistogram h;
  for (std::uint64_t i = 0; i < count; ++i) h.Record(2.0);
  w.latency = h.Snapshot();
  return w;
}

// Classifies as a real message on box-a's topic (the test fails when it is refused).
IncomingMessage In(const std::string& leaf, const std::string& payload, std::int64_t at = 1000) {
  Result<IncomingMessage> in = ClassifyMessage(DeviceTopic("demo", "box-a", leaf), payload, at);
  EXPECT_TRUE(in) << in.error().message;
  return in ? *in : IncomingMessage{};
}

class CollectorStoreTest : public ::testing::TestWithParam<Engine> {
 protected:
  // One server for the suite; each test has its own databases.
  static void SetUpTestSuite() {
    pg_dir_ = new testing::TempDir();
    pg_ = new testing::PostgresServer(pg_dir_->path());
  }
  static void TearDownTestSuite() {
    delete pg_;
    delete pg_dir_;
  }

  // A new database named `name`: a file in the test's directory, or a database on the server.
  std::string Location(const std::string& name) {
    if (GetParam() == Engine::kSqlite) return (dir_ / (name + ".db")).string();
    static int databases = 0;
    return pg_->CreateDatabase(name + "_" + std::to_string(++databases));
  }

  void SetUp() override {
    if (GetParam() == Engine::kPostgres) {
      ASSERT_TRUE(pg_->running()) << pg_->Log();
    }
    db_ = Location("c");
    auto store = CollectorStore::Open(db_);
    ASSERT_TRUE(store) << store.error().message;
    store_.emplace(std::move(*store));
    auto view = FleetView::Open(db_);
    ASSERT_TRUE(view) << view.error().message;
    view_.emplace(std::move(*view));
  }

  std::vector<ApplyOutcome> Apply(const std::vector<IncomingMessage>& batch) {
    auto outcomes = store_->Apply(batch);
    EXPECT_TRUE(outcomes) << outcomes.error().message;
    return outcomes ? *outcomes : std::vector<ApplyOutcome>{};
  }

  DeviceRecord BoxA() {
    auto devices = view_->Devices();
    EXPECT_TRUE(devices) << devices.error().message;
    if (!devices || devices->empty()) return {};
    return devices->front();
  }

  static testing::TempDir* pg_dir_;
  static testing::PostgresServer* pg_;
  testing::TempDir dir_;
  std::string db_;  // the test's database: a file or a URL
  std::optional<CollectorStore> store_;
  std::optional<FleetView> view_;
};

testing::TempDir* CollectorStoreTest::pg_dir_ = nullptr;
testing::PostgresServer* CollectorStoreTest::pg_ = nullptr;

INSTANTIATE_TEST_SUITE_P(Engines, CollectorStoreTest,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres), EngineName);

using O = ApplyOutcome;

TEST_P(CollectorStoreTest, ADuplicateInTheSameBatchCountsOnce) {
  const std::string w = telemetry::EncodeTelemetry(Window(5000, 4));
  EXPECT_EQ(Apply({In("telemetry", w), In("telemetry", w)}),
            (std::vector<O>{O::kStored, O::kDuplicate}));
  EXPECT_EQ(Apply({In("telemetry", w)}), std::vector<O>{O::kDuplicate});
  auto totals = view_->Totals();
  ASSERT_TRUE(totals);
  ASSERT_EQ(totals->size(), 1u);
  EXPECT_EQ(totals->front().windows, 1u);
  EXPECT_EQ(totals->front().requests, 4u);
  EXPECT_EQ(totals->front().latency.count, 4u);
}

TEST_P(CollectorStoreTest, MissingNumbersCountFromTheLowestStoredAndNeverBelowZero) {
  auto numbered = [](std::uint64_t n, const std::string& stream = "00000000000000aa") {
    auto w = Window(5000 + static_cast<std::int64_t>(n), 1);
    w.seq = {stream, n};
    return telemetry::EncodeTelemetry(w);
  };
  // Out of order: 7, then 4; 5 and 6 are missing.
  EXPECT_EQ(Apply({In("telemetry", numbered(7)), In("telemetry", numbered(4))}),
            (std::vector<O>{O::kStored, O::kStored}));
  EXPECT_EQ(BoxA().numbered, 2u);
  EXPECT_EQ(BoxA().missing, 2u);
  // An event takes its number in the same sequence.
  auto event = telemetry::EventMessage{};
  event.id = telemetry::NewMessageId();
  event.device = "box-a";
  event.ts = 6000;
  event.event = "downloading";
  event.seq = {"00000000000000aa", 5};
  EXPECT_EQ(Apply({In("events", telemetry::EncodeEvent(event))}), std::vector<O>{O::kStored});
  EXPECT_EQ(BoxA().missing, 1u);
  // A number sent again under a new id (no agent does) is that message again: not stored.
  EXPECT_EQ(Apply({In("telemetry", numbered(4)), In("telemetry", numbered(7))}),
            (std::vector<O>{O::kDuplicate, O::kDuplicate}));
  EXPECT_EQ(BoxA().numbered, 3u);
  EXPECT_EQ(BoxA().missing, 1u);
  // Windows with the event's number and more (no agent sends them) cannot make the count
  // negative: 5 fills the range, 6 is one more than it holds.
  EXPECT_EQ(Apply({In("telemetry", numbered(5)), In("telemetry", numbered(6))}),
            (std::vector<O>{O::kStored, O::kStored}));
  EXPECT_EQ(BoxA().numbered, 5u);
  EXPECT_EQ(BoxA().missing, 0u);
  // Another stream of the same device adds its own gaps.
  Apply({In("telemetry", numbered(1, "00000000000000bb")),
         In("telemetry", numbered(4, "00000000000000bb"))});
  EXPECT_EQ(BoxA().missing, 2u);
}

TEST_P(CollectorStoreTest, TheAgentsFixedLastWillMarksOfflineEveryTime) {
  // The agent composes its will once per run (one id, the start time) and births per connection.
  const std::string will = telemetry::EncodeStatus(Status(false, 0, 1000));
  EXPECT_EQ(Apply({In("status", telemetry::EncodeStatus(Status(true, 1, 2000)), 10)}),
            std::vector<O>{O::kStored});
  EXPECT_TRUE(BoxA().online);
  EXPECT_EQ(Apply({In("status", will, 20)}), std::vector<O>{O::kStored});
  EXPECT_FALSE(BoxA().online);
  EXPECT_EQ(BoxA().offline_since_ms, 20);
  EXPECT_EQ(BoxA().last_seen_ms, 10) << "the broker spoke, not the device";
  ASSERT_EQ(BoxA().Models().size(), 1u) << "the will keeps the models of the birth";
  // The retained will again (a collector reconnecting): nothing new.
  EXPECT_EQ(Apply({In("status", will, 25)}), std::vector<O>{O::kDuplicate});
  EXPECT_EQ(Apply({In("status", telemetry::EncodeStatus(Status(true, 2, 3000)), 30)}),
            std::vector<O>{O::kStored});
  EXPECT_TRUE(BoxA().online);
  EXPECT_EQ(BoxA().offline_since_ms, std::nullopt);
  EXPECT_EQ(Apply({In("status", will, 40)}), std::vector<O>{O::kStored});
  EXPECT_FALSE(BoxA().online);
  // A status older than the current one is stale, but the device did speak.
  EXPECT_EQ(Apply({In("status", telemetry::EncodeStatus(Status(true, 1, 2500)), 50)}),
            std::vector<O>{O::kStale});
  EXPECT_FALSE(BoxA().online);
  EXPECT_EQ(BoxA().status_ts, 3000);
  EXPECT_EQ(BoxA().last_seen_ms, 50);
}

TEST_P(CollectorStoreTest, TelemetryFromAnUnknownDeviceCreatesItOnline) {
  EXPECT_EQ(Apply({In("telemetry", telemetry::EncodeTelemetry(Window(5000, 1)), 77)}),
            std::vector<O>{O::kStored});
  DeviceRecord d = BoxA();
  EXPECT_EQ(d.device, "box-a");
  EXPECT_EQ(d.fleet, "demo");
  EXPECT_TRUE(d.online);
  EXPECT_EQ(d.last_seen_ms, 77);
  EXPECT_TRUE(d.status_json.empty());
}

TEST_P(CollectorStoreTest, RecentIsRelativeToEachSeriesNewestWindow) {
  // The box's clock is a day behind: its last minute still counts.
  const std::int64_t day_ago = 1'700'000'000'000;
  std::vector<IncomingMessage> batch;
  for (int i = 0; i < 10; ++i) {
    batch.push_back(In("telemetry", telemetry::EncodeTelemetry(Window(day_ago - i * 10000, 2))));
  }
  Apply(batch);
  auto recent = view_->Recent(std::chrono::seconds(30));
  ASSERT_TRUE(recent) << recent.error().message;
  ASSERT_EQ(recent->size(), 1u);
  EXPECT_EQ(recent->front().windows, 4u);  // ts - 0, 10, 20, 30 s
  EXPECT_EQ(recent->front().requests, 8u);
  EXPECT_EQ(recent->front().last_ts, day_ago);
}

// One device's windows are read through the hours it has windows in and their 10-second buckets
// (0006_windows_by_time.sql): newest first across bucket and hour boundaries, over hours it was
// silent in and from a clock that started in 1970, without another device's or model's windows.
TEST_P(CollectorStoreTest, OneDevicesWindowsComeNewestFirstAcrossHoursAndGaps) {
  const std::int64_t now = 1'796'000'400'000;  // an hour boundary
  ASSERT_EQ(now % collector_sql::kWindowHourMs, 0);
  std::vector<std::int64_t> ts;
  for (std::int64_t t = 5'000; t <= 65'000; t += 7'000) ts.push_back(t);  // before NTP
  for (std::int64_t t = now - 3 * collector_sql::kWindowHourMs - 25'000;
       t <= now - 3 * collector_sql::kWindowHourMs + 25'000; t += 5'000) {
    ts.push_back(t);  // across an hour, three hours before the newest
  }
  for (std::int64_t t = now + 1'000; t <= now + 14'000; t += 1'000) ts.push_back(t);
  std::vector<IncomingMessage> batch;
  for (const std::int64_t t : ts) {
    batch.push_back(In("telemetry", telemetry::EncodeTelemetry(Window(t, 1)), now));
    auto other = Window(t, 3);  // box-b at the same times
    other.device = "box-b";
    auto in = ClassifyMessage(DeviceTopic("demo", "box-b", "telemetry"),
                              telemetry::EncodeTelemetry(other), now);
    ASSERT_TRUE(in) << in.error().message;
    batch.push_back(std::move(*in));
  }
  auto another_model = Window(now + 500, 1);
  another_model.model = "faces";
  batch.push_back(In("telemetry", telemetry::EncodeTelemetry(another_model), now));
  auto stopped_model = Window(40'000, 2);  // ran once before NTP, never since
  stopped_model.model = "shapes";
  batch.push_back(In("telemetry", telemetry::EncodeTelemetry(stopped_model), now));
  Apply(batch);

  auto read = [&](std::size_t limit, std::optional<std::int64_t> since,
                  std::optional<std::string> model) {
    WindowQuery q;
    q.device = "box-a";
    q.model = std::move(model);
    q.since_ms = since;
    q.limit = limit;
    auto windows = view_->Windows(q);
    EXPECT_TRUE(windows) << windows.error().message;
    std::vector<std::int64_t> out;
    for (const StoredMessage& m : windows ? *windows : std::vector<StoredMessage>{}) {
      auto w = telemetry::ParseTelemetry(m.json);
      EXPECT_TRUE(w && w->device == "box-a") << m.json;
      if (w) out.push_back(w->ts);
    }
    return out;
  };
  std::vector<std::int64_t> newest_first = ts;
  std::sort(newest_first.rbegin(), newest_first.rend());
  auto first = [&](std::size_t n) {
    return std::vector<std::int64_t>(newest_first.begin(),
                                     newest_first.begin() + std::min(n, newest_first.size()));
  };
  EXPECT_EQ(read(3, std::nullopt, "digits"), first(3));
  EXPECT_EQ(read(20, std::nullopt, "digits"), first(20)) << "into the hour three hours back";
  EXPECT_EQ(read(1000, std::nullopt, "digits"), newest_first) << "down to 1970";
  EXPECT_EQ(read(1000, std::nullopt, "faces"), std::vector<std::int64_t>{now + 500});
  EXPECT_EQ(read(1000, std::nullopt, "shapes"), std::vector<std::int64_t>{40'000})
      << "a model's walk starts at its own newest window, hours before the device's";
  EXPECT_EQ(read(1000, std::nullopt, "never-ran"), std::vector<std::int64_t>{});
  EXPECT_EQ(read(1000, 50'000, "shapes"), std::vector<std::int64_t>{});
  auto all = read(1000, std::nullopt, std::nullopt);
  EXPECT_EQ(all.size(), ts.size() + 2);
  EXPECT_TRUE(std::is_sorted(all.rbegin(), all.rend()));
  const std::int64_t since = now - 3 * collector_sql::kWindowHourMs - 10'000;
  std::vector<std::int64_t> after_since;
  for (const std::int64_t t : newest_first) {
    if (t >= since) after_since.push_back(t);
  }
  EXPECT_EQ(read(1000, since, "digits"), after_since);
  EXPECT_EQ(read(0, std::nullopt, "digits"), std::vector<std::int64_t>{});

  // Recent over more than an hour reads by time, under it by bucket: the same sums either way.
  for (const auto span : {std::chrono::milliseconds(10'000), std::chrono::milliseconds(3'700'000),
                          std::chrono::milliseconds(4 * 3'600'000)}) {
    auto recent = view_->Recent(span);
    ASSERT_TRUE(recent) << recent.error().message;
    for (const SeriesStats& s : *recent) {
      if (s.model != "digits") continue;
      std::uint64_t expect = 0;
      for (const std::int64_t t : ts) expect += t >= s.last_ts - span.count() ? 1 : 0;
      EXPECT_EQ(s.windows, expect) << s.device << " over " << span.count() << " ms";
      EXPECT_EQ(s.requests, expect * (s.device == "box-b" ? 3 : 1));
    }
    EXPECT_EQ(recent->size(), 4u) << "box-a digits, faces and shapes, box-b digits";
  }
}

TEST_P(CollectorStoreTest, SeriesBucketsByWindowEndAndRefusesTooManyPoints) {
  // 2001 windows one second apart, ending at 2 s .. 2002 s.
  std::vector<IncomingMessage> batch;
  for (int i = 0; i < 2001; ++i) {
    batch.push_back(In("telemetry", telemetry::EncodeTelemetry(Window(2000 + i * 1000, 1))));
  }
  Apply(batch);
  SeriesQuery query;
  query.since_ms = 0;
  query.bucket_ms = 1000;
  query.max_points = 2000;
  auto series = view_->Series(query);
  ASSERT_FALSE(series);
  EXPECT_EQ(series.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(series.error().message.find("more than 2000 points"), std::string::npos)
      << series.error().message;
  query.bucket_ms = 3000;
  series = view_->Series(query);
  ASSERT_TRUE(series) << series.error().message;
  ASSERT_EQ(series->buckets.size(), 668u);  // 0 (ts 2000), 3000, ..., 2001000
  EXPECT_EQ(series->since_ms, 0);
  EXPECT_EQ(series->buckets[0].last_ts, 0) << "rounded down to the bucket's start";
  EXPECT_EQ(series->buckets[0].requests, 1u);
  EXPECT_EQ(series->buckets[1].last_ts, 3000);
  EXPECT_EQ(series->buckets[1].requests, 3u);  // ts 3000, 4000, 5000
  EXPECT_EQ(series->buckets[1].windows, 3u);
  EXPECT_TRUE(series->buckets[1].device.empty());
  EXPECT_EQ(series->buckets.back().last_ts, 2001000);
  EXPECT_EQ(series->buckets.back().requests, 2u);
  // Without a start: the newest window's ts minus 15 minutes (windows from 1102000 on).
  query.since_ms.reset();
  series = view_->Series(query);
  ASSERT_TRUE(series) << series.error().message;
  EXPECT_EQ(series->since_ms, 2002000 - 900000);
  EXPECT_EQ(series->buckets.front().last_ts, 1101000);
  EXPECT_EQ(series->buckets.front().requests, 2u);  // ts 1102000, 1103000
}

// Two rows of totals or series with every field equal (the golden mean too, where there is one).
void ExpectSameSums(const SeriesStats& a, const SeriesStats& b) {
  SCOPED_TRACE(b.device + " " + b.model + " " + b.version + " " + std::to_string(b.last_ts));
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.last_ts, b.last_ts);
  EXPECT_EQ(a.last_slot, b.last_slot);
  EXPECT_EQ(a.windows, b.windows);
  EXPECT_EQ(a.requests, b.requests);
  EXPECT_EQ(a.errors, b.errors);
  EXPECT_EQ(a.labeled, b.labeled);
  EXPECT_EQ(a.correct, b.correct);
  EXPECT_EQ(a.latency.count, b.latency.count);
  EXPECT_DOUBLE_EQ(a.latency.sum_ms, b.latency.sum_ms);
  EXPECT_DOUBLE_EQ(a.latency.max_ms, b.latency.max_ms);
  EXPECT_EQ(a.latency.buckets, b.latency.buckets);
  ASSERT_EQ(a.golden_accuracy.has_value(), b.golden_accuracy.has_value());
  if (b.golden_accuracy) {
    EXPECT_DOUBLE_EQ(*a.golden_accuracy, *b.golden_accuracy);
  }
}

// A batch sums its windows into the totals and the 10-second series and its numbers into the
// sequences once per key (CollectorStore::Apply): the same messages stored one per batch give the
// same totals, series and gap counts, to the last bucket, newest slot and golden mean.
TEST_P(CollectorStoreTest, ABatchSumsTheSeriesAndSequencesAsWindowsOneByOneDo) {
  std::vector<IncomingMessage> messages;
  for (int i = 0; i < 240; ++i) {
    telemetry::TelemetryWindow w = Window(20000 + i * 370, 1 + static_cast<std::uint64_t>(i % 5));
    w.version = i % 3 == 0 ? "1.1.0" : "1.0.0";
    w.model = i % 7 == 0 ? "faces" : "digits";
    w.errors = static_cast<std::uint64_t>(i % 2);
    w.slot = i % 2 == 0 ? "A" : "B";
    w.labeled = 2;
    w.correct = static_cast<std::uint64_t>(i % 3);
    if (i % 4 == 0) w.golden_accuracy = 0.5 + 0.001 * i;
    telemetry::LatencyHistogram h;
    for (std::uint64_t k = 0; k < w.count; ++k) h.Record(0.5 + 3.7 * static_cast<double>(i % 11));
    w.latency = h.Snapshot();
    if (i % 10 != 9)
      w.seq = {i < 120 ? "00000000000000aa" : "00000000000000bb",
               static_cast<std::uint64_t>(i + 1)};  // every tenth unnumbered
    if (i == 50 || i == 51) continue;               // a gap of two in stream aa
    messages.push_back(In("telemetry", telemetry::EncodeTelemetry(w)));
  }
  messages.push_back(messages[17]);  // a duplicate in the batch adds nothing

  const std::string one_by_one = Location("one_by_one");
  auto other = CollectorStore::Open(one_by_one);
  ASSERT_TRUE(other) << other.error().message;
  for (const IncomingMessage& m : messages) ASSERT_TRUE(other->Apply(std::span(&m, 1)));
  Apply(messages);
  auto one_view = FleetView::Open(one_by_one);
  ASSERT_TRUE(one_view) << one_view.error().message;

  SeriesQuery query;
  query.since_ms = 0;
  query.bucket_ms = 10000;
  auto batched = view_->Series(query);
  auto one = one_view->Series(query);
  ASSERT_TRUE(batched && one);
  ASSERT_EQ(batched->buckets.size(), one->buckets.size());
  EXPECT_GE(batched->buckets.size(), 12u) << "9 buckets of 10 s, 2 models, 2 versions";
  std::uint64_t windows = 0;
  for (std::size_t i = 0; i < one->buckets.size(); ++i) {
    ExpectSameSums(batched->buckets[i], one->buckets[i]);
    windows += batched->buckets[i].windows;
  }
  EXPECT_EQ(windows, 238u);
  auto batched_totals = view_->Totals();
  auto one_totals = one_view->Totals();
  ASSERT_TRUE(batched_totals && one_totals);
  ASSERT_EQ(batched_totals->size(), one_totals->size());
  EXPECT_EQ(batched_totals->size(), 4u) << "2 models x 2 versions";
  for (std::size_t i = 0; i < one_totals->size(); ++i) {
    ExpectSameSums((*batched_totals)[i], (*one_totals)[i]);
  }
  // Numbers are i + 1: stream aa stores 1..119 but 10, 20, .., 110 (unnumbered) and 51, 52 (not
  // sent), 13 gaps; stream bb 121..239 but 130, .., 230, 11 gaps.
  EXPECT_EQ(BoxA().missing, 24u);
  EXPECT_EQ(BoxA().numbered, 238u - 24u);  // 24 of the 238 carry no number
  auto one_devices = one_view->Devices();
  ASSERT_TRUE(one_devices && one_devices->size() == 1u);
  EXPECT_EQ(one_devices->front().missing, 24u);
  EXPECT_EQ(one_devices->front().numbered, BoxA().numbered);
}

TEST_P(CollectorStoreTest, ClassifyRefusesWhatIsNotOurs) {
  const std::string window = telemetry::EncodeTelemetry(Window(5000, 1));
  struct Case {
    std::string topic;
    std::string payload;
    ErrorCode code;
    std::string needle;
  };
  auto other_fleet = Status(true, 1, 1);
  other_fleet.fleet = "prod";
  const std::vector<Case> cases = {
      {"elsewhere/x", window, ErrorCode::kInvalidArgument, "elsewhere/x"},
      {telemetry::GroupDesiredTopic("demo", "lab"), window, ErrorCode::kInvalidArgument,
       "not a device status, telemetry or events topic"},
      {DeviceTopic("demo", "box-a", "desired"), window, ErrorCode::kInvalidArgument,
       "not a device status"},
      {DeviceTopic("demo", "box-b", "telemetry"), window, ErrorCode::kParse,
       "payload says 'box-a' but the topic is device 'box-b'"},
      {DeviceTopic("demo", "box-a", "status"), telemetry::EncodeStatus(other_fleet),
       ErrorCode::kParse, "payload says 'prod' but the topic is fleet 'demo'"},
      {DeviceTopic("demo", "box-a", "telemetry"), std::string(70000, ' '), ErrorCode::kLimit,
       "70000 bytes"},
  };
  for (const Case& c : cases) {
    auto in = ClassifyMessage(c.topic, c.payload, 1);
    ASSERT_FALSE(in) << c.topic;
    EXPECT_EQ(in.error().code, c.code) << c.topic << ": " << in.error().message;
    EXPECT_NE(in.error().message.find(c.needle), std::string::npos)
        << c.topic << ": " << in.error().message;
  }
  auto huge = Window(5000, 1);
  huge.count = huge.errors = std::uint64_t{1} << 40;
  auto in = ClassifyMessage(DeviceTopic("demo", "box-a", "telemetry"),
                            telemetry::EncodeTelemetry(huge), 1);
  ASSERT_FALSE(in);
  EXPECT_NE(in.error().message.find("count: 1099511627776 is more than"), std::string::npos)
      << in.error().message;
}

// What is not a collector database is named as such, by both the writer's check and the view's.
TEST_P(CollectorStoreTest, AnEmptyDatabaseIsNotACollectorDatabase) {
  std::string empty = Location("empty");
  if (GetParam() == Engine::kSqlite) testing::WriteFile(empty, "");
  auto view = FleetView::Open(empty);
  ASSERT_FALSE(view);
  EXPECT_EQ(view.error().code, ErrorCode::kIntegrity);
  EXPECT_NE(view.error().message.find("not a collector database"), std::string::npos)
      << view.error().message;
  if (GetParam() == Engine::kPostgres) {
    EXPECT_NE(view.error().message.find("empty_"), std::string::npos) << "names the database";
    // The writer creates the schema in it, and then it is one.
    ASSERT_TRUE(CollectorStore::Open(empty));
    EXPECT_TRUE(FleetView::Open(empty));
  }
}

// The schema an older build left at `location`: the source tree's migrations 1..`version`.
edgefleet::Status MigrateTo(Engine engine, const std::string& location, int version) {
  const std::filesystem::path dir =
      std::filesystem::path(EDGEFLEET_SOURCE_DIR) / "deploy/collector" /
      (engine == Engine::kSqlite ? "collector_migrations" : "collector_migrations_pg");
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  EXPECT_GE(files.size(), static_cast<std::size_t>(version));
  files.resize(std::min(files.size(), static_cast<std::size_t>(version)));
  std::vector<std::string> names, texts;
  for (const auto& f : files) {
    names.push_back(f.filename().string());
    texts.push_back(testing::ReadFile(f));
  }
  std::vector<manifests::SqlMigration> migrations;
  for (std::size_t i = 0; i < files.size(); ++i) {
    migrations.push_back({static_cast<int>(i + 1), names[i].c_str(), texts[i].c_str()});
  }
  if (engine == Engine::kSqlite) {
    EF_ASSIGN_OR_RETURN(
        auto db, manifests::SqliteDb::Open(location, manifests::SqliteDb::Mode::kReadWriteCreate));
    return db.Migrate(migrations, collector_sql::kApplicationId);
  }
  EF_ASSIGN_OR_RETURN(auto db, PgDb::Connect(location));
  return db.Migrate(migrations);
}

// Runs `sql` on the database at `location` (statements we own; no parameters).
edgefleet::Status Exec(Engine engine, const std::string& location, const std::string& sql) {
  if (engine == Engine::kSqlite) {
    EF_ASSIGN_OR_RETURN(
        auto db, manifests::SqliteDb::Open(location, manifests::SqliteDb::Mode::kReadWriteCreate));
    return db.Exec("test sql", sql.c_str());
  }
  EF_ASSIGN_OR_RETURN(auto db, PgDb::Connect(location));
  return db.Exec("test sql", sql);
}

Result<std::int64_t> QueryInt(Engine engine, const std::string& location, const std::string& sql) {
  if (engine == Engine::kSqlite) {
    EF_ASSIGN_OR_RETURN(
        auto db, manifests::SqliteDb::Open(location, manifests::SqliteDb::Mode::kReadWriteCreate));
    return db.QueryInt("test query", sql);
  }
  EF_ASSIGN_OR_RETURN(auto db, PgDb::Connect(location));
  return db.QueryInt("test query", sql);
}

// A window row as schema 4 stored it: the message's identity and JSON, zeros for the figures.
std::string OldWindowRow(const telemetry::TelemetryWindow& w, std::int64_t received_ms) {
  std::string sql =
      "INSERT INTO windows (id, device, fleet, model, version, slot, role, ts, start_ts, window_s, "
      "received_ms, count, errors, server_errors, latency_count, latency_sum_ms, latency_max_ms, "
      "p50_ms, p99_ms, labeled, correct, confidence_mean, confidence_std, rss_bytes, cpu_pct, "
      "disk_free_bytes, json";
  for (int i = 0; i <= 16; ++i) sql += (i < 10 ? ", b0" : ", b") + std::to_string(i);
  sql += ") VALUES ('" + w.id + "', 'box-a', 'demo', 'digits', '1.0.0', 'A', 'active', " +
         std::to_string(w.ts) + ", " + std::to_string(w.start_ts) + ", 1, " +
         std::to_string(received_ms) + ", " + std::to_string(w.count);
  for (int i = 0; i < 14; ++i) sql += ", 0";  // errors .. disk_free_bytes
  sql += ", '" + telemetry::EncodeTelemetry(w) + "'";
  for (int i = 0; i <= 16; ++i) sql += ", 0";
  return sql + ");";
}

// An older collector's windows keep every row through schema 5, and each is a duplicate of its
// own message afterwards: a numbered one by its device, series, time, stream and number (also
// when it arrives again under another id), an unnumbered one by its id.
TEST_P(CollectorStoreTest, AnOlderDatabaseKeepsItsWindowsAndTheirDuplicatesStayDuplicates) {
  const std::string old = Location("old");
  ASSERT_TRUE(MigrateTo(GetParam(), old, 4));
  auto numbered = [](std::uint64_t n) {
    auto w = Window(5000 + static_cast<std::int64_t>(n) * 1000, 1);
    w.seq = {"00000000000000aa", n};
    return w;
  };
  const auto first = numbered(1), second = numbered(2), plain = Window(9000, 1);
  auto again = numbered(2);  // number 2 under another id: schema 4 stored it twice
  std::string rows;
  std::int64_t received_ms = 1000;  // in this order: `second` before `again`
  for (const auto& w : {first, second, again, plain}) rows += OldWindowRow(w, ++received_ms);
  // The running sums a schema-4 collector wrote in the windows' transaction (zeros but the
  // count and the newest window's end, which a read of one device's windows starts from).
  rows +=
      "INSERT INTO totals (device, model, version, windows, requests, errors, latency_count, "
      "latency_sum_ms, latency_max_ms";
  for (int i = 0; i <= 16; ++i) rows += (i < 10 ? ", b0" : ", b") + std::to_string(i);
  rows += ", labeled, correct, last_ts, last_slot) VALUES ('box-a', 'digits', '1.0.0', 4, 4";
  for (int i = 0; i < 23; ++i) rows += ", 0";  // errors .. b16, labeled, correct
  rows += ", " + std::to_string(plain.ts) + ", 'A');";
  telemetry::EventMessage event;
  event.id = telemetry::NewMessageId();
  event.device = "box-a";
  event.ts = 6000;
  event.event = "downloading";
  event.seq = {"00000000000000aa", 4};
  const std::string event_json = telemetry::EncodeEvent(event);
  rows +=
      "INSERT INTO events (id, device, fleet, ts, received_ms, event, deployment, model, "
      "version, from_state, reason, serial, target, json) VALUES ('" +
      event.id + "', 'box-a', 'demo', 6000, 1000, 'downloading', 0, '', '', '', '', 0, '', '" +
      event_json + "');";
  const std::string status = telemetry::EncodeStatus(Status(true, 1, 4000));
  rows +=
      "INSERT INTO devices (device, fleet, online, last_seen_ms, status_id, status_ts, "
      "agent_version, connection, status_json) VALUES ('box-a', 'demo', 1, 1000, 'birth', 4000, "
      "'0.1.0', 1, '" +
      status + "');";
  ASSERT_TRUE(Exec(GetParam(), old, rows));

  auto store = CollectorStore::Open(old);
  ASSERT_TRUE(store) << store.error().message;
  {
    auto view = FleetView::Open(old);
    ASSERT_TRUE(view) << view.error().message;
    WindowQuery q;
    q.device = "box-a";
    auto windows = view->Windows(q);
    ASSERT_TRUE(windows) << windows.error().message;
    EXPECT_EQ(windows->size(), 4u) << "schema 6 found the hours of the stored windows";
    auto summary = view->Summary(std::nullopt);
    ASSERT_TRUE(summary) << summary.error().message;
    ASSERT_EQ(summary->versions.size(), 1u);
    EXPECT_EQ(summary->versions[0].active_on, 1u) << "schema 6 read the stored status";
  }
  auto count = [&](const std::string& where) {
    auto n = QueryInt(GetParam(), old, "SELECT COUNT(*) FROM windows WHERE " + where);
    EXPECT_TRUE(n) << n.error().message;
    return n ? *n : -1;
  };
  EXPECT_EQ(count("true"), 4) << "no stored row is lost";
  EXPECT_EQ(count("stream = '00000000000000aa' AND n = 1 AND id = '" + first.id + "'"), 1);
  EXPECT_EQ(count("n = 2 AND id = '" + second.id + "'"), 1) << "the first received keeps it";
  EXPECT_EQ(count("n IS NULL"), 2) << "the second row of number 2, and the unnumbered one";
  auto events = QueryInt(GetParam(), old, "SELECT COUNT(*) FROM events WHERE n = 4");
  ASSERT_TRUE(events) << events.error().message;
  EXPECT_EQ(*events, 1);
  auto resent = event;
  resent.id = telemetry::NewMessageId();
  const std::vector<IncomingMessage> event_batch = {
      In("events", event_json, 2000), In("events", telemetry::EncodeEvent(resent), 2000)};
  auto event_outcomes = store->Apply(event_batch);
  ASSERT_TRUE(event_outcomes) << event_outcomes.error().message;
  EXPECT_EQ(*event_outcomes, (std::vector<O>{O::kDuplicate, O::kDuplicate}));

  const auto later = numbered(3);
  auto seen_again = numbered(1);
  std::vector<IncomingMessage> batch;
  for (const auto& w : {first, again, seen_again, plain, later}) {
    batch.push_back(In("telemetry", telemetry::EncodeTelemetry(w), 2000));
  }
  auto outcomes = store->Apply(batch);
  ASSERT_TRUE(outcomes) << outcomes.error().message;
  EXPECT_EQ(*outcomes, (std::vector<O>{O::kDuplicate, O::kDuplicate, O::kDuplicate, O::kDuplicate,
                                       O::kStored}));
  EXPECT_EQ(count("true"), 5);
}

TEST_P(CollectorStoreTest, ANewerSchemaIsRefused) {
  store_.reset();
  view_.reset();
  const std::string sql = "INSERT INTO schema_version VALUES (99, 'future', 0);";
  auto r = testing::RunProcess(GetParam() == Engine::kSqlite
                                   ? std::vector<std::string>{"sqlite3", db_, sql}
                                   : std::vector<std::string>{"psql", "-q", db_, "-c", sql});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto store = CollectorStore::Open(db_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(store.error().message.find("schema version 99"), std::string::npos)
      << store.error().message;
  auto view = FleetView::Open(db_);
  ASSERT_FALSE(view);
  EXPECT_EQ(view.error().code, ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace edgefleet::deploy
