// The shared SQLite layer on real files: which tool a file belongs to (application_id), and
// numbered migrations that stamp it.
#include <gtest/gtest.h>

#include "manifests/sqlite_db.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::manifests {
namespace {

constexpr SqlMigration kOne[] = {{1, "t", "CREATE TABLE t (x INTEGER) STRICT;"}};
constexpr SqlMigration kTwo[] = {{1, "t", "CREATE TABLE t (x INTEGER) STRICT;"},
                                 {2, "u", "CREATE TABLE u (y INTEGER) STRICT;"}};
constexpr std::int32_t kOurs = 0x45465445;

TEST(SqliteDb, ApplicationIdTellsWhoseFileItIs) {
  edgefleet::testing::TempDir tmp;
  const auto path = tmp / "a.db";
  {
    auto db = SqliteDb::Open(path, SqliteDb::Mode::kReadWriteCreate);
    ASSERT_TRUE(db) << db.error().message;
    auto fresh = db->CheckApplicationId(kOurs, "test");
    ASSERT_TRUE(fresh) << fresh.error().message;
    EXPECT_TRUE(*fresh) << "a new file is ours to create";
    ASSERT_TRUE(db->Migrate(kOne, kOurs));
    EXPECT_EQ(*db->QueryInt("read", "PRAGMA application_id"), kOurs);
    auto again = db->CheckApplicationId(kOurs, "test");
    ASSERT_TRUE(again);
    EXPECT_FALSE(*again) << "stamped: ours, not new";
    // Another tool's id: refused, naming the file, the kind and the id found.
    auto other = db->CheckApplicationId(kOurs + 1, "rollout");
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code, ErrorCode::kIntegrity);
    EXPECT_NE(
        other.error().message.find(path.string() + ": not a rollout database (application_id " +
                                   std::to_string(kOurs) + ")"),
        std::string::npos)
        << other.error().message;
  }
  // A file with tables but no id (e.g. made by another program): refused, not written into.
  const auto foreign = tmp / "foreign.db";
  auto db = SqliteDb::Open(foreign, SqliteDb::Mode::kReadWriteCreate);
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->Exec("create", "CREATE TABLE notes (t TEXT)"));
  auto refused = db->CheckApplicationId(kOurs, "test");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("not a test database (it holds other tables)"),
            std::string::npos)
      << refused.error().message;
}

TEST(SqliteDb, MigrationsApplyOnceAndANewerFileIsRefused) {
  edgefleet::testing::TempDir tmp;
  const auto path = tmp / "m.db";
  {
    auto db = SqliteDb::Open(path, SqliteDb::Mode::kReadWriteCreate);
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->Migrate(kTwo));
    EXPECT_EQ(*db->SchemaVersion(), 2);
    EXPECT_EQ(*db->QueryInt("read", "PRAGMA application_id"), 0) << "no id asked for, none set";
    ASSERT_TRUE(db->Migrate(kTwo)) << "applied migrations are not repeated";
  }
  auto db = SqliteDb::Open(path, SqliteDb::Mode::kReadWriteCreate);
  ASSERT_TRUE(db);
  auto older_build = db->Migrate(kOne);
  ASSERT_FALSE(older_build);
  EXPECT_EQ(older_build.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(older_build.error().message.find("schema version 2 is newer"), std::string::npos)
      << older_build.error().message;
}

}  // namespace
}  // namespace edgefleet::manifests
