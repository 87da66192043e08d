// Concurrent and sequential writes of the same rows on several nodes, real marmot processes and
// the sqlite3 shell as the applications: a change made without seeing the version its row has
// in the shard is kept as a conflict on every node, never lost and never applied over the
// other; a change made after seeing it (a chain of edits across nodes) never is.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/local_cluster.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr char kSchema[] = "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT, edits INTEGER);";
constexpr char kRows[] = "SELECT id, body, edits FROM doc ORDER BY id;";
constexpr char kConflicts[] =
    "SELECT tbl, key, origin, change_id, op, winner_origin, winner_change_id, hex(change) "
    "FROM \"__marmot__conflicts\" ORDER BY origin, tbl, change_id;";

TEST(ConflictsTest, AChainOfEditsAcrossNodesKeepsNoConflict) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 2, .schema = kSchema});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO doc VALUES (1, 'draft', 0), (2, 'other', 0);");
  ASSERT_TRUE(cluster.WaitForSame(kRows, 30s));
  // Each node edits what it reads, after the previous edit reached it.
  for (int round = 0; round < 2; ++round) {
    for (int node : {2, 3, 1}) {
      cluster.Sql(node, absl::StrCat("UPDATE doc SET body = body || ' +", node,
                                     "', edits = edits + 1 WHERE id = 1;"));
      ASSERT_TRUE(cluster.WaitForSame(kRows, 30s));
    }
  }
  cluster.Sql(2, "DELETE FROM doc WHERE id = 2;");
  ASSERT_TRUE(cluster.WaitForSame(kRows, 30s));
  cluster.Sql(3, "INSERT INTO doc VALUES (2, 'again', 0);");
  ASSERT_TRUE(cluster.WaitForSame(kRows, 30s));
  EXPECT_EQ(cluster.Sql(1, kRows), "1|draft +2 +3 +1 +2 +3 +1|6\n2|again|0\n");
  for (int node = 1; node <= 3; ++node) {
    EXPECT_EQ(cluster.Sql(node, kConflicts), "") << "node " << node;
  }
}

// A node upgraded from the release that kept every row version's key as text (quote()'s digits
// for an INTEGER key): its versions are rewritten when it starts, and its application's edits
// of rows written elsewhere are still made after seeing them.
TEST(ConflictsTest, VersionsKeptAsTextByAnEarlierReleaseAreRewrittenAtStartAndStillSeen) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 2, .schema = kSchema});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO doc VALUES (1, 'one', 0), (2, 'two', 0);");
  ASSERT_TRUE(cluster.WaitForSame(kRows, 30s));
  const std::string versions = "SELECT count(*) FROM \"__marmot__versions\" WHERE tbl = 'doc';";
  ASSERT_TRUE(cluster.WaitForEverywhere(versions, "2\n", 30s)) << cluster.OnEveryNode(versions);
  // Given node 2's file as the earlier release left it.
  ASSERT_EQ(cluster.StopNode(2), 0);
  cluster.Sql(
      2,
      "BEGIN; CREATE TABLE earlier AS SELECT * FROM \"__marmot__versions\";"
      "DROP TABLE \"__marmot__versions\";"
      "CREATE TABLE \"__marmot__versions\" (tbl TEXT NOT NULL, key TEXT NOT NULL, shard INTEGER "
      "NOT NULL, raft_index INTEGER NOT NULL, origin INTEGER NOT NULL, change_id INTEGER NOT "
      "NULL, held BLOB, columns INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, key)) WITHOUT "
      "ROWID;"
      "INSERT INTO \"__marmot__versions\" SELECT tbl, key, shard, raft_index, origin, change_id,"
      " held, columns FROM earlier; DROP TABLE earlier; COMMIT;");
  const std::string types = "SELECT DISTINCT typeof(key) FROM \"__marmot__versions\";";
  ASSERT_EQ(cluster.Sql(2, types), "text\n");
  // When it starts again.
  cluster.StartNode(2);
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s)) << cluster.log(2);
  // Then the keys are integers again, and an edit made on node 2 is made after seeing node 1's
  // version of the row: it applies everywhere and no conflict is kept.
  EXPECT_EQ(cluster.Sql(2, types), "integer\n");
  EXPECT_THAT(cluster.log(2), HasSubstr("rewritten in its current layout"));
  cluster.Sql(2, "UPDATE doc SET body = 'edited on 2', edits = edits + 1;");
  ASSERT_TRUE(cluster.WaitForSame(kRows, 30s));
  EXPECT_EQ(cluster.Sql(1, kRows), "1|edited on 2|1\n2|edited on 2|1\n");
  for (int node = 1; node <= 3; ++node) {
    EXPECT_EQ(cluster.Sql(node, kConflicts), "") << "node " << node;
  }
}

TEST(ConflictsTest, ConcurrentEditsOfOneRowKeepEveryLoserOnEveryNode) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 2, .schema = kSchema});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO doc VALUES (7, 'start', 0);");
  ASSERT_TRUE(cluster.WaitForSame(kRows, 30s));
  // Every node edits row 7 while the others' edits may not have reached it: whichever edit
  // comes first in the shard stays; an edit made without seeing it is kept as a conflict.
  std::vector<std::thread> writers;
  constexpr int kEdits = 20;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < kEdits; ++i) {
        cluster.Sql(node, absl::StrCat("UPDATE doc SET body = 'node ", node, " edit ", i,
                                       "', edits = edits + 1 WHERE id = 7;"));
      }
    });
  }
  for (std::thread& w : writers) w.join();
  // Every edit arrives everywhere, applied or kept (nodes that agree may still await a batch).
  const std::string accounted =
      "SELECT (SELECT edits FROM doc WHERE id = 7) + (SELECT count(*) FROM "
      "\"__marmot__conflicts\" WHERE tbl = 'doc' AND op = 'U');";
  EXPECT_TRUE(cluster.WaitForEverywhere(accounted, absl::StrCat(3 * kEdits, "\n"), 60s))
      << cluster.OnEveryNode(accounted);
  ASSERT_TRUE(cluster.WaitForSame(kRows, 60s));
  ASSERT_TRUE(cluster.WaitForSame(kConflicts, 60s)) << cluster.Sql(1, kConflicts);
  // Every edit either is in the row's history of applied versions or is kept: the row counts
  // the edits that applied (each applied edit read the one before), the conflicts the others.
  const int applied = std::stoi(cluster.Sql(2, "SELECT edits FROM doc WHERE id = 7;"));
  const int kept = std::stoi(cluster.Sql(
      2, "SELECT count(*) FROM \"__marmot__conflicts\" WHERE tbl = 'doc' AND op = 'U';"));
  EXPECT_EQ(applied + kept, 3 * kEdits) << cluster.Sql(1, kConflicts);
  EXPECT_GE(applied, 1);
  std::printf("concurrent edits: written %d, applied %d, kept as conflicts %d\n", 3 * kEdits,
              applied, kept);
}

}  // namespace
}  // namespace marmot
