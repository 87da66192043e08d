// Writes that marmot used to lose, change or duplicate without a trace (issue 16), each as the
// application made it: real marmot processes, the sqlite3 shell as the application. Columns
// added on one node replicate; the other schema changes here are made by hand on every node
// (they do not replicate yet).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr char kKv[] = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);";
constexpr char kAllKv[] = ".mode quote\nSELECT * FROM kv ORDER BY k;";

TEST(LostWritesTest, AValueWrittenRightAfterAddColumnKeepsItsColumnOnEveryNode) {
  testing::LocalCluster cluster({.nodes = 2, .shards = 2, .schema = kKv});
  cluster.Start();
  // In one call, and then in separate transactions a moment apart, on node 1; node 2 gets the
  // column from node 1 (changes that arrive before it wait as dead letters, retried then).
  cluster.Sql(1, "ALTER TABLE kv ADD COLUMN extra TEXT; INSERT INTO kv VALUES (1, 'a', 'x');");
  cluster.Sql(1, "INSERT INTO kv VALUES (2, 'b', 'y');");
  cluster.Sql(1, "INSERT INTO kv VALUES (3, 'c', 'z'); UPDATE kv SET extra = 'x2' WHERE k = 1;");
  const std::string expected = "1,'a','x2'\n2,'b','y'\n3,'c','z'\n";
  EXPECT_TRUE(cluster.WaitForEverywhere(kAllKv, expected, 30s)) << cluster.OnEveryNode(kAllKv);
  EXPECT_TRUE(
      cluster.WaitForEverywhere("SELECT count(*) FROM \"__marmot__dead_letters\";", "0\n", 30s))
      << cluster.OnEveryNode("SELECT id, error FROM \"__marmot__dead_letters\";");
}

TEST(LostWritesTest, AColumnAddedWhileEveryNodeWritesTheSameRowsEndsTheSameEverywhere) {
  // Regression (hunt): node 1 adds a column and writes it while nodes 2 and 3 write the same
  // rows and get the column a moment later. A change node 2 read before it had the column made
  // node 2 skip node 1's change of the row whole: such rows kept the column empty on node 2
  // only, with no dead letter and no log line.
  testing::LocalCluster cluster({.nodes = 3, .shards = 2, .schema = kKv});
  cluster.Start();
  cluster.Sql(1,
              "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 60) "
              "INSERT INTO kv SELECT k, 'start' FROM n;");
  const std::string count = "SELECT count(*) FROM kv;";
  ASSERT_TRUE(cluster.WaitForEverywhere(count, "60\n", 30s)) << cluster.OnEveryNode(count);
  // Every node rewrites every row, transaction after transaction; node 1 writes the new column
  // too once it has it.
  std::atomic<bool> writes_upd{false};
  std::atomic<bool> stop[4] = {false, false, false, false};
  std::thread writers[4];
  for (int id = 1; id <= 3; ++id) {
    writers[id] = std::thread([&, id] {
      for (int i = 0; !stop[id].load(); ++i) {
        const bool upd = id == 1 && writes_upd.load();
        auto written = sqlite::testing::RunSqliteCli(
            cluster.db_path(id), absl::StrCat("UPDATE kv SET v = 'n", id, "-", i, "'",
                                              upd ? absl::StrCat(", upd = 'u", i, "'") : "", ";"));
        ASSERT_TRUE(written.ok()) << written.status();
      }
    });
  }
  std::this_thread::sleep_for(1s);
  cluster.Sql(1, "ALTER TABLE kv ADD COLUMN upd TEXT;");
  writes_upd = true;
  std::this_thread::sleep_for(1s);
  // Nodes 2 and 3 stop writing while their last changes travel; node 1 stops meanwhile. No
  // node but node 1 ever writes the column.
  stop[2] = true;
  writers[2].join();
  stop[1] = true;
  stop[3] = true;
  writers[1].join();
  writers[3].join();
  const std::string dead = "SELECT count(*) FROM \"__marmot__dead_letters\";";
  ASSERT_TRUE(cluster.WaitForEverywhere(dead, "0\n", 60s))
      << cluster.OnEveryNode("SELECT id, error FROM \"__marmot__dead_letters\";");
  // Every node ends with the same rows. (Not necessarily node 1's last value of the column: a
  // change that node 2 wrote before it had the column and read after carries the column as node
  // 2 had it, and may come last.)
  const std::string all = ".mode quote\nSELECT * FROM kv ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForSame(all, 30s)) << cluster.OnEveryNode(all);
}

TEST(LostWritesTest, SwappedColumnNamesDoNotSwapValues) {
  testing::LocalCluster cluster(
      {.nodes = 2,
       .shards = 2,
       .schema = "CREATE TABLE t (k INTEGER PRIMARY KEY, a TEXT, b TEXT);"});
  cluster.Start();
  // In one transaction: names swapped at once do not replicate (by name, nothing changed; by
  // text, renames cannot be told from drops and adds), so each node makes the swap itself.
  const std::string swap =
      "BEGIN; ALTER TABLE t RENAME COLUMN a TO tmp; ALTER TABLE t RENAME COLUMN b TO a;"
      "ALTER TABLE t RENAME COLUMN tmp TO b; COMMIT;";
  cluster.Sql(1, swap + "INSERT INTO t (k, a, b) VALUES (1, 'for a', 'for b');");
  cluster.Sql(2, swap);
  const std::string query = "SELECT k, a, b FROM t;";
  EXPECT_TRUE(cluster.WaitForEverywhere(query, "1|for a|for b\n", 30s))
      << cluster.OnEveryNode(query);
}

TEST(LostWritesTest, AColumnAddedAndWrittenWhileMarmotIsStoppedReplicatesAfterItsRestart) {
  testing::LocalCluster cluster({.nodes = 2, .shards = 2, .schema = kKv});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'a');");
  ASSERT_TRUE(cluster.WaitForEverywhere(kAllKv, "1,'a'\n", 30s)) << cluster.OnEveryNode(kAllKv);
  ASSERT_EQ(cluster.StopNode(1), 0);
  cluster.Sql(1,
              "ALTER TABLE kv ADD COLUMN extra TEXT; INSERT INTO kv VALUES (2, 'b', 'y');"
              "UPDATE kv SET extra = 'x' WHERE k = 1;");
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << cluster.log(1);
  EXPECT_TRUE(cluster.WaitForEverywhere(kAllKv, "1,'a','x'\n2,'b','y'\n", 30s))
      << cluster.OnEveryNode(kAllKv);
}

TEST(LostWritesTest, AColumnCanBeDroppedWhileMarmotRuns) {
  testing::LocalCluster cluster(
      {.nodes = 2,
       .shards = 2,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, w TEXT);"});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'a', 'gone soon');");
  ASSERT_TRUE(cluster.WaitForEverywhere(kAllKv, "1,'a','gone soon'\n", 30s))
      << cluster.OnEveryNode(kAllKv);
  // Dropped on node 1, the column goes from node 2 too; writes right after it replicate.
  auto dropped =
      sqlite::testing::RunSqliteCli(cluster.db_path(1),
                                    "ALTER TABLE kv DROP COLUMN w; INSERT INTO kv VALUES (2, 'b');"
                                    "UPDATE kv SET v = 'a2' WHERE k = 1;");
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_TRUE(cluster.WaitForEverywhere(kAllKv, "1,'a2'\n2,'b'\n", 30s))
      << cluster.OnEveryNode(kAllKv);
}

TEST(LostWritesTest, WritesRightAfterATableIsMadeAgainUnderItsNameReplicate) {
  testing::LocalCluster cluster({.nodes = 2, .shards = 2, .schema = kKv});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one');");
  ASSERT_TRUE(cluster.WaitForEverywhere(kAllKv, "1,'one'\n", 30s)) << cluster.OnEveryNode(kAllKv);
  // SQLite's recommended way to change a table, in one transaction as SQLite's documentation
  // does it, on both nodes; a write in the same call. (Outside a transaction, a replicated row
  // applied between the copy and the DROP would go with the old table: DROP TABLE does not
  // replicate.)
  const std::string migrate =
      "BEGIN; CREATE TABLE kv_new (k INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT '');"
      "INSERT INTO kv_new SELECT k, v FROM kv; DROP TABLE kv; ALTER TABLE kv_new RENAME TO kv; "
      "COMMIT;";
  cluster.Sql(1, migrate + "INSERT INTO kv VALUES (100, 'hundred');");
  cluster.Sql(2, migrate);
  cluster.Sql(1, "INSERT INTO kv VALUES (101, 'hundred and one');");
  EXPECT_TRUE(
      cluster.WaitForEverywhere(kAllKv, "1,'one'\n100,'hundred'\n101,'hundred and one'\n", 30s))
      << cluster.OnEveryNode(kAllKv);
  // A plain DROP and CREATE on node 1, then on node 2 with a write in the same call. (Node 1
  // goes first: a DROP TABLE there after the row arrived would delete it, as dropping a table
  // does; schema changes do not replicate yet.)
  // Each in one transaction: a table that is gone and back as it was is no schema change
  // (outside one, node 1's CREATE could replicate between node 2's DROP and CREATE).
  cluster.Sql(1, "BEGIN; DROP TABLE kv; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); COMMIT;");
  cluster.Sql(2,
              "BEGIN; DROP TABLE kv; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); COMMIT;"
              "INSERT INTO kv VALUES (7, 'seven');");
  EXPECT_TRUE(cluster.WaitForEverywhere("SELECT v FROM kv WHERE k = 7;", "seven\n", 30s))
      << cluster.OnEveryNode(kAllKv);
}

TEST(LostWritesTest, ATableCreatedWhileMarmotIsStoppedReplicatesItsRows) {
  testing::LocalCluster cluster({.nodes = 2, .shards = 2, .schema = kKv});
  cluster.Start();
  ASSERT_EQ(cluster.StopNode(1), 0);
  cluster.Sql(
      1,
      "CREATE TABLE later (k TEXT PRIMARY KEY, v); INSERT INTO later VALUES ('a', 1), ('b', 2);");
  cluster.Sql(2, "CREATE TABLE later (k TEXT PRIMARY KEY, v);");
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << cluster.log(1);
  const std::string query = "SELECT * FROM later ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForEverywhere(query, "a|1\nb|2\n", 30s)) << cluster.OnEveryNode(query);
}

TEST(LostWritesTest, ANullKeyIsRefusedAndRowsWithKeysReplicateOnce) {
  testing::LocalCluster cluster(
      {.nodes = 2, .shards = 2, .schema = "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT);"});
  cluster.Start();
  auto refused =
      sqlite::testing::RunSqliteCli(cluster.db_path(1), "INSERT INTO t VALUES (NULL, 'a');");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("NULL in it"));
  cluster.Sql(1, "INSERT INTO t VALUES ('x', 'a'); UPDATE t SET v = 'a2';");
  cluster.Sql(2,
              "BEGIN; INSERT INTO t VALUES ('y', 'b'); DELETE FROM t WHERE k = 'y';"
              "INSERT INTO t VALUES ('z', 'c'); UPDATE t SET v = 'c2' WHERE k = 'z'; COMMIT;");
  const std::string query = "SELECT k, v FROM t ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForEverywhere(query, "x|a2\nz|c2\n", 30s)) << cluster.OnEveryNode(query);
}

TEST(LostWritesTest, ATableWhoseNameIsNotUtf8ReplicatesAndStatusStaysWhole) {
  // SQLite takes any bytes as a name; a batch holding such a table used to be unparseable, and
  // the ordinary table's row in the same transaction never arrived.
  const std::string bad = "\"bad\xff\"";
  setenv("AUTH_KEY", "Basic dGVzdDp0ZXN0", 1);  // The nodes' pane key (marmot reads it at start).
  testing::LocalCluster cluster(
      {.nodes = 2,
       .shards = 2,
       .schema = std::string(kKv) + "CREATE TABLE " + bad + " (k INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  cluster.Sql(1, "BEGIN; INSERT INTO " + bad +
                     " VALUES (1, 'odd'); INSERT INTO kv VALUES (1, 'plain'); COMMIT;");
  const std::string query = "SELECT v FROM " + bad + "; SELECT v FROM kv;";
  EXPECT_TRUE(cluster.WaitForEverywhere(query, "odd\nplain\n", 30s)) << cluster.OnEveryNode(query);
  EXPECT_EQ(cluster.Sql(2, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n");
  for (int id = 1; id <= 2; ++id) {
    httplib::Client rest("127.0.0.1", cluster.pane_port(id));
    rest.set_read_timeout(10, 0);
    auto status = rest.Get("/v1/status", {{"Authorization", "Basic dGVzdDp0ZXN0"}});
    ASSERT_TRUE(status) << "node " << id;
    EXPECT_EQ(status->status, 200) << status->body;
    EXPECT_THAT(status->body, HasSubstr("\"table\":\"bad\xEF\xBF\xBD\""));
    EXPECT_THAT(status->body, HasSubstr("\"table\":\"kv\""));
  }
}

}  // namespace
}  // namespace marmot
