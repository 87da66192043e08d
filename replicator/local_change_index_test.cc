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

std::vector<Value> Key(int64_t id) { return {Value::Integer(id)}; }

// The newest change of row `id` of table t, 0 when the index has not read t.
int64_t Newest(const LocalChangeIndex& index, int64_t id) {
  const LocalChangeIndex::TableRows* t = index.Find("t");
  return t == nullptr ? 0 : t->Newest(Key(id));
}

// CatchUp of t, which must succeed.
LocalChangeIndex::TableRows& CaughtUp(LocalChangeIndex& index, sqlite::Database& db) {
  absl::StatusOr<LocalChangeIndex::TableRows*> t = index.CatchUp(db, "t");
  CHECK(t.ok()) << t.status();
  return **t;
}

// A database at a new path with `schema` (made by the sqlite3 shell) and marmot's capture on it.
struct CapturedDatabase {
  std::string path;
  sqlite::Database db;
};
CapturedDatabase NewCapturedDatabase(const std::string& label, const std::string& schema) {
  const std::string path = sqlite::testing::NewDatabase(label, schema);
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(path);
  CHECK(db.ok()) << db.status();
  absl::StatusOr<sqlite::CaptureReport> capture = sqlite::InstallCapture(*db);
  CHECK(capture.ok()) << capture.status();
  return {path, *std::move(db)};
}

TEST(LocalChangeIndexTest, SeesNewRowsIncrementallyAndForgetsProcessedOnes) {
  auto [path, db] =
      NewCapturedDatabase("local-change-index", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  // Given two changes of row 1 and one of row 2 (another process writes them).
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(
                  path,
                  "INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b' WHERE id = 1;"
                  "INSERT INTO t VALUES (2, 'c');")
                  .ok());
  LocalChangeIndex index;
  LocalChangeIndex::TableRows& t = CaughtUp(index, db);
  EXPECT_EQ(t.Newest(Key(1)), 2);
  EXPECT_EQ(t.Newest(Key(2)), 3);
  EXPECT_EQ(t.Newest(Key(3)), 0);

  // Processing an older change of a row keeps it; its newest forgets it.
  t.Processed(Key(1), 1);
  EXPECT_EQ(t.Newest(Key(1)), 2);
  t.Processed(Key(1), 2);
  EXPECT_EQ(t.Newest(Key(1)), 0);
  EXPECT_EQ(t.size(), 1u);

  // A later change is read by the next CatchUp; the forgotten rows stay forgotten.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "UPDATE t SET v = 'd' WHERE id = 2").ok());
  EXPECT_EQ(&CaughtUp(index, db), &t);
  EXPECT_EQ(t.Newest(Key(2)), 4);
  EXPECT_EQ(t.Newest(Key(1)), 0);

  // Clear() reads the log from its start again.
  index.Clear();
  EXPECT_EQ(index.Find("t"), nullptr);
  EXPECT_EQ(Newest(index, 1), 0);
  EXPECT_EQ(CaughtUp(index, db).Newest(Key(1)), 2);

  // A table without a log is an error, and clears the index (what the caller writes next is not
  // tracked).
  EXPECT_FALSE(index.CatchUp(db, "missing").ok());
  EXPECT_EQ(index.Find("t"), nullptr);
}

// Processing every row read gives the table's memory back (Processed clears it); the table's
// part goes on from there: rows already read stay forgotten, later ones are seen.
TEST(LocalChangeIndexTest, ATableEmptiedByProcessingGoesOnWithLaterChanges) {
  auto [path, db] = NewCapturedDatabase("local-change-index-emptied",
                                        "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(
                  path,
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
                  "INSERT INTO t SELECT i, i FROM n;")
                  .ok());
  LocalChangeIndex index;
  LocalChangeIndex::TableRows& t = CaughtUp(index, db);
  EXPECT_EQ(t.size(), 500u);
  for (int i = 1; i <= 500; ++i) t.Processed(Key(i), i);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.Newest(Key(7)), 0);

  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "UPDATE t SET v = 'x' WHERE id = 7").ok());
  EXPECT_EQ(&CaughtUp(index, db), &t);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.Newest(Key(7)), 501);
  EXPECT_EQ(t.Newest(Key(8)), 0);
}

TEST(LocalChangeIndexTest, ARowHoldsItsNewestLocalChangeUntilTheApplierRewritesIt) {
  auto [path, db] =
      NewCapturedDatabase("local-change-index-holds", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1, 'a');").ok());
  LocalChangeIndex index;
  // Rows of the first read of a table may have been written by the applier before: unknown.
  LocalChangeIndex::TableRows* t = &CaughtUp(index, db);
  EXPECT_FALSE(t->Holds(Key(1), 1));

  // Changes read later were committed after everything the applier wrote before that read.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path,
                                            "UPDATE t SET v = 'b' WHERE id = 1;"
                                            "INSERT INTO t VALUES (2, 'c');")
                  .ok());
  CaughtUp(index, db);
  EXPECT_TRUE(t->Holds(Key(1), 2));
  EXPECT_FALSE(t->Holds(Key(1), 1)) << "an older change of the row";
  EXPECT_TRUE(t->Holds(Key(2), 3));
  EXPECT_FALSE(t->Holds(Key(3), 3)) << "a row without local changes";

  // The applier writes row 2 (another node's change): it no longer holds change 3, until the
  // application writes it again.
  t->Rewritten(Key(2));
  t->Rewritten(Key(3));  // Not in the index: nothing to remember.
  EXPECT_FALSE(t->Holds(Key(2), 3));
  EXPECT_EQ(t->Newest(Key(2)), 3);
  EXPECT_EQ(t->size(), 2u);
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "UPDATE t SET v = 'd' WHERE id = 2").ok());
  CaughtUp(index, db);
  EXPECT_TRUE(t->Holds(Key(2), 4));

  // After Clear() the first read is unknown again.
  index.Clear();
  t = &CaughtUp(index, db);
  EXPECT_FALSE(t->Holds(Key(2), 4));
  EXPECT_EQ(t->Newest(Key(2)), 4);
}

TEST(LocalChangeIndexTest, KeysOfOtherTypesAndCompositeKeysAreRowsOfTheirOwn) {
  auto [path, db] = NewCapturedDatabase("local-change-index-keys",
                                        "CREATE TABLE k (a PRIMARY KEY, v) WITHOUT ROWID;"
                                        "CREATE TABLE c (a, b, v, PRIMARY KEY (a, b));");
  // A key column without affinity keeps 5 and '5' as two rows; 5.0 is a third.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(
                  path,
                  "INSERT INTO k VALUES (5, 'a'); INSERT INTO k VALUES ('5', 'b');"
                  "INSERT INTO k VALUES (5.5, 'c'); UPDATE k SET v = 'd' WHERE a = '5';"
                  "INSERT INTO c VALUES (1, 2, 'e'); INSERT INTO c VALUES (2, 1, 'f');")
                  .ok());
  LocalChangeIndex index;
  absl::StatusOr<LocalChangeIndex::TableRows*> k = index.CatchUp(db, "k");
  absl::StatusOr<LocalChangeIndex::TableRows*> c = index.CatchUp(db, "c");
  ASSERT_TRUE(k.ok() && c.ok());
  EXPECT_EQ((*k)->Newest(Key(5)), 1);
  EXPECT_EQ((*k)->Newest({Value::Text("5")}), 4);
  EXPECT_EQ((*k)->Newest({Value::Real(5.5)}), 3);
  EXPECT_EQ((*c)->Newest({Value::Integer(1), Value::Integer(2)}), 1);
  EXPECT_EQ((*c)->Newest({Value::Integer(2), Value::Integer(1)}), 2);
  EXPECT_EQ((*c)->Newest(Key(1)), 0);
  (*k)->Processed({Value::Text("5")}, 4);
  EXPECT_EQ((*k)->Newest(Key(5)), 1) << "the integer key is another row";
  EXPECT_EQ((*k)->size() + (*c)->size(), 4u);
}

TEST(LocalChangeIndexTest, CatchUpKnownReadsOnlyTablesReadBefore) {
  auto [path, db] = NewCapturedDatabase("local-change-index-known",
                                        "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
                                        "CREATE TABLE u (id INTEGER PRIMARY KEY, v);");
  LocalChangeIndex index;
  CaughtUp(index, db).Rewritten(Key(1));
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path,
                                            "INSERT INTO t VALUES (1, 'a');"
                                            "INSERT INTO u VALUES (1, 'b');")
                  .ok());

  // Rows of a table read before count as written after the applier's writes, as with CatchUp.
  index.CatchUpKnown(db);
  EXPECT_TRUE(index.Find("t")->Holds(Key(1), 1));
  // A table never read stays for its first CatchUp, whose rows are unknown.
  EXPECT_EQ(index.Find("u"), nullptr);
  EXPECT_EQ(index.Find("t")->size(), 1u);
  absl::StatusOr<LocalChangeIndex::TableRows*> u = index.CatchUp(db, "u");
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE((*u)->Holds(Key(1), 1));

  // A known table whose log is gone clears the index, as a failed CatchUp does.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "DROP TABLE \"__marmot__u_change_log\"").ok());
  index.CatchUpKnown(db);
  EXPECT_EQ(index.Find("t"), nullptr);
  EXPECT_EQ(index.Find("u"), nullptr);
  EXPECT_EQ(Newest(index, 1), 0);
}

}  // namespace
}  // namespace marmot::replicator
