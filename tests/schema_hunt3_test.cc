// A third hunt of replicated schema changes (issue 21; README "How it works" -> "Schema
// changes"): migrations run on one node while the application writes on the others, migrations
// interrupted, hostile and unusual objects. Real marmot processes, the sqlite3 shell as the
// application and its migrations. Tests named DISABLED_ show a problem found and not fixed yet:
// each says what it shows, expected against seen; they pass once it is fixed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUserSchema[] =
    "SELECT type, name, sql FROM sqlite_master WHERE substr(name, 1, 10) != '__marmot__' "
    "ORDER BY type, name;";
constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";
constexpr char kConflicts[] = "SELECT count(*) FROM \"__marmot__conflicts\";";

std::string Tail(const std::string& log) {
  return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
}

// A table made again (SQLite's create-copy-drop-rename, which Django's and Alembic's SQLite
// migrations use) on one node keeps no conflict. Capture copies the table made again whole; each
// copied row names the version its row has here (sqlite/change_log.cc, the backfill), so it
// applies over that version on every node. (Found by this hunt: the copies named no version,
// and as each row's version was another node's write, every copy was kept as a conflict on every
// node: 20 here, one per row; a table of a million rows would have kept a million.)
TEST(SchemaHunt3Test, ATableMadeAgainKeepsNoConflict) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v INTEGER);"});
  cluster.Start();
  cluster.Sql(2,
              "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 20) "
              "INSERT INTO kv SELECT k, k FROM n;");
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s));
  ASSERT_EQ(cluster.Sql(3, "SELECT count(*) FROM kv;"), "20\n");
  cluster.Sql(3,
              "BEGIN; CREATE TABLE new__kv (k INTEGER PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0);"
              "INSERT INTO new__kv SELECT k, v FROM kv; DROP TABLE kv;"
              "ALTER TABLE new__kv RENAME TO kv; COMMIT;");
  EXPECT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  // Node 3's copy of every row has been applied everywhere once node 1 writes after it.
  cluster.Sql(3, "INSERT INTO kv VALUES (1000, 1000);");
  EXPECT_TRUE(cluster.WaitForEverywhere("SELECT count(*) FROM kv;", "21\n", 30s));
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 30s));
  EXPECT_TRUE(cluster.WaitForEverywhere(kConflicts, "0\n", 10s)) << cluster.OnEveryNode(
      "SELECT shard, tbl, key, origin, op, winner_origin FROM \"__marmot__conflicts\" "
      "ORDER BY shard, key LIMIT 5; SELECT count(*) FROM \"__marmot__conflicts\";");
}

// A write made on one node while another makes its table again stays. Rows written on node 3;
// node 1's application updates them (while node 1's marmot is stopped, to make the race
// certain: the same holds for any update of node 1 in flight while node 3's copy commits);
// meanwhile node 3 makes kv again (create-copy-drop-rename). Node 3's rows are as their
// versions left them, so none is copied (sqlite/change_log.h, captured_before), and node 1's
// update applies over its version on every node: 1..4 = 'new' everywhere. (Found by this hunt:
// node 3 copied every row as a write of its own, node 1's update then met that copy as its row's
// version and was kept as a conflict: 1..4 = 'old' on every node, node 1 included.)
TEST(SchemaHunt3Test, UpdatesMadeWhileAnotherNodeMadeTheTableAgainStay) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(3, "INSERT INTO kv VALUES (1, 'old'), (2, 'old'), (3, 'old'), (4, 'old');");
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  ASSERT_TRUE(cluster.WaitForEverywhere(rows, "1|old\n2|old\n3|old\n4|old\n", 30s));
  ASSERT_EQ(cluster.StopNode(1), 0);
  cluster.Sql(1, "UPDATE kv SET v = 'new' WHERE k IN (1, 2, 3, 4);");
  cluster.Sql(3,
              "BEGIN; CREATE TABLE new__kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT '');"
              "INSERT INTO new__kv SELECT k, v FROM kv; DROP TABLE kv;"
              "ALTER TABLE new__kv RENAME TO kv; COMMIT;");
  const std::string kv = "SELECT sql FROM sqlite_master WHERE name = 'kv';";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, kv) == cluster.Sql(3, kv); }, 30s));
  // Node 3's copy of its rows is on its way: a row written after it on node 3 follows it in
  // both shards (rows 5 and 6 route to different shards of 2, as 1 and 2 do; see below).
  cluster.Sql(3, "INSERT INTO kv VALUES (5, 'after'), (6, 'after'), (7, 'after'), (8, 'after');");
  ASSERT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(2, "SELECT count(*) FROM kv;") == "8\n"; }, 30s));
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << Tail(cluster.log(1));
  const std::string want = "1|new\n2|new\n3|new\n4|new\n5|after\n6|after\n7|after\n8|after\n";
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, want, 30s))
      << cluster.OnEveryNode(rows)
      << cluster.OnEveryNode(
             "SELECT shard, tbl, key, origin, op, winner_origin FROM \"__marmot__conflicts\" "
             "ORDER BY shard, key;");
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s));
}

// Rows 1..4 written on node 1, then node 3 runs `edits` and `migration` (kv made again by
// create-copy-drop-rename) in one sqlite3 run, in the order `edits_first` says, then writes rows
// 5..8: every node ends with rows 1 and 2 edited, 3 and 4 deleted, 5..8, no dead letter.
void ExpectEditsAroundTableMadeAgainEverywhere(bool edits_first) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');");
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  ASSERT_TRUE(cluster.WaitForEverywhere(rows, "1|one\n2|two\n3|three\n4|four\n", 30s));
  const std::string edits =
      "UPDATE kv SET v = 'edited' WHERE k IN (1, 2); DELETE FROM kv WHERE k IN (3, 4);";
  const std::string migration =
      "BEGIN; CREATE TABLE new__kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT '');"
      "INSERT INTO new__kv SELECT k, v FROM kv; DROP TABLE kv;"
      "ALTER TABLE new__kv RENAME TO kv; COMMIT;";
  cluster.Sql(3, edits_first ? edits + migration : migration + edits);
  EXPECT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  // Written after all that on node 3: once it is everywhere, so is what came before it.
  cluster.Sql(3, "INSERT INTO kv VALUES (5, 'five'), (6, 'six'), (7, 'seven'), (8, 'eight');");
  EXPECT_TRUE(
      cluster.WaitForEverywhere(rows, "1|edited\n2|edited\n5|five\n6|six\n7|seven\n8|eight\n", 30s))
      << cluster.OnEveryNode(rows)
      << cluster.OnEveryNode(
             "SELECT shard, tbl, key, origin, op, winner_origin FROM \"__marmot__conflicts\" "
             "ORDER BY shard, key;");
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s));
}

// The application edits and deletes rows right after its migration made kv again
// (create-copy-drop-rename), in the same sqlite3 run, on node 3; the rows were written on node
// 1. Until its schema change is proposed (3 s of a still schema) the new kv has no capture;
// then capture copies the rows that differ from what their versions left, over those versions,
// and deletes those whose versions left a row that is gone (sqlite/change_log.h,
// captured_before): every node ends with 1|edited, 2|edited, no 3 and 4. (Found by this hunt:
// the deletes were never captured, nodes 1 and 2 kept 3 and 4 for good, and the edits were
// kept as conflicts everywhere.)
TEST(SchemaHunt3Test, RowsEditedAndDeletedRightAfterATableWasMadeAgain) {
  ExpectEditsAroundTableMadeAgainEverywhere(/*edits_first=*/false);
}

// Works: the same, the edits made right before the migration (in the same sqlite3 run): they
// were captured before the table was made again, and reach every node.
TEST(SchemaHunt3Test, RowsEditedAndDeletedRightBeforeATableWasMadeAgain) {
  ExpectEditsAroundTableMadeAgainEverywhere(/*edits_first=*/true);
}

// Nodes 1 and 2 insert rows with every column while node 3's migration makes kv again without
// column extra (SQLite's create-copy-drop-rename, as Django's RemoveField does); once a writer's
// own database lacks the column it writes without it: every row everywhere, no dead letter, the
// column gone everywhere (it replicates as DROP_COLUMNS; node 3's SQL reads `CREATE TABLE "kv"
// (...)`, the others' `CREATE TABLE kv (...)`), no conflict. (Found by this hunt: ~40 conflicts
// on every node, node 3's copies of rows nodes 1 and 2 wrote, as ATableMadeAgainKeepsNoConflict
// says.)
TEST(SchemaHunt3Test, ATableMadeAgainWithoutAColumnWhileOtherNodesInsertWithIt) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, extra TEXT);"});
  cluster.Start();
  std::atomic<bool> stop{false};
  std::atomic<int> written[3] = {0, 0, 0};
  auto writer = [&](int id) {
    for (int i = 0; !stop.load(); ++i) {
      const int k = id * 100000 + i;
      const bool has_extra =
          cluster.Sql(id, "SELECT count(*) FROM pragma_table_info('kv') WHERE name = 'extra';") ==
          "1\n";
      absl::StatusOr<std::string> done = sqlite::testing::RunSqliteCli(
          cluster.db_path(id),
          has_extra ? absl::StrCat("INSERT INTO kv VALUES (", k, ", 'n", id, "', 'x');")
                    : absl::StrCat("INSERT INTO kv (k, v) VALUES (", k, ", 'n", id, "');"));
      if (done.ok()) ++written[id];
    }
  };
  std::thread one(writer, 1), two(writer, 2);
  // The writers end however the test does.
  struct Joined {
    std::atomic<bool>& stop;
    std::thread &one, &two;
    void Join() {
      stop = true;
      if (one.joinable()) one.join();
      if (two.joinable()) two.join();
    }
    ~Joined() { Join(); }
  } joined{stop, one, two};
  ASSERT_TRUE(testing::WaitFor([&] { return written[1] >= 20 && written[2] >= 20; }, 30s));
  cluster.Sql(3,
              "BEGIN; CREATE TABLE new__kv (k INTEGER PRIMARY KEY, v TEXT);"
              "INSERT INTO new__kv SELECT k, v FROM kv; DROP TABLE kv;"
              "ALTER TABLE new__kv RENAME TO kv; COMMIT;");
  const std::string columns = "SELECT group_concat(name) FROM pragma_table_info('kv');";
  ASSERT_TRUE(cluster.WaitForEverywhere(columns, "k,v\n", 60s)) << cluster.OnEveryNode(columns);
  const int after1 = written[1] + 20, after2 = written[2] + 20;
  ASSERT_TRUE(testing::WaitFor([&] { return written[1] >= after1 && written[2] >= after2; }, 60s));
  joined.Join();
  const std::string count = "SELECT count(*) FROM kv;";
  EXPECT_TRUE(cluster.WaitForEverywhere(count, absl::StrCat(written[1] + written[2], "\n"), 60s))
      << cluster.OnEveryNode(count);
  EXPECT_TRUE(cluster.WaitForSame("SELECT * FROM kv ORDER BY k;", 30s));
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 30s))
      << cluster.OnEveryNode("SELECT tbl, error FROM \"__marmot__dead_letters\" LIMIT 5;");
  EXPECT_TRUE(cluster.WaitForEverywhere(kConflicts, "0\n", 10s)) << cluster.OnEveryNode(
      "SELECT count(*), origin, op FROM \"__marmot__conflicts\" GROUP BY origin, op;");
}

// Found by this hunt: an FTS5 index kept by triggers (SQLite's documented external-content
// pattern) is empty on every node but the writer's, and an edit there then fails. The table,
// the virtual table and the triggers replicate as schema changes, but replicated rows apply with
// triggers off and the rows of virtual tables do not replicate (README "Limitations"), so nodes
// 2 and 3 never index the documents; node 2's own UPDATE then fires docs_au, whose FTS5
// 'delete' of a row the index never held is corruption to SQLite. Expected: every node finds
// both documents, and the edit on node 2 succeeds. Seen: node 1 finds "1,2", nodes 2 and 3
// nothing; the UPDATE on node 2 fails: "Runtime error near line 2: database disk image is
// malformed (11)" (every later edit or delete of a replicated document there too).
TEST(SchemaHunt3Test, DISABLED_AFullTextIndexKeptByTriggersFindsTheDocumentsOnEveryNode) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(1,
              "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);"
              "CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');"
              "CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN"
              "  INSERT INTO docs_fts (rowid, body) VALUES (new.id, new.body); END;"
              "CREATE TRIGGER docs_ad AFTER DELETE ON docs BEGIN"
              "  INSERT INTO docs_fts (docs_fts, rowid, body) VALUES ('delete', old.id, old.body);"
              " END;"
              "CREATE TRIGGER docs_au AFTER UPDATE ON docs BEGIN"
              "  INSERT INTO docs_fts (docs_fts, rowid, body) VALUES ('delete', old.id, old.body);"
              "  INSERT INTO docs_fts (rowid, body) VALUES (new.id, new.body); END;");
  EXPECT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  cluster.Sql(1, "INSERT INTO docs VALUES (1, 'hello marmot'), (2, 'hello world');");
  const std::string rows = "SELECT * FROM docs ORDER BY id;";
  ASSERT_TRUE(cluster.WaitForEverywhere(rows, "1|hello marmot\n2|hello world\n", 30s))
      << cluster.OnEveryNode(rows);
  // Each node's index finds both documents.
  const std::string search =
      "SELECT group_concat(rowid) FROM docs_fts WHERE docs_fts MATCH 'hello';";
  EXPECT_TRUE(cluster.WaitForEverywhere(search, "1,2\n", 10s)) << cluster.OnEveryNode(search);
  // The application edits a document on node 2.
  absl::StatusOr<std::string> edited = sqlite::testing::RunSqliteCli(
      cluster.db_path(2), "UPDATE docs SET body = 'goodbye marmot' WHERE id = 1;");
  ASSERT_TRUE(edited.ok()) << edited.status();
  ASSERT_TRUE(cluster.WaitForEverywhere(rows, "1|goodbye marmot\n2|hello world\n", 30s))
      << cluster.OnEveryNode(rows);
}

// A migration that drops one table and makes another within one look (3 s: Django's
// DeleteModel and CreateModel in one `migrate`, or any two migrations run together) replicates
// as a drop and a create, with the trigger made with them that writes the new table: every node
// ends with the schema of node 1, and an insert into kv on node 2 succeeds. Found by this hunt:
// neither replicated (schema_changes.cc took any new table for maybe renamed when any table
// went), yet the trigger did, and every insert into kv on the other nodes failed ("no such
// table: main.audit"). audit may stand on gone's very page (a table made takes a freed page
// first): it is told from a rename by its row of sqlite_master, new where a rename keeps the
// table's.
TEST(SchemaHunt3Test, ATableDroppedAndAnotherMadeInOneMigrationReachEveryNode) {
  testing::LocalCluster cluster({.nodes = 3,
                                 .shards = 2,
                                 .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
                                           "CREATE TABLE gone (id INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(1,
              "DROP TABLE gone; CREATE TABLE audit (id INTEGER PRIMARY KEY, k INTEGER);"
              "CREATE TRIGGER kv_audit AFTER INSERT ON kv BEGIN"
              " INSERT INTO audit (id, k) VALUES (new.k, new.k); END;");
  EXPECT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  // The application writes kv on node 2.
  absl::StatusOr<std::string> written =
      sqlite::testing::RunSqliteCli(cluster.db_path(2), "INSERT INTO kv VALUES (1, 'one');");
  EXPECT_TRUE(written.ok()) << written.status();
  for (int id = 1; id <= 3; ++id) {
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("do not replicate"))) << "node " << id;
  }
}

// A node back from snapshots has the schema of the others, what was dropped while it was down
// included. Node 3 is down while node 1 migrates (an index, a view, a table and a trigger made;
// a table, an index and a trigger dropped; a column added), and nodes 1 and 2 write on until
// every shard's log is compacted past what node 3 had (-snapshot-entries=20): node 3 catches up
// from snapshots. Found by this hunt: a snapshot carries its maker's baseline as CREATEs only,
// applied as "make the object so", so node 3 got kv.c, audit, kv_v_new, kv_keys and kv_audit
// but kept table gone (its 4 rows), index kv_v_old and trigger kv_stamp for good, logging
// nothing (a trigger kept this way kept firing on node 3's writes). Now the snapshot of shard 0
// also drops what its maker's baseline no longer has (schema_changes.h, DropsOfSnapshotSchema),
// logged. Table gone is made by a migration after the start: a table each node held when
// schema changes began to replicate on it may be its own alone, and is kept (see
// ATableEachNodeHeldAtItsStartIsNotDroppedByASnapshot in replicator/schema_changes_test.cc).
TEST(SchemaHunt3Test, ANodeBackFromSnapshotsAfterAMigrationHasTheSchemaOfTheOthers) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 2,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
                 "CREATE INDEX kv_v_old ON kv (v);"
                 "CREATE TRIGGER kv_stamp AFTER UPDATE ON kv BEGIN SELECT 1; END;",
       .extra_flags = {"-snapshot-entries=20"}});
  cluster.Start();
  cluster.Sql(1, "CREATE TABLE gone (id INTEGER PRIMARY KEY, v TEXT);");
  ASSERT_TRUE(cluster.WaitForEverywhere("SELECT count(*) FROM sqlite_master WHERE name = 'gone';",
                                        "1\n", 30s));
  cluster.Sql(1, "INSERT INTO gone VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM gone;", 30s));
  ASSERT_EQ(cluster.StopNode(3), 0);
  cluster.Sql(1,
              "CREATE INDEX kv_v_new ON kv (v, k); CREATE VIEW kv_keys AS SELECT k FROM kv;"
              "CREATE TABLE audit (id INTEGER PRIMARY KEY, k INTEGER);"
              "CREATE TRIGGER kv_audit AFTER INSERT ON kv BEGIN"
              " INSERT INTO audit (id, k) VALUES (new.k, new.k); END;"
              "DROP INDEX kv_v_old; DROP TRIGGER kv_stamp; ALTER TABLE kv ADD COLUMN c TEXT;");
  // The drop of a table in a look of its own (see the test above).
  EXPECT_TRUE(testing::WaitFor(
      [&] { return cluster.Sql(2, kUserSchema) == cluster.Sql(1, kUserSchema); }, 30s))
      << cluster.OnEveryNode(kUserSchema);
  cluster.Sql(1, "DROP TABLE gone;");
  EXPECT_TRUE(testing::WaitFor(
      [&] { return cluster.Sql(2, kUserSchema) == cluster.Sql(1, kUserSchema); }, 30s))
      << cluster.OnEveryNode(kUserSchema);
  for (int i = 1; i <= 60; ++i) {
    cluster.Sql(1 + i % 2, absl::StrCat("INSERT INTO kv VALUES (", i, ", 'v', 'c');"));
    const std::string count = "SELECT count(*) FROM kv;";
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          return cluster.Sql(1, count) == absl::StrCat(i, "\n") &&
                 cluster.Sql(2, count) == absl::StrCat(i, "\n");
        },
        30s));
  }
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s)) << Tail(cluster.log(3));
  ASSERT_TRUE(testing::WaitFor(
      [&] { return cluster.log(3).find("shard 0: installed a snapshot") != std::string::npos; },
      30s));
  const std::string rows = "SELECT * FROM kv ORDER BY k; SELECT * FROM audit ORDER BY id;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.OnEveryNode(rows);
  EXPECT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s))
      << cluster.OnEveryNode("SELECT tbl, error FROM \"__marmot__dead_letters\" LIMIT 5;");
  // Node 3 says what it dropped.
  EXPECT_THAT(cluster.log(3), HasSubstr("trigger kv_stamp, index kv_v_old, table gone"));
  if (HasFailure()) {
    for (int id = 1; id <= 3; ++id) std::cerr << "=== node " << id << "\n" << cluster.log(id);
  }
}

// Names marmot takes as its own (`__marmot__...`) in any case, as SQLite compares names: a table
// `__Marmot__notes`, an index `__MARMOT__kv_v` and a view `__marmot__view` made by the
// application are none of its schema changes, so none is proposed and no node refuses one.
// Found by this hunt (minor): ListUserObjects (schema_changes.cc) left out only the lower-case
// prefix while applying (sqlite/schema.cc, now IsReservedName for both) refuses any case: node
// 1 logged "replicating 2 schema change(s): table __Marmot__notes, index __MARMOT__kv_v", then
// each node "schema change refused: ... '__Marmot__notes' is not the name of a user object".
TEST(SchemaHunt3Test, MarmotsNamesInOtherCasesAreNotProposedToBeRefused) {
  testing::LocalCluster cluster(
      {.nodes = 2, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(1,
              "CREATE TABLE \"__Marmot__notes\" (id INTEGER PRIMARY KEY, v TEXT);"
              "INSERT INTO \"__Marmot__notes\" VALUES (1, 'a');"
              "CREATE INDEX \"__MARMOT__kv_v\" ON kv (v);"
              "CREATE VIEW \"__marmot__view\" AS SELECT * FROM kv;");
  // A row written after them on node 1 reaches node 2 once their look is over.
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one');");
  ASSERT_TRUE(cluster.WaitForEverywhere("SELECT * FROM kv;", "1|one\n", 30s));
  for (int id = 1; id <= 2; ++id) {
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("schema change refused"))) << "node " << id;
  }
}

// Reviewing 44a62f1 (the copy of a table made again names its rows' versions): a table dropped
// on node 3 and made again there, with other rows, before its DROP came back (here nodes 1 and
// 2 are down meanwhile, so the DROP waits for a quorum). The other nodes forget the old table's
// versions when they apply the DROP (schema_changes.cc ForgetDroppedTable); node 3 applies its
// own DROP while a table of that name exists again, and keeps them. Then node 2 inserts rows
// 2 and 3 into the new table (naming no version: it has none there). Expected: rows 1 (node
// 3's), 2, 3 and 9 on every node, no conflict. Seen (DISABLED, found 2026-12-07): nodes 1
// and 2 hold 1, 2, 3 and 9; node 3 holds only 1 and 9, and keeps node 2's inserts of 2 and 3
// as conflicts (origin 2, op I, winner_origin 1: the dropped table's versions of rows 2 and 3,
// still in node 3's __marmot__versions with row 4's, and in no other node's), for good.
TEST(SchemaHunt3Test, DISABLED_ATableDroppedAndMadeAgainBeforeItsDropCameBackTakesOtherNodesRows) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');");
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  ASSERT_TRUE(cluster.WaitForEverywhere(rows, "1|one\n2|two\n3|three\n4|four\n", 30s));
  ASSERT_EQ(cluster.StopNode(1), 0);
  ASSERT_EQ(cluster.StopNode(2), 0);
  cluster.Sql(3, "DROP TABLE kv;");
  std::this_thread::sleep_for(5s);  // Seen and proposed (the schema stood still for 3 s).
  cluster.Sql(
      3, "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'fresh');");
  std::this_thread::sleep_for(5s);
  cluster.StartNode(1);
  cluster.StartNode(2);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << Tail(cluster.log(1));
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s)) << Tail(cluster.log(2));
  EXPECT_TRUE(cluster.WaitForSame(kUserSchema, 30s)) << cluster.OnEveryNode(kUserSchema);
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, "1|fresh\n", 30s)) << cluster.OnEveryNode(rows);
  cluster.Sql(2, "INSERT INTO kv VALUES (2, 'two again'), (3, 'three again');");
  cluster.Sql(3, "INSERT INTO kv VALUES (9, 'last');");
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, "1|fresh\n2|two again\n3|three again\n9|last\n", 30s))
      << cluster.OnEveryNode(rows)
      << cluster.OnEveryNode(
             "SELECT shard, tbl, key, origin, op, winner_origin, winner_change_id FROM "
             "\"__marmot__conflicts\" ORDER BY shard, key;")
      << cluster.OnEveryNode(
             "SELECT tbl, key, origin, change_id FROM \"__marmot__versions\" ORDER BY key;");
  EXPECT_TRUE(cluster.WaitForEverywhere(kConflicts, "0\n", 10s));
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s));
}

// Node 3 drops kv and makes it again with the same definition and other rows, in one sqlite3
// run (one look of marmot: no schema change is seen, only a table whose capture is gone): kv
// holds node 3's rows only, on every node, as after a DROP and a CREATE. Capture sends the rows
// that differ from what their versions left and deletes the rows gone (the key is one integer:
// sqlite/change_log.h, captured_before). (Found reviewing 44a62f1: nodes 1 and 2 kept 2, 3 and
// 4 of the old table for good; a key of another kind still does, README "Limitations".)
TEST(SchemaHunt3Test, ATableDroppedAndMadeAgainAtOnceWithOtherRowsEndsTheSameEverywhere) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO kv VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');");
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  ASSERT_TRUE(cluster.WaitForEverywhere(rows, "1|one\n2|two\n3|three\n4|four\n", 30s));
  cluster.Sql(3,
              "DROP TABLE kv; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
              "INSERT INTO kv VALUES (1, 'fresh'), (5, 'new');");
  std::this_thread::sleep_for(5s);
  cluster.Sql(3, "INSERT INTO kv VALUES (9, 'last');");
  EXPECT_TRUE(cluster.WaitForEverywhere(rows, "1|fresh\n5|new\n9|last\n", 30s))
      << cluster.OnEveryNode(rows)
      << cluster.OnEveryNode(
             "SELECT shard, tbl, key, origin, op, winner_origin FROM \"__marmot__conflicts\" "
             "ORDER BY shard, key;");
  EXPECT_TRUE(cluster.WaitForEverywhere(kDeadLetters, "0\n", 10s));
}

}  // namespace
}  // namespace marmot
