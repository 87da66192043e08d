// Schema epochs (replicator/schema_epochs.h): a column dropped and added again under its name
// on one node, with rows written right before and after each change there and writers on the
// other nodes, ends with the same rows on every node, none in the dead letters; rows of a new
// column wait on a node whose shard 0 cannot apply the column yet (halted there), and apply with
// it once shard 0 got there; a column dropped and added again after rows were written with it
// waits, on a node whose rows' shard is halted, for those rows, so that the column added again
// holds none of the old values. Real marmot processes, the sqlite3 shell as the application.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/admin.pb.h"
#include "replicator/shard_router.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"
#include "tests/testing/subprocess.h"

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
  // when node 1 drops p and writes right after it (before its rows went anywhere: they apply
  // before the drop everywhere, node 1 too: before the rows committed before a schema change were
  // ordered before it, they came back to node 1 itself after p was added again under load, and
  // wrote their old p there),
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

constexpr char kAuth[] = "Basic ZXBvY2g6ZXBvY2g=";

// Ids of `table` that route to `shard` of `shards`, from 1 on.
std::vector<int64_t> IdsOfShard(const std::string& table, int shard, int shards, int count) {
  replicator::ShardRouter router(shards);
  std::vector<int64_t> ids;
  for (int64_t id = 1; static_cast<int>(ids.size()) < count; ++id) {
    if (router.ShardOf(table, {sqlite::Value::Integer(id)}) == shard) ids.push_back(id);
  }
  return ids;
}

// What GetStatus of node `id` says of `shard`: its `waiting` or its `halted`.
std::string Waiting(const testing::LocalCluster& c, int id, int shard) {
  const admin::v1::GetStatusResponse s = testing::PaneStatus(c, id, kAuth);
  return s.shards_size() > shard ? s.shards(shard).waiting() : "(no status)";
}
std::string Halted(const testing::LocalCluster& c, int id, int shard) {
  const admin::v1::GetStatusResponse s = testing::PaneStatus(c, id, kAuth);
  return s.shards_size() > shard ? s.shards(shard).halted() : "(no status)";
}
// The line of metric `name` in node `id`'s /metrics ("name value").
std::string Metric(const testing::LocalCluster& c, int id, const std::string& name) {
  httplib::Result r = testing::PaneCall(c, id, kAuth, "GET", "/metrics");
  if (!r) return "(no answer)";
  for (size_t at = r->body.find(name + " "); at != std::string::npos;
       at = r->body.find(name + " ", at + 1)) {
    if (at == 0 || r->body[at - 1] == '\n') return r->body.substr(at, r->body.find('\n', at) - at);
  }
  return "(not in /metrics)";
}

std::string Tail(const std::string& log) {
  return log.size() > 6000 ? log.substr(log.size() - 6000) : log;
}

TEST(SchemaEpochsTest, RowsOfANewColumnWaitForShard0WhereItIsHaltedAndApplyWithItAfter) {
  setenv("AUTH_KEY", kAuth, 1);
  constexpr int kShards = 2;
  // Node 3 lacks table x and keeps no dead letter: a change of x halts its shard 0.
  testing::LocalCluster cluster({.nodes = 3,
                                 .shards = kShards,
                                 .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);"
                                           "CREATE TABLE x (id INTEGER PRIMARY KEY, v TEXT);",
                                 .rows_before = {{3, "DROP TABLE x;"}}});
  cluster.SetNodeFlags(3, {"-max-dead-letters=0"});
  cluster.Start();
  // Given node 3's shard 0 halted on a row of x,
  const int64_t x0 = IdsOfShard("x", 0, kShards, 1)[0];
  cluster.Sql(1, absl::StrCat("INSERT INTO x VALUES (", x0, ", 'x');"));
  ASSERT_TRUE(testing::WaitFor([&] { return !Halted(cluster, 3, 0).empty(); }, 60s))
      << Tail(cluster.log(3));
  // when node 1 adds a column to t and writes it in rows of shard 1,
  const std::vector<int64_t> ids = IdsOfShard("t", 1, kShards, 5);
  std::string rows;
  for (int64_t id : ids) absl::StrAppend(&rows, "(", id, ", 'a", id, "', 'c", id, "'),");
  rows.pop_back();
  cluster.Sql(1, absl::StrCat("ALTER TABLE t ADD COLUMN c TEXT; INSERT INTO t VALUES ", rows, ";"));
  const std::string t = ".mode quote\nSELECT * FROM t ORDER BY id;";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, t) == cluster.Sql(1, t); }, 60s))
      << cluster.OnEveryNode(t);
  // node 3's shard 1 waits for shard 0 to apply the column (counted in /metrics), and applies
  // none of the rows meanwhile;
  ASSERT_TRUE(testing::WaitFor([&] { return !Waiting(cluster, 3, 1).empty(); }, 60s))
      << Tail(cluster.log(3));
  EXPECT_THAT(Waiting(cluster, 3, 1), HasSubstr("the schema change its rows were read after"));
  EXPECT_EQ(Metric(cluster, 3, "marmot_shards_waiting_for_schema"),
            "marmot_shards_waiting_for_schema 1");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM t;"), "0\n");
  EXPECT_EQ(cluster.Sql(3, kColumnsOfT), "id,a\n");
  // once x is made there, shard 0 resumes and gets there: the rows apply with their column, and
  // nothing went to the dead letters or gave up waiting.
  cluster.Sql(3, "CREATE TABLE x (id INTEGER PRIMARY KEY, v TEXT);");
  EXPECT_TRUE(testing::WaitFor([&] { return cluster.Sql(3, t) == cluster.Sql(1, t); }, 60s))
      << cluster.OnEveryNode(t) << Tail(cluster.log(3));
  EXPECT_EQ(cluster.Sql(3, kColumnsOfT), "id,a,c\n");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM x;"), "1\n");
  EXPECT_EQ(cluster.Sql(3, absl::StrCat("SELECT c FROM t WHERE id = ", ids[0], ";")),
            absl::StrCat("c", ids[0], "\n"));
  EXPECT_TRUE(testing::WaitFor(
      [&] { return Waiting(cluster, 3, 1).empty() && Halted(cluster, 3, 0).empty(); }, 60s));
  EXPECT_EQ(Metric(cluster, 3, "marmot_shards_waiting_for_schema"),
            "marmot_shards_waiting_for_schema 0");
  EXPECT_EQ(Metric(cluster, 3, "marmot_schema_waits_given_up_total"),
            "marmot_schema_waits_given_up_total 0");
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.Sql(id, kDeadLetters), "0\n") << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("applying without it"))) << "node " << id;
  }
}

TEST(SchemaEpochsTest, RowsCommittedBeforeASchemaChangeApplyBeforeItWhereTheirShardLags) {
  setenv("AUTH_KEY", kAuth, 1);
  constexpr int kShards = 2;
  // Node 3 lacks table x and keeps no dead letter: a change of x halts its shard 1 (the rows'
  // shard) while its shard 0 goes on.
  testing::LocalCluster cluster({.nodes = 3,
                                 .shards = kShards,
                                 .schema =
                                     "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, p TEXT);"
                                     "CREATE TABLE x (id INTEGER PRIMARY KEY, v TEXT);",
                                 .rows_before = {{3, "DROP TABLE x;"}}});
  cluster.SetNodeFlags(3, {"-max-dead-letters=0"});
  cluster.Start();
  const std::string t = ".mode quote\nSELECT * FROM t ORDER BY id;";
  // Given node 3's shard 1 halted on a row of x,
  const int64_t x1 = IdsOfShard("x", 1, kShards, 1)[0];
  cluster.Sql(1, absl::StrCat("INSERT INTO x VALUES (", x1, ", 'x');"));
  ASSERT_TRUE(testing::WaitFor([&] { return !Halted(cluster, 3, 1).empty(); }, 60s))
      << Tail(cluster.log(3));
  // and rows of t in shard 1 written on node 1 with the first p, committed (node 2 has them),
  const std::vector<int64_t> ids = IdsOfShard("t", 1, kShards, 5);
  std::string rows;
  for (int64_t id : ids) absl::StrAppend(&rows, "(", id, ", 'a", id, "', 'old", id, "'),");
  rows.pop_back();
  cluster.Sql(1, absl::StrCat("INSERT INTO t VALUES ", rows, ";"));
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, t) == cluster.Sql(1, t); }, 60s))
      << cluster.OnEveryNode(t);
  // when node 1 drops p (nodes 1 and 2 apply it),
  cluster.Sql(1, "ALTER TABLE t DROP COLUMN p;");
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return cluster.Sql(1, kColumnsOfT) == "id,a\n" && cluster.Sql(2, kColumnsOfT) == "id,a\n";
      },
      60s))
      << cluster.OnEveryNode(kColumnsOfT);
  // then adds p again (another column under the old name) and writes it in one row,
  cluster.Sql(1, absl::StrCat("ALTER TABLE t ADD COLUMN p TEXT; UPDATE t SET p = 'new' WHERE id = ",
                              ids[0], ";"));
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(2, t) == cluster.Sql(1, t); }, 60s))
      << cluster.OnEveryNode(t);
  ASSERT_EQ(cluster.Sql(2, kColumnsOfT), "id,a,p\n");
  // node 3's shard 0 does not apply the drop before the rows committed before it: it waits for
  // shard 1 (else it would apply the drop and the add, as node 2 did, and the rows after them).
  const std::string epoch = "SELECT shard0_index FROM \"__marmot__schema_epoch\";";
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return !Waiting(cluster, 3, 0).empty() || cluster.Sql(3, epoch) == cluster.Sql(2, epoch);
      },
      60s))
      << cluster.OnEveryNode(epoch) << Tail(cluster.log(3));
  EXPECT_THAT(Waiting(cluster, 3, 0), HasSubstr("waits for shard 1 to apply index"));
  EXPECT_THAT(Waiting(cluster, 3, 0), HasSubstr("rows its origin committed before it"));
  EXPECT_EQ(Metric(cluster, 3, "marmot_shards_waiting_for_schema"),
            "marmot_shards_waiting_for_schema 1");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM t;"), "0\n");
  // Once x is made there, shard 1 resumes and applies the rows, then shard 0 the drop and the
  // add: node 3 holds what node 1 does, the re-added p none of the old values,
  cluster.Sql(3, "CREATE TABLE x (id INTEGER PRIMARY KEY, v TEXT);");
  EXPECT_TRUE(testing::WaitFor([&] { return cluster.Sql(3, t) == cluster.Sql(1, t); }, 60s))
      << cluster.OnEveryNode(t) << Tail(cluster.log(3));
  EXPECT_EQ(cluster.Sql(3, kColumnsOfT), "id,a,p\n");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM t WHERE p LIKE 'old%';"), "0\n");
  EXPECT_EQ(cluster.Sql(3, absl::StrCat("SELECT p FROM t WHERE id = ", ids[0], ";")), "new\n");
  // and nothing went to the dead letters or gave up waiting.
  EXPECT_TRUE(testing::WaitFor(
      [&] { return Waiting(cluster, 3, 0).empty() && Halted(cluster, 3, 1).empty(); }, 60s));
  EXPECT_EQ(Metric(cluster, 3, "marmot_shards_waiting_for_schema"),
            "marmot_shards_waiting_for_schema 0");
  EXPECT_EQ(Metric(cluster, 3, "marmot_schema_waits_given_up_total"),
            "marmot_schema_waits_given_up_total 0");
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.Sql(id, kDeadLetters), "0\n") << "node " << id;
    EXPECT_THAT(cluster.log(id), Not(HasSubstr("applying without it"))) << "node " << id;
  }
}

}  // namespace
}  // namespace marmot
