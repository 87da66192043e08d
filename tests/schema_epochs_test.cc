// Schema epochs (replicator/schema_epochs.h): a column dropped and added again under its name
// on one node, with rows written right before and after each change there and writers on the
// other nodes, ends with the same rows on every node, none in the dead letters. Real marmot
// processes, the sqlite3 shell as the application.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
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
using ::testing::Not;

constexpr char kSchema[] =
    "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, p TEXT);"
    "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);";
constexpr char kColumnsOfT[] = "SELECT group_concat(name, ',') FROM pragma_table_info('t');";
constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";

TEST(SchemaEpochsTest, AColumnDroppedAndAddedAgainUnderItsNameKeepsTheRowsAroundItEverywhere) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = kSchema});
  cluster.Start();
  // Given writers on the other nodes all along,
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int id : {2, 3}) {
    writers.emplace_back([&, id] {
      for (int i = 0; !stop.load(); ++i) {
        cluster.Sql(
            id, absl::StrCat("INSERT INTO kv VALUES (", id * 1000000 + i, ", 'node ", id, "');"));
      }
    });
  }
  // and rows of t written on node 1 with the first p,
  std::string rows;
  for (int i = 1; i <= 20; ++i) absl::StrAppend(&rows, "(", i, ", 'a", i, "', 'old", i, "'),");
  rows.pop_back();
  cluster.Sql(1, absl::StrCat("INSERT INTO t VALUES ", rows, ";"));
  // on every node before the schema changes (rows committed before a schema change are not
  // ordered before it yet, part (B): under load they came back to node 1 itself after p was
  // added again, and wrote their old p there),
  ASSERT_TRUE(cluster.WaitForSame(".mode quote\nSELECT * FROM t ORDER BY id;", 60s))
      << cluster.OnEveryNode("SELECT count(*) FROM t;");
  // when node 1 drops p and writes right after it,
  cluster.Sql(1,
              "ALTER TABLE t DROP COLUMN p;"
              "INSERT INTO t (id, a) VALUES (21, 'a21'), (22, 'a22'), (23, 'a23');"
              "UPDATE t SET a = 'after drop' WHERE id <= 5;");
  ASSERT_TRUE(cluster.WaitForEverywhere(kColumnsOfT, "id,a\n", 60s))
      << cluster.OnEveryNode(kColumnsOfT);
  // then adds p again (another column under the old name) and writes it at once,
  rows.clear();
  for (int i = 41; i <= 60; ++i) absl::StrAppend(&rows, "(", i, ", 'a", i, "', 'new", i, "'),");
  rows.pop_back();
  cluster.Sql(1, absl::StrCat("ALTER TABLE t ADD COLUMN p TEXT;"
                              "INSERT INTO t VALUES ",
                              rows,
                              ";"
                              "UPDATE t SET p = 'new' WHERE id <= 10;"));
  ASSERT_TRUE(cluster.WaitForEverywhere(kColumnsOfT, "id,a,p\n", 60s))
      << cluster.OnEveryNode(kColumnsOfT);
  stop.store(true);
  for (std::thread& w : writers) w.join();

  // every node holds the rows as node 1 does: the new p where it was written after the add,
  // nothing of the old p, and every other node's rows.
  const std::string t = ".mode quote\nSELECT * FROM t ORDER BY id;";
  ASSERT_TRUE(cluster.WaitForSame(t, 60s)) << cluster.OnEveryNode(t);
  std::string expected;
  for (int i = 1; i <= 23; ++i) {
    absl::StrAppend(&expected, i, ",'", i <= 5 ? "after drop" : absl::StrCat("a", i), "',",
                    i <= 10 ? "'new'" : "NULL", "\n");
  }
  for (int i = 41; i <= 60; ++i) absl::StrAppend(&expected, i, ",'a", i, "','new", i, "'\n");
  EXPECT_EQ(cluster.Sql(3, t), expected);
  EXPECT_EQ(cluster.Sql(2, t), expected);
  const std::string kv = "SELECT count(*), sum(k) FROM kv;";
  EXPECT_TRUE(cluster.WaitForSame(kv, 60s)) << cluster.OnEveryNode(kv);
  // No change of t ever went to the dead letters: none applied before the schema it was read
  // with, and none waited past the bound.
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.Sql(id, kDeadLetters), "0\n") << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("went to the dead letters"))) << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("applying without it"))) << "node " << id;
  }
}

}  // namespace
}  // namespace marmot
