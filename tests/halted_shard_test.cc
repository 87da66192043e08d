// A shard halted on a node resumes there without a restart once the operator removed the cause,
// against real marmot processes on loopback: a node out of room for dead letters
// (-max-dead-letters) halts the shard that needs one more; an operator's retry that cannot help
// yet resumes it once and it halts again (no loop); creating the missing table makes marmot
// retry the dead letters and resume the shard, which applies what it missed and converges.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

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

constexpr char kAuth[] = "Basic aGFsdDpoYWx0";
constexpr int kShards = 2;

httplib::Result Pane(const testing::LocalCluster& c, int id, const std::string& method,
                     const std::string& path, const std::string& body = "") {
  return testing::PaneCall(c, id, kAuth, method, path, body);
}

admin::v1::GetStatusResponse Status(const testing::LocalCluster& c, int id) {
  return testing::PaneStatus(c, id, kAuth);
}

std::string Halted(const testing::LocalCluster& c, int id, int shard) {
  const admin::v1::GetStatusResponse s = Status(c, id);
  return s.shards_size() > shard ? s.shards(shard).halted() : "(no status)";
}

// Ids of `table` that route to `shard`, from `from` on.
std::vector<int64_t> IdsOfShard(const std::string& table, int shard, int count, int64_t from) {
  replicator::ShardRouter router(kShards);
  std::vector<int64_t> ids;
  for (int64_t id = from; static_cast<int>(ids.size()) < count; ++id) {
    if (router.ShardOf(table, {sqlite::Value::Integer(id)}) == shard) ids.push_back(id);
  }
  return ids;
}

int Occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string Tail(const std::string& log) {
  return log.size() > 6000 ? log.substr(log.size() - 6000) : log;
}

TEST(HaltedShardTest, AShardHaltedOnMaxDeadLettersResumesOnceTheyAreRetried) {
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster c({.nodes = 3,
                           .shards = kShards,
                           .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
                                     "CREATE TABLE u (id INTEGER PRIMARY KEY, v);",
                           // (A table dropped while marmot runs is dropped everywhere.)
                           .rows_before = {{3, "DROP TABLE t;"}}});
  c.SetNodeFlags(3, {"-max-dead-letters=3"});
  c.Start();
  // Given node 3 without table t, holding 3 dead letters of t's rows in shard 0 (its most),
  auto dead_letters = [&] { return c.Sql(3, "SELECT count(*) FROM \"__marmot__dead_letters\";"); };
  const std::vector<int64_t> ids = IdsOfShard("t", 0, 8, 1);
  for (int i = 0; i < 3; ++i) {
    c.Sql(1, absl::StrCat("INSERT INTO t VALUES (", ids[i], ", 'row');"));
    ASSERT_TRUE(testing::WaitFor([&] { return dead_letters() == absl::StrCat(i + 1, "\n"); }, 30s))
        << dead_letters() << Tail(c.log(3));
  }
  // when one more change of t comes to shard 0, node 3 halts that shard,
  c.Sql(1, absl::StrCat("INSERT INTO t VALUES (", ids[3], ", 'row'), (", ids[4], ", 'row');"));
  ASSERT_TRUE(testing::WaitFor([&] { return !Halted(c, 3, 0).empty(); }, 30s)) << Tail(c.log(3));
  EXPECT_THAT(Halted(c, 3, 0), HasSubstr("-max-dead-letters"));
  EXPECT_EQ(Halted(c, 3, 1), "");
  // (shard 1 goes on there)
  const int64_t u1 = IdsOfShard("u", 1, 1, 1)[0];
  c.Sql(1, absl::StrCat("INSERT INTO u VALUES (", u1, ", 'shard 1');"));
  EXPECT_TRUE(testing::WaitFor(
      [&] { return c.Sql(3, absl::StrCat("SELECT v FROM u WHERE id = ", u1, ";")) == "shard 1\n"; },
      30s));

  // An operator's retry while the table is still missing answers the totals, resumes the shard
  // once, and it halts again with the reason it meets, once: no loop;
  httplib::Result retried = Pane(c, 3, "POST", "/v1/dead-letters:retry", "{}");
  ASSERT_TRUE(retried);
  EXPECT_EQ(retried->status, 200) << retried->body;
  EXPECT_THAT(retried->body, HasSubstr("\"stillFailing\":\"3\""));
  ASSERT_TRUE(testing::WaitFor(
      [&] { return Occurrences(c.log(3), "[shard 0 node 3] halted: ") == 2; }, 30s))
      << Tail(c.log(3));
  EXPECT_THAT(c.log(3), HasSubstr("[shard 0 node 3] resuming after retrying dead letters"));
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(Occurrences(c.log(3), "[shard 0 node 3] halted: "), 2) << Tail(c.log(3));
  EXPECT_THAT(Halted(c, 3, 0), HasSubstr("-max-dead-letters"));

  // when the table is created there, marmot retries its dead letters and resumes the shard:
  // node 3 applies what it missed and converges, without a restart.
  c.Sql(3, "CREATE TABLE t (id INTEGER PRIMARY KEY, v);");
  const std::string rows = "SELECT count(*), group_concat(id) FROM (SELECT id FROM t ORDER BY id);";
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(3, rows) == c.Sql(1, rows); }, 60s))
      << c.Sql(3, rows) << Tail(c.log(3));
  EXPECT_TRUE(testing::WaitFor([&] { return Halted(c, 3, 0).empty(); }, 30s)) << Halted(c, 3, 0);
  EXPECT_EQ(dead_letters(), "0\n");
  c.Sql(1, absl::StrCat("UPDATE t SET v = 'later' WHERE id = ", ids[0], "; INSERT INTO t VALUES (",
                        ids[5], ", 'later');"));
  const std::string dump = ".mode quote\nSELECT * FROM t ORDER BY id;";
  EXPECT_TRUE(c.WaitForSame(dump, 30s)) << c.Sql(3, dump);
  EXPECT_EQ(c.Sql(3, absl::StrCat("SELECT v FROM t WHERE id = ", ids[0], ";")), "later\n");
  EXPECT_EQ(Occurrences(c.log(3), "node 3 replicating"), 1);
}

}  // namespace
}  // namespace marmot
