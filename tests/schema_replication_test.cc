// Schema changes made on any node by the sqlite3 shell reach every node (replicator/
// schema_changes.h): real marmot processes, the shell as the application and its migrations.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

// The pane key the nodes read from AUTH_KEY at start.
constexpr char kAuth[] = "Basic c2NoZW1hOnNjaGVtYQ==";

constexpr char kKv[] = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);";
// The user's objects, as every node's sqlite_master lists them.
constexpr char kSchema[] =
    "SELECT type, name, sql FROM sqlite_master WHERE substr(name, 1, 10) != '__marmot__' "
    "ORDER BY type, name;";
constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";

// Every node ends with no dead letter (changes that came before a schema change they needed
// waited there, retried since), and said nothing of conflicts or refusals.
void ExpectCleanEverywhere(const testing::LocalCluster& cluster) {
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 60s))
      << cluster.OnEveryNode("SELECT id, error FROM \"__marmot__dead_letters\" LIMIT 3;");
  for (int id = 1; id <= cluster.nodes(); ++id) {
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("schema change conflicts"))) << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("schema change refused"))) << "node " << id;
  }
}

TEST(SchemaReplicationTest, ATableAndIndexMadeOnOneNodeReachEveryNodeWithTheirRows) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = kKv});
  cluster.Start();
  // A migration and the rows written right after it, on node 2.
  cluster.Sql(2,
              "BEGIN; CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
              "price REAL); CREATE INDEX item_price ON item (price); COMMIT;"
              "INSERT INTO item VALUES (1, 'one', 1.5), (2, 'two', 2.5);"
              "CREATE VIEW cheap AS SELECT name FROM item WHERE price < 2;");
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  const std::string items = ".mode quote\nSELECT * FROM item ORDER BY id;";
  EXPECT_TRUE(cluster.WaitForSame(items, 30s)) << cluster.OnEveryNode(items);
  EXPECT_EQ(cluster.Sql(3, "SELECT name FROM cheap;"), "one\n");
  // The new table replicates from every node, like any other.
  cluster.Sql(3, "INSERT INTO item VALUES (3, 'three', 0.5);");
  cluster.Sql(1, "UPDATE item SET price = 9 WHERE id = 1;");
  EXPECT_TRUE(cluster.WaitForSame(items, 30s)) << cluster.OnEveryNode(items);
  EXPECT_EQ(cluster.Sql(2, items), "1,'one',9.0\n2,'two',2.5\n3,'three',0.5\n");
  EXPECT_TRUE(cluster.WaitForSame(kDeadLetters, 30s));
  EXPECT_EQ(cluster.Sql(1, kDeadLetters), "0\n");
  // An index dropped and a trigger made on node 1.
  cluster.Sql(1,
              "DROP INDEX item_price; CREATE TABLE audit (n INTEGER PRIMARY KEY, what TEXT);"
              "CREATE TRIGGER item_audit AFTER UPDATE ON item BEGIN "
              "INSERT INTO audit (what) VALUES ('item ' || new.id); END;");
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_THAT(cluster.Sql(3, kSchema), Not(HasSubstr("item_price")));
  EXPECT_THAT(cluster.Sql(3, kSchema), HasSubstr("item_audit"));
  // The trigger fires for the application on node 3; what it writes replicates once, as node
  // 3's write (marmot's own writes never fire it).
  cluster.Sql(3, "UPDATE item SET name = 'THREE' WHERE id = 3;");
  const std::string audit = "SELECT n, what FROM audit;";
  EXPECT_TRUE(cluster.WaitForSame(audit, 30s)) << cluster.OnEveryNode(audit);
  EXPECT_EQ(cluster.Sql(1, audit), "1|item 3\n");
}

TEST(SchemaReplicationTest, TheSameMigrationOnEveryNodeEndsWithOneSchemaAndNoError) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = kKv});
  cluster.Start();
  const std::string migration =
      "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT);"
      "CREATE INDEX item_name ON item (name);";
  std::thread runs[3];
  for (int id = 1; id <= 3; ++id) {
    runs[id - 1] = std::thread([&, id] {
      cluster.Sql(id,
                  migration + absl::StrCat("INSERT INTO item VALUES (", id, ", 'node ", id, "');"));
    });
  }
  for (std::thread& t : runs) t.join();
  const std::string items = "SELECT * FROM item ORDER BY id;";
  EXPECT_TRUE(cluster.WaitForSame(items, 30s)) << cluster.OnEveryNode(items);
  EXPECT_EQ(cluster.Sql(1, items), "1|node 1\n2|node 2\n3|node 3\n");
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_TRUE(cluster.WaitForSame(kDeadLetters, 30s));
  EXPECT_EQ(cluster.Sql(1, kDeadLetters), "0\n");
  for (int id = 1; id <= 3; ++id) {
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("schema change conflicts"))) << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("schema change refused"))) << "node " << id;
  }
}

TEST(SchemaReplicationTest, AColumnAddedOnOneNodeWhileTheOthersInsertReachesEveryRow) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = kKv});
  cluster.Start();
  // Nodes 1 and 3 insert, transaction after transaction; once their own database has the new
  // column, they fill it too.
  std::atomic<bool> stop{false};
  std::atomic<int> written[4] = {0, 0, 0, 0};
  std::atomic<int> written_with_column[4] = {0, 0, 0, 0};
  auto writer = [&](int id) {
    for (int i = 0; !stop.load(); ++i) {
      const int k = id * 100000 + i;
      const bool has_column =
          cluster.Sql(id, "SELECT count(*) FROM pragma_table_info('kv') WHERE name = 'note';") ==
          "1\n";
      cluster.Sql(id, has_column
                          ? absl::StrCat("INSERT INTO kv (k, v, note) VALUES (", k, ", 'n", id,
                                         "', 'note ", k, "');")
                          : absl::StrCat("INSERT INTO kv (k, v) VALUES (", k, ", 'n", id, "');"));
      ++written[id];
      if (has_column) ++written_with_column[id];
    }
  };
  std::thread one(writer, 1), three(writer, 3);
  ASSERT_TRUE(testing::WaitFor([&] { return written[1] >= 20 && written[3] >= 20; }, 30s));
  // The migration on node 2, with a row of its own right after it.
  cluster.Sql(2,
              "ALTER TABLE kv ADD COLUMN note TEXT NOT NULL DEFAULT 'none';"
              "INSERT INTO kv VALUES (2, 'n2', 'written on 2');");
  ASSERT_TRUE(testing::WaitFor(
      [&] { return written_with_column[1] >= 20 && written_with_column[3] >= 20; }, 60s))
      << cluster.OnEveryNode("SELECT sql FROM sqlite_master WHERE name = 'kv';");
  stop = true;
  one.join();
  three.join();
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_THAT(cluster.Sql(3, "SELECT sql FROM sqlite_master WHERE name = 'kv';"),
              HasSubstr("note TEXT NOT NULL DEFAULT 'none'"));
  // Every row on every node, with what its writer gave the column.
  const std::string rows = ".mode quote\nSELECT * FROM kv ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.OnEveryNode("SELECT count(*) FROM kv;");
  const int total = written[1] + written[3] + 1;
  EXPECT_EQ(cluster.Sql(1, "SELECT count(*) FROM kv;"), absl::StrCat(total, "\n"));
  EXPECT_EQ(cluster.Sql(3, "SELECT note FROM kv WHERE k = 2;"), "written on 2\n");
  EXPECT_EQ(cluster.Sql(2, "SELECT count(*) FROM kv WHERE note LIKE 'note %';"),
            absl::StrCat(written_with_column[1] + written_with_column[3], "\n"));
  ExpectCleanEverywhere(cluster);
}

TEST(SchemaReplicationTest, AColumnRenamedThenDroppedWithRowsWrittenRightBeforeAndAfter) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, w TEXT);"});
  cluster.Start();
  cluster.Sql(1,
              "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 20) "
              "INSERT INTO kv SELECT k, 'start', 'w' FROM n;");
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*) FROM kv;", 30s));
  // Nodes 2 and 3 update the first rows and insert their own, writing the value column under
  // the name their database has at that moment (an application deployed with the migration).
  std::atomic<bool> stop{false};
  std::atomic<int> inserted{0};
  std::atomic<int> after_rename[4] = {0, 0, 0, 0};
  auto writer = [&](int id) {
    for (int i = 0; !stop.load(); ++i) {
      const bool renamed =
          cluster.Sql(id, "SELECT count(*) FROM pragma_table_info('kv') WHERE name = 'value';") ==
          "1\n";
      const std::string column = renamed ? "value" : "v";
      // The rename may reach this node between the look and the write: then the write fails,
      // as it would for the application, and is made again.
      auto written = sqlite::testing::RunSqliteCli(
          cluster.db_path(id),
          absl::StrCat("UPDATE kv SET ", column, " = 'n", id, "-", i, "' WHERE k = ", i % 20 + 1,
                       "; INSERT INTO kv (k, ", column, ") VALUES (", id * 100000 + i, ", 'n", id,
                       "');"));
      if (!written.ok()) continue;
      ++inserted;
      if (renamed) ++after_rename[id];
    }
  };
  std::thread two(writer, 2), three(writer, 3);
  ASSERT_TRUE(testing::WaitFor([&] { return inserted >= 20; }, 30s));
  cluster.Sql(1,
              "INSERT INTO kv VALUES (21, 'right before', 'w21');"
              "ALTER TABLE kv RENAME COLUMN v TO value;"
              "INSERT INTO kv (k, value, w) VALUES (22, 'right after', 'w22');");
  ASSERT_TRUE(testing::WaitFor([&] { return after_rename[2] >= 10 && after_rename[3] >= 10; }, 60s))
      << cluster.OnEveryNode("SELECT sql FROM sqlite_master WHERE name = 'kv';");
  cluster.Sql(1,
              "UPDATE kv SET w = 'gone soon' WHERE k = 22;"
              "ALTER TABLE kv DROP COLUMN w;"
              "INSERT INTO kv (k, value) VALUES (23, 'after the drop');");
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return cluster.Sql(2, "SELECT count(*) FROM pragma_table_info('kv');") == "2\n" &&
               cluster.Sql(3, "SELECT count(*) FROM pragma_table_info('kv');") == "2\n";
      },
      60s))
      << cluster.OnEveryNode("SELECT sql FROM sqlite_master WHERE name = 'kv';");
  std::this_thread::sleep_for(500ms);  // The writers go on with the table as it is now.
  stop = true;
  two.join();
  three.join();
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_EQ(cluster.Sql(3, "SELECT sql FROM sqlite_master WHERE name = 'kv';"),
            "CREATE TABLE kv (k INTEGER PRIMARY KEY, value TEXT)\n");
  const std::string rows = ".mode quote\nSELECT * FROM kv ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.OnEveryNode("SELECT count(*) FROM kv;");
  EXPECT_EQ(cluster.Sql(2, "SELECT count(*) FROM kv;"), absl::StrCat(23 + inserted, "\n"));
  EXPECT_EQ(cluster.Sql(3, "SELECT k, value FROM kv WHERE k > 20 AND k < 100 ORDER BY k;"),
            "21|right before\n22|right after\n23|after the drop\n");
  // No row lost its value to the rename: every row has one.
  EXPECT_EQ(cluster.Sql(2, "SELECT count(*) FROM kv WHERE value IS NULL;"), "0\n");
  ExpectCleanEverywhere(cluster);
}

TEST(SchemaReplicationTest, ATableMadeAgainOnOneNodeIsMadeAgainEverywhereWithItsRows) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); CREATE INDEX kv_v ON kv (v);"});
  cluster.Start();
  cluster.Sql(2,
              "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 50) "
              "INSERT INTO kv SELECT k, CASE WHEN k % 5 THEN 'v' || k ELSE '' END FROM n;");
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*) FROM kv;", 30s));
  // SQLite's way (and Django's, Alembic's) to change what ALTER TABLE cannot: v becomes NOT
  // NULL with a default, and a column comes; a write right after, on node 1.
  cluster.Sql(1,
              "BEGIN; CREATE TABLE new__kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT '',"
              " extra INTEGER); INSERT INTO new__kv (k, v) SELECT k, v FROM kv;"
              "DROP TABLE kv; ALTER TABLE new__kv RENAME TO kv; CREATE INDEX kv_v ON kv (v);"
              "COMMIT; INSERT INTO kv VALUES (1000, 'after', 7);");
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_THAT(cluster.Sql(3, "SELECT sql FROM sqlite_master WHERE name = 'kv';"),
              HasSubstr("v TEXT NOT NULL DEFAULT ''"));
  const std::string rows = ".mode quote\nSELECT * FROM kv ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*), count(*) FILTER (WHERE v = '') FROM kv;"), "51|10\n");
  // The new column replicates from any node.
  cluster.Sql(3, "UPDATE kv SET extra = 3 WHERE k = 1;");
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(2, "SELECT extra FROM kv WHERE k = 1;"), "3\n");
  ExpectCleanEverywhere(cluster);
  for (int id = 1; id <= 3; ++id) {
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("do not replicate yet"))) << "node " << id;
  }
}

TEST(SchemaReplicationTest, ATableDroppedOnOneNodeGoesEverywhereAndMadeAgainStartsEmpty) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
                 "CREATE TABLE old (id INTEGER PRIMARY KEY, v); CREATE INDEX old_v ON old (v);"});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO old VALUES (1, 'one'), (2, 'two');");
  cluster.Sql(3, "INSERT INTO old VALUES (3, 'three'); UPDATE old SET v = 'uno' WHERE id = 1;");
  // Every write everywhere (the same count was not enough: every node may count 2 while node
  // 1's row 2 is on its way to node 2, where it then came after the drop, a dead letter 3 runs in
  // 40 under load).
  const std::string before = ".mode quote\nSELECT * FROM old ORDER BY id;";
  ASSERT_TRUE(cluster.WaitForSame(before, 30s)) << cluster.OnEveryNode(before);
  // Dropped on node 2, with a write right before.
  cluster.Sql(2, "UPDATE old SET v = 'dos' WHERE id = 2; DROP TABLE old;");
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_THAT(cluster.Sql(3, kSchema), Not(HasSubstr("old")));
  // Made again under its name with other columns on node 3: a table of its own, with only its
  // rows, written from any node.
  cluster.Sql(3, "CREATE TABLE old (id TEXT PRIMARY KEY, w); INSERT INTO old VALUES ('a', 1);");
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  cluster.Sql(1, "INSERT INTO old VALUES ('b', 2); INSERT INTO kv VALUES (1, 'after');");
  const std::string rows = ".mode quote\nSELECT * FROM old ORDER BY id; SELECT * FROM kv;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(2, rows), "'a',1\n'b',2\n1,'after'\n");
  ExpectCleanEverywhere(cluster);
  for (int id = 1; id <= 3; ++id) {
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("do not replicate yet"))) << "node " << id;
    EXPECT_EQ(cluster.Sql(id,
                          "SELECT count(*) FROM \"__marmot__versions\" WHERE tbl = 'old' AND "
                          "key GLOB '[0-9]*';"),
              "0\n")
        << "node " << id << ": versions of the dropped table's rows stayed";
  }
}

TEST(SchemaReplicationTest, ANodeKilledDuringAMigrationCatchesUp) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = kKv});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'before');");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM kv;", 30s));
  // Node 3 dies while node 1 migrates and writes the new columns and a new table.
  std::thread migration([&] {
    cluster.Sql(1,
                "ALTER TABLE kv ADD COLUMN a INTEGER; ALTER TABLE kv ADD COLUMN b TEXT;"
                "INSERT INTO kv VALUES (2, 'after', 7, 'seven');"
                "CREATE TABLE tag (id INTEGER PRIMARY KEY, kv INTEGER REFERENCES kv (k));"
                "CREATE INDEX kv_a ON kv (a);"
                "INSERT INTO tag VALUES (1, 2);"
                "UPDATE kv SET b = 'one' WHERE k = 1;");
  });
  cluster.KillNode(3);
  migration.join();
  // Node 2 has it all while node 3 is down.
  const std::string rows = ".mode quote\nSELECT * FROM kv ORDER BY k;";
  const std::string expected = "1,'before',NULL,'one'\n2,'after',7,'seven'\n";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, rows) == expected; }, 30s))
      << cluster.Sql(2, rows);
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s)) << cluster.log(3);
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(3, rows), expected);
  EXPECT_EQ(cluster.Sql(3, "SELECT * FROM tag;"), "1|2\n");
  // Node 3 writes the new columns, as any node.
  cluster.Sql(3, "UPDATE kv SET a = 3 WHERE k = 1;");
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(1, "SELECT a FROM kv WHERE k = 1;"), "3\n");
  EXPECT_TRUE(testing::WaitFor([&] { return cluster.Sql(3, kDeadLetters) == "0\n"; }, 30s));
}

TEST(SchemaReplicationTest, AMigrationMadeWhileMarmotIsStoppedReplicatesAtItsStart) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, w TEXT);"});
  cluster.Start();
  cluster.Sql(2, "INSERT INTO kv VALUES (1, 'one', 'w1');");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM kv;", 30s));
  // Stop, migrate (a column renamed, one added), write, start: one look sees all of it.
  ASSERT_EQ(cluster.StopNode(1), 0);
  cluster.Sql(1,
              "ALTER TABLE kv RENAME COLUMN v TO value; ALTER TABLE kv ADD COLUMN note TEXT;"
              "INSERT INTO kv VALUES (2, 'two', 'w2', 'noted');"
              "UPDATE kv SET note = 'old row' WHERE k = 1;");
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << cluster.log(1);
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  const std::string rows = ".mode quote\nSELECT * FROM kv ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_EQ(cluster.Sql(3, "SELECT k, value, w, note FROM kv ORDER BY k;"),
            "1|one|w1|old row\n2|two|w2|noted\n");
  ExpectCleanEverywhere(cluster);
}

TEST(SchemaReplicationTest, ATableRenamedOnOneNodeWhileTheOthersInsertKeepsEveryRowAndItsShards) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); CREATE INDEX kv_v ON kv (v);"});
  cluster.Start();
  // Nodes 1 and 3 insert, transaction after transaction, into kv until their own database has
  // the table renamed (an insert then fails: the same row goes again under the new name).
  std::atomic<bool> stop{false};
  std::atomic<int> written[4] = {0, 0, 0, 0};
  std::atomic<int> written_renamed[4] = {0, 0, 0, 0};
  auto writer = [&](int id) {
    bool renamed = false;
    for (int i = 0; !stop.load(); ++i) {
      const int k = id * 100000 + i;
      for (;;) {
        absl::StatusOr<std::string> out = sqlite::testing::RunSqliteCli(
            cluster.db_path(id), absl::StrCat("INSERT INTO ", renamed ? "kv2" : "kv", " VALUES (",
                                              k, ", 'n", id, "');"));
        if (out.ok()) break;
        if (renamed || !absl::StrContains(out.status().message(), "no such table: kv")) {
          ADD_FAILURE() << "node " << id << ": " << out.status();
          return;
        }
        renamed = true;
      }
      ++written[id];
      if (renamed) ++written_renamed[id];
    }
  };
  std::thread one(writer, 1), three(writer, 3);
  ASSERT_TRUE(testing::WaitFor([&] { return written[1] >= 20 && written[3] >= 20; }, 30s));
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return cluster.Sql(2, "SELECT count(*) FROM kv WHERE k IN (100000, 300000);") == "2\n";
      },
      30s));
  // The rename on node 2, with rows written and changed right before and right after it.
  cluster.Sql(2,
              "INSERT INTO kv VALUES (2, 'before'); UPDATE kv SET v = 'changed before' WHERE k = "
              "100000; ALTER TABLE kv RENAME TO kv2; INSERT INTO kv2 VALUES (3, 'after');"
              "UPDATE kv2 SET v = 'changed after' WHERE k = 300000;");
  EXPECT_TRUE(
      testing::WaitFor([&] { return written_renamed[1] >= 20 && written_renamed[3] >= 20; }, 90s))
      << cluster.OnEveryNode(kSchema);
  stop = true;
  one.join();
  three.join();
  // Every node has the table under its new name, its index with it, and no table kv.
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.OnEveryNode(kSchema);
  EXPECT_EQ(cluster.Sql(1,
                        "SELECT type, name, tbl_name FROM sqlite_master WHERE substr(name, 1, 10) "
                        "!= '__marmot__' AND substr(name, 1, 7) != 'sqlite_' ORDER BY name;"),
            "table|kv2|kv2\nindex|kv_v|kv2\n");
  // Every row, wherever and under whichever name it was written.
  const std::string rows = "SELECT * FROM kv2 ORDER BY k;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.OnEveryNode("SELECT count(*) FROM kv2;");
  EXPECT_EQ(cluster.Sql(1, "SELECT count(*) FROM kv2;"),
            absl::StrCat(written[1] + written[3] + 2, "\n"));
  EXPECT_EQ(cluster.Sql(3, "SELECT v FROM kv2 WHERE k IN (2, 3, 100000, 300000) ORDER BY k;"),
            "before\nafter\nchanged before\nchanged after\n");
  ExpectCleanEverywhere(cluster);
  // It went as a rename, and on every node the table took its capture along (no copy of its
  // rows).
  EXPECT_THAT(cluster.log(2), HasSubstr("replicating 1 schema change(s): table kv renamed to kv2"));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_THAT(cluster.log(id), HasSubstr("capture of \"kv\" moved to \"kv2\"")) << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("existing row(s) copied"))) << id;
  }
  // Its rows stay in the shards they were in: routed by the name the table was made with.
  EXPECT_TRUE(cluster.WaitForEverywhere(
      "SELECT route FROM \"__marmot__table_routes\" WHERE name = 'kv2';", "kv\n", 30s));

  // A node that joins from an empty file after the rename gets the table and its rows from the
  // shards' snapshots, and routes them as the others do: Verify finds no difference.
  for (int id = 1; id <= 3; ++id) {
    httplib::Result snap =
        testing::PaneCall(cluster, id, kAuth, "POST", "/v1/snapshots", "{\"all\": true}");
    ASSERT_TRUE(snap);
    ASSERT_EQ(snap->status, 200) << snap->body;
  }
  const int four = cluster.StartJoiningNode(/*with_schema=*/false);
  httplib::Result added = testing::PaneCall(
      cluster, 1, kAuth, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", cluster.address(four), "\"}"));
  ASSERT_TRUE(added);
  ASSERT_EQ(added->status, 200) << added->body;
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.log(four);
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 30s)) << cluster.Sql(four, kSchema);
  EXPECT_EQ(cluster.Sql(four, kDeadLetters), "0\n");
  // Once every node, the new one too (still catching up until then), measured every shard.
  const admin::v1::VerifyResponse verified = testing::PaneVerify(cluster, 2, kAuth, 4, 90s);
  ASSERT_TRUE(testing::EveryNodeReported(verified, cluster, 4)) << verified.DebugString();
  EXPECT_EQ(verified.divergent_shards(), 0u) << verified.DebugString();
  // The new node writes the table as the others do.
  cluster.Sql(four, "INSERT INTO kv2 VALUES (4, 'from the new node');");
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s));
  ExpectCleanEverywhere(cluster);
}

TEST(SchemaReplicationTest, ColumnChangesThatTextCannotTellApartAreCounted) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster({.nodes = 2, .shards = 2, .schema = kKv});
  cluster.Start();
  // v renamed to x and a added, or v dropped and x and a added? Seen at once, nobody can tell.
  cluster.Sql(1,
              "BEGIN; ALTER TABLE kv RENAME COLUMN v TO x; ALTER TABLE kv ADD COLUMN a TEXT;"
              "COMMIT;");
  ASSERT_TRUE(testing::WaitFor(
      [&] { return testing::PaneStatus(cluster, 1, kAuth).schema_changes_not_replicated() == 1; },
      30s))
      << cluster.log(1);
  EXPECT_THAT(cluster.log(1), HasSubstr("do not replicate yet"));
  EXPECT_EQ(testing::PaneStatus(cluster, 2, kAuth).schema_changes_not_replicated(), 0);
}

TEST(SchemaReplicationTest, TwoDefinitionsOfOneTableAreReportedAndNothingStops) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster cluster({.nodes = 3, .shards = 2, .schema = kKv});
  cluster.Start();
  // Node 3 makes its own `item` while it is stopped; node 1 makes another meanwhile.
  ASSERT_EQ(cluster.StopNode(3), 0);
  cluster.Sql(3, "CREATE TABLE item (id INTEGER PRIMARY KEY, label TEXT);");
  cluster.Sql(1, "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT);");
  const std::string item = "SELECT sql FROM sqlite_master WHERE name = 'item';";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, item) != ""; }, 30s));
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s)) << cluster.log(3);
  // Node 3 keeps its table and says why; the others keep node 1's and say so of node 3's.
  auto reported = [&](int id) {
    return cluster.log(id).find("schema change conflicts") != std::string::npos;
  };
  for (int i = 0; i < 300 && !(reported(1) && reported(2) && reported(3)); ++i) {
    std::this_thread::sleep_for(100ms);
  }
  for (int id = 1; id <= 3; ++id) EXPECT_TRUE(reported(id)) << "node " << id << cluster.log(id);
  // GetStatus counts them (REST here).
  for (int id = 1; id <= 3; ++id) {
    EXPECT_THAT(testing::PaneCall(cluster, id, kAuth, "GET", "/v1/status")->body,
                HasSubstr("\"schemaConflicts\":\"1\""))
        << "node " << id;
  }
  EXPECT_THAT(cluster.Sql(3, "SELECT sql FROM sqlite_master WHERE name = 'item';"),
              HasSubstr("label"));
  EXPECT_THAT(cluster.Sql(2, "SELECT sql FROM sqlite_master WHERE name = 'item';"),
              HasSubstr("name"));
  // Rows of other tables keep replicating everywhere.
  cluster.Sql(3, "INSERT INTO kv VALUES (1, 'still');");
  EXPECT_TRUE(cluster.WaitForSame("SELECT * FROM kv;", 30s));
  EXPECT_EQ(cluster.Sql(1, "SELECT * FROM kv;"), "1|still\n");
}

}  // namespace
}  // namespace marmot
