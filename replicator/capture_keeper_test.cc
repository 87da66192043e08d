// The keeper follows a database that another process keeps changing.
#include "replicator/capture_keeper.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "sqlite/schema.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::testing::RunSqliteCli;

TEST(CaptureKeeperTest, ASeedCopiesTheRowsThatExistedBeforeItsFirstStartOnce) {
  const std::string path = sqlite::testing::NewDatabase(
      "keeper-seed",
      "CREATE TABLE a (id INTEGER PRIMARY KEY, v); CREATE TABLE empty (id INTEGER PRIMARY KEY);"
      "INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z');");
  const std::string pending =
      "SELECT count(*) FROM \"__marmot__a_change_log\" WHERE \"__marmot__state\" = 0;";
  {
    auto keeper = CaptureKeeper::Open(path, ExistingRows::kSeed);
    ASSERT_TRUE(keeper.ok()) << keeper.status();
  }
  EXPECT_EQ(*RunSqliteCli(path, pending), "3\n");
  // Once replicated (the applier's state exists), a start with -seed copies nothing again: the
  // rows would overwrite newer versions written on other nodes since.
  ASSERT_TRUE(RunSqliteCli(path, "CREATE TABLE \"__marmot__shard_state\" (shard INTEGER);").ok());
  {
    auto keeper = CaptureKeeper::Open(path, ExistingRows::kSeed);
    ASSERT_TRUE(keeper.ok()) << keeper.status();
  }
  EXPECT_EQ(*RunSqliteCli(path, pending), "3\n");
}

TEST(CaptureKeeperTest, FollowsTablesAndWritesOfAnotherProcess) {
  // Given a database with one table
  std::string path =
      sqlite::testing::NewDatabase("keeper", "CREATE TABLE a (id INTEGER PRIMARY KEY, v);");
  auto keeper = CaptureKeeper::Open(path);
  ASSERT_TRUE(keeper.ok()) << keeper.status();

  // When another process writes, and creates a table and fills it in one go
  ASSERT_TRUE(RunSqliteCli(path,
                           "INSERT INTO a VALUES (2, 'after');"
                           "CREATE TABLE b (id INTEGER PRIMARY KEY, v);"
                           "INSERT INTO b VALUES (1, 'x'), (2, 'y');")
                  .ok());
  auto first = (*keeper)->Poll();
  ASSERT_TRUE(first.ok()) << first.status();

  // Then the write to a is captured, and b's rows (written before its triggers) are backfilled
  EXPECT_EQ(*first, 3);
  auto db = sqlite::Database::Open(path);
  ASSERT_TRUE(db.ok());
  // Each log's ids start from the clock: its first row (done, not a change) has 16 x the
  // microseconds since 1970; the keeper knows each log's newest id.
  auto id = [&](const std::string& what, const std::string& table) {
    return db
        ->QueryValue(absl::StrCat("SELECT ", what, " FROM \"__marmot__", table, "_change_log\""))
        ->integer();
  };
  EXPECT_GT(id("min(\"__marmot__id\")", "a"), int64_t{16} * 1577836800000000)
      << "16 x the microseconds since 2020";
  EXPECT_GT(id("min(\"__marmot__id\") FILTER (WHERE \"__marmot__state\" = 0)", "b"),
            id("min(\"__marmot__id\")", "b"));
  EXPECT_EQ((*keeper)->last_change_ids().at("a"), id("max(\"__marmot__id\")", "a"));
  EXPECT_EQ((*keeper)->last_change_ids().at("b"), id("max(\"__marmot__id\")", "b"));

  // And the next write to b is captured by its new triggers, exactly once
  ASSERT_TRUE(RunSqliteCli(path, "UPDATE b SET v = 'z' WHERE id = 2;").ok());
  EXPECT_EQ(*(*keeper)->Poll(), 1);
  EXPECT_EQ(*(*keeper)->Poll(), 0);
  const std::string pending = " WHERE \"__marmot__state\" = 0";
  EXPECT_EQ(*db->QueryValue("SELECT count(*) FROM \"__marmot__b_change_log\"" + pending),
            sqlite::Value::Integer(3));
  EXPECT_EQ(*db->QueryValue("SELECT count(*) FROM \"__marmot__a_change_log\"" + pending),
            sqlite::Value::Integer(1));
}

TEST(CaptureKeeperTest, RowsThatExistAtTheFirstStartRefuseItUnlessTheNodeTakesTheClusters) {
  const std::string path = sqlite::testing::NewDatabase(
      "keeper-rows",
      "CREATE TABLE a (id INTEGER PRIMARY KEY, v); CREATE TABLE empty (id INTEGER PRIMARY KEY);"
      "CREATE TABLE \"we'ird\" (k PRIMARY KEY); CREATE TABLE audit (what);"
      "CREATE TRIGGER gone AFTER DELETE ON a BEGIN INSERT INTO audit VALUES ('deleted'); END;"
      "INSERT INTO a VALUES (1, 'x'), (2, 'y'); INSERT INTO \"we'ird\" VALUES ('k');");
  const std::string marmot_objects =
      "SELECT count(*) FROM sqlite_master WHERE substr(name, 1, 10) = '__marmot__';";

  // Refused with the tables named, the file left as it was.
  auto refused = CaptureKeeper::Open(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("tables a, we'ird of "), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("-seed"), std::string::npos);
  EXPECT_NE(refused.status().message().find("-take-cluster-rows"), std::string::npos);
  EXPECT_EQ(*RunSqliteCli(path, marmot_objects), "0\n");
  EXPECT_EQ(*RunSqliteCli(path, "SELECT count(*) FROM a;"), "2\n");

  // So is a node that was a member (its marmot state cleaned up, its Raft store kept): it can
  // no longer tell its rows from the cluster's.
  auto was_member = CaptureKeeper::Open(path, ExistingRows::kRefuse, /*was_member=*/true);
  ASSERT_FALSE(was_member.ok());
  EXPECT_EQ(was_member.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(was_member.status().message().find("tables a, we'ird of "), std::string::npos)
      << was_member.status();
  EXPECT_NE(was_member.status().message().find("-cleanup"), std::string::npos);
  EXPECT_NE(was_member.status().message().find("-take-cluster-rows"), std::string::npos);
  EXPECT_EQ(*RunSqliteCli(path, marmot_objects), "0\n");
  EXPECT_EQ(*RunSqliteCli(path, "SELECT count(*) FROM a;"), "2\n");

  // Taking the cluster's deletes them (no user trigger fires), and nothing goes to the logs.
  const std::string fresh = sqlite::testing::NewDatabase(
      "keeper-take",
      "CREATE TABLE a (id INTEGER PRIMARY KEY, v); CREATE TABLE audit (what);"
      "CREATE TRIGGER gone AFTER DELETE ON a BEGIN INSERT INTO audit VALUES ('deleted'); END;"
      "INSERT INTO a VALUES (1, 'x'), (2, 'y');");
  {
    auto taken = CaptureKeeper::Open(fresh, ExistingRows::kTakeCluster);
    ASSERT_TRUE(taken.ok()) << taken.status();
  }
  EXPECT_EQ(*RunSqliteCli(fresh, "SELECT count(*) FROM a; SELECT count(*) FROM audit;"), "0\n0\n");
  EXPECT_EQ(*RunSqliteCli(fresh,
                          "SELECT count(*) FROM \"__marmot__a_change_log\" WHERE "
                          "\"__marmot__state\" = 0;"),
            "0\n");
  // Later writes are captured as usual.
  ASSERT_TRUE(RunSqliteCli(fresh, "INSERT INTO a VALUES (3, 'new');").ok());
  EXPECT_EQ(*RunSqliteCli(fresh,
                          "SELECT count(*) FROM \"__marmot__a_change_log\" WHERE "
                          "\"__marmot__state\" = 0;"),
            "1\n");
}

TEST(CaptureKeeperTest, RefusesAFileThatIsNotADatabase) {
  std::string path = sqlite::testing::NewTempDir("keeper-bad") + "/x.db";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("not a database, just some text that is long enough", f);
  std::fclose(f);
  EXPECT_FALSE(CaptureKeeper::Open(path).ok());
}

}  // namespace
}  // namespace marmot::replicator
