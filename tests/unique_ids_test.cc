// Rows whose key SQLite assigns, inserted on three nodes at once: with SQLite's own ids the nodes
// give different rows the same id, one row per id stays, and every other is kept as a conflict
// on every node; with marmot_id() from the extension libmarmot_ids.so every row reaches every
// node and none conflicts. Real marmot processes, the sqlite3 shell as the application.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/paths.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;

constexpr int kNodes = 3;
constexpr int kRowsPerNode = 40;
// As Django and most frameworks declare it.
constexpr char kSchema[] =
    "CREATE TABLE signups (id INTEGER PRIMARY KEY AUTOINCREMENT, node INTEGER NOT NULL, "
    "n INTEGER NOT NULL);";
constexpr char kAllRows[] = "SELECT id, node, n FROM signups ORDER BY id;";

std::string Extension() {
  return std::string(std::getenv("TEST_SRCDIR")) + "/marmot/sqlite/libmarmot_ids";
}

// A script that marks `node` as ready and waits (at most 30 s) until every node is.
std::string WriteBarrier(const std::string& dir) {
  const std::string path = dir + "/barrier.sh";
  std::ofstream(path) << "touch \"" << dir << "/ready-$1\"\n"
                      << "for i in $(seq 3000); do\n"
                      << "  [ \"$(ls \"" << dir << "\" | grep -c '^ready-')\" -ge " << kNodes
                      << " ] && exit 0\n"
                      << "  sleep 0.01\n"
                      << "done\nexit 1\n";
  return path;
}

// Node `node`'s sign-ups: kRowsPerNode rows in one transaction that commits once every node has
// inserted its rows (`barrier`), so no node sees another's rows before it takes its ids. The id
// comes from SQLite, or from marmot_id(node) with the extension loaded.
std::string SignUps(int node, bool marmot_ids, const std::string& barrier) {
  std::string sql = marmot_ids ? absl::StrCat(".load ", Extension(), "\n") : "";
  absl::StrAppend(&sql, "BEGIN IMMEDIATE;\n");
  for (int n = 0; n < kRowsPerNode; ++n) {
    absl::StrAppend(&sql, marmot_ids ? "INSERT INTO signups (id, node, n) VALUES (" : "",
                    marmot_ids ? absl::StrCat("marmot_id(", node, "), ") : "",
                    marmot_ids ? "" : "INSERT INTO signups (node, n) VALUES (", node, ", ", n,
                    ");\n");
  }
  absl::StrAppend(&sql, ".shell sh ", barrier, " ", node, "\nCOMMIT;\n");
  return sql;
}

// Runs `workload(node)` with the sqlite3 shell on every node at once.
void OnEveryNodeAtOnce(const testing::LocalCluster& cluster,
                       const std::function<std::string(int)>& workload) {
  std::vector<std::thread> writers;
  for (int id = 1; id <= kNodes; ++id) {
    writers.emplace_back([&, id] { cluster.Sql(id, workload(id)); });
  }
  for (std::thread& writer : writers) writer.join();
}

// The rows every node ends with (the same on all nodes; empty if they never agree).
std::string Converged(const testing::LocalCluster& cluster) {
  if (!cluster.WaitForSame(kAllRows, 60s)) return "";
  return cluster.Sql(1, kAllRows);
}

int Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

// The conflicts every node keeps (the same on all nodes; "DIFFER" if they never agree).
constexpr char kConflicts[] =
    "SELECT tbl, key, origin, change_id, op, winner_origin, winner_change_id, at_ms, hex(change) "
    "FROM \"__marmot__conflicts\" ORDER BY origin, tbl, change_id;";
std::string ConflictsKept(const testing::LocalCluster& cluster) {
  if (!cluster.WaitForSame(kConflicts, 30s)) return "DIFFER";
  return cluster.Sql(1, kConflicts);
}

TEST(UniqueIdsTest, SqliteAssignedIdsWrittenOnEveryNodeAtOnceKeepTheLosersAsConflicts) {
  testing::LocalCluster cluster({.nodes = kNodes, .shards = 4, .schema = kSchema});
  cluster.Start();
  const std::string barrier = WriteBarrier(testing::NewTestDir("barrier"));
  OnEveryNodeAtOnce(cluster, [&](int node) { return SignUps(node, false, barrier); });
  // Every sign-up arrives everywhere, present or kept (agreeing nodes may still await a shard's
  // batch: its first proposal can meet a shard still electing its leader, and is retried).
  const std::string accounted =
      "SELECT (SELECT count(*) FROM signups) + (SELECT count(*) FROM \"__marmot__conflicts\" "
      "WHERE tbl = 'signups');";
  EXPECT_TRUE(cluster.WaitForEverywhere(accounted, absl::StrCat(kNodes * kRowsPerNode, "\n"), 60s))
      << cluster.OnEveryNode(accounted);
  const std::string rows = Converged(cluster);
  // Every node took ids 1 to 40; the first change of each id in its shard's order stays.
  EXPECT_EQ(Lines(rows), kRowsPerNode) << rows;
  EXPECT_EQ(cluster.Sql(2, "SELECT min(id), max(id) FROM signups;"), "1|40\n");
  // Every other sign-up is kept, the same on every node: written = present + kept.
  const std::string kept = ConflictsKept(cluster);
  EXPECT_EQ(Lines(kept), kNodes * kRowsPerNode - kRowsPerNode) << kept;
  EXPECT_EQ(cluster.Sql(3,
                        "SELECT count(*) FROM \"__marmot__conflicts\" WHERE tbl = 'signups' AND "
                        "op = 'I' AND winner_origin != origin;"),
            absl::StrCat(kNodes * kRowsPerNode - kRowsPerNode, "\n"));
  std::printf("SQLite-assigned ids: written %d, present %d, kept as conflicts %d\n",
              kNodes * kRowsPerNode, Lines(rows), Lines(kept));
}

TEST(UniqueIdsTest, MarmotIdsWrittenOnEveryNodeAtOnceAllReachEveryNode) {
  testing::LocalCluster cluster({.nodes = kNodes, .shards = 4, .schema = kSchema});
  cluster.Start();
  const std::string barrier = WriteBarrier(testing::NewTestDir("barrier"));
  OnEveryNodeAtOnce(cluster, [&](int node) { return SignUps(node, true, barrier); });
  const std::string rows = Converged(cluster);
  EXPECT_EQ(Lines(rows), kNodes * kRowsPerNode) << rows;
  EXPECT_EQ(ConflictsKept(cluster), "");
  // Each row's id names the node that wrote it.
  const std::string check = absl::StrCat(".load ", Extension(),
                                         "\nSELECT count(*) FROM signups WHERE marmot_id_node(id) "
                                         "= node;");
  EXPECT_EQ(cluster.Sql(3, check), absl::StrCat(kNodes * kRowsPerNode, "\n"));
}

TEST(UniqueIdsTest, MarmotIdsInOneTransactionPerRowWhileRowsArriveAllReachEveryNode) {
  testing::LocalCluster cluster({.nodes = kNodes, .shards = 4, .schema = kSchema});
  cluster.Start();
  // Each insert commits alone, so rows of the other nodes land between them, as on a busy site.
  OnEveryNodeAtOnce(cluster, [&](int node) {
    std::string sql = absl::StrCat(".load ", Extension(), "\n");
    for (int n = 0; n < kRowsPerNode; ++n) {
      absl::StrAppend(&sql, "INSERT INTO signups (id, node, n) VALUES (marmot_id(", node, "), ",
                      node, ", ", n, ");\n");
    }
    return sql;
  });
  const std::string rows = Converged(cluster);
  EXPECT_EQ(Lines(rows), kNodes * kRowsPerNode) << rows;
}

}  // namespace
}  // namespace marmot
