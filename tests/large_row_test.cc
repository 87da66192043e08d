// Issue 16, bug 1: one row larger than a gRPC message (64 MiB) must replicate like any other,
// and must not hold back the rows written after it. Two real marmot processes on loopback,
// the sqlite3 shell as the application on both.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "tests/testing/local_cluster.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;

// Inserts rows `first`..`last` with small random values in one transaction.
std::string SmallRows(int first, int last) {
  return absl::StrCat("WITH RECURSIVE n(i) AS (SELECT ", first,
                      " UNION ALL SELECT i + 1 FROM n WHERE i < ", last,
                      ") INSERT INTO kv SELECT i, randomblob(16) FROM n;");
}

TEST(LargeRowTest, ARowAboveTheMessageLimitAndTheRowsBehindItReachEveryNode) {
  // Given two nodes replicating a key-value table
  testing::LocalCluster cluster(
      {.nodes = 2, .shards = 4, .schema = "CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB);"});
  cluster.Start();

  // When node 1 writes a 70 MB row (above the transport's 64 MiB gRPC message limit), then 100
  // small rows, and node 2 writes 100 small rows
  cluster.Sql(1, "INSERT INTO kv VALUES (0, randomblob(70000000));");
  cluster.Sql(1, SmallRows(1, 100));
  cluster.Sql(2, SmallRows(101, 200));

  // Then both nodes hold all 201 rows, the large one byte for byte (sampled where the transport
  // cut it into pieces and elsewhere), within a bound
  const std::string probe =
      "SELECT count(*), sum(length(v)) FROM kv;"
      "SELECT hex(substr(v, 1, 32)), hex(substr(v, 4194300, 32)), hex(substr(v, 35000000, 32)),"
      " hex(substr(v, 69999969, 32)) FROM kv WHERE k = 0;"
      "SELECT group_concat(hex(v), '') FROM (SELECT v FROM kv WHERE k > 0 ORDER BY k);";
  // (Under 2 cores and 3 CPU burners it took up to 40 s: the bound leaves room.)
  const bool same = cluster.WaitForSame(probe, 120s);
  const std::string on1 = cluster.Sql(1, "SELECT count(*) FROM kv;");
  const std::string on2 = cluster.Sql(2, "SELECT count(*) FROM kv;");
  ASSERT_TRUE(same)
      << "node 1 holds " << on1 << "node 2 holds " << on2 << "\nnode 1 log (tail):\n"
      << cluster.log(1).substr(cluster.log(1).size() > 4000 ? cluster.log(1).size() - 4000 : 0)
      << "\nnode 2 log (tail):\n"
      << cluster.log(2).substr(cluster.log(2).size() > 4000 ? cluster.log(2).size() - 4000 : 0);
  EXPECT_EQ(on1, "201\n");
  EXPECT_EQ(on2, "201\n");
  EXPECT_THAT(cluster.Sql(2, "SELECT length(v) FROM kv WHERE k = 0;"), ::testing::Eq("70000000\n"));
}

}  // namespace
}  // namespace marmot
