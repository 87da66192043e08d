// A hunt of replicated schema changes (issue 21) as an application, an operator and an attacker
// would: first, what a peer holding the cluster key can make ApplySchemaChange run on every node
// (replicator/schema_changes.h: "a schema change must ... hold exactly one CREATE statement of
// that object; a hostile one that does anything else is refused and changes nothing"), on
// marmot's own kind of connection, inside an apply transaction; then real marmot processes and
// the sqlite3 shell. Tests named DISABLED_ show a problem found and not fixed yet: each says
// what it shows; they pass once it is fixed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/change.pb.h"
#include "replicator/applier_database.h"
#include "replicator/schema_changes.h"
#include "replicator/shard_router.h"
#include "sqlite/database.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using change::v1::SchemaChange;
using replicator::ApplySchemaChange;
using replicator::SchemaApplied;
using sqlite::testing::RunSqliteCli;
using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------------------------------------
// A forged schema change, applied as shard 0's apply does: on marmot's applier connection
// (OpenApplierDatabase), inside the apply round's transaction.

class ForgedSchemaChangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = sqlite::testing::NewDatabase(
        "schema-hunt",
        "PRAGMA journal_mode = WAL;"
        "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT CHECK (v != 'bad'));"
        "INSERT INTO kv VALUES (1, 'one');");
    absl::StatusOr<sqlite::Database> db = replicator::OpenApplierDatabase(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::make_unique<sqlite::Database>(*std::move(db));
    ASSERT_TRUE(replicator::EnsureSchemaBaseline(*db_).ok());
    // A function the test can see called: a statement that calls it ran.
    ASSERT_EQ(sqlite3_create_function(
                  db_->raw(), "probe", 0, SQLITE_UTF8, &probes_,
                  [](sqlite3_context* ctx, int, sqlite3_value**) {
                    ++*static_cast<int*>(sqlite3_user_data(ctx));
                    sqlite3_result_int(ctx, 1);
                  },
                  nullptr, nullptr),
              SQLITE_OK);
  }

  static SchemaChange Create(const std::string& type, const std::string& name,
                             const std::string& sql) {
    SchemaChange c;
    c.set_kind(SchemaChange::CREATE);
    c.set_type(type);
    c.set_name(name);
    c.set_sql(sql);
    return c;
  }

  // Applies `c` in a transaction of its own, as an apply round does, and commits.
  SchemaApplied Apply(const SchemaChange& c) {
    absl::StatusOr<sqlite::Transaction> txn =
        sqlite::Transaction::Begin(*db_, sqlite::Transaction::Mode::kImmediate);
    EXPECT_TRUE(txn.ok()) << txn.status();
    if (!txn.ok()) return {};
    absl::StatusOr<SchemaApplied> applied = ApplySchemaChange(*db_, c);
    EXPECT_TRUE(applied.ok()) << applied.status();
    EXPECT_TRUE(txn->Commit().ok());
    return applied.ok() ? *applied : SchemaApplied{};
  }

  std::string Pragma(const std::string& name) {
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows =
        db_->QueryRows(absl::StrCat("PRAGMA ", name));
    if (!rows.ok()) return std::string(rows.status().message());
    if (rows->empty()) return "";
    return (*rows)[0][0].DebugString();
  }

  std::string path_;
  std::unique_ptr<sqlite::Database> db_;
  int probes_ = 0;
};

// Regression (fixed): showed that ApplyCreate runs whatever single statement a change carries
// before it looks at what it made (schema_changes.cc, ApplyCreate -> RunOneStatement): `SELECT
// probe()` runs (probe is called once). Refused afterwards, and a write is rolled back, but a query
// runs to its end first: `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT
// count(*) FROM c` as the SQL of a forged CREATE never ends, in shard 0's apply, holding the
// write lock of every node's database (the case CREATE TABLE ... AS was refused for, by another
// door). Expected: a change whose statement is not a CREATE of its type is refused unrun.
TEST_F(ForgedSchemaChangeTest, AStatementThatIsNotACreateDoesNotRun) {
  for (const char* sql :
       {"SELECT probe()", "SELECT probe() FROM kv", "VALUES (probe())",
        "WITH c AS (SELECT probe()) SELECT * FROM c", "UPDATE kv SET v = probe()"}) {
    SCOPED_TRACE(sql);
    probes_ = 0;
    const SchemaApplied refused = Apply(Create("table", "x", sql));
    EXPECT_EQ(refused.outcome, SchemaApplied::kRefused);
    EXPECT_EQ(probes_, 0) << "the forged statement ran";
  }
  EXPECT_EQ(*RunSqliteCli(path_, "SELECT * FROM kv;"), "1|one\n");
}

// Regression (fixed): showed that a forged "CREATE" holding a PRAGMA changes marmot's applier
// connection for good, on every node, though the change is refused (a savepoint rolls back data,
// not a connection's settings): `PRAGMA query_only = ON` makes every later apply fail ("attempt to
// write a readonly database (sqlite code 8) in: BEGIN IMMEDIATE"), `PRAGMA locking_mode =
// EXCLUSIVE` keeps the write lock after the next commit (the application cannot write any
// more), `PRAGMA ignore_check_constraints = ON` lets rows that break a CHECK in, `PRAGMA
// writable_schema = ON` stays (`synchronous` cannot change inside a transaction: it stays).
// Expected: refused, and the connection as it was.
TEST_F(ForgedSchemaChangeTest, AForgedPragmaLeavesTheApplierConnectionAsItWas) {
  const std::string synchronous = Pragma("synchronous");
  for (const char* sql : {"PRAGMA locking_mode = EXCLUSIVE", "PRAGMA synchronous = OFF",
                          "PRAGMA ignore_check_constraints = ON", "PRAGMA writable_schema = ON",
                          // Last: after it, no transaction begins on the connection.
                          "PRAGMA query_only = ON"}) {
    SCOPED_TRACE(sql);
    EXPECT_EQ(Apply(Create("table", "x", sql)).outcome, SchemaApplied::kRefused);
  }
  EXPECT_EQ(Pragma("query_only"), "0");
  EXPECT_EQ(Pragma("main.locking_mode"), "'normal'");
  EXPECT_EQ(Pragma("synchronous"), synchronous);
  EXPECT_EQ(Pragma("ignore_check_constraints"), "0");
  EXPECT_EQ(Pragma("writable_schema"), "0");
  // A real change still applies, and a row breaking the CHECK is still refused.
  EXPECT_EQ(Apply(Create("table", "item", "CREATE TABLE item (id INTEGER PRIMARY KEY)")).outcome,
            SchemaApplied::kApplied);
  EXPECT_FALSE(db_->Exec("INSERT INTO kv VALUES (2, 'bad')").ok());
}

// Works: temporary objects a forged change makes are rolled back with its refusal (the temp
// schema is part of the transaction), so no temp trigger or view stays on marmot's connection.
TEST_F(ForgedSchemaChangeTest, TemporaryObjectsOfAForgedChangeDoNotStay) {
  const struct {
    const char* type;
    const char* sql;
  } cases[] = {
      {"table", "CREATE TEMP TABLE x (a)"},
      {"view", "CREATE TEMP VIEW x AS SELECT 1"},
      {"view", "CREATE TEMP VIEW kv AS SELECT 1 AS k, 'shadow' AS v"},
      {"trigger", "CREATE TEMP TRIGGER x AFTER INSERT ON main.kv BEGIN DELETE FROM main.kv; END"},
      {"index", "CREATE INDEX temp.x ON kv (v)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.sql);
    EXPECT_EQ(Apply(Create(c.type, "x", c.sql)).outcome, SchemaApplied::kRefused);
    absl::StatusOr<sqlite::Value> temp = db_->QueryValue("SELECT count(*) FROM sqlite_temp_master");
    ASSERT_TRUE(temp.ok()) << temp.status();
    EXPECT_EQ(temp->integer(), 0);
  }
  EXPECT_EQ(*RunSqliteCli(path_, "SELECT * FROM kv;"), "1|one\n");
}

// Regression (fixed): showed that the guard against defaults and generated columns that build huge
// values on every insert or read (Hostile(): zeroblob and randomblob of more than 1 MiB are
// refused) looks for the bare words only: a quoted function name (`"zeroblob"(...)`,
// `[randomblob]`,
// `` `zeroblob` ``) is the same function to SQLite, and printf('%.*c', N, 'x') or replace()
// build values of any size without either. Each of these tables is made on every node; every
// insert that leaves the column out then builds ~1 GB there. Expected: refused.
TEST_F(ForgedSchemaChangeTest, HugeDefaultsAreRefusedHoweverTheyAreSpelled) {
  for (const char* sql : {"CREATE TABLE x (a, b DEFAULT (\"zeroblob\"(999999999)))",
                          "CREATE TABLE x (a, b DEFAULT ([zeroblob](999999999)))",
                          "CREATE TABLE x (a, b DEFAULT (`randomblob`(999999999)))",
                          "CREATE TABLE x (a, b DEFAULT (printf('%.*c', 999999999, 'x')))",
                          "CREATE TABLE x (a, b AS (printf('%.*c', 999999999, a)))"}) {
    SCOPED_TRACE(sql);
    const SchemaApplied applied = Apply(Create("table", "x", sql));
    EXPECT_EQ(applied.outcome, SchemaApplied::kRefused);
    if (applied.outcome == SchemaApplied::kApplied) ASSERT_TRUE(db_->Exec("DROP TABLE x").ok());
  }
}

// ---------------------------------------------------------------------------------------------
// Real marmot processes, the sqlite3 shell as the application and its migrations.

constexpr char kAuth[] = "Basic aHVudDpodW50";
constexpr char kUserSchema[] =
    "SELECT type, name, sql FROM sqlite_master WHERE substr(name, 1, 10) != '__marmot__' "
    "ORDER BY type, name;";
constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";

// Ids of `table` that route to `shard` of `shards`, from 1 on.
std::vector<int64_t> IdsInShard(const std::string& table, int shard, int shards, int count) {
  replicator::ShardRouter router(shards);
  std::vector<int64_t> ids;
  for (int64_t id = 1; static_cast<int>(ids.size()) < count; ++id) {
    if (router.ShardOf(table, {sqlite::Value::Integer(id)}) == shard) ids.push_back(id);
  }
  return ids;
}

// GetStatus of node `id`: why its `shard` is halted ("" when it is not).
std::string HaltedWhy(const testing::LocalCluster& c, int id, int shard) {
  const admin::v1::GetStatusResponse s = testing::PaneStatus(c, id, kAuth);
  return s.shards_size() > shard ? s.shards(shard).halted() : "(no status)";
}

std::string Tail(const std::string& log) {
  return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
}

// Works: names with quotes, spaces, unicode and SQL keywords, STRICT and WITHOUT ROWID tables,
// and columns added with a CHECK, a NOT NULL DEFAULT and a generated column, renamed and
// dropped, all on different nodes, reach every node with their rows and no dead letter.
TEST(SchemaHuntProcessTest, OddNamesStrictAndWithoutRowidTablesAndAddedConstraintsReplicate) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  const std::string odd = "\"we\"\"ird tbl\"";
  cluster.Sql(1,
              absl::StrCat("CREATE TABLE ", odd,
                           " (\"my col\" INTEGER PRIMARY KEY, \"select\" TEXT, [élan ✓] TEXT,"
                           " `order` BLOB);"
                           "INSERT INTO ",
                           odd,
                           " VALUES (1, 'a', 'é', x'00ff');"
                           "CREATE TABLE st (id TEXT PRIMARY KEY, n INTEGER NOT NULL, b BLOB)"
                           " STRICT, WITHOUT ROWID;"
                           "INSERT INTO st VALUES ('a', 1, x'01');"
                           "CREATE TABLE wr (a INTEGER, b TEXT, PRIMARY KEY (b, a)) WITHOUT ROWID;"
                           "INSERT INTO wr VALUES (1, 'x');"));
  ASSERT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  // A rename and an add seen in one look (the renamed column keeps its place), an index and a
  // view of odd names, and columns with constraints, on node 2, with rows right after.
  cluster.Sql(2, absl::StrCat("ALTER TABLE ", odd,
                              " ADD COLUMN \"new \"\"col\"\" ✓\" TEXT DEFAULT 'd';"
                              "ALTER TABLE ",
                              odd,
                              " RENAME COLUMN [élan ✓] TO \"from\";"
                              "INSERT INTO ",
                              odd,
                              " VALUES (2, 'b', 'ü', NULL, 'n2');"
                              "CREATE INDEX \"idx \"\"q\"\"\" ON ",
                              odd,
                              " (\"from\", \"select\");"
                              "CREATE VIEW \"v w\" AS SELECT \"from\" FROM ",
                              odd,
                              ";"
                              "ALTER TABLE st ADD COLUMN r REAL CHECK (r >= 0) DEFAULT 0;"
                              "ALTER TABLE st ADD COLUMN g INTEGER AS (n * 2) VIRTUAL;"
                              "ALTER TABLE wr ADD COLUMN c TEXT NOT NULL DEFAULT 'dflt';"
                              "INSERT INTO st (id, n, b, r) VALUES ('b', 2, NULL, 1.5);"
                              "INSERT INTO wr (a, b, c) VALUES (2, 'y', 'set');"));
  ASSERT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  // A column dropped on node 3, and a write of the odd column.
  cluster.Sql(3, absl::StrCat("ALTER TABLE ", odd,
                              " DROP COLUMN `order`;"
                              "UPDATE ",
                              odd, " SET \"new \"\"col\"\" ✓\" = 'n3' WHERE \"my col\" = 1;"));
  ASSERT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  const std::string rows =
      absl::StrCat(".mode quote\nSELECT * FROM ", odd,
                   " ORDER BY 1; SELECT * FROM \"v w\" ORDER BY 1; SELECT * FROM st ORDER BY id;"
                   " SELECT * FROM wr ORDER BY a;");
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(1, rows),
            "1,'a','é','n3'\n2,'b','ü','n2'\n'é'\n'ü'\n'a',1,X'01',0.0,2\n'b',2,NULL,1.5,4\n"
            "1,'x','dflt'\n2,'y','set'\n");
  EXPECT_THAT(cluster.Sql(3, "SELECT sql FROM sqlite_master WHERE name = 'st';"),
              HasSubstr("STRICT, WITHOUT ROWID"));
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 30s));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("schema change refused"))) << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("schema change conflicts"))) << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("do not replicate yet"))) << "node " << id;
  }
}

// Regression (fixed): showed a row lost without a trace. Node 2 writes two rows of one value while
// its marmot is down; node 1 meanwhile makes a UNIQUE index on that column. Node 2 refuses the
// index
// ("schema change refused: index kv_v_unique ...: UNIQUE constraint failed: kv.v", counted) and
// keeps both rows; nodes 1 and 3 apply both rows under the index: the second replaces the first
// (INSERT OR REPLACE) and the replaced row is not kept as a conflict (displaced_rows.h: "a row
// whose version is the winner's own origin is not kept: that node gave the value away itself",
// which a node without the index never did). Seen: nodes 1 and 3 held one row and no conflict,
// node 2 both rows. Now node 2's rows, read before it had the index, keep the replaced row as a
// conflict: on every node each row is there or kept.
TEST(SchemaHuntProcessTest,
     AUniqueIndexMadeWhileAnotherNodeHoldsRowsThatBreakItLosesNoRowSilently) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  ASSERT_EQ(cluster.StopNode(2), 0);
  cluster.Sql(2, "INSERT INTO kv VALUES (10, 'dup'), (11, 'dup');");
  cluster.Sql(1, "CREATE UNIQUE INDEX kv_v_unique ON kv (v);");
  const std::string index = "SELECT name FROM sqlite_master WHERE name = 'kv_v_unique';";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(3, index) == "kv_v_unique\n"; }, 30s));
  cluster.StartNode(2);
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s)) << cluster.log(2);
  // Node 2 refuses the index, and says so.
  ASSERT_TRUE(testing::WaitFor(
      [&] { return testing::PaneStatus(cluster, 2, kAuth).schema_changes_refused() == 1; }, 30s))
      << Tail(cluster.log(2));
  // Both rows reached nodes 1 and 3 (their versions are there).
  const std::string versions =
      "SELECT count(*) FROM \"__marmot__versions\" WHERE tbl = 'kv' AND key IN (10, 11);";
  ASSERT_TRUE(cluster.WaitForEverywhere(versions, "2\n", 30s)) << cluster.OnEveryNode(versions);
  const std::string present_or_kept =
      "SELECT (SELECT count(*) FROM kv WHERE k IN (10, 11)) + "
      "(SELECT count(*) FROM \"__marmot__conflicts\" WHERE tbl = 'kv');";
  EXPECT_TRUE(cluster.WaitForEverywhere(present_or_kept, "2\n", 30s)) << cluster.OnEveryNode(
      ".mode quote\nSELECT * FROM kv; SELECT tbl, key FROM "
      "\"__marmot__conflicts\";");
}

// Found by this hunt: rows of a dropped table came back on a node whose shard lagged. Node 2
// writes rows of t; node 1 applies them, then drops t and makes it again (as README says: the
// drop reached every node first). A node whose shard of those rows is behind (here node 3's
// shard 1, halted by a row of a table it lacks; a node catching up after a restart or an outage
// is behind the same way, its shards replaying independently) applied the drop and the new table
// from shard 0 first: a schema change waited only for the rows its own origin committed before it
// (schema_epochs.h, part B), not for other nodes' rows its origin had applied. When shard 1
// resumed, node 2's old rows landed in the new t there, and nowhere else. The same for a column
// dropped and added again (u.p: node 2's old values came back in the new p on node 3 only), and
// for a column renamed and another added under its old name (r: node 2's old v went to the new v
// on node 3, to w everywhere else). Now a schema change lists what every shard had applied on
// its origin, and waits for that (at most kEpochWaitBound, 30 s: a shard halted longer is not
// waited for, and this can happen again).
TEST(SchemaHuntProcessTest, AnotherNodesRowsOfADroppedTableDoNotComeBackWhereTheirShardLags) {
  setenv("AUTH_KEY", kAuth, 1);
  constexpr int kShards = 2;
  testing::LocalCluster cluster({.nodes = 3,
                                 .shards = kShards,
                                 .schema =
                                     "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                                     "CREATE TABLE u (id INTEGER PRIMARY KEY, a TEXT, p TEXT);"
                                     "CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT);"
                                     "CREATE TABLE x (id INTEGER PRIMARY KEY, v TEXT);"
                                     "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);",
                                 .rows_before = {{3, "DROP TABLE x;"}}});
  // Node 3 lacks x and keeps no dead letter: a row of x halts its shard there.
  cluster.SetNodeFlags(3, {"-max-dead-letters=0"});
  cluster.Start();
  // The schema but x, which node 3 lacks until the end.
  const std::string schema =
      "SELECT type, name, sql FROM sqlite_master WHERE substr(name, 1, 10) != '__marmot__' "
      "AND name != 'x' ORDER BY type, name;";
  // Node 1's first schema change since its start (that one waits for everything its shards had
  // applied): an index, everywhere.
  cluster.Sql(1, "CREATE INDEX kv_v ON kv (v);");
  ASSERT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.OnEveryNode(schema);
  // Node 3's shard 1 halts on a row of x from node 2.
  cluster.Sql(2,
              absl::StrCat("INSERT INTO x VALUES (", IdsInShard("x", 1, kShards, 1)[0], ", 'x');"));
  ASSERT_TRUE(testing::WaitFor([&] { return !HaltedWhy(cluster, 3, 1).empty(); }, 60s))
      << Tail(cluster.log(3));
  // Node 2 writes rows of t, u and r in shard 1; node 1 has them.
  std::string inserts;
  for (const char* table : {"t", "u", "r"}) {
    std::string values;
    for (int64_t id : IdsInShard(table, 1, kShards, 5)) {
      absl::StrAppend(&values, values.empty() ? "" : ", ", "(", id,
                      std::string(table) == "u" ? ", 'a'" : "", ", 'old')");
    }
    absl::StrAppend(&inserts, "INSERT INTO ", table, " VALUES ", values, ";");
  }
  cluster.Sql(2, inserts);
  const std::string rows =
      ".mode quote\nSELECT * FROM t ORDER BY id; SELECT * FROM u ORDER BY id;"
      "SELECT * FROM r ORDER BY id;";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(1, rows) == cluster.Sql(2, rows); }, 30s));
  // Node 1 drops t and p of u, renames v of r; nodes 1 and 2 have that at once, node 3's shard 0
  // waits for its shard 1 to apply what node 1 had applied there.
  cluster.Sql(1, "DROP TABLE t; ALTER TABLE u DROP COLUMN p; ALTER TABLE r RENAME COLUMN v TO w;");
  ASSERT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(1, schema) == cluster.Sql(2, schema); }, 20s));
  EXPECT_NE(cluster.Sql(3, schema), cluster.Sql(1, schema));
  // Node 3 makes x: its shard 1 resumes and applies what it held, then the drop applies.
  cluster.Sql(3, "CREATE TABLE x (id INTEGER PRIMARY KEY, v TEXT);");
  ASSERT_TRUE(testing::WaitFor([&] { return HaltedWhy(cluster, 3, 1).empty(); }, 60s))
      << Tail(cluster.log(3));
  ASSERT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.OnEveryNode(schema);
  // Once every node has that, node 1 makes t and p again and adds another v to r.
  cluster.Sql(1,
              "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1000, 'new');"
              "ALTER TABLE u ADD COLUMN p TEXT; ALTER TABLE r ADD COLUMN v TEXT;");
  ASSERT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.OnEveryNode(schema);
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*) FROM x;", 30s));
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM t WHERE v = 'old';"), "0\n");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM u WHERE p = 'old';"), "0\n");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM r WHERE w = 'old' AND v IS NULL;"), "5\n");
}

// A node that joins from an empty file after several migrations (a table dropped and made again
// with other columns, a column renamed, a table made again by SQLite's create-copy-drop-rename)
// replays them from the log with the rows between them and ends as the others.
TEST(SchemaHuntProcessTest, ANodeJoiningFromAnEmptyFileAfterSeveralMigrationsEndsAsTheOthers) {
  setenv("AUTH_KEY", kAuth, 1);
  // Every table here is made by a replicated schema change (founders' tables are another story,
  // below).
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE founders (id INTEGER PRIMARY KEY);"});
  cluster.Start();
  const std::string schema =
      "SELECT type, name, sql FROM sqlite_master WHERE substr(name, 1, 10) != '__marmot__' "
      "AND name != 'founders' ORDER BY type, name;";
  cluster.Sql(1, "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);");
  ASSERT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.OnEveryNode(schema);
  const std::string rows = ".mode quote\nSELECT * FROM kv ORDER BY k; SELECT * FROM a ORDER BY id;";
  cluster.Sql(2,
              "CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT); INSERT INTO a VALUES (1, 'x1'), "
              "(2, 'x2'); INSERT INTO kv VALUES (1, 'one'), (2, 'two');");
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  cluster.Sql(1, "ALTER TABLE kv RENAME COLUMN v TO value; INSERT INTO kv VALUES (3, 'three');");
  ASSERT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.OnEveryNode(schema);
  cluster.Sql(3, "DROP TABLE a;");
  ASSERT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.OnEveryNode(schema);
  cluster.Sql(1,
              "CREATE TABLE a (id INTEGER PRIMARY KEY, y INTEGER NOT NULL, z TEXT);"
              "INSERT INTO a VALUES (10, 1, 'z');");
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  cluster.Sql(2,
              "BEGIN; CREATE TABLE new_kv (k INTEGER PRIMARY KEY, value TEXT NOT NULL DEFAULT '',"
              " n INTEGER); INSERT INTO new_kv (k, value) SELECT k, value FROM kv; DROP TABLE kv;"
              " ALTER TABLE new_kv RENAME TO kv; COMMIT; INSERT INTO kv VALUES (4, 'four', 4);");
  ASSERT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.OnEveryNode(schema);
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  ASSERT_EQ(cluster.Sql(1, rows),
            "1,'one',NULL\n2,'two',NULL\n3,'three',NULL\n4,'four',4\n10,1,'z'\n");
  // A fourth node from an empty file.
  const int four = cluster.StartJoiningNode(/*with_schema=*/false);
  httplib::Result added = testing::PaneCall(
      cluster, 1, kAuth, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", cluster.address(four), "\"}"));
  ASSERT_TRUE(added);
  ASSERT_EQ(added->status, 200) << added->body;
  EXPECT_TRUE(cluster.WaitForSame(schema, 60s)) << cluster.OnEveryNode(schema);
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s))
      << cluster.OnEveryNode(rows) << Tail(cluster.log(four));
  EXPECT_EQ(cluster.Sql(four, kDeadLetters), "0\n");
  // It writes as any node.
  cluster.Sql(four, "INSERT INTO a VALUES (11, 2, 'from four');");
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(2, "SELECT z FROM a WHERE id = 11;"), "from four\n");
}

// DISABLED: shows that a node added from an empty file, as README's "Adding a node" and
// "Scaling up" say to ("the schema comes with the shards' snapshots ... receives the existing
// rows from the Raft log or from shard snapshots"), never gets the tables the founders started
// with while the shards' logs are not compacted yet (-snapshot-entries, 10,000 by default: every
// young cluster): those tables predate the schema baseline, so no schema change in shard 0's log
// makes them, and the log replayed from its start brings their rows only. Seen: node 4 has no
// table kv; its rows are dead letters there ("no such table"). With a snapshot of every shard
// taken first (pane_cluster_test does so) it works. Expected: kv with its rows on node 4.
// Tried (2026-12-07, reverted): each founder proposing its starting schema as CREATEs in shard
// 0 before its rows passed this, but a founder's starting schema that commits after a shard 0
// halted on another node advanced every founder's epoch past the halt, and that node's other
// shards then waited kEpochWaitBound (halted_shard_test, snapshot_safety_test failed under load).
TEST(SchemaHuntProcessTest, DISABLED_ANodeAddedFromAnEmptyFileGetsTheFoundersTablesFromTheLog) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one'), (2, 'two'), (3, 'three');");
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  const int four = cluster.StartJoiningNode(/*with_schema=*/false);
  httplib::Result added = testing::PaneCall(
      cluster, 1, kAuth, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", cluster.address(four), "\"}"));
  ASSERT_TRUE(added);
  ASSERT_EQ(added->status, 200) << added->body;
  EXPECT_TRUE(cluster.WaitForSame(kUserSchema, 60s)) << cluster.OnEveryNode(kUserSchema);
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s))
      << cluster.OnEveryNode(rows) << Tail(cluster.log(four));
  EXPECT_EQ(cluster.Sql(four, kDeadLetters), "0\n");
}

// Found by this hunt: a table of more than about 1,990 columns (SQLite allows 2,000) was made
// on every node, but its rows never left their node: the shipper read a row with its table's
// columns plus marmot's own (log id, operation, key, previous version, ...), more than SQLite's
// 2,000 in one result, and warned for good. Now such a table's rows are read by key. Tables of
// the most columns SQLite allows, keyed by rowid and WITHOUT ROWID with a two-column key:
// inserted, updated on another node, deleted; a node added afterwards from an empty file gets
// them from snapshots; Verify finds the shards alike.
TEST(SchemaHuntProcessTest, TheRowsOfTablesOfTheMostColumnsSqliteAllowsReplicate) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster(
      {.nodes = 2, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  std::string columns;
  for (int i = 1; i <= 1998; ++i) absl::StrAppend(&columns, ", c", i, " TEXT");
  cluster.Sql(1, absl::StrCat("CREATE TABLE wide (id INTEGER PRIMARY KEY", columns,
                              ", c1999 TEXT); CREATE TABLE widepk (a INTEGER, b TEXT", columns,
                              ", PRIMARY KEY (a, b)) WITHOUT ROWID;"
                              "INSERT INTO wide (id, c1, c1999) VALUES (1, 'one', 'last'), "
                              "(2, 'two', 'gone'); INSERT INTO widepk (a, b, c1998) VALUES "
                              "(1, 'x', 'last'), (2, 'y', 'gone');"));
  const std::string rows =
      "SELECT id, c1, c1999 FROM wide ORDER BY id; SELECT a, b, c1, c1998 FROM widepk ORDER BY a;";
  ASSERT_TRUE(
      cluster.WaitForEverywhere(rows, "1|one|last\n2|two|gone\n1|x||last\n2|y||gone\n", 30s))
      << cluster.OnEveryNode(rows);
  cluster.Sql(2,
              "UPDATE wide SET c1 = 'edited' WHERE id = 1; UPDATE widepk SET c1 = 'edited' "
              "WHERE a = 1; DELETE FROM wide WHERE id = 2; DELETE FROM widepk WHERE a = 2;");
  const std::string after = "1|edited|last\n1|x|edited|last\n";
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, after, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.log(1).find("too many columns"), std::string::npos);
  EXPECT_EQ(cluster.log(2).find("too many columns"), std::string::npos);
  // A third node from an empty file, from snapshots of every shard.
  for (int id = 1; id <= 2; ++id) {
    httplib::Result snap =
        testing::PaneCall(cluster, id, kAuth, "POST", "/v1/snapshots", "{\"all\": true}");
    ASSERT_TRUE(snap);
    ASSERT_EQ(snap->status, 200) << snap->body;
  }
  const int three = cluster.StartJoiningNode(/*with_schema=*/false);
  httplib::Result added = testing::PaneCall(
      cluster, 1, kAuth, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", three, "\", \"address\": \"", cluster.address(three), "\"}"));
  ASSERT_TRUE(added);
  ASSERT_EQ(added->status, 200) << added->body;
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, after, 60s))
      << cluster.OnEveryNode(rows) << Tail(cluster.log(three));
  const admin::v1::VerifyResponse verified = testing::PaneVerify(cluster, 1, kAuth, 2);
  EXPECT_TRUE(testing::EveryNodeReported(verified, cluster, 2)) << verified.DebugString();
  EXPECT_EQ(verified.divergent_shards(), 0u) << verified.DebugString();
  EXPECT_EQ(cluster.Sql(three, kDeadLetters), "0\n");
}

// Works: every node adds a column with a value written right after it in the same sqlite3 run,
// all at once, the same column on all three and one of its own on each: every node ends with
// every column (in its own order) and every row with its values, no conflict, no dead letter.
TEST(SchemaHuntProcessTest, ColumnsAddedOnEveryNodeAtOnceWithRowsRightAfterEndEverywhere) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  std::thread runs[3];
  for (int id = 1; id <= 3; ++id) {
    runs[id - 1] = std::thread([&, id] {
      cluster.Sql(id, absl::StrCat("ALTER TABLE kv ADD COLUMN note TEXT; ALTER TABLE kv ADD COLUMN "
                                   "own",
                                   id, " INTEGER; INSERT INTO kv (k, v, note, own", id,
                                   ") VALUES (", id, ", 'v", id, "', 'note ", id, "', ", id, ");"));
    });
  }
  for (std::thread& t : runs) t.join();
  const std::string rows = ".mode quote\nSELECT k, v, note, own1, own2, own3 FROM kv ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(1, rows),
            "1,'v1','note 1',1,NULL,NULL\n2,'v2','note 2',NULL,2,NULL\n"
            "3,'v3','note 3',NULL,NULL,3\n");
  const std::string columns =
      "SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info('kv') ORDER BY "
      "name);";
  EXPECT_TRUE(cluster.WaitForEverywhere(columns, "k,note,own1,own2,own3,v\n", 30s))
      << cluster.OnEveryNode(columns);
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 30s));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.log(id).find("schema change conflicts"), std::string::npos) << "node " << id;
    EXPECT_EQ(cluster.log(id).find("schema change refused"), std::string::npos) << "node " << id;
  }
}

// Found by this hunt: one table made on two nodes at once under names that differ only in case
// (`Item` and `item`: one name to SQLite, same columns) never met: each side reported the
// other's CREATE as a conflict ("table Item exists here with another definition; kept as it is
// here"), then every row written on one side was a dead letter on the other ("table \"Item\"
// does not exist on this node"), for good, though the table was there (and rows of one key
// routed by the name as written, so the two spellings' rows of one key met in no single shard).
// Now a CREATE compares the resulting table, names without case; rows of another node's
// spelling apply to the table as named here; and the table routes by the spelling of its first
// CREATE in shard 0 on every node: one table, every row everywhere, no dead letter. Verify
// finds the shards alike (it took `Item` and `item` for two tables, each missing on some node).
TEST(SchemaHuntProcessTest, OneTableMadeAtOnceUnderNamesThatDifferInCaseMeets) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  ASSERT_EQ(cluster.StopNode(2), 0);
  cluster.Sql(2, "CREATE TABLE item (id INTEGER PRIMARY KEY, v TEXT);");
  cluster.Sql(1, "CREATE TABLE Item (id INTEGER PRIMARY KEY, v TEXT);");
  const std::string item = "SELECT count(*) FROM sqlite_master WHERE name = 'item' COLLATE NOCASE;";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(3, item) == "1\n"; }, 30s));
  cluster.StartNode(2);
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s)) << cluster.log(2);
  // Once node 2 applied node 1's CREATE (already so there: its `item`), both write.
  ASSERT_TRUE(testing::WaitFor(
      [&] { return cluster.log(2).find("table Item from node 1") != std::string::npos; }, 30s))
      << Tail(cluster.log(2));
  cluster.Sql(1, "INSERT INTO item VALUES (1, 'from 1');");
  cluster.Sql(2, "INSERT INTO item VALUES (2, 'from 2');");
  const std::string rows = "SELECT * FROM item ORDER BY id;";
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, "1|from 1\n2|from 2\n", 30s))
      << cluster.OnEveryNode(rows);
  // Rows of one key meet in one shard: every node routes the table by the spelling of its first
  // CREATE in shard 0, node 1's.
  const std::string route = "SELECT route FROM \"__marmot__table_routes\" WHERE name = 'item';";
  EXPECT_TRUE(cluster.WaitForEverywhere(route, "Item\n", 10s)) << cluster.OnEveryNode(route);
  // One row written on both sides at once ends alike everywhere.
  std::thread other([&] { cluster.Sql(2, "UPDATE item SET v = 'two' WHERE id = 1;"); });
  cluster.Sql(1, "UPDATE item SET v = 'one' WHERE id = 1;");
  other.join();
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s))
      << cluster.OnEveryNode("SELECT tbl, error FROM \"__marmot__dead_letters\";");
  const admin::v1::VerifyResponse verified = testing::PaneVerify(cluster, 1, kAuth, 2);
  EXPECT_TRUE(testing::EveryNodeReported(verified, cluster, 2)) << verified.DebugString();
  EXPECT_EQ(verified.divergent_shards(), 0u) << verified.DebugString();
}

// The same of a column: added on two nodes at once as `Extra` and `extra` (one name to SQLite),
// it is one column, and rows written with it on either side reach every node. Verify finds the
// shards alike (it hashed column names as written, and reported the node that spells the column
// otherwise as divergent in every shard).
TEST(SchemaHuntProcessTest, OneColumnAddedAtOnceUnderNamesThatDifferInCaseMeets) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  ASSERT_EQ(cluster.StopNode(2), 0);
  cluster.Sql(2, "ALTER TABLE kv ADD COLUMN extra TEXT;");
  cluster.Sql(1, "ALTER TABLE kv ADD COLUMN Extra TEXT;");
  const std::string columns = "SELECT count(*) FROM pragma_table_info('kv');";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(3, columns) == "3\n"; }, 30s));
  cluster.StartNode(2);
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s)) << cluster.log(2);
  // Each row reaches the other side after the column change its origin had (schema epochs).
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one', 'x1');");
  cluster.Sql(2, "INSERT INTO kv VALUES (2, 'two', 'x2');");
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, "1|one|x1\n2|two|x2\n", 30s))
      << cluster.OnEveryNode(rows);
  EXPECT_TRUE(cluster.WaitForEverywhere(columns, "3\n", 10s)) << cluster.OnEveryNode(columns);
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.log(id).find("schema change conflicts"), std::string::npos) << "node " << id;
  }
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s))
      << cluster.OnEveryNode("SELECT tbl, error FROM \"__marmot__dead_letters\";");
  const std::string spelled = "SELECT name FROM pragma_table_info('kv') WHERE cid = 2;";
  ASSERT_NE(cluster.Sql(1, spelled), cluster.Sql(2, spelled)) << "each keeps its spelling";
  const admin::v1::VerifyResponse verified = testing::PaneVerify(cluster, 1, kAuth, 2);
  EXPECT_TRUE(testing::EveryNodeReported(verified, cluster, 2)) << verified.DebugString();
  EXPECT_EQ(verified.divergent_shards(), 0u) << verified.DebugString();
}

// Found by this hunt: two conflicting column changes never met. While node 3 is down, its
// migration drops v; meanwhile node 1 renames v to w. Node 3 reported the rename as a conflict
// ("table kv has neither v nor w here; kept"); nodes 1 and 2 took node 3's drop of v as already
// so (they have no v) and reported nothing. kv stayed (k, w, x) on nodes 1 and 2 and (k, x) on
// node 3 for good, and every later change of a row there that carried w was a dead letter on
// node 3, its other columns with it. Now the drop drops the column under its name where it was
// renamed, and a rename of a dropped column makes nothing: kv is (k, x) everywhere.
TEST(SchemaHuntProcessTest, AColumnDroppedOnADownNodeWhileRenamedElsewhereEndsAlike) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 2,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, x TEXT);"});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one', 'x1');");
  ASSERT_TRUE(cluster.WaitForEverywhere("SELECT * FROM kv;", "1|one|x1\n", 30s));
  ASSERT_EQ(cluster.StopNode(3), 0);
  cluster.Sql(3, "ALTER TABLE kv DROP COLUMN v;");
  cluster.Sql(1, "ALTER TABLE kv RENAME COLUMN v TO w;");
  const std::string kv = "SELECT sql FROM sqlite_master WHERE name = 'kv';";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, kv) == cluster.Sql(1, kv); }, 30s));
  // A row written with w before node 3's drop reached anyone.
  cluster.Sql(1, "INSERT INTO kv (k, w, x) VALUES (2, 'two', 'x3');");
  ASSERT_TRUE(testing::WaitFor(
      [&] { return cluster.Sql(2, "SELECT w FROM kv WHERE k = 2;") == "two\n"; }, 30s));
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s)) << cluster.log(3);
  EXPECT_TRUE(
      cluster.WaitForEverywhere(kv, "CREATE TABLE kv (k INTEGER PRIMARY KEY, x TEXT)\n", 30s))
      << cluster.OnEveryNode(kv);
  cluster.Sql(2, "UPDATE kv SET x = 'x2' WHERE k = 1;");
  EXPECT_TRUE(cluster.WaitForEverywhere("SELECT * FROM kv ORDER BY k;", "1|x2\n2|x3\n", 30s))
      << cluster.OnEveryNode("SELECT * FROM kv;");
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.log(id).find("schema change conflicts"), std::string::npos) << "node " << id;
  }
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s))
      << cluster.OnEveryNode("SELECT tbl, error FROM \"__marmot__dead_letters\";");
}

}  // namespace
}  // namespace marmot
