// LocalChangeIndex reads each change-log row once, forgets a row once its newest change was
// processed, and knows which rows still hold their newest local change.
#include "replicator/local_change_index.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include "replicator/shard_router.h"
#include "sqlite/change_log.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;

std::string Row(int64_t id) { return EncodeRowIdentity("t", {Value::Integer(id)}); }

TEST(LocalChangeIndexTest, SeesNewRowsIncrementallyAndForgetsProcessedOnes) {
  const std::string path = sqlite::testing::NewTempDir("local-change-index") + "/n.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v)").ok());
  auto db = sqlite::Database::Open(path);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(sqlite::InstallCapture(*db).ok());
  // Given two changes of row 1 and one of row 2 (another process writes them).
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(
                  path, "INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b' WHERE id = 1;"
                        "INSERT INTO t VALUES (2, 'c');")
                  .ok());
  LocalChangeIndex index;
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  EXPECT_EQ(index.Newest(Row(1)), 2);
  EXPECT_EQ(index.Newest(Row(2)), 3);
  EXPECT_EQ(index.Newest(Row(3)), 0);

  // Processing an older change of a row keeps it; its newest forgets it.
  index.Processed(Row(1), 1);
  EXPECT_EQ(index.Newest(Row(1)), 2);
  index.Processed(Row(1), 2);
  EXPECT_EQ(index.Newest(Row(1)), 0);
  EXPECT_EQ(index.rows(), 1u);

  // A later change is read by the next CatchUp; the forgotten rows stay forgotten.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "UPDATE t SET v = 'd' WHERE id = 2").ok());
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  EXPECT_EQ(index.Newest(Row(2)), 4);
  EXPECT_EQ(index.Newest(Row(1)), 0);

  // Clear() reads the log from its start again.
  index.Clear();
  EXPECT_EQ(index.rows(), 0u);
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  EXPECT_EQ(index.Newest(Row(1)), 2);

  // A table without a log is an error, and clears the index (what the caller writes next is not
  // tracked).
  EXPECT_FALSE(index.CatchUp(*db, "missing").ok());
  EXPECT_EQ(index.rows(), 0u);
}

TEST(LocalChangeIndexTest, ARowHoldsItsNewestLocalChangeUntilTheApplierRewritesIt) {
  const std::string path = sqlite::testing::NewTempDir("local-change-index-holds") + "/n.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v)").ok());
  auto db = sqlite::Database::Open(path);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(sqlite::InstallCapture(*db).ok());
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1, 'a');").ok());
  LocalChangeIndex index;
  // Rows of the first read of a table may have been written by the applier before: unknown.
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  EXPECT_FALSE(index.Holds(Row(1), 1));

  // Changes read later were committed after everything the applier wrote before that read.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "UPDATE t SET v = 'b' WHERE id = 1;"
                                                  "INSERT INTO t VALUES (2, 'c');")
                  .ok());
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  EXPECT_TRUE(index.Holds(Row(1), 2));
  EXPECT_FALSE(index.Holds(Row(1), 1)) << "an older change of the row";
  EXPECT_TRUE(index.Holds(Row(2), 3));
  EXPECT_FALSE(index.Holds(Row(3), 3)) << "a row without local changes";

  // The applier writes row 2 (another node's change): it no longer holds change 3, until the
  // application writes it again.
  index.Rewritten(Row(2));
  index.Rewritten(Row(3));  // Not in the index: nothing to remember.
  EXPECT_FALSE(index.Holds(Row(2), 3));
  EXPECT_EQ(index.Newest(Row(2)), 3);
  EXPECT_EQ(index.rows(), 2u);
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "UPDATE t SET v = 'd' WHERE id = 2").ok());
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  EXPECT_TRUE(index.Holds(Row(2), 4));

  // After Clear() the first read is unknown again.
  index.Clear();
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  EXPECT_FALSE(index.Holds(Row(2), 4));
  EXPECT_EQ(index.Newest(Row(2)), 4);
}

TEST(LocalChangeIndexTest, CatchUpKnownReadsOnlyTablesReadBefore) {
  const std::string path = sqlite::testing::NewTempDir("local-change-index-known") + "/n.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
                                                  "CREATE TABLE u (id INTEGER PRIMARY KEY, v);")
                  .ok());
  auto db = sqlite::Database::Open(path);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(sqlite::InstallCapture(*db).ok());
  LocalChangeIndex index;
  ASSERT_TRUE(index.CatchUp(*db, "t").ok());
  index.Rewritten(Row(1));
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1, 'a');"
                                                  "INSERT INTO u VALUES (1, 'b');")
                  .ok());

  // Rows of a table read before count as written after the applier's writes, as with CatchUp.
  index.CatchUpKnown(*db);
  EXPECT_TRUE(index.Holds(Row(1), 1));
  // A table never read stays for its first CatchUp, whose rows are unknown.
  const std::string u1 = EncodeRowIdentity("u", {Value::Integer(1)});
  EXPECT_EQ(index.Newest(u1), 0);
  EXPECT_EQ(index.rows(), 1u);
  ASSERT_TRUE(index.CatchUp(*db, "u").ok());
  EXPECT_FALSE(index.Holds(u1, 1));

  // A known table whose log is gone clears the index, as a failed CatchUp does.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "DROP TABLE \"__marmot__u_change_log\"").ok());
  index.CatchUpKnown(*db);
  EXPECT_EQ(index.rows(), 0u);
  EXPECT_EQ(index.Newest(Row(1)), 0);
}

}  // namespace
}  // namespace marmot::replicator
