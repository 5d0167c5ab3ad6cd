// deploy/collector_spool: real files in a temp directory; a "crash" is dropping the spool object
// without marking its records done, as a SIGKILL leaves them.
#include "deploy/collector/collector_spool.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<CollectorSpool> OpenOrFail(const fs::path& base,
                                           std::vector<CollectorSpool::Record>& leftover) {
  auto spool = CollectorSpool::Open(base, leftover);
  if (!spool) {
    ADD_FAILURE() << spool.error().message;
    return nullptr;
  }
  return std::move(*spool);
}

std::vector<std::string> Payloads(const std::vector<CollectorSpool::Record>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.payload);
  return out;
}

TEST(CollectorSpool, RecordsNotDoneComeBackInOrderAndGoOnceDone) {
  testing::TempDir dir;
  const fs::path base = dir / "c.db.spool";
  std::vector<CollectorSpool::Record> leftover;
  {
    auto spool = OpenOrFail(base, leftover);
    ASSERT_TRUE(spool);
    EXPECT_TRUE(leftover.empty());
    for (const char* p : {"one", "two", "three"}) {
      auto g = spool->Append("edgefleet/v1/f/device/d/telemetry", p, 1234);
      ASSERT_TRUE(g) << g.error().message;
      EXPECT_EQ(*g, 1u);
    }
    spool->Done(1, 1);  // "one" stored; the kill comes before the rest
    EXPECT_EQ(spool->Pending(), 2u);
  }
  auto spool = OpenOrFail(base, leftover);
  ASSERT_TRUE(spool);
  // Done is not written down: a record is given back until its file goes (a duplicate the
  // store's deduplication absorbs), never lost.
  ASSERT_EQ(Payloads(leftover), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(leftover[1].topic, "edgefleet/v1/f/device/d/telemetry");
  EXPECT_EQ(leftover[1].received_ms, 1234);
  EXPECT_EQ(leftover[1].generation, 1u);
  auto g = spool->Append("t", "four", 1);
  ASSERT_TRUE(g);
  EXPECT_EQ(*g, 2u);  // a new generation for this run's appends
  EXPECT_TRUE(fs::exists(dir / "c.db.spool.1"));
  spool->Done(1, 3);
  EXPECT_FALSE(fs::exists(dir / "c.db.spool.1")) << "every record of generation 1 is done";
  spool->Done(2, 1);
  EXPECT_EQ(spool->Pending(), 0u);
  EXPECT_EQ(fs::file_size(dir / "c.db.spool.2"), 0u) << "the newest file is emptied, not kept";
}

TEST(CollectorSpool, ATornRecordAtTheEndIsIgnored) {
  testing::TempDir dir;
  const fs::path base = dir / "s";
  std::vector<CollectorSpool::Record> leftover;
  {
    auto spool = OpenOrFail(base, leftover);
    ASSERT_TRUE(spool);
    ASSERT_TRUE(spool->Append("t", "whole", 1));
    ASSERT_TRUE(spool->Append("t", "also whole", 2));
  }
  {
    // A kill in the middle of a write: a header that promises more bytes than follow.
    std::ofstream out(dir / "s.1", std::ios::binary | std::ios::app);
    const char torn[] = {5, 0, 0, 0, 9, 0, 0, 0, 1, 2, 3};
    out.write(torn, sizeof(torn));
  }
  {
    // A header claiming a field far larger than any message ends the read too.
    std::ofstream out(dir / "s.1", std::ios::binary | std::ios::app);
    const std::string huge(16, '\xff');
    out.write(huge.data(), static_cast<std::streamsize>(huge.size()));
  }
  auto spool = OpenOrFail(base, leftover);
  ASSERT_TRUE(spool);
  EXPECT_EQ(Payloads(leftover), (std::vector<std::string>{"whole", "also whole"}));
}

TEST(CollectorSpool, OtherFilesBesideItAreLeftAlone) {
  testing::TempDir dir;
  testing::WriteFile(dir / "s.db", "the database");
  testing::WriteFile(dir / "s.notes", "x");
  std::vector<CollectorSpool::Record> leftover;
  auto spool = OpenOrFail(dir / "s", leftover);
  ASSERT_TRUE(spool);
  EXPECT_TRUE(leftover.empty());
  EXPECT_TRUE(fs::exists(dir / "s.db"));
  EXPECT_TRUE(fs::exists(dir / "s.notes"));
}

}  // namespace
}  // namespace edgefleet::deploy
