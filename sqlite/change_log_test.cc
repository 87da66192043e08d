// Capture: triggers record every row change in the table's change log, for tables with any name.
#include "sqlite/change_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "sqlite/row_digest.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::sqlite {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

class ChangeLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::NewTempDir("capture") + "/c.db";
    auto db = Database::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::make_unique<Database>(*std::move(db));
  }

  CaptureReport Install(CaptureOptions options = {}) {
    auto report = InstallCapture(*db_, options);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : CaptureReport{};
  }

  std::vector<ChangeRecord> Changes(const std::string& table) {
    auto schema = ReadTableSchema(*db_, table);
    EXPECT_TRUE(schema.ok()) << schema.status();
    auto changes = ReadChanges(*db_, *schema, 0, 1000000);
    EXPECT_TRUE(changes.ok()) << changes.status();
    return changes.ok() ? *changes : std::vector<ChangeRecord>{};
  }

  // sqlite_master as rows of text, in a stable order.
  std::vector<std::string> Master() {
    auto rows = db_->QueryRows(
        "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master ORDER BY type, name");
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::vector<std::string> out;
    for (const auto& row : *rows) {
      std::string line;
      for (const Value& v : row) absl::StrAppend(&line, v.DebugString(), " | ");
      out.push_back(line);
    }
    return out;
  }

  void Exec(const std::string& sql) { ASSERT_TRUE(db_->Exec(sql).ok()) << sql; }

  std::string path_;
  std::unique_ptr<Database> db_;
};

TEST_F(ChangeLogTest, RecordsInsertUpdateRekeyAndDeleteWithExactValues) {
  Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, born)");
  CaptureReport report = Install();
  EXPECT_THAT(report.installed, ElementsAre("t"));

  // Each change read right after it was written carries its row as written.
  Exec("INSERT INTO t VALUES (1, 'ann', 2.0, x'00ff00', '2024-01-01')");
  std::vector<ChangeRecord> c = Changes("t");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].op, ChangeOp::kInsert);
  EXPECT_THAT(c[0].row,
              ElementsAre(Value::Integer(1), Value::Text("ann"), Value::Real(2.0),
                          Value::Blob(std::string("\0\xff\0", 3)), Value::Text("2024-01-01")));
  EXPECT_THAT(c[0].key, ElementsAre(Value::Integer(1)));
  EXPECT_THAT(c[0].old_key, IsEmpty());

  Exec("UPDATE t SET score = 3.5 WHERE id = 1");
  c = Changes("t");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[1].op, ChangeOp::kUpdate);
  EXPECT_EQ(c[1].row[2], Value::Real(3.5));

  Exec("UPDATE t SET id = 7 WHERE id = 1");
  c = Changes("t");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[2].op, ChangeOp::kRekey);
  EXPECT_THAT(c[2].key, ElementsAre(Value::Integer(7)));
  EXPECT_THAT(c[2].old_key, ElementsAre(Value::Integer(1)));
  EXPECT_EQ(c[2].row[0], Value::Integer(7));

  Exec("DELETE FROM t WHERE id = 7");
  c = Changes("t");
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[3].op, ChangeOp::kDelete);
  EXPECT_THAT(c[3].row, IsEmpty());
  EXPECT_THAT(c[3].old_key, ElementsAre(Value::Integer(7)));

  // Ids increase; the read time is plausible wall-clock milliseconds (after 2020).
  for (size_t i = 1; i < c.size(); ++i) EXPECT_GT(c[i].id, c[i - 1].id);
  EXPECT_GT(c[0].at_ms, int64_t{1577836800000});
}

TEST_F(ChangeLogTest, ChangesCarryTheRowAsItIsWhenRead) {
  Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  Install();
  Exec(
      "INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b' WHERE id = 1;"
      "INSERT INTO t VALUES (2, 'x'); UPDATE t SET id = 3 WHERE id = 2;"
      "INSERT INTO t VALUES (4, 'y'); UPDATE t SET id = 5 WHERE id = 4; DELETE FROM t WHERE id = "
      "5");
  std::vector<ChangeRecord> c = Changes("t");
  ASSERT_EQ(c.size(), 7u);
  // Both changes of row 1 carry its newest version.
  EXPECT_EQ(c[0].op, ChangeOp::kInsert);
  EXPECT_THAT(c[0].row, ElementsAre(Value::Integer(1), Value::Text("b")));
  EXPECT_THAT(c[1].row, ElementsAre(Value::Integer(1), Value::Text("b")));
  // Row 2 moved to 3 before it was read: its insert reads as the delete of 2, the rekey moves it.
  EXPECT_EQ(c[2].op, ChangeOp::kDelete);
  EXPECT_THAT(c[2].old_key, ElementsAre(Value::Integer(2)));
  EXPECT_EQ(c[3].op, ChangeOp::kRekey);
  EXPECT_THAT(c[3].row, ElementsAre(Value::Integer(3), Value::Text("x")));
  // Row 4 moved to 5, which is gone: every change of it reads as a delete.
  EXPECT_EQ(c[4].op, ChangeOp::kDelete);
  EXPECT_THAT(c[4].old_key, ElementsAre(Value::Integer(4)));
  EXPECT_EQ(c[5].op, ChangeOp::kDelete);
  EXPECT_THAT(c[5].old_key, ElementsAre(Value::Integer(4)));
  EXPECT_EQ(c[6].op, ChangeOp::kDelete);
  EXPECT_THAT(c[6].old_key, ElementsAre(Value::Integer(5)));
}

// SQLite's most columns (2,000) leave no room for the log's columns beside a table's own in one
// result: such a table's rows are read by key, with the same outcome as any other table's.
TEST_F(ChangeLogTest, TablesOfTheMostColumnsSqliteAllowsAreReadAsAnyOther) {
  std::string columns;
  for (int i = 1; i <= 1998; ++i) absl::StrAppend(&columns, ", c", i);
  Exec(absl::StrCat("CREATE TABLE w (id INTEGER PRIMARY KEY", columns, ", c1999)"));
  Exec(absl::StrCat("CREATE TABLE wk (a INTEGER, b TEXT", columns,
                    ", PRIMARY KEY (a, b)) WITHOUT ROWID"));
  Install();
  Exec(
      "INSERT INTO w (id, c1, c1999) VALUES (1, 'one', 'last'), (2, 'two', 2.5);"
      "UPDATE w SET id = 3 WHERE id = 2; INSERT INTO w (id) VALUES (4); DELETE FROM w WHERE id = 4;"
      "INSERT INTO wk (a, b, c1998) VALUES (1, 'x', x'00'), (2, 'y', 'gone');"
      "DELETE FROM wk WHERE a = 2");
  std::vector<ChangeRecord> c = Changes("w");
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[0].op, ChangeOp::kInsert);
  ASSERT_EQ(c[0].row.size(), 2000u);
  EXPECT_EQ(c[0].row[0], Value::Integer(1));
  EXPECT_EQ(c[0].row[1], Value::Text("one"));
  EXPECT_EQ(c[0].row[1999], Value::Text("last"));
  EXPECT_EQ(c[1].op, ChangeOp::kDelete);  // Row 2 moved to 3 before it was read.
  EXPECT_THAT(c[1].old_key, ElementsAre(Value::Integer(2)));
  EXPECT_EQ(c[2].op, ChangeOp::kRekey);
  EXPECT_THAT(c[2].key, ElementsAre(Value::Integer(3)));
  EXPECT_THAT(c[2].old_key, ElementsAre(Value::Integer(2)));
  ASSERT_EQ(c[2].row.size(), 2000u);
  EXPECT_EQ(c[2].row[1999], Value::Real(2.5));
  EXPECT_EQ(c[3].op, ChangeOp::kDelete);
  EXPECT_EQ(c[4].op, ChangeOp::kDelete);
  EXPECT_THAT(c[4].old_key, ElementsAre(Value::Integer(4)));
  c = Changes("wk");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].op, ChangeOp::kInsert);
  EXPECT_THAT(c[0].key, ElementsAre(Value::Integer(1), Value::Text("x")));
  ASSERT_EQ(c[0].row.size(), 2000u);
  EXPECT_EQ(c[0].row[1999], Value::Blob(std::string(1, '\0')));
  EXPECT_EQ(c[1].op, ChangeOp::kDelete);
  EXPECT_EQ(c[2].op, ChangeOp::kDelete);
  EXPECT_THAT(c[2].old_key, ElementsAre(Value::Integer(2), Value::Text("y")));
}

TEST_F(ChangeLogTest, AColumnAddedInTheSameTransactionAsAWriteIsCaptured) {
  // The triggers were made for (k, v); the write comes before capture is installed again.
  Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)");
  Install();
  Exec("BEGIN; ALTER TABLE kv ADD COLUMN extra TEXT; INSERT INTO kv VALUES (1, 'a', 'x'); COMMIT");
  EXPECT_THAT(Changes("kv")[0].row,
              ElementsAre(Value::Integer(1), Value::Text("a"), Value::Text("x")));
  // Swapped column names are read as the table has them.
  Exec(
      "ALTER TABLE kv RENAME COLUMN v TO tmp; ALTER TABLE kv RENAME COLUMN extra TO v;"
      "ALTER TABLE kv RENAME COLUMN tmp TO extra; INSERT INTO kv VALUES (2, 'v2', 'e2')");
  std::vector<ChangeRecord> c = Changes("kv");
  ASSERT_EQ(c.size(), 2u);
  auto schema = ReadTableSchema(*db_, "kv");
  ASSERT_EQ(schema->columns[1].name, "extra");  // (k, v, extra) became (k, extra, v).
  EXPECT_THAT(c[1].row, ElementsAre(Value::Integer(2), Value::Text("v2"), Value::Text("e2")));
  // A column can be dropped while capture is installed.
  Exec("ALTER TABLE kv DROP COLUMN extra; INSERT INTO kv VALUES (3, 'v3')");
  c = Changes("kv");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_THAT(c[2].row, ElementsAre(Value::Integer(3), Value::Text("v3")));
}

TEST_F(ChangeLogTest, RenamingAKeyColumnKeepsThePendingChangesOfIt) {
  Exec(
      "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u (k TEXT PRIMARY KEY, v "
      "TEXT)");
  Install();
  Exec(
      "INSERT INTO t VALUES (1, 'a'), (2, 'b'); UPDATE t SET v = 'a2' WHERE k = 1;"
      "INSERT INTO u VALUES ('x', 'y'); ALTER TABLE t RENAME COLUMN k TO id; ALTER TABLE u RENAME "
      "COLUMN k TO key");
  Install();
  Exec("INSERT INTO t VALUES (3, 'c'); UPDATE u SET key = 'z'");
  std::vector<ChangeRecord> t = Changes("t");
  ASSERT_EQ(t.size(), 4u);
  EXPECT_THAT(t[0].row, ElementsAre(Value::Integer(1), Value::Text("a2")));
  EXPECT_THAT(t[1].row, ElementsAre(Value::Integer(2), Value::Text("b")));
  EXPECT_THAT(t[3].row, ElementsAre(Value::Integer(3), Value::Text("c")));
  std::vector<ChangeRecord> u = Changes("u");
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[0].op, ChangeOp::kDelete);  // Read after the row moved to 'z'.
  EXPECT_THAT(u[0].old_key, ElementsAre(Value::Text("x")));
  EXPECT_EQ(u[1].op, ChangeOp::kRekey);
  EXPECT_THAT(u[1].row, ElementsAre(Value::Text("z"), Value::Text("y")));
}

TEST_F(ChangeLogTest, ANullInAKeyThatMayHoldNullIsRefused) {
  Exec(
      "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT);"
      "CREATE TABLE n (k TEXT NOT NULL PRIMARY KEY, v TEXT);"
      "CREATE TABLE i (k INTEGER PRIMARY KEY, v TEXT);"
      "CREATE TABLE d (k INTEGER PRIMARY KEY DESC, v TEXT);"
      "INSERT INTO t VALUES (NULL, 'before marmot')");
  Install({.backfill_new_tables = true});
  absl::Status insert = db_->Exec("INSERT INTO t VALUES (NULL, 'a')");
  EXPECT_THAT(insert.message(), HasSubstr("NULL in it"));
  absl::Status update = db_->Exec("UPDATE t SET v = 'b'");
  EXPECT_THAT(update.message(), HasSubstr("NULL in it"));
  Exec("INSERT INTO t VALUES ('k', 'a'); UPDATE t SET v = 'c' WHERE k = 'k'");
  EXPECT_FALSE(db_->Exec("UPDATE t SET k = NULL WHERE k = 'k'").ok());
  EXPECT_THAT(*db_->QueryRows("SELECT k, v FROM t ORDER BY v"),
              ElementsAre(ElementsAre(Value::Null(), Value::Text("before marmot")),
                          ElementsAre(Value::Text("k"), Value::Text("c"))));
  // Only the row with a key was copied or captured; deleting the keyless one replicates.
  Exec("DELETE FROM t WHERE k IS NULL");
  std::vector<ChangeRecord> c = Changes("t");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[2].op, ChangeOp::kDelete);
  // Keys that cannot hold NULL need no check: an INTEGER PRIMARY KEY takes a new rowid.
  Exec("INSERT INTO i VALUES (NULL, 'auto')");
  EXPECT_THAT(Changes("i")[0].key, ElementsAre(Value::Integer(1)));
  EXPECT_FALSE(db_->Exec("INSERT INTO n VALUES (NULL, 'a')").ok());
  // INTEGER PRIMARY KEY DESC is not the rowid (an SQLite quirk): it takes NULL, so it is refused.
  EXPECT_THAT(db_->Exec("INSERT INTO d VALUES (NULL, 'a')").message(), HasSubstr("NULL in it"));
}

TEST_F(ChangeLogTest, AwkwardIdentifiersWork) {
  // Table and column names that break unquoted or badly quoted SQL.
  Exec(
      "CREATE TABLE \"order\" (\"select\" INTEGER PRIMARY KEY, \"from\" TEXT);"
      "CREATE TABLE \"my table\" (\"my col\" TEXT PRIMARY KEY, \"we\"\"ird\" TEXT);"
      "CREATE TABLE \"we\"\"ird\" (\"a\"\"b\" INTEGER, \"[x]\" TEXT, PRIMARY KEY (\"[x]\", "
      "\"a\"\"b\"));"
      "CREATE TABLE [x] ([y] INTEGER PRIMARY KEY, [z]);"
      "CREATE TABLE \"表\" (\"键\" TEXT PRIMARY KEY, \"值\" TEXT);");
  CaptureReport report = Install();
  EXPECT_THAT(report.installed, UnorderedElementsAre("order", "my table", "we\"ird", "x", "表"));

  Exec(
      "INSERT INTO \"order\" VALUES (1, 'a');"
      "INSERT INTO \"my table\" VALUES ('k', 'v');"
      "INSERT INTO \"we\"\"ird\" VALUES (5, 'five');"
      "INSERT INTO [x] VALUES (3, 'z');"
      "INSERT INTO \"表\" VALUES ('鍵', '値');"
      "UPDATE \"we\"\"ird\" SET \"[x]\" = 'six' WHERE \"a\"\"b\" = 5;"
      "DELETE FROM \"表\";");

  EXPECT_THAT(Changes("order")[0].row, ElementsAre(Value::Integer(1), Value::Text("a")));
  EXPECT_THAT(Changes("my table")[0].key, ElementsAre(Value::Text("k")));
  std::vector<ChangeRecord> weird = Changes("we\"ird");
  ASSERT_EQ(weird.size(), 2u);
  // Read after the row moved: the insert reads as the delete of its key.
  EXPECT_THAT(weird[0].old_key, ElementsAre(Value::Text("five"), Value::Integer(5)));
  EXPECT_EQ(weird[1].op, ChangeOp::kRekey);  // Part of the key changed.
  EXPECT_THAT(weird[1].old_key, ElementsAre(Value::Text("five"), Value::Integer(5)));
  EXPECT_THAT(Changes("x")[0].row, ElementsAre(Value::Integer(3), Value::Text("z")));
  std::vector<ChangeRecord> unicode = Changes("表");
  ASSERT_EQ(unicode.size(), 2u);
  EXPECT_EQ(unicode[1].op, ChangeOp::kDelete);
  EXPECT_THAT(unicode[1].old_key, ElementsAre(Value::Text("鍵")));
}

TEST_F(ChangeLogTest, KeylessTablesAreKeyedByRowidAndFlagged) {
  Exec("CREATE TABLE k (a, b)");
  CaptureReport report = Install();
  EXPECT_THAT(report.keyed_by_rowid, ElementsAre("k"));
  Exec("INSERT INTO k VALUES ('x', 1); UPDATE k SET b = 2; DELETE FROM k;");
  std::vector<ChangeRecord> c = Changes("k");
  ASSERT_EQ(c.size(), 3u);
  // Read after the row was deleted: every change of it reads as a delete of rowid 1.
  for (const ChangeRecord& r : c) {
    EXPECT_EQ(r.op, ChangeOp::kDelete);
    EXPECT_THAT(r.old_key, ElementsAre(Value::Integer(1)));
  }
}

TEST_F(ChangeLogTest, InstallIsIdempotentAndPicksUpNewTablesAndColumns) {
  Exec("CREATE TABLE a (id INTEGER PRIMARY KEY, v)");
  Install();
  std::vector<std::string> once = Master();

  CaptureReport again = Install();
  EXPECT_THAT(again.installed, IsEmpty());
  EXPECT_THAT(again.updated, IsEmpty());
  EXPECT_THAT(again.unchanged, ElementsAre("a"));
  EXPECT_EQ(Master(), once);

  // A table created later gets capture; a new column needs no change of the capture.
  Exec("CREATE TABLE b (id INTEGER PRIMARY KEY)");
  Exec("ALTER TABLE a ADD COLUMN extra TEXT");
  CaptureReport later = Install();
  EXPECT_THAT(later.installed, ElementsAre("b"));
  EXPECT_THAT(later.unchanged, ElementsAre("a"));
  Exec("INSERT INTO a VALUES (1, 'v', 'e')");
  EXPECT_THAT(Changes("a")[0].row,
              ElementsAre(Value::Integer(1), Value::Text("v"), Value::Text("e")));
}

TEST_F(ChangeLogTest, ALogOfAnOlderVersionLosesItsCaptureTimeAndKeepsItsPendingRows) {
  // The layout installed before the capture time left the triggers: a log with
  // "__marmot__at" and triggers that fill it, with two changes pending.
  Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  const std::string now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
  Exec(
      "CREATE TABLE \"__marmot__t_change_log\" (\"__marmot__id\" INTEGER PRIMARY KEY, "
      "\"__marmot__op\" TEXT NOT NULL, \"__marmot__at\" INTEGER NOT NULL, "
      "\"__marmot__state\" INTEGER NOT NULL DEFAULT 0, \"new.id\", \"new.v\", \"old.id\")");
  Exec(
      "CREATE TRIGGER \"__marmot__t_insert\" AFTER INSERT ON \"t\" BEGIN INSERT INTO "
      "\"__marmot__t_change_log\" (\"__marmot__op\", \"__marmot__at\", \"new.id\", \"new.v\") "
      "VALUES ('I', " +
      now + ", NEW.\"id\", NEW.\"v\"); END");
  Exec(
      "CREATE TRIGGER \"__marmot__t_delete\" AFTER DELETE ON \"t\" BEGIN INSERT INTO "
      "\"__marmot__t_change_log\" (\"__marmot__op\", \"__marmot__at\", \"old.id\") "
      "VALUES ('D', " +
      now + ", OLD.\"id\"); END");
  Exec("INSERT INTO t VALUES (1, 'a'), (2, 'b'); DELETE FROM t WHERE id = 1");

  CaptureReport report = Install({.backfill_new_tables = true});
  EXPECT_THAT(report.updated, ElementsAre("t"));
  EXPECT_EQ(report.backfilled_rows, 0) << "the table had capture: nothing to copy again";
  std::vector<std::string> master = Master();
  for (const std::string& sql : master)
    EXPECT_EQ(sql.find("__marmot__at"), std::string::npos) << sql;

  // The pending changes are still there, and new ones follow them.
  Exec("UPDATE t SET v = 'c' WHERE id = 2");
  std::vector<ChangeRecord> c = Changes("t");
  ASSERT_EQ(c.size(), 4u);
  // Rows are read as they are now: row 1 is gone, row 2 was updated since.
  EXPECT_EQ(c[0].op, ChangeOp::kDelete);
  EXPECT_THAT(c[0].old_key, ElementsAre(Value::Integer(1)));
  EXPECT_EQ(c[1].op, ChangeOp::kInsert);
  EXPECT_THAT(c[1].row, ElementsAre(Value::Integer(2), Value::Text("c")));
  EXPECT_EQ(c[2].op, ChangeOp::kDelete);
  EXPECT_THAT(c[2].old_key, ElementsAre(Value::Integer(1)));
  EXPECT_EQ(c[3].op, ChangeOp::kUpdate);
  EXPECT_THAT(c[3].row, ElementsAre(Value::Integer(2), Value::Text("c")));
  EXPECT_GT(c[3].id, c[2].id);
  EXPECT_THAT(Install().unchanged, ElementsAre("t"));
}

TEST_F(ChangeLogTest, EveryLogHandsOutIdsAboveTheFloorOfTheLastInstall) {
  Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  Exec("INSERT INTO t VALUES (1, 'old')");
  Install({.backfill_new_tables = true, .log_ids_above = 5000});
  Exec("INSERT INTO t VALUES (2, 'new')");
  std::vector<ChangeRecord> c = Changes("t");
  ASSERT_EQ(c.size(), 2u) << "the row that moved the ids is not a change";
  EXPECT_EQ(c[0].id, 5001);  // The backfilled row.
  EXPECT_EQ(c[1].id, 5002);
  // A later install with a higher floor moves an existing log's ids up; pending rows stay.
  CaptureReport again = Install({.log_ids_above = 90000});
  EXPECT_THAT(again.unchanged, ElementsAre("t")) << "moving the ids is not a change of the capture";
  Exec("INSERT INTO t VALUES (3, 'newer')");
  c = Changes("t");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[1].id, 5002);
  EXPECT_EQ(c[2].id, 90001);
  // A floor under the newest id adds nothing.
  Install({.log_ids_above = 1000});
  Exec("INSERT INTO t VALUES (4, 'newest')");
  EXPECT_EQ(Changes("t").back().id, 90002);
  // Made again (after a cleanup), the log starts above the floor.
  ASSERT_TRUE(RemoveCapture(*db_).ok());
  Install({.log_ids_above = 100000});
  Exec("INSERT INTO t VALUES (5, 'after cleanup')");
  ASSERT_EQ(Changes("t").size(), 1u);
  EXPECT_EQ(Changes("t")[0].id, 100001);
}

TEST_F(ChangeLogTest, BackfillCopiesRowsWrittenBeforeCaptureExisted) {
  Exec("CREATE TABLE early (id INTEGER PRIMARY KEY, v)");
  Exec("INSERT INTO early VALUES (1, 'one'), (2, 'two')");
  CaptureReport report = Install({.backfill_new_tables = true});
  EXPECT_EQ(report.backfilled_rows, 2);
  Exec("INSERT INTO early VALUES (3, 'three')");
  std::vector<ChangeRecord> c = Changes("early");
  ASSERT_EQ(c.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c[i].op, ChangeOp::kInsert);
    EXPECT_THAT(c[i].key, ElementsAre(Value::Integer(i + 1)));
  }
  // A second install neither backfills again nor duplicates anything.
  EXPECT_EQ(Install({.backfill_new_tables = true}).backfilled_rows, 0);
  EXPECT_EQ(Changes("early").size(), 3u);
}

// SQLite's recommended way to change a table: make a new one, copy, drop the old, rename.
TEST_F(ChangeLogTest, ATableMadeAgainUnderItsNameIsCopiedAndKeepsNoStaleTrigger) {
  Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')");
  Install({.backfill_new_tables = true});
  Exec("CREATE TABLE kv_new (k INTEGER PRIMARY KEY, v TEXT, w TEXT)");
  Install({.backfill_new_tables = true});  // marmot noticed the new table in between
  Exec(
      "INSERT INTO kv_new SELECT k, v, 'w' FROM kv; DROP TABLE kv; ALTER TABLE kv_new RENAME TO kv;"
      "INSERT INTO kv VALUES (100, 'hundred', 'w')");
  CaptureReport report = Install({.backfill_new_tables = true});
  EXPECT_THAT(report.installed, ElementsAre("kv"));
  EXPECT_EQ(report.backfilled_rows, 2) << "rows written while kv had no capture are copied";
  // kv_new's triggers moved with the table and would log into kv_new's log: gone.
  EXPECT_THAT(
      *db_->QueryRows("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'kv' "
                      "ORDER BY name"),
      ElementsAre(ElementsAre(Value::Text("__marmot__kv_delete")),
                  ElementsAre(Value::Text("__marmot__kv_insert")),
                  ElementsAre(Value::Text("__marmot__kv_rekey")),
                  ElementsAre(Value::Text("__marmot__kv_update"))));
  Exec("INSERT INTO kv VALUES (101, 'hundred and one', 'w')");
  std::vector<std::vector<Value>> keys;
  for (const ChangeRecord& r : Changes("kv")) {
    if (r.op != ChangeOp::kDelete) keys.push_back(r.key);
  }
  // Row 1's first insert (into the old kv) and the backfill's copies of 1 and 100, then 101.
  EXPECT_THAT(keys,
              ElementsAre(ElementsAre(Value::Integer(1)), ElementsAre(Value::Integer(1)),
                          ElementsAre(Value::Integer(100)), ElementsAre(Value::Integer(101))));
  EXPECT_EQ(
      *db_->QueryValue(
          "SELECT count(*) FROM \"__marmot__kv_new_change_log\" WHERE \"__marmot__key1\" = 101"),
      Value::Integer(0));
  // A plain DROP and CREATE is copied the same way.
  Exec(
      "DROP TABLE kv; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (7, "
      "'seven')");
  EXPECT_EQ(Install({.backfill_new_tables = true}).backfilled_rows, 1);
}

// The copy of a table made again names the version each row has here, as a trigger would: its
// rows applied over them everywhere, not kept as one conflict per row (schema_hunt3_test). A
// key column named like a column of the versions table is the row's, and a row with no
// version names none, as before; one held here names this node (-1), as a trigger does.
TEST_F(ChangeLogTest, TheCopyOfATableMadeAgainNamesTheVersionsOfItsRows) {
  Exec("CREATE TABLE kv (key INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')");
  Install({.backfill_new_tables = true});
  Exec(
      "INSERT INTO kv VALUES (2, 'two'), (3, 'three');"
      "INSERT INTO \"__marmot__versions\" (tbl, key, shard, raft_index, origin, change_id, held)"
      " VALUES ('kv', 1, 0, 5, 3, 9, NULL), ('kv', 3, 0, 6, 2, 4, x'00'),"
      " ('other', 2, 0, 7, 2, 5, NULL);"
      "BEGIN; CREATE TABLE kv_new (key INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT '');"
      "INSERT INTO kv_new SELECT key, v FROM kv; DROP TABLE kv; ALTER TABLE kv_new RENAME TO kv;"
      "COMMIT;");
  const int64_t before = Changes("kv").back().id;
  EXPECT_EQ(Install({.backfill_new_tables = true}).backfilled_rows, 3);
  std::map<int64_t, std::pair<int64_t, int64_t>> seen;  // key -> prev (origin, change id)
  for (const ChangeRecord& r : Changes("kv")) {
    if (r.id <= before) continue;
    ASSERT_TRUE(r.prev.has_value());
    seen[r.key[0].integer()] = {r.prev->origin, r.prev->change_id};
  }
  EXPECT_THAT(seen, ElementsAre(Pair(1, Pair(3, 9)), Pair(2, Pair(0, 0)), Pair(3, Pair(-1, 4))));
}

// A table made again within one look (it had capture at the install before: the keeper's
// CaptureOptions::captured_before) is copied only where its rows differ from what their versions
// left on every node: the row the application edited right after, the row with no version;
// the row it deleted right after goes as a delete. Rows as their versions left them are not
// copied (a write another node makes to one meanwhile applies over its version), nor is a row
// whose version is a delete. Made again while marmot did not look (no captured_before), the
// table is copied whole, as before.
TEST_F(ChangeLogTest, ATableMadeAgainWithinOneLookCopiesOnlyWhatDiffersFromItsVersions) {
  Exec(
      "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
      "INSERT INTO kv VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five')");
  Install({.backfill_new_tables = true});
  // The versions the applier left: rows 1..4 as they are, 6 deleted; 5 has none.
  const std::vector<std::string> names = {"one", "two", "three", "four"};
  for (int k = 1; k <= 4; ++k) {
    const int64_t digest =
        RowDigest({"K", "v"}, {Value::Integer(k), Value::Text(names[k - 1])});  // Any case.
    Exec(absl::StrCat("INSERT INTO \"__marmot__versions\" (tbl, key, shard, raft_index, origin, ",
                      "change_id, digest) VALUES ('kv', ", k, ", 0, ", k, ", 2, ", 10 + k, ", ",
                      digest, ")"));
  }
  Exec(
      "INSERT INTO \"__marmot__versions\" (tbl, key, shard, raft_index, origin, change_id, digest)"
      " VALUES ('kv', 6, 0, 6, 2, 16, 0)");
  const std::string rebuild =
      "BEGIN; CREATE TABLE kv_new (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"
      "INSERT INTO kv_new SELECT k, v FROM kv; DROP TABLE kv; ALTER TABLE kv_new RENAME TO kv;"
      "COMMIT;";
  Exec(rebuild + "UPDATE kv SET v = 'TWO' WHERE k = 2; DELETE FROM kv WHERE k = 3;");
  int64_t before = Changes("kv").empty() ? 0 : Changes("kv").back().id;
  EXPECT_EQ(Install({.backfill_new_tables = true, .captured_before = {"kv"}}).backfilled_rows, 3);
  std::vector<std::tuple<char, int64_t, int64_t, int64_t>> seen;  // op, key, prev origin, id
  for (const ChangeRecord& r : Changes("kv")) {
    if (r.id <= before) continue;
    ASSERT_TRUE(r.prev.has_value());
    const int64_t key = (r.op == ChangeOp::kDelete ? r.old_key : r.key)[0].integer();
    seen.emplace_back(static_cast<char>(r.op), key, r.prev->origin, r.prev->change_id);
  }
  EXPECT_THAT(seen,
              UnorderedElementsAre(std::make_tuple('I', 2, 2, 12), std::make_tuple('I', 5, 0, 0),
                                   std::make_tuple('D', 3, 2, 13)));
  // Made again while marmot did not look: every row is copied.
  before = Changes("kv").back().id;
  Exec(absl::StrReplaceAll(rebuild, {{"NOT NULL", "NOT NULL DEFAULT ''"}}));
  EXPECT_EQ(Install({.backfill_new_tables = true}).backfilled_rows, 4);
}

// A table of every key shape given versions, made again (create-copy-drop-rename), and copied
// by the backfill: each copied row names the version its row has, the one a trigger names for
// a write of that row right after (the two must agree, or the copy conflicts on every node
// that holds the version). Keys: the rowid, an INTEGER PRIMARY KEY named `key`, a composite key
// of columns named `tbl` and `held` (TEXT with a NUL, REAL), a TEXT key with a NUL, a REAL key,
// a column named `rowid` as a TEXT key, a table named `v` keyed by `v`, and odd quoting.
struct RemadeTable {
  std::string name;
  std::string columns;            // The table's definition, inside its parentheses.
  std::string suffix;             // After the parentheses (WITHOUT ROWID).
  std::vector<std::string> keys;  // Key columns as SQL (quoted), or {"rowid"}.
  std::string rows;               // VALUES of its rows.
  std::string copy_columns;       // Columns copied into the table made again.
};

class BackfillKeyShapeTest : public ChangeLogTest,
                             public ::testing::WithParamInterface<RemadeTable> {};

TEST_P(BackfillKeyShapeTest, TheCopyNamesTheVersionATriggerNames) {
  const RemadeTable& t = GetParam();
  const std::string q = QuoteIdentifier(t.name);
  const std::string remade = QuoteIdentifier(t.name + "_new");
  Exec(absl::StrCat("CREATE TABLE ", q, " (", t.columns, ")", t.suffix));
  Install({.backfill_new_tables = true});
  Exec(absl::StrCat("INSERT INTO ", q, " (", t.copy_columns, ") VALUES ", t.rows));
  // Every row a version of node 7, numbered as the rows are.
  Exec(
      absl::StrCat("INSERT INTO \"__marmot__versions\" (tbl, key, shard, raft_index, origin, "
                   "change_id, held) SELECT ",
                   Value::Text(t.name).DebugString(), ", ", RowVersionKeySql(t.keys),
                   ", 0, 5, 7, 100 + row_number() OVER (), NULL FROM ", q));
  const int64_t rows = db_->QueryValue(absl::StrCat("SELECT count(*) FROM ", q))->integer();
  ASSERT_GT(rows, 0);
  Exec(absl::StrCat("BEGIN; CREATE TABLE ", remade, " (", t.columns, ")", t.suffix,
                    "; INSERT INTO ", remade, " (", t.copy_columns, ") SELECT ", t.copy_columns,
                    " FROM ", q, "; DROP TABLE ", q, "; ALTER TABLE ", remade, " RENAME TO ", q,
                    "; COMMIT;"));
  const std::vector<ChangeRecord> before = Changes(t.name);
  const int64_t last = before.empty() ? 0 : before.back().id;
  EXPECT_EQ(Install({.backfill_new_tables = true}).backfilled_rows, rows);
  auto text = [](const std::vector<Value>& key) {
    std::string out;
    for (const Value& v : key) absl::StrAppend(&out, v.DebugString(), ",");
    return out;
  };
  std::map<std::string, std::pair<int64_t, int64_t>> copied;  // key -> prev
  for (const ChangeRecord& r : Changes(t.name)) {
    if (r.id <= last) continue;
    ASSERT_TRUE(r.prev.has_value());
    copied[text(r.key)] = {r.prev->origin, r.prev->change_id};
  }
  ASSERT_EQ(static_cast<int64_t>(copied.size()), rows);
  for (const auto& [key, prev] : copied) {
    EXPECT_EQ(prev.first, 7) << key;
  }
  // A write of each row now names the version the trigger finds: the copy's.
  const int64_t copied_last = Changes(t.name).back().id;
  Exec(absl::StrCat("UPDATE ", q, " SET ", t.copy_columns.substr(0, t.copy_columns.find(',')),
                    " = ", t.copy_columns.substr(0, t.copy_columns.find(','))));
  std::map<std::string, std::pair<int64_t, int64_t>> written;
  for (const ChangeRecord& r : Changes(t.name)) {
    if (r.id <= copied_last) continue;
    ASSERT_TRUE(r.prev.has_value());
    written[text(r.key)] = {r.prev->origin, r.prev->change_id};
  }
  EXPECT_EQ(written, copied);
}

INSTANTIATE_TEST_SUITE_P(
    KeyShapes, BackfillKeyShapeTest,
    ::testing::Values(
        RemadeTable{.name = "loose",
                    .columns = "a TEXT, b INTEGER",
                    .keys = {"rowid"},
                    .rows = "(10, 'x', 1), (20, 'y', 2)",
                    .copy_columns = "rowid, a, b"},
        RemadeTable{.name = "kv",
                    .columns = "\"key\" INTEGER PRIMARY KEY, v TEXT",
                    .keys = {"\"key\""},
                    .rows = "(1, 'one'), (-5, 'two')",
                    .copy_columns = "\"key\", v"},
        RemadeTable{.name = "pairs",
                    .columns = "tbl TEXT, held REAL, v, PRIMARY KEY (tbl, held)",
                    .suffix = " WITHOUT ROWID",
                    .keys = {"\"tbl\"", "\"held\""},
                    .rows = "('a' || char(0) || 'b', 1.5, 1), ('key', 2.0, 2), ('it''s', -0.25, 3)",
                    .copy_columns = "tbl, held, v"},
        RemadeTable{.name = "nul",
                    .columns = "k TEXT PRIMARY KEY, origin INTEGER",
                    .keys = {"\"k\""},
                    .rows = "('x' || char(0) || 'y', 1), ('plain', 2)",
                    .copy_columns = "k, origin"},
        RemadeTable{.name = "reals",
                    .columns = "k REAL PRIMARY KEY, change_id TEXT",
                    .keys = {"\"k\""},
                    .rows = "(1.5, 'a'), (2.0, 'b'), (1e300, 'c')",
                    .copy_columns = "k, change_id"},
        RemadeTable{.name = "named_rowid",
                    .columns = "\"rowid\" TEXT PRIMARY KEY, w",
                    .keys = {"\"rowid\""},
                    .rows = "('r1', 1), ('r2', 2)",
                    .copy_columns = "\"rowid\", w"},
        RemadeTable{.name = "v",
                    .columns = "v INTEGER PRIMARY KEY, tbl TEXT, \"key\" TEXT",
                    .keys = {"\"v\""},
                    .rows = "(1, 'other', 'k'), (2, 'v', '2')",
                    .copy_columns = "v, tbl, \"key\""},
        RemadeTable{.name = "we\"ird t",
                    .columns = "\"k\"\"ey\" TEXT, \"o'dd\" INTEGER, x, PRIMARY KEY (\"k\"\"ey\", "
                               "\"o'dd\")",
                    .keys = {"\"k\"\"ey\"", "\"o'dd\""},
                    .rows = "('a', 1, 0), ('b''c', 2, 0)",
                    .copy_columns = "\"k\"\"ey\", \"o'dd\", x"}));

TEST_F(ChangeLogTest, ATableRenamedTakesItsLogAlongWithItsPendingChangesAndVersions) {
  Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')");
  Install({.backfill_new_tables = true});
  Exec(
      "INSERT INTO kv VALUES (2, 'two');"
      "INSERT INTO \"__marmot__versions\" (tbl, key, shard, raft_index, origin, change_id)"
      " VALUES ('kv', 2, 0, 5, 3, 9);"
      "ALTER TABLE kv RENAME TO kv2;"
      "INSERT INTO kv2 VALUES (3, 'three')");  // through the triggers that moved with it
  CaptureReport report = Install({.backfill_new_tables = true});
  EXPECT_THAT(report.updated, ElementsAre("kv2"));
  EXPECT_EQ(report.backfilled_rows, 0) << "nothing copied: the log came along";
  // The old name's log and triggers are gone.
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM sqlite_master WHERE name IN"
                             " ('__marmot__kv_change_log', '__marmot__kv_insert',"
                             " '__marmot__kv_log_guard')"),
            Value::Integer(0));
  Exec("UPDATE kv2 SET v = 'TWO' WHERE k = 2");
  std::vector<std::vector<Value>> keys;
  for (const ChangeRecord& r : Changes("kv2")) {
    keys.push_back(r.key);
    if (r.key == std::vector<Value>{Value::Integer(2)} && r.op == ChangeOp::kUpdate) {
      // The update saw the version the row had under its old name.
      ASSERT_TRUE(r.prev.has_value());
      EXPECT_EQ(r.prev->origin, 3);
      EXPECT_EQ(r.prev->change_id, 9);
    }
  }
  EXPECT_THAT(keys, ElementsAre(ElementsAre(Value::Integer(1)), ElementsAre(Value::Integer(2)),
                                ElementsAre(Value::Integer(3)), ElementsAre(Value::Integer(2))));
}

// The install that gives a renamed table the log of the name it had leaves a trace of it, which
// tells the schema diff that the table is that one renamed (replicator/schema_changes.h) after its
// triggers were made anew: through a chain of renames, until the table is gone or its name is
// another table's.
TEST_F(ChangeLogTest, ATableThatTookTheCaptureOfItsOldNameKeepsATraceOfIt) {
  auto traces = [&] {
    return *testing::RunSqliteCli(
        path_,
        "SELECT group_concat(tbl || ' was ' || was || (CASE WHEN rootpage = (SELECT rootpage FROM "
        "sqlite_master WHERE name = tbl) THEN '' ELSE ' elsewhere' END), ', ') FROM (SELECT * FROM "
        "\"__marmot__moved_capture\" ORDER BY tbl, was);");
  };
  Exec(
      "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); CREATE TABLE never (id INTEGER PRIMARY "
      "KEY)");
  Install();
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM sqlite_master WHERE name = "
                             "'__marmot__moved_capture'"),
            Value::Integer(0));
  Exec("ALTER TABLE kv RENAME TO kv2; ALTER TABLE kv2 ADD COLUMN extra TEXT");
  Install();
  EXPECT_EQ(traces(), "kv2 was kv\n");
  Exec("ALTER TABLE kv2 RENAME TO kv3");
  Install();
  EXPECT_EQ(traces(), "kv3 was kv, kv3 was kv2\n");
  // A table renamed before it had capture leaves none.
  Exec("CREATE TABLE a (id INTEGER PRIMARY KEY); ALTER TABLE a RENAME TO b");
  Install();
  EXPECT_EQ(traces(), "kv3 was kv, kv3 was kv2\n");
  // Another table of its name has capture of its own.
  Exec("DROP TABLE kv3; CREATE TABLE kv3 (id INTEGER PRIMARY KEY)");
  Install();
  EXPECT_EQ(traces(), "\n");
  // A table gone takes its trace along.
  Exec("ALTER TABLE never RENAME TO gone");
  Install();
  EXPECT_EQ(traces(), "gone was never\n");
  Exec("DROP TABLE gone");
  Install();
  EXPECT_EQ(traces(), "\n");
}

// ALTER TABLE kv RENAME TO kv_old and a new kv in one transaction, both written before marmot
// looks: the triggers SQLite moved to kv_old wrote kv's log, and the new kv has none.
TEST_F(ChangeLogTest, ATableRenamedAwayAndMadeAgainUnderItsNameEachGetTheirOwnLog) {
  Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')");
  Install({.backfill_new_tables = true});
  Exec(
      "INSERT INTO kv VALUES (2, 'two');"
      "INSERT INTO \"__marmot__versions\" (tbl, key, shard, raft_index, origin, change_id)"
      " VALUES ('kv', 2, 0, 5, 3, 9);"
      "BEGIN; ALTER TABLE kv RENAME TO kv_old; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
      "COMMIT; INSERT INTO kv VALUES (100, 'new'); INSERT INTO kv_old VALUES (3, 'three')");
  CaptureReport report = Install({.backfill_new_tables = true});
  EXPECT_THAT(report.installed, ElementsAre("kv"));
  EXPECT_THAT(report.updated, ElementsAre("kv_old"));
  EXPECT_EQ(report.backfilled_rows, 1) << "the new kv's row, written before it had capture";
  // Each table's capture triggers are on it.
  EXPECT_THAT(*db_->QueryRows("SELECT tbl_name, count(*) FROM sqlite_master WHERE type = "
                              "'trigger' AND name IN ('__marmot__kv_insert', '__marmot__kv_update',"
                              " '__marmot__kv_old_insert', '__marmot__kv_old_update') GROUP BY "
                              "tbl_name ORDER BY tbl_name"),
              ElementsAre(ElementsAre(Value::Text("kv"), Value::Integer(2)),
                          ElementsAre(Value::Text("kv_old"), Value::Integer(2))));
  Exec("INSERT INTO kv VALUES (101, 'new'); UPDATE kv_old SET v = 'TWO' WHERE k = 2");
  auto keys = [&](const std::string& table) {
    std::vector<std::vector<Value>> out;
    for (const ChangeRecord& r : Changes(table)) out.push_back(r.key);
    return out;
  };
  // kv's log, with its pending rows and its rows' versions, went with the renamed table.
  EXPECT_THAT(keys("kv_old"),
              ElementsAre(ElementsAre(Value::Integer(1)), ElementsAre(Value::Integer(2)),
                          ElementsAre(Value::Integer(3)), ElementsAre(Value::Integer(2))));
  for (const ChangeRecord& r : Changes("kv_old")) {
    if (r.op != ChangeOp::kUpdate) continue;
    ASSERT_TRUE(r.prev.has_value());
    EXPECT_EQ(r.prev->origin, 3);
    EXPECT_EQ(r.prev->change_id, 9);
  }
  EXPECT_THAT(keys("kv"),
              ElementsAre(ElementsAre(Value::Integer(100)), ElementsAre(Value::Integer(101))));
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM \"__marmot__versions\" WHERE tbl = 'kv'"),
            Value::Integer(0));
}

TEST_F(ChangeLogTest, VersionsOfTheEarlierLayoutAreRewrittenWithIntegerKeysAsIntegers) {
  // Given a file whose row versions have the earlier layout (every key as text, an INTEGER key
  // as its digits), written by the sqlite3 CLI as a node of that release left it.
  Exec(
      "CREATE TABLE kv (k INTEGER PRIMARY KEY, v); CREATE TABLE tk (k PRIMARY KEY, v);"
      "CREATE TABLE ck (a, b, v, PRIMARY KEY (a, b));"
      "INSERT INTO kv VALUES (2, 'two'), (-7, 'minus seven');"
      "INSERT INTO tk VALUES ('2', 'text'), (2, 'integer'), (2.5, 'real'),"
      " (CAST(x'610062' AS TEXT), 'nul');"
      "INSERT INTO ck VALUES (1, 'a', 'composite')");
  Install();
  auto cli = testing::RunSqliteCli(
      path_,
      "BEGIN; DROP TABLE \"__marmot__versions\";"
      "CREATE TABLE \"__marmot__versions\" (tbl TEXT NOT NULL, key TEXT NOT NULL, shard INTEGER "
      "NOT NULL, raft_index INTEGER NOT NULL, origin INTEGER NOT NULL, change_id INTEGER NOT "
      "NULL, held BLOB, columns INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, key)) WITHOUT "
      "ROWID;"
      "INSERT INTO \"__marmot__versions\" VALUES ('kv', '2', 0, 5, 3, 9, NULL, 2),"
      " ('kv', '-7', 0, 6, 3, 10, NULL, 2), ('tk', '''2''', 1, 7, 4, 11, NULL, 2),"
      " ('tk', '2', 1, 8, 4, 12, NULL, 2), ('tk', '2.5', 1, 9, 4, 13, x'01', 2),"
      " ('tk', 'TX''610062''', 1, 10, 4, 14, NULL, 0), ('ck', '1,''a''', 0, 11, 5, 15, NULL, 3);"
      "COMMIT;");
  ASSERT_TRUE(cli.ok()) << cli.status();
  // When capture is installed at the next start.
  Install();
  // Then the key column has no type, a key of one integer is that integer, every other key is
  // the text it was, and the rest of every row is as it was.
  EXPECT_EQ(*db_->QueryValue("SELECT type FROM pragma_table_info('__marmot__versions') "
                             "WHERE name = 'key'"),
            Value::Text(""));
  auto rows = db_->QueryRows(
      "SELECT tbl, typeof(key), key, shard, raft_index, origin, change_id, hex(held), columns "
      "FROM \"__marmot__versions\" ORDER BY tbl, key");
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::vector<std::string> lines;
  for (const auto& row : *rows) {
    std::string line;
    for (const Value& v : row) absl::StrAppend(&line, v.DebugString(), " ");
    lines.push_back(line);
  }
  EXPECT_THAT(
      lines,
      ElementsAre("'ck' 'text' '1,''a''' 0 11 5 15 '' 3 ", "'kv' 'integer' -7 0 6 3 10 '' 2 ",
                  "'kv' 'integer' 2 0 5 3 9 '' 2 ", "'tk' 'integer' 2 1 8 4 12 '' 2 ",
                  "'tk' 'text' '''2''' 1 7 4 11 '' 2 ", "'tk' 'text' '2.5' 1 9 4 13 '01' 2 ",
                  "'tk' 'text' 'TX''610062''' 1 10 4 14 '' 0 "));
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM sqlite_master WHERE name LIKE '%rewritten%'"),
            Value::Integer(0));
  // And the triggers find every row's version by its key, of each storage class.
  Exec(
      "UPDATE kv SET v = 'x'; UPDATE tk SET v = 'x'; UPDATE ck SET v = 'x';"
      "INSERT INTO kv VALUES (3, 'no version')");
  std::map<std::string, std::pair<int64_t, int64_t>> seen;  // key -> (origin, change id)
  for (const char* table : {"kv", "tk", "ck"}) {
    for (const ChangeRecord& r : Changes(table)) {
      ASSERT_TRUE(r.prev.has_value()) << table;
      std::string key = table;
      for (const Value& v : r.key) absl::StrAppend(&key, " ", v.DebugString());
      seen[key] = {r.prev->origin, r.prev->change_id};
    }
  }
  using Seen = std::pair<int64_t, int64_t>;
  EXPECT_EQ(seen,
            (std::map<std::string, Seen>{
                {"ck 1 'a'", {5, 15}},
                {"kv -7", {3, 10}},
                {"kv 2", {3, 9}},
                {"kv 3", {0, 0}},
                {"tk 2", {4, 12}},
                {"tk '2'", {4, 11}},
                {"tk 2.5", {-1, 13}},  // Held: recorded as this node's own write.
                {absl::StrCat("tk ", Value::Text(std::string("a\0b", 3)).DebugString()), {4, 14}},
            }));
  // An install over the current layout leaves it as it is.
  Install();
  EXPECT_EQ(
      *db_->QueryValue("SELECT count(*) FROM \"__marmot__versions\" WHERE typeof(key) = 'integer'"),
      Value::Integer(3));
}

TEST_F(ChangeLogTest, CleanupLeavesSqliteMasterExactlyAsBefore) {
  Exec(
      "CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, v);"
      "CREATE INDEX order_v ON \"order\" (v);"
      "CREATE TABLE k (a, b);"
      "CREATE VIEW vv AS SELECT * FROM k;"
      "CREATE TABLE audit (x);"
      "CREATE TRIGGER user_trigger AFTER INSERT ON k BEGIN INSERT INTO audit VALUES (NEW.a); END;");
  std::vector<std::string> before = Master();
  Install();
  Exec("INSERT INTO \"order\" VALUES (1, 'x'); INSERT INTO k VALUES (1, 2);");
  EXPECT_NE(Master(), before);

  ASSERT_TRUE(RemoveCapture(*db_).ok());
  EXPECT_EQ(Master(), before);
  // The user's own trigger still works and nothing of marmot's fires.
  Exec("INSERT INTO k VALUES (3, 4)");
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM audit"), Value::Integer(2));
}

TEST_F(ChangeLogTest, WritesByAnotherProcessAreCaptured) {
  Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  Install();
  auto out = testing::RunSqliteCli(path_, "INSERT INTO t VALUES (1, 2.0);");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(Changes("t")[0].row[1], Value::Real(2.0));
  out = testing::RunSqliteCli(path_, "UPDATE t SET v = 'text' WHERE id = 1;");
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<ChangeRecord> c = Changes("t");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[1].op, ChangeOp::kUpdate);
  EXPECT_EQ(c[1].row[1], Value::Text("text"));
}

// Emptied by hand, a log would restart its ids under those the other nodes already applied from
// this node, and they would skip this node's next changes as duplicates.
TEST_F(ChangeLogTest, ALogCannotBeEmptiedByHandButMarmotsTriggerlessConnectionsCanPruneIt) {
  Exec("CREATE TABLE \"we'ird\" (id INTEGER PRIMARY KEY, v)");
  Install();
  ASSERT_TRUE(
      testing::RunSqliteCli(path_, "INSERT INTO \"we'ird\" VALUES (1, 'a'), (2, 'b');").ok());
  const std::string log = "\"__marmot__we'ird_change_log\"";

  // The sqlite3 shell (triggers on, as in every application) is refused, with a reason.
  absl::StatusOr<std::string> refused = testing::RunSqliteCli(path_, "DELETE FROM " + log + ";");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("marmot deletes change-log rows itself"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("marmot -cleanup"));
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM " + log), Value::Integer(2));
  // Nor can a change be edited, or marked done so that it never replicates.
  for (const char* set : {"\"__marmot__key1\" = 9", "\"__marmot__state\" = 1"}) {
    const std::string edit = absl::StrCat("UPDATE ", log, " SET ", set, ";");
    absl::StatusOr<std::string> edited = testing::RunSqliteCli(path_, edit);
    ASSERT_FALSE(edited.ok()) << edit;
    EXPECT_THAT(std::string(edited.status().message()),
                HasSubstr("change-log rows are the changes marmot replicates"));
  }
  EXPECT_EQ(*db_->QueryValue(
                "SELECT group_concat(\"__marmot__key1\" || \"__marmot__state\") FROM " + log),
            Value::Text("10,20"));

  // A connection with triggers disabled, as marmot's own, prunes it and marks rows done.
  ASSERT_TRUE(db_->SetTriggersEnabled(false).ok());
  Exec("DELETE FROM " + log + " WHERE \"__marmot__id\" = (SELECT min(\"__marmot__id\") FROM " +
       log + ")");
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM " + log), Value::Integer(1));
  Exec("UPDATE " + log + " SET \"__marmot__state\" = 1");
  EXPECT_EQ(*db_->QueryValue("SELECT \"__marmot__state\" FROM " + log), Value::Integer(1));
  ASSERT_TRUE(db_->SetTriggersEnabled(true).ok());

  // The guard goes with everything else at cleanup.
  ASSERT_TRUE(RemoveCapture(*db_).ok());
  EXPECT_EQ(*db_->QueryValue(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE '\\_\\_marmot%' ESCAPE '\\'"),
            Value::Integer(0));
}

TEST_F(ChangeLogTest, ReadChangeKeysGivesTheSameIdentitiesAsReadChanges) {
  Exec(
      "CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;"
      "CREATE TABLE loose (x, y);");
  Install();
  // Each change is read right after it was made, while its row still exists.
  std::map<std::string, std::vector<ChangeRecord>> full;
  for (const auto& [table, sql] : std::vector<std::pair<std::string, std::string>>{
           {"pair", "INSERT INTO pair VALUES ('k', 1, 'v')"},
           {"pair", "UPDATE pair SET v = 'w' WHERE a = 'k'"},
           {"pair", "UPDATE pair SET b = 2 WHERE a = 'k'"},
           {"pair", "DELETE FROM pair"},
           {"loose", "INSERT INTO loose VALUES (1, 2)"},
           {"loose", "UPDATE loose SET rowid = 7"},
           {"loose", "DELETE FROM loose"}}) {
    Exec(sql);
    full[table].push_back(Changes(table).back());
  }
  for (const std::string table : {"pair", "loose"}) {
    auto schema = ReadTableSchema(*db_, table);
    ASSERT_TRUE(schema.ok());
    auto keys = ReadChangeKeys(*db_, *schema, 0, 1000);
    ASSERT_TRUE(keys.ok()) << keys.status();
    ASSERT_EQ(keys->size(), table == "pair" ? 4u : 3u) << table;  // I, U, K, D; I, K, D
    ASSERT_EQ(keys->size(), full[table].size());
    for (size_t i = 0; i < keys->size(); ++i) {
      const ChangeRecord& read = full[table][i];
      EXPECT_EQ((*keys)[i].id, read.id);
      EXPECT_EQ((*keys)[i].op, read.op);
      EXPECT_EQ((*keys)[i].key, read.key) << table << " change " << i;
      EXPECT_EQ((*keys)[i].old_key, read.old_key) << table << " change " << i;
      EXPECT_TRUE((*keys)[i].row.empty());
    }
  }
}

TEST_F(ChangeLogTest, InstallSwitchesToWal) {
  Exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  Install();
  EXPECT_EQ(*db_->QueryValue("PRAGMA journal_mode"), Value::Text("wal"));
}

}  // namespace
}  // namespace marmot::sqlite
