// Real marmot processes and which cluster a node belongs to (issue 17: "a node with another
// -shards or of another cluster is refused with a clear line"): the nodes of a cluster agree on
// one cluster id; a node of another cluster (its own bootstrap, the same node ids and loopback
// addresses) pointed at them, and a node started with another -shards, are refused with one line
// naming both values and the peer, counted in /metrics, and change nothing in the cluster.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr char kSchema[] = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);";
constexpr char kRows[] = "SELECT group_concat(v, ',') FROM (SELECT v FROM t ORDER BY id);";

// Node `id`'s count of refused calls of kind `what`, from its /metrics (-1: no such line).
double Refused(const testing::LocalCluster& c, int id, const std::string& what) {
  httplib::Client rest("127.0.0.1", c.pane_port(id));
  httplib::Result r = rest.Get("/metrics");
  if (!r) return -1;
  std::smatch m;
  const std::regex line("marmot_raft_refused_total\\{what=\"" + what + "\"\\} ([0-9.e+]+)");
  return std::regex_search(r->body, m, line) ? std::stod(m[1]) : -1;
}

// The id node 3 (the highest founder) drew, once every node of `c` logged that it has it.
std::string ClusterIdOf(const testing::LocalCluster& c) {
  std::string id;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        std::smatch m;
        const std::string log = c.log(3);
        if (!std::regex_search(log, m, std::regex("drew cluster id ([0-9a-f]{32})"))) return false;
        id = m[1];
        return c.log(1).find("joined cluster " + id) != std::string::npos &&
               c.log(2).find("joined cluster " + id) != std::string::npos;
      },
      20s))
      << c.log(1) << c.log(2) << c.log(3);
  return id;
}

// Starts a marmot process for node 1 of another cluster on `raft_path`/`db_path` whose
// -bootstrap points at nodes 2 and 3 of `c`, with `flags` added.
std::unique_ptr<testing::Subprocess> StartStranger(
    const testing::LocalCluster& c, const std::string& bind, const std::string& db_path,
    const std::string& raft_path, std::vector<std::string> flags, const std::string& dir) {
  std::vector<std::string> argv = {
      testing::MarmotBinary(),
      "-node-id=1",
      "-bind=" + bind,
      absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()),
      absl::StrCat("-bind-rest=127.0.0.1:", testing::FreeLoopbackPort()),
      absl::StrCat("-bootstrap=2@", c.address(2), ",3@", c.address(3)),
      "-db-path=" + db_path,
      "-raft-path=" + raft_path,
  };
  argv.insert(argv.end(), flags.begin(), flags.end());
  return std::make_unique<testing::Subprocess>(argv, dir);
}

constexpr char kAuth[] = "Basic aWQ6aWQ=";

TEST(ClusterIdentityProcessTest, ANodeOfAnotherClusterIsRefusedAndChangesNothing) {
  // Given cluster A, whose nodes agree on a cluster id (and each says so in GetStatus),
  setenv("AUTH_KEY", kAuth, 1);
  testing::LocalCluster a({.nodes = 3, .shards = 4, .schema = kSchema});
  a.Start();
  const std::string a_id = ClusterIdOf(a);
  for (int id = 1; id <= 3; ++id) {
    httplib::Client rest("127.0.0.1", a.pane_port(id));
    httplib::Result status = rest.Get("/v1/status", {{"Authorization", kAuth}});
    ASSERT_TRUE(status) << "node " << id;
    EXPECT_THAT(status->body, HasSubstr("\"clusterId\":\"" + a_id + "\"")) << status->body;
  }
  a.Sql(1, "INSERT INTO t VALUES (1, 'a1');");
  ASSERT_TRUE(a.WaitForSame(kRows, 20s));
  // and cluster B, bootstrapped on its own (one node, node 1, with a row of its own),
  testing::LocalCluster b({.nodes = 1, .shards = 4, .schema = kSchema});
  b.Start();
  std::smatch m;
  ASSERT_TRUE(
      testing::WaitFor([&] { return b.log(1).find("drew cluster id") != std::string::npos; }, 10s));
  const std::string b_log = b.log(1);
  ASSERT_TRUE(std::regex_search(b_log, m, std::regex("drew cluster id ([0-9a-f]{32})")));
  const std::string b_id = m[1];
  ASSERT_NE(a_id, b_id);
  b.Sql(1, "INSERT INTO t VALUES (100, 'b');");
  ASSERT_EQ(b.StopNode(1), 0);

  // when B's node 1 restarts with A's nodes 2 and 3 as its peers,
  const std::string dir = testing::NewTestDir("stranger");
  auto stranger = StartStranger(a, b.address(1), b.db_path(1), b.raft_path(1), {"-shards=4"}, dir);

  // then A's nodes 2 and 3 refuse it with one line naming both cluster ids and the peer,
  for (int id : {2, 3}) {
    const std::string line =
        absl::StrCat("node 1 (listening at ", b.address(1), ") belongs to cluster ", b_id,
                     ", this node (", id, ") to cluster ", a_id);
    EXPECT_TRUE(testing::WaitFor([&] { return a.log(id).find(line) != std::string::npos; }, 15s))
        << "node " << id << " never logged: " << line << "\n"
        << a.log(id);
    EXPECT_GE(Refused(a, id, "cluster"), 1) << id;
  }
  // the stranger says so too, and keeps running (it is not a duplicate of A's node 1: a node of
  // another cluster is no concern of A's),
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return stranger->Stderr().find("refused by that node: node 1 (listening at " +
                                       b.address(1) + ") belongs to cluster " + b_id) !=
               std::string::npos;
      },
      10s))
      << stranger->Stderr();
  std::this_thread::sleep_for(5s);  // past the stranger's identity probe
  EXPECT_FALSE(stranger->Wait(0ms).has_value()) << stranger->Stderr();

  // and A is undisturbed: rows written on every node reach every node, none of B's.
  for (int id = 1; id <= 3; ++id)
    a.Sql(id, absl::StrCat("INSERT INTO t VALUES (", 1 + id, ", 'a", 1 + id, "');"));
  EXPECT_TRUE(a.WaitForSame(kRows, 10s));
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(a.Sql(id, kRows), "a1,a2,a3,a4\n") << id;
  EXPECT_EQ(a.log(1).find("another process"), std::string::npos) << a.log(1);
  stranger->Stop(SIGTERM, 30s);
}

TEST(ClusterIdentityProcessTest, ANodeWithAnotherShardCountIsRefusedAndChangesNothing) {
  testing::LocalCluster a({.nodes = 3, .shards = 4, .schema = kSchema});
  a.Start();
  a.Sql(1, "INSERT INTO t VALUES (1, 'a1');");
  ASSERT_TRUE(a.WaitForSame(kRows, 20s));

  // When a new node joining with -shards=8 dials A's nodes 2 and 3,
  const std::string dir = testing::NewTestDir("other-shards");
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(dir + "/other.db", kSchema).ok());
  auto other = StartStranger(a, absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort()),
                             dir + "/other.db", dir + "/raft", {"-shards=8", "-join"}, dir);

  // then they refuse it with one line naming both counts and the peer, and count it,
  for (int id : {2, 3}) {
    const std::string line = absl::StrCat(" runs 8 shards, this node (", id, ") 4");
    EXPECT_TRUE(testing::WaitFor([&] { return a.log(id).find(line) != std::string::npos; }, 15s))
        << "node " << id << "\n"
        << a.log(id);
    EXPECT_GE(Refused(a, id, "shards"), 1) << id;
  }
  // and rows still flow between A's nodes, and none reached the stranger.
  a.Sql(3, "INSERT INTO t VALUES (2, 'a2');");
  EXPECT_TRUE(a.WaitForSame(kRows, 10s));
  EXPECT_EQ(a.Sql(1, kRows), "a1,a2\n");
  EXPECT_EQ(
      sqlite::testing::RunSqliteCli(dir + "/other.db", "SELECT count(*) FROM t;").value_or(""),
      "0\n");
  other->Stop(SIGTERM, 30s);
}

}  // namespace
}  // namespace marmot
