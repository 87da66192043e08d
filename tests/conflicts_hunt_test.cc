// First-writer-wins conflicts under attack: concurrent writes of the same rows from every node,
// of tables keyed in every way SQLite keys them, with crashes, snapshots, schema changes and a
// node joining. Real marmot processes and the sqlite3 shell as the applications. Once quiet,
// every node holds the same rows, the same row versions and the same conflicts, no version is
// held any more, and nothing went to the dead letters.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;

// Every kind of key: INTEGER PRIMARY KEY, composite, TEXT (quotes in it), REAL, BLOB, rowid.
constexpr char kSchema[] =
    "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT, edits INTEGER);"
    "CREATE TABLE ck (a TEXT NOT NULL, b INTEGER NOT NULL, body TEXT, edits INTEGER, "
    "PRIMARY KEY (a, b));"
    "CREATE TABLE tk (k TEXT PRIMARY KEY NOT NULL, body TEXT, edits INTEGER);"
    "CREATE TABLE rk (k REAL PRIMARY KEY NOT NULL, body TEXT, edits INTEGER);"
    "CREATE TABLE bk (k BLOB PRIMARY KEY NOT NULL, body TEXT, edits INTEGER);"
    "CREATE TABLE nk (body TEXT, edits INTEGER);";
constexpr char kStartRows[] =
    "INSERT INTO doc VALUES (1, 'd1', 0), (2, 'd2', 0);"
    "INSERT INTO ck VALUES ('it''s', 1, 'c1', 0), ('x\"y', 2, 'c2', 0);"
    "INSERT INTO tk VALUES ('it''s', 't1', 0), ('a\"b,c', 't2', 0);"
    "INSERT INTO rk VALUES (1.5, 'r1', 0), (0.1, 'r2', 0);"
    "INSERT INTO bk VALUES (x'00ff27', 'b1', 0), (x'', 'b2', 0);"
    "INSERT INTO nk (rowid, body, edits) VALUES (10, 'n1', 0), (11, 'n2', 0);";
// (table, WHERE clause of one row) for every row the writers edit.
const std::vector<std::pair<std::string, std::string>>& EditedRows() {
  static const auto* rows = new std::vector<std::pair<std::string, std::string>>{
      {"doc", "id = 1"},       {"ck", "a = 'it''s' AND b = 1"},
      {"tk", "k = 'it''s'"},   {"rk", "k = 1.5"},
      {"bk", "k = x'00ff27'"}, {"nk", "rowid = 10"},
      {"doc", "id = 2"},       {"ck", "a = 'x\"y' AND b = 2"},
      {"tk", "k = 'a\"b,c'"},  {"rk", "k = 0.1"},
      {"bk", "k = x''"},       {"nk", "rowid = 11"},
  };
  return *rows;
}

constexpr char kRows[] =
    "SELECT 'doc', id, body, edits FROM doc ORDER BY id;"
    "SELECT 'ck', a, b, body, edits FROM ck ORDER BY a, b;"
    "SELECT 'tk', k, body, edits FROM tk ORDER BY k;"
    "SELECT 'rk', k, typeof(k), body, edits FROM rk ORDER BY k;"
    "SELECT 'bk', hex(k), body, edits FROM bk ORDER BY k;"
    "SELECT 'nk', rowid, body, edits FROM nk ORDER BY rowid;";
constexpr char kConflicts[] =
    "SELECT shard, raft_index, tbl, key, origin, change_id, op, winner_origin, "
    "winner_change_id, hex(change) FROM \"__marmot__conflicts\" ORDER BY origin, tbl, change_id;";
constexpr char kVersions[] =
    "SELECT tbl, key, shard, raft_index, origin, change_id FROM \"__marmot__versions\" "
    "ORDER BY tbl, key;";
constexpr char kHeld[] = "SELECT count(*) FROM \"__marmot__versions\" WHERE held IS NOT NULL;";
constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";

std::string Tail(const std::string& log) {
  return log.size() > 6000 ? log.substr(log.size() - 6000) : log;
}

// Once quiet: the same rows, versions and conflicts everywhere; nothing held, nothing dead.
void ExpectConverged(const testing::LocalCluster& c, const std::string& rows) {
  ASSERT_TRUE(c.WaitForSame(rows, 90s)) << "rows differ:\n"
                                        << c.Sql(1, rows) << "---\n"
                                        << c.Sql(2, rows) << "---\n"
                                        << c.Sql(3, rows);
  EXPECT_TRUE(c.WaitForSame(kConflicts, 60s)) << "conflicts differ:\n"
                                              << c.Sql(1, kConflicts) << "---\n"
                                              << c.Sql(2, kConflicts);
  EXPECT_TRUE(c.WaitForSame(kVersions, 60s)) << "versions differ:\n"
                                             << c.Sql(1, kVersions) << "---\n"
                                             << c.Sql(2, kVersions) << "---\n"
                                             << c.Sql(3, kVersions);
  for (int id = 1; id <= c.nodes(); ++id) {
    if (!c.IsRunning(id)) continue;
    EXPECT_TRUE(testing::WaitFor([&] { return c.Sql(id, kHeld) == "0\n"; }, 30s))
        << "node " << id << " still holds versions: "
        << c.Sql(id,
                 "SELECT tbl, key, origin, change_id, raft_index FROM \"__marmot__versions\" "
                 "WHERE held IS NOT NULL;")
        << c.Sql(id, kVersions) << c.Sql(id, "SELECT * FROM doc ORDER BY id;");
    EXPECT_EQ(c.Sql(id, kDeadLetters), "0\n") << "node " << id << Tail(c.log(id));
  }
  std::printf("converged: %d row versions, %d conflicts kept\n",
              std::stoi(c.Sql(1, "SELECT count(*) FROM \"__marmot__versions\";")),
              std::stoi(c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";")));
}

// Every one of the `written_per_row` edits of each row of EditedRows: either in its row's history
// (edits counts the applied ones, each made over the one before) or kept as a conflict.
void ExpectEveryEditPresentOrKept(const testing::LocalCluster& c, int written_per_row) {
  for (const auto& [table, where] : EditedRows()) {
    const std::string applied =
        c.Sql(1, absl::StrCat("SELECT edits FROM ", table, " WHERE ", where, ";"));
    ASSERT_FALSE(applied.empty()) << table << " " << where;
    const std::string kept =
        c.Sql(1, absl::StrCat("SELECT count(*) FROM \"__marmot__conflicts\" WHERE tbl = '", table,
                              "' AND key = (SELECT ",
                              table == "nk"    ? "quote(rowid)"
                              : table == "ck"  ? "quote(a) || ',' || quote(b)"
                              : table == "doc" ? "quote(id)"
                                               : "quote(k)",
                              " FROM ", table, " WHERE ", where, ");"));
    EXPECT_EQ(std::stoi(applied) + std::stoi(kept), written_per_row)
        << table << " " << where << ": applied " << applied << " kept " << kept;
  }
}

// Each of nodes 1..3 runs `edits` rounds; round i edits every row of EditedRows once.
void ConcurrentEdits(testing::LocalCluster& c, int edits,
                     const std::function<void(int node, int round)>& between = nullptr) {
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < edits; ++i) {
        if (!c.IsRunning(node)) continue;
        std::string sql;
        for (const auto& [table, where] : EditedRows()) {
          absl::StrAppend(&sql, "UPDATE ", table, " SET body = 'node ", node, " edit ", i,
                          "', edits = edits + 1 WHERE ", where, ";");
        }
        (void)sqlite::testing::RunSqliteCli(c.db_path(node), sql);
        if (between) between(node, i);
      }
    });
  }
  for (std::thread& w : writers) w.join();
}

TEST(ConflictsHuntTest, ConcurrentEditsOfEveryKindOfKeyConverge) {
  testing::LocalCluster c({.nodes = 3, .shards = 3, .schema = kSchema});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  constexpr int kEdits = 10;
  ConcurrentEdits(c, kEdits);
  ExpectConverged(c, kRows);
  ExpectEveryEditPresentOrKept(c, 3 * kEdits);
  // The key of a conflict is the key its row's version has, as text (a version's key of one
  // INTEGER is that integer, whose text is no other key's).
  EXPECT_EQ(c.Sql(1,
                  "SELECT count(*) FROM \"__marmot__conflicts\" AS f WHERE NOT EXISTS "
                  "(SELECT 1 FROM \"__marmot__versions\" AS v WHERE v.tbl = f.tbl AND "
                  "CAST(v.key AS TEXT) = f.key);"),
            "0\n");
}

TEST(ConflictsHuntTest, DeletesInsertsAndUpdatesOfTheSameRowsConverge) {
  testing::LocalCluster c({.nodes = 3, .shards = 2, .schema = kSchema});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < 12; ++i) {
        std::string sql;
        switch ((i + node) % 3) {
          case 0:
            sql =
                "DELETE FROM doc WHERE id = 1; DELETE FROM tk WHERE k = 'it''s';"
                "DELETE FROM ck WHERE b = 1; DELETE FROM rk WHERE k = 1.5;"
                "DELETE FROM bk WHERE k = x'00ff27'; DELETE FROM nk WHERE rowid = 10;";
            break;
          case 1:
            sql = absl::StrCat(
                "INSERT OR REPLACE INTO doc VALUES (1, 'ins ", node, "', 0);",
                "INSERT OR REPLACE INTO tk VALUES ('it''s', 'ins ", node, "', 0);",
                "INSERT OR REPLACE INTO ck VALUES ('it''s', 1, 'ins ", node, "', 0);",
                "INSERT OR REPLACE INTO rk VALUES (1.5, 'ins ", node, "', 0);",
                "INSERT OR REPLACE INTO bk VALUES (x'00ff27', 'ins ", node, "', 0);",
                "INSERT OR REPLACE INTO nk (rowid, body, edits) VALUES (10, 'ins ", node, "', 0);");
            break;
          default:
            sql = absl::StrCat("UPDATE doc SET body = 'upd ", node, "' WHERE id = 1;",
                               "UPDATE tk SET body = 'upd ", node, "' WHERE k = 'it''s';",
                               "UPDATE ck SET body = 'upd ", node, "' WHERE b = 1;",
                               "UPDATE rk SET body = 'upd ", node, "' WHERE k = 1.5;",
                               "UPDATE bk SET body = 'upd ", node, "' WHERE k = x'00ff27';",
                               "UPDATE nk SET body = 'upd ", node, "' WHERE rowid = 10;");
        }
        (void)sqlite::testing::RunSqliteCli(c.db_path(node), sql);
      }
    });
  }
  for (std::thread& w : writers) w.join();
  ExpectConverged(c, kRows);
}

TEST(ConflictsHuntTest, ANodeKilledMidwayConvergesAfterItsRestart) {
  testing::LocalCluster c({.nodes = 3, .shards = 2, .schema = kSchema});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  constexpr int kEdits = 12;
  std::atomic<bool> killed = false;
  ConcurrentEdits(c, kEdits, [&](int node, int round) {
    // Node 3 crashes after its own 4th round (its last writes maybe not shipped), the others
    // write on; it writes again (offline, captured) then comes back.
    if (node == 3 && round == 3 && !killed.exchange(true)) {
      c.KillNode(3);
    }
  });
  // Node 3 missed rounds 4..11: it writes them while down, then starts.
  for (int i = 4; i < kEdits; ++i) {
    std::string sql;
    for (const auto& [table, where] : EditedRows()) {
      absl::StrAppend(&sql, "UPDATE ", table, " SET body = 'node 3 offline ", i,
                      "', edits = edits + 1 WHERE ", where, ";");
    }
    c.Sql(3, sql);
  }
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  ExpectConverged(c, kRows);
  ExpectEveryEditPresentOrKept(c, 3 * kEdits);
}

TEST(ConflictsHuntTest, ANodeCatchingUpBySnapshotWithItsOwnPendingEditsConverges) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 2, .schema = kSchema, .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  // Node 3 edits every row while down (its changes wait in its logs, made over the versions it
  // had), while nodes 1 and 2 edit them entry after entry, far past the compacted logs.
  constexpr int kOffline = 3;
  for (int i = 0; i < kOffline; ++i) {
    std::string sql;
    for (const auto& [table, where] : EditedRows()) {
      absl::StrAppend(&sql, "UPDATE ", table, " SET body = 'node 3 offline ", i,
                      "', edits = edits + 1 WHERE ", where, ";");
    }
    c.Sql(3, sql);
  }
  constexpr int kOnline = 40;
  for (int i = 0; i < kOnline; ++i) {
    const int node = 1 + i % 2;
    std::string sql;
    for (const auto& [table, where] : EditedRows()) {
      absl::StrAppend(&sql, "UPDATE ", table, " SET body = 'node ", node, " edit ", i,
                      "', edits = edits + 1 WHERE ", where, ";");
    }
    c.Sql(node, sql);
    // Each edit after seeing the one before: a chain, no conflict between nodes 1 and 2.
    ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(1, kRows) == c.Sql(2, kRows); }, 30s));
  }
  EXPECT_EQ(c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";"), "0\n");
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  ExpectConverged(c, kRows);
  EXPECT_THAT(c.log(3), ::testing::HasSubstr("installed a snapshot"));
  ExpectEveryEditPresentOrKept(c, kOnline + kOffline);
  // Node 3's offline edits lost: each row has one change id of node 3 per edit kept.
  EXPECT_EQ(c.Sql(2, "SELECT count(*) FROM \"__marmot__conflicts\" WHERE origin = 3;"),
            absl::StrCat(kOffline * EditedRows().size(), "\n"));
}

TEST(ConflictsHuntTest, AColumnAddedWhileConflictsHappenConverges) {
  testing::LocalCluster c({.nodes = 3, .shards = 2, .schema = kSchema});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  constexpr int kEdits = 10;
  ConcurrentEdits(c, kEdits, [&](int node, int round) {
    if (node == 2 && round == 3) c.Sql(2, "ALTER TABLE doc ADD COLUMN extra TEXT;");
    if (node == 2 && round > 3) {
      (void)sqlite::testing::RunSqliteCli(
          c.db_path(2), absl::StrCat("UPDATE doc SET extra = 'x", round, "' WHERE id = 1;"));
    }
  });
  ExpectConverged(c, absl::StrCat(kRows, "SELECT id, extra FROM doc ORDER BY id;"));
}

// Node 1 moves a row from key to key while nodes 2 and 3 update every row and insert its next
// key: a rekey held at both its keys on a node with pending changes of one of them is written
// once, and holds neither key after.
TEST(ConflictsHuntTest, KeyChangingUpdatesConcurrentWithEditsConverge) {
  testing::LocalCluster c({.nodes = 3, .shards = 2, .schema = kSchema});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < 8; ++i) {
        std::string sql = node == 1 ? absl::StrCat("UPDATE doc SET id = ", 100 + i,
                                                   " WHERE id = ", i == 0 ? 1 : 99 + i, ";")
                                    : absl::StrCat("UPDATE doc SET body = 'node ", node, " ", i,
                                                   "';", "INSERT OR REPLACE INTO doc VALUES (",
                                                   100 + i, ", 'n", node, "', 0);");
        (void)sqlite::testing::RunSqliteCli(c.db_path(node), sql);
      }
    });
  }
  for (std::thread& w : writers) w.join();
  ExpectConverged(c, kRows);
}

constexpr char kAuth[] = "Basic b3BzOm9wcw==";

TEST(ConflictsHuntTest, ANodeJoiningAfterConflictsGetsThemAndConverges) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster c(
      {.nodes = 3, .shards = 2, .schema = kSchema, .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ConcurrentEdits(c, 8);
  ExpectConverged(c, kRows);
  const std::string conflicts = c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";");
  ASSERT_NE(conflicts, "0\n");
  const int four = c.StartJoiningNode();
  auto res = testing::PaneCall(
      c, 1, kAuth, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", c.address(four), "\"}"));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  ExpectConverged(c, kRows);
  EXPECT_EQ(c.Sql(four, "SELECT count(*) FROM \"__marmot__conflicts\";"), conflicts);
  // The new node's edits of rows it received are made after seeing their versions: none is a
  // conflict.
  std::string sql;
  for (const auto& [table, where] : EditedRows()) {
    absl::StrAppend(&sql, "UPDATE ", table, " SET body = 'node 4', edits = edits + 1 WHERE ", where,
                    ";");
  }
  c.Sql(four, sql);
  ExpectConverged(c, kRows);
  EXPECT_EQ(c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";"), conflicts);
  ExpectEveryEditPresentOrKept(c, 3 * 8 + 1);
}

TEST(ConflictsHuntTest, ANodeCleanedUpAndRestartedEditsWithoutConflicts) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 2, .schema = kSchema, .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ConcurrentEdits(c, 6);
  ExpectConverged(c, kRows);
  const std::string conflicts = c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";");
  ASSERT_EQ(c.StopNode(2), 0);
  {
    testing::Subprocess cleanup({testing::MarmotBinary(), "-cleanup", "-db-path=" + c.db_path(2)},
                                testing::NewTestDir("cleanup"));
    ASSERT_EQ(cleanup.Wait(30s), 0) << cleanup.Stderr();
  }
  // Its state gone, node 2 cannot tell its rows from the cluster's: refused until it takes the
  // cluster's, which it receives again with the same versions and conflicts.
  c.StartNode(2);
  ASSERT_EQ(c.WaitForExit(2, 30s), 1) << c.log(2);
  c.SetNodeFlags(2, {"-take-cluster-rows"});
  c.StartNode(2);
  ASSERT_TRUE(c.WaitUntilReady(2, 60s)) << c.log(2);
  EXPECT_EQ(c.Sql(2, "SELECT count(*) FROM \"__marmot__conflicts\";"), conflicts);
  // A chain: each node edits after seeing the edit before, node 2 at once once it is ready.
  for (int node : {2, 1, 2, 3}) {
    std::string sql;
    for (const auto& [table, where] : EditedRows()) {
      absl::StrAppend(&sql, "UPDATE ", table, " SET body = 'chain ", node,
                      "', edits = edits + 1 WHERE ", where, ";");
    }
    c.Sql(node, sql);
    ASSERT_TRUE(c.WaitForSame(kRows, 30s)) << c.log(2);
  }
  ExpectConverged(c, kRows);
  EXPECT_EQ(c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";"), conflicts)
      << c.Sql(1, kConflicts);
  ExpectEveryEditPresentOrKept(c, 3 * 6 + 4);
}

// Random updates, deletes, inserts and upserts of a few rows from every node, node 3 killed and
// restarted twice meanwhile, snapshots every 20 entries.
TEST(ConflictsHuntTest, RandomWritesWithCrashesAndSnapshotsConverge) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 2, .schema = kSchema, .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  std::atomic<bool> stop = false;
  std::atomic<int> written = 0;
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      unsigned seed = node * 7919;
      for (int i = 0; !stop; ++i) {
        const int id = 1 + rand_r(&seed) % 4;
        const std::string key = absl::StrCat("'k", id, "''", "'");
        std::string sql;
        switch (rand_r(&seed) % 5) {
          case 0:
            sql = absl::StrCat("DELETE FROM doc WHERE id = ", id,
                               "; DELETE FROM tk WHERE k = ", key, ";");
            break;
          case 1:
            sql = absl::StrCat("INSERT OR REPLACE INTO doc VALUES (", id, ", 'i", node, ".", i,
                               "', 0); INSERT OR REPLACE INTO tk VALUES (", key, ", 'i", node, ".",
                               i, "', 0);");
            break;
          case 2:
            sql = absl::StrCat("INSERT INTO doc VALUES (", id, ", 'u", node, ".", i,
                               "', 0) ON CONFLICT (id) DO UPDATE SET body = excluded.body, "
                               "edits = edits + 1; INSERT INTO tk VALUES (",
                               key, ", 'u", node, ".", i,
                               "', 0) ON CONFLICT (k) DO UPDATE SET body = excluded.body, "
                               "edits = edits + 1;");
            break;
          default:
            sql = absl::StrCat("UPDATE doc SET body = 'e", node, ".", i,
                               "', edits = edits + 1 WHERE id = ", id, "; UPDATE tk SET body = 'e",
                               node, ".", i, "', edits = edits + 1 WHERE k = ", key, ";");
        }
        (void)sqlite::testing::RunSqliteCli(c.db_path(node), sql);
        ++written;
      }
    });
  }
  // Node 3 crashes after every 40 writes, stays down for 40 (its own go on, captured), twice.
  auto after_writes = [&](int n) {
    const int until = written + n;
    return testing::WaitFor([&] { return written >= until; }, 120s);
  };
  for (int crash = 0; crash < 2; ++crash) {
    EXPECT_TRUE(after_writes(40));
    c.KillNode(3);
    EXPECT_TRUE(after_writes(40));
    c.StartNode(3);
    EXPECT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  }
  EXPECT_TRUE(after_writes(40));
  stop = true;
  for (std::thread& w : writers) w.join();
  ExpectConverged(c, kRows);
  std::printf("random writes: %s conflicts kept\n",
              c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";").c_str());
}

// Node 3, down, deletes rows the others update, updates rows the others delete and inserts a
// key another node inserts too; the others write on far past their compacted logs. Node 3 comes
// back through snapshots: its changes lose, and every node ends with the others' rows.
TEST(ConflictsHuntTest, ANodeCatchingUpBySnapshotLosesItsDeletesAndInserts) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 2, .schema = kSchema, .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  c.Sql(1, kStartRows);
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(3,
        "DELETE FROM doc WHERE id = 1; DELETE FROM tk WHERE k = 'it''s'; DELETE FROM nk WHERE "
        "rowid = 10; UPDATE doc SET body = 'node 3' WHERE id = 2; UPDATE tk SET body = 'node 3' "
        "WHERE k = 'a\"b,c'; UPDATE nk SET body = 'node 3' WHERE rowid = 11;"
        "INSERT INTO doc VALUES (3, 'node 3', 0); INSERT INTO rk VALUES (2.5, 'node 3', 0);");
  c.Sql(1,
        "UPDATE doc SET body = 'node 1' WHERE id = 1; UPDATE tk SET body = 'node 1' WHERE k = "
        "'it''s'; UPDATE nk SET body = 'node 1' WHERE rowid = 10; DELETE FROM doc WHERE id = 2; "
        "DELETE FROM tk WHERE k = 'a\"b,c'; DELETE FROM nk WHERE rowid = 11;"
        "INSERT INTO doc VALUES (3, 'node 1', 0); INSERT INTO rk VALUES (2.5, 'node 1', 0);");
  // Entries of both shards until their logs start past what node 3 has.
  for (int i = 0; i < 150; ++i) {
    c.Sql(1 + i % 2,
          absl::StrCat("INSERT INTO bk VALUES (x'", absl::StrCat(1000 + i), "', 'b', ", i, ");"));
  }
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(1, kRows) == c.Sql(2, kRows); }, 30s));
  const std::string expected = c.Sql(1, kRows);
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  ExpectConverged(c, kRows);
  EXPECT_THAT(c.log(3), ::testing::HasSubstr("installed a snapshot"));
  EXPECT_EQ(c.Sql(3, kRows), expected);
  EXPECT_EQ(c.Sql(2,
                  "SELECT op, count(*) FROM \"__marmot__conflicts\" WHERE origin = 3 "
                  "GROUP BY op ORDER BY op;"),
            "D|3\nI|2\nU|3\n");
}

// TEXT keys that differ only after a NUL character are different rows.
TEST(ConflictsHuntTest, TextKeysWithANulAreRowsOfTheirOwn) {
  testing::LocalCluster c({.nodes = 3, .shards = 2, .schema = kSchema});
  c.Start();
  std::string insert;
  for (int i = 1; i <= 6; ++i) {
    absl::StrAppend(&insert, "INSERT INTO tk VALUES (CAST(x'6100", 30 + i,
                    "' AS TEXT), 'start', 0);");
  }
  c.Sql(1, insert);
  constexpr char kNulRows[] = "SELECT hex(k), body, edits FROM tk ORDER BY k;";
  ASSERT_TRUE(c.WaitForSame(kNulRows, 30s));
  // A chain of edits of different rows, each node after seeing the edit before.
  for (int round = 0; round < 3; ++round) {
    for (int i = 1; i <= 6; ++i) {
      const int node = 1 + (i + round) % 3;
      c.Sql(node,
            absl::StrCat("UPDATE tk SET body = 'node ", node, " round ", round,
                         "', edits = edits + 1 WHERE k = CAST(x'6100", 30 + i, "' AS TEXT);"));
      ASSERT_TRUE(c.WaitForSame(kNulRows, 30s))
          << c.Sql(1, kNulRows) << c.Sql(2, kNulRows) << c.Sql(3, kNulRows);
    }
  }
  // Then each node edits a row of its own, at the same time as the others.
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < 5; ++i) {
        for (int row : {node, node + 3}) {
          (void)sqlite::testing::RunSqliteCli(
              c.db_path(node),
              absl::StrCat("UPDATE tk SET body = 'node ", node, " edit ", i,
                           "', edits = edits + 1 WHERE k = CAST(x'6100", 30 + row, "' AS TEXT);"));
        }
      }
    });
  }
  for (std::thread& w : writers) w.join();
  ExpectConverged(c, kNulRows);
  for (int node = 1; node <= 3; ++node) {
    EXPECT_EQ(c.Sql(node, "SELECT count(*) FROM \"__marmot__conflicts\";"), "0\n")
        << c.Sql(node, kConflicts);
    EXPECT_EQ(c.Sql(node, "SELECT group_concat(edits) FROM tk;"), "8,8,8,8,8,8\n");
    EXPECT_EQ(c.Sql(node, "SELECT count(*) FROM \"__marmot__versions\" WHERE tbl = 'tk';"), "6\n");
  }
}

}  // namespace
}  // namespace marmot
