#include "sqlite/database.h"

#include <gtest/gtest.h>

#include <fstream>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::sqlite {
namespace {

TEST(QuoteIdentifierTest, DoublesQuotes) {
  EXPECT_EQ(QuoteIdentifier("order"), "\"order\"");
  EXPECT_EQ(QuoteIdentifier("we\"ird"), "\"we\"\"ird\"");
  EXPECT_EQ(QuoteIdentifier("my table"), "\"my table\"");
}

TEST(DatabaseTest, OpeningAFileThatIsNotADatabaseFails) {
  std::string path = testing::NewTempDir("notadb") + "/x.db";
  std::ofstream(path) << "this is a text file, long enough to have a header's worth of bytes\n";
  EXPECT_FALSE(HasSqliteHeader(path));
  auto db = Database::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss) << db.status();
  EXPECT_NE(db.status().message().find("not a usable SQLite database"), std::string::npos);
}

TEST(DatabaseTest, HeaderCheckRecognisesRealDatabases) {
  std::string dir = testing::NewTempDir("header");
  EXPECT_FALSE(HasSqliteHeader(dir + "/absent.db"));
  ASSERT_TRUE(testing::RunSqliteCli(dir + "/real.db", "CREATE TABLE t(x);").ok());
  EXPECT_TRUE(HasSqliteHeader(dir + "/real.db"));
}

TEST(DatabaseTest, ErrorsNameTheFailingSql) {
  auto db = Database::Open(testing::NewTempDir("err") + "/e.db");
  ASSERT_TRUE(db.ok());
  absl::Status s = db->Exec("SELECT * FROM missing_table");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("missing_table"), std::string::npos) << s;
  auto stmt = db->Prepare("SELEKT 1");
  EXPECT_FALSE(stmt.ok());
  EXPECT_NE(stmt.status().message().find("SELEKT 1"), std::string::npos) << stmt.status();
}

TEST(TransactionTest, RollsBackUnlessCommitted) {
  auto db = Database::Open(testing::NewTempDir("txn") + "/t.db");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t (x)").ok());
  {
    auto txn = Transaction::Begin(*db);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)").ok());
  }  // Dropped without commit.
  {
    auto txn = Transaction::Begin(*db, Transaction::Mode::kImmediate);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE(txn->Commit().ok());
  }
  auto rows = db->QueryRows("SELECT x FROM t");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0][0], Value::Integer(2));
}

TEST(TransactionTest, NestedInAnOpenTransactionIsASavepointOfIt) {
  auto db = Database::Open(testing::NewTempDir("txn-nested") + "/t.db");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t (x)").ok());
  auto count = [&] { return db->QueryValue("SELECT count(*) FROM t")->integer(); };
  ASSERT_TRUE(db->Exec("BEGIN IMMEDIATE").ok());  // a caller grouping units of work
  {
    auto unit = Transaction::Begin(*db, Transaction::Mode::kImmediate);
    ASSERT_TRUE(unit.ok()) << unit.status();
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)").ok());
    ASSERT_TRUE(unit->Commit().ok());
  }
  {
    auto unit = Transaction::Begin(*db);
    ASSERT_TRUE(unit.ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (2)").ok());
  }  // dropped: only this unit is undone
  EXPECT_EQ(count(), 1);
  ASSERT_TRUE(db->Exec("ROLLBACK").ok());  // the enclosing transaction decides
  EXPECT_EQ(count(), 0);
}

TEST(DatabaseTest, KeptStatementsArePreparedOnceAndDroppedOnRequest) {
  auto db = Database::Open(testing::NewTempDir("kept") + "/k.db");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t (x)").ok());
  const std::string insert = "INSERT INTO t VALUES (?)";
  auto first = db->Kept(insert);
  ASSERT_TRUE(first.ok()) << first.status();
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(db->RunKept(insert, {Value::Integer(i)}).ok());
  EXPECT_EQ(*db->Kept(insert), *first);  // the same statement, ready again
  EXPECT_EQ(*db->QueryKeptValue("SELECT sum(x) FROM t"), Value::Integer(6));
  EXPECT_TRUE(absl::IsNotFound(db->QueryKeptValue("SELECT x FROM t WHERE x > 9").status()));
  // A bad statement is an error, not kept.
  EXPECT_FALSE(db->Kept("SELEKT 1").ok());
  // After DropKept the statements are prepared again, against the schema of now.
  db->DropKept();
  ASSERT_TRUE(db->Exec("DROP TABLE t; CREATE TABLE t (x, y)").ok());
  ASSERT_TRUE(
      db->RunKept("INSERT INTO t VALUES (?, ?)", {Value::Integer(7), Value::Integer(8)}).ok());
  EXPECT_EQ(*db->QueryKeptValue("SELECT sum(x) + sum(y) FROM t"), Value::Integer(15));
}

TEST(DatabaseTest, QueryKeptVisitsEachRowAndResetsWhenAVisitFails) {
  auto db = Database::Open(testing::NewTempDir("query-kept") + "/q.db");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3), (4)").ok());
  const std::string sql = "SELECT x FROM t WHERE x > ? ORDER BY x";
  std::vector<int64_t> seen;
  absl::Status s = db->QueryKept(sql, {Value::Integer(1)}, [&](const Statement& row) {
    seen.push_back(row.Column(0).integer());
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(seen, (std::vector<int64_t>{2, 3, 4}));
  seen.clear();
  s = db->QueryKept(sql, {Value::Integer(0)}, [&](const Statement& row) {
    seen.push_back(row.Column(0).integer());
    return seen.size() == 2 ? absl::DataLossError("stop here") : absl::OkStatus();
  });
  EXPECT_EQ(s, absl::DataLossError("stop here"));
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2}));
  // Stopped halfway, the statement was reset: it holds no read of t (DROP TABLE refuses a
  // table a running statement reads).
  s = db->Exec("DROP TABLE t");
  EXPECT_TRUE(s.ok()) << s;
  // A statement that fails to prepare or bind is the error.
  EXPECT_FALSE(
      db->QueryKept("SELEKT 1", {}, [](const Statement&) { return absl::OkStatus(); }).ok());
}

TEST(DatabaseTest, SwitchesToWalOrRefuses) {
  auto db = Database::Open(testing::NewTempDir("wal") + "/w.db");
  ASSERT_TRUE(db.ok());
  EXPECT_TRUE(db->EnsureWal().ok());
  EXPECT_EQ(*db->QueryValue("PRAGMA journal_mode"), Value::Text("wal"));

  auto memory = Database::Open(":memory:");
  ASSERT_TRUE(memory.ok());
  absl::Status s = memory->EnsureWal();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("WAL"), std::string::npos);
}

TEST(DatabaseTest, TriggersCanBeDisabledPerConnection) {
  std::string path = testing::NewTempDir("trig") + "/t.db";
  auto db = Database::Open(path);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(
      db->Exec("CREATE TABLE t (x); CREATE TABLE audit (x);"
               "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO audit VALUES (NEW.x); END;")
          .ok());
  ASSERT_TRUE(db->SetTriggersEnabled(false).ok());
  ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)").ok());
  ASSERT_TRUE(db->SetTriggersEnabled(true).ok());
  ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (2)").ok());
  EXPECT_EQ(*db->QueryValue("SELECT group_concat(x) FROM audit"), Value::Text("2"));
}

}  // namespace
}  // namespace marmot::sqlite
