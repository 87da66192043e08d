// A cluster founded from a database that already holds rows (-seed): real marmot processes,
// the real Chinook dataset loaded by the sqlite3 shell before marmot starts.
#include <glog/logging.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/paths.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// The dataset in two parts: the DDL and the INSERTs.
std::pair<std::string, std::string> SplitChinook() {
  std::string sql = testing::ReadTextFile(testing::DatasetPath("Chinook_Sqlite.sql"));
  const size_t first_insert = sql.find("INSERT INTO");
  CHECK_NE(first_insert, std::string::npos);
  return {sql.substr(0, first_insert), sql.substr(first_insert)};
}

// Every row of every Chinook table, in key order, with storage classes.
constexpr char kEveryRow[] =
    ".mode quote\n"
    "SELECT * FROM Album ORDER BY 1; SELECT * FROM Artist ORDER BY 1;"
    "SELECT * FROM Customer ORDER BY 1; SELECT * FROM Employee ORDER BY 1;"
    "SELECT * FROM Genre ORDER BY 1; SELECT * FROM Invoice ORDER BY 1;"
    "SELECT * FROM InvoiceLine ORDER BY 1; SELECT * FROM MediaType ORDER BY 1;"
    "SELECT * FROM Playlist ORDER BY 1; SELECT * FROM PlaylistTrack ORDER BY 1, 2;"
    "SELECT * FROM Track ORDER BY 1;";

TEST(SeedingTest, EmptyFoundersReceiveEveryRowOfTheSeedingNode) {
  const auto [schema, rows] = SplitChinook();
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = schema, .rows_before = {{1, rows}}});
  cluster.SetNodeFlags(1, {"-seed"});
  cluster.Start();
  const std::string tracks = "SELECT count(*) FROM Track;";
  ASSERT_EQ(cluster.Sql(1, tracks), "3503\n");
  EXPECT_TRUE(cluster.WaitForSame(kEveryRow, 120s))
      << "node 2 has " << cluster.Sql(2, tracks) << " tracks, node 3 " << cluster.Sql(3, tracks);
  // The application then writes on any node, as usual.
  cluster.Sql(3, "UPDATE Artist SET Name = 'from node 3' WHERE ArtistId = 1;");
  EXPECT_TRUE(cluster.WaitForSame("SELECT Name FROM Artist WHERE ArtistId = 1;", 30s));
  EXPECT_EQ(cluster.Sql(1, "SELECT Name FROM Artist WHERE ArtistId = 1;"), "from node 3\n");

  // A restart with -seed copies nothing again: a later change made elsewhere stays.
  ASSERT_EQ(cluster.StopNode(1), 0);
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << cluster.log(1);
  EXPECT_THAT(cluster.log(1), HasSubstr("-seed changes nothing"));
  cluster.Sql(2, "UPDATE Genre SET Name = 'after restart' WHERE GenreId = 1;");
  EXPECT_TRUE(cluster.WaitForSame(kEveryRow, 30s));
  EXPECT_EQ(cluster.Sql(1, "SELECT Name FROM Genre WHERE GenreId = 1;"), "after restart\n");
}

TEST(SeedingTest, FoundersFromEmptyFilesReceiveTheSchemaAndEveryRow) {
  // Only node 1 has a database: the others start from files marmot creates.
  const auto [schema, rows] = SplitChinook();
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .rows_before = {{1, schema + rows}}});
  cluster.SetNodeFlags(1, {"-seed"});
  cluster.Start();
  const std::string objects =
      "SELECT type, name, sql FROM sqlite_master WHERE substr(name, 1, 10) != '__marmot__' "
      "ORDER BY type, name;";
  EXPECT_TRUE(cluster.WaitForSame(kEveryRow, 120s)) << cluster.log(2);
  EXPECT_TRUE(cluster.WaitForSame(objects, 30s));
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM Track;"), "3503\n");
  EXPECT_EQ(cluster.Sql(2, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n");
}

TEST(SeedingTest, TwoSeedingFoundersKeepTheLaterOfTwoRowsOfOneKeyAsAConflict) {
  // Started with -seed by mistake on two nodes whose files differ: rows of keys only one holds
  // reach every node; of two rows of one key, the first in its shard stays and the other is kept
  // as a conflict on every node. Before, the later was written over the first, nothing kept.
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE item (id INTEGER PRIMARY KEY, v TEXT);",
       .rows_before = {
           {1, "INSERT INTO item VALUES (1, 'node 1'), (2, 'node 1'), (3, 'only 1');"},
           {2, "INSERT INTO item VALUES (1, 'node 2'), (2, 'node 2'), (4, 'only 2');"}}});
  cluster.SetNodeFlags(1, {"-seed"});
  cluster.SetNodeFlags(2, {"-seed"});
  cluster.Start();
  constexpr char kRows[] = "SELECT id, v FROM item ORDER BY id;";
  constexpr char kKept[] =
      "SELECT tbl, key, origin, change_id, winner_origin FROM \"__marmot__conflicts\" ORDER BY "
      "key;";
  // Each of the 6 rows present or kept, on every node, and the nodes agree.
  constexpr char kAccounted[] =
      "SELECT (SELECT count(*) FROM item) + (SELECT count(*) FROM \"__marmot__conflicts\");";
  EXPECT_TRUE(cluster.WaitForEverywhere(kAccounted, "6\n", 60s)) << cluster.OnEveryNode(kAccounted);
  EXPECT_TRUE(cluster.WaitForSame(kRows, 30s)) << cluster.OnEveryNode(kRows);
  EXPECT_TRUE(cluster.WaitForSame(kKept, 30s)) << cluster.OnEveryNode(kKept);
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM item;"), "4\n");
  EXPECT_EQ(cluster.Sql(3, "SELECT key FROM \"__marmot__conflicts\" ORDER BY key;"), "1\n2\n");
  EXPECT_EQ(cluster.Sql(3, "SELECT v FROM item WHERE id IN (3, 4) ORDER BY id;"),
            "only 1\nonly 2\n");
}

TEST(SeedingTest, AFounderWhoseTablesHoldRowsIsRefusedUntilItTakesTheClusters) {
  // Node 1 founds the cluster from its rows; node 3's file holds other rows of the same table.
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 2,
       .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); CREATE TABLE other (k);",
       .rows_before = {{1, "INSERT INTO kv VALUES (1, 'seeded'), (2, 'seeded');"},
                       {3, "INSERT INTO kv VALUES (1, 'differs'), (9, 'only here');"}}});
  cluster.SetNodeFlags(1, {"-seed"});
  cluster.Start(/*refused=*/{3});
  EXPECT_EQ(cluster.WaitForExit(3, 30s), 1);
  EXPECT_THAT(cluster.log(3), HasSubstr("tables kv of "));
  EXPECT_THAT(cluster.log(3), HasSubstr("-take-cluster-rows"));
  // Its file is as it was; the two others replicate the seeded rows meanwhile.
  const std::string rows = "SELECT * FROM kv ORDER BY k;";
  EXPECT_EQ(cluster.Sql(3, rows), "1|differs\n9|only here\n");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM sqlite_master WHERE name LIKE '__marmot__%';"),
            "0\n");
  const std::string seeded = "1|seeded\n2|seeded\n";
  EXPECT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, rows) == seeded; }, 60s));

  // Told to take the cluster's, it drops its own and ends with the seeded rows, and replicates.
  cluster.SetNodeFlags(3, {"-take-cluster-rows"});
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s)) << cluster.log(3);
  EXPECT_THAT(cluster.log(3), HasSubstr("deleted the rows of kv (2)"));
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.Sql(3, rows);
  EXPECT_EQ(cluster.Sql(3, rows), seeded);
  cluster.Sql(3, "INSERT INTO kv VALUES (3, 'from node 3');");
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s));
  EXPECT_EQ(cluster.Sql(1, "SELECT v FROM kv WHERE k = 3;"), "from node 3\n");
}

}  // namespace
}  // namespace marmot
