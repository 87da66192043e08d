// Operating a live cluster through the control pane, as operators do with curl and grpcurl:
// leadership, snapshots, membership, backup, dead letters, conflicts.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/admin.grpc.pb.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/paths.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAuth[] = "Basic b3BzOm9wcw==";

class PaneClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("AUTH_KEY", kAuth, 1); }

  httplib::Result Call(testing::LocalCluster& c, int id, const std::string& method,
                       const std::string& path, const std::string& body = "") {
    httplib::Client client("127.0.0.1", c.pane_port(id));
    client.set_read_timeout(60, 0);
    httplib::Headers h = {{"Authorization", kAuth}};
    if (method == "GET") return client.Get(path.c_str(), h);
    if (method == "DELETE") return client.Delete(path.c_str(), h);
    return client.Post(path.c_str(), h, body, "application/json");
  }

  admin::v1::GetStatusResponse Status(testing::LocalCluster& c, int id) {
    admin::v1::GetStatusResponse out;
    auto res = Call(c, id, "GET", "/v1/status");
    if (res && res->status == 200) {
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &out).ok()) << res->body;
    }
    return out;
  }

  // Waits until every running node knows a leader for each of `shards` shards.
  bool WaitForLeadersEverywhere(testing::LocalCluster& c, int shards) {
    return testing::WaitFor(
        [&] {
          for (int id = 1; id <= c.nodes(); ++id) {
            if (!c.IsRunning(id)) continue;
            if (Status(c, id).shards_size() != shards || LeaderCounts(c, id).count(0)) return false;
          }
          return true;
        },
        30s);
  }

  // Shards led by each node, as node `id` sees it.
  std::map<uint64_t, int> LeaderCounts(testing::LocalCluster& c, int id) {
    std::map<uint64_t, int> counts;
    admin::v1::GetStatusResponse status = Status(c, id);
    for (const auto& s : status.shards()) ++counts[s.leader()];
    return counts;
  }
};

TEST_F(PaneClusterTest, LeadershipTransferBalanceAndSnapshots) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 6, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  ASSERT_TRUE(WaitForLeadersEverywhere(cluster, 6));

  // Balance: every node leads two of the six shards.
  auto res = Call(cluster, 2, "POST", "/v1/leaders:balance", "{}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return LeaderCounts(cluster, 1) == std::map<uint64_t, int>{{1, 2}, {2, 2}, {3, 2}};
      },
      30s))
      << Status(cluster, 1).DebugString();

  // Transfer shard 0 to a node that does not lead it, asking any node.
  uint64_t leader = Status(cluster, 1).shards(0).leader();
  uint64_t target = leader % 3 + 1;
  res = Call(cluster, 3, "POST", "/v1/shards/0/leader",
             absl::StrCat("{\"nodeId\": \"", target, "\"}"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(
      testing::WaitFor([&] { return Status(cluster, 1).shards(0).leader() == target; }, 30s));

  // Bad requests are told apart from refusals.
  res = Call(cluster, 1, "POST", "/v1/shards/99/leader", "{\"nodeId\": \"1\"}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("does not exist"));
  res = Call(cluster, 1, "POST", "/v1/shards/1/leader", "{\"nodeId\": \"42\"}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("not a voter"));

  // A snapshot of one shard answers for that shard, with the index of the snapshot just taken.
  cluster.Sql(1, "INSERT INTO t VALUES (1, 'before snapshot');");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM t;", 30s));
  res = Call(cluster, 1, "POST", "/v1/snapshots", "{\"shard\": 3}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  {
    admin::v1::TriggerSnapshotResponse one;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &one).ok()) << res->body;
    ASSERT_EQ(one.shards_size(), 1) << res->body;
    EXPECT_EQ(one.shards(0).shard(), 3u);
    EXPECT_GT(one.shards(0).snapshot_index(), 0u);
    EXPECT_GE(one.shards(0).snapshot_index() + 5, one.shards(0).applied_index()) << res->body;
  }
  // Snapshots of every shard, then the data still replicates.
  res = Call(cluster, 1, "POST", "/v1/snapshots", "{\"all\": true}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        admin::v1::GetStatusResponse status = Status(cluster, 1);
        for (const auto& s : status.shards()) {
          if (s.snapshot_index() == 0) return false;
        }
        return true;
      },
      30s))
      << Status(cluster, 1).DebugString();
  cluster.Sql(2, "INSERT INTO t VALUES (2, 'after snapshot');");
  EXPECT_TRUE(cluster.WaitForSame("SELECT * FROM t ORDER BY id;", 30s));
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM t;"), "2\n");
}

TEST_F(PaneClusterTest, BalanceLeadersOverSixteenShards) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 16});
  cluster.Start();
  ASSERT_TRUE(WaitForLeadersEverywhere(cluster, 16));
  // Pile every leadership onto node 1 first, then balance.
  for (int shard = 0; shard < 16; ++shard) {
    ASSERT_TRUE(Call(cluster, 1, "POST", absl::StrCat("/v1/shards/", shard, "/leader"),
                     "{\"nodeId\": \"1\"}"));
  }
  // Node 2 balances: it must know every new leader too (it learns of one at the first message of
  // the new term, which a loaded machine may delay past node 1's view).
  ASSERT_TRUE(testing::WaitFor(
      [&] { return LeaderCounts(cluster, 1)[1] == 16 && LeaderCounts(cluster, 2)[1] == 16; }, 30s))
      << Status(cluster, 1).DebugString() << Status(cluster, 2).DebugString();
  auto res = Call(cluster, 2, "POST", "/v1/leaders:balance", "{}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_THAT(res->body, HasSubstr("\"transfers\":10"));  // 16 -> 6, 5, 5.
  // No node leads more than ceil(16/3) = 6 shards.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        std::map<uint64_t, int> counts = LeaderCounts(cluster, 3);
        if (counts.count(0)) return false;
        for (const auto& [node, n] : counts) {
          if (n > 6) return false;
        }
        return counts.size() == 3;
      },
      30s))
      << Status(cluster, 3).DebugString();

  // From 4, 6, 6 (two leaderships moved off the node with the most), a balance evens it out
  // again: 6, 5, 5, not left as it is because no node is above 6.
  const admin::v1::GetStatusResponse status = Status(cluster, 1);
  std::map<uint64_t, std::vector<int>> led;
  for (const auto& sh : status.shards()) led[sh.leader()].push_back(static_cast<int>(sh.shard()));
  ASSERT_EQ(led.size(), 3u) << status.DebugString();
  auto most = std::max_element(led.begin(), led.end(), [](const auto& a, const auto& b) {
    return a.second.size() < b.second.size();
  });
  int given = 0;
  for (const auto& [node, shards] : led) {
    if (node == most->first) continue;
    const int shard = most->second[given++];
    auto moved = Call(cluster, 1, "POST", absl::StrCat("/v1/shards/", shard, "/leader"),
                      absl::StrCat("{\"nodeId\": \"", node, "\"}"));
    ASSERT_TRUE(moved);
    ASSERT_EQ(moved->status, 200) << moved->body;
  }
  auto even = [&](int id) {
    std::map<uint64_t, int> counts = LeaderCounts(cluster, id);
    if (counts.count(0) || counts.size() != 3) return false;
    int lo = 16, hi = 0;
    for (const auto& [node, n] : counts) lo = std::min(lo, n), hi = std::max(hi, n);
    return hi - lo <= 1;
  };
  ASSERT_TRUE(
      testing::WaitFor([&] { return !even(2) && LeaderCounts(cluster, 2).count(0) == 0; }, 30s))
      << Status(cluster, 2).DebugString();
  res = Call(cluster, 2, "POST", "/v1/leaders:balance", "{}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_THAT(res->body, HasSubstr("\"transfers\":1"));
  EXPECT_TRUE(testing::WaitFor([&] { return even(3); }, 30s)) << Status(cluster, 3).DebugString();
}

TEST_F(PaneClusterTest, LeadershipMovesOnlyToLiveNodesAndTheAnswersSaySo) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 8});
  cluster.Start();
  ASSERT_TRUE(WaitForLeadersEverywhere(cluster, 8));
  ASSERT_EQ(cluster.StopNode(3), 0);
  ASSERT_TRUE(WaitForLeadersEverywhere(cluster, 8));
  // A transfer to the node that is down says it did not happen.
  auto to_dead = Call(cluster, 1, "POST", "/v1/shards/0/leader", "{\"nodeId\": \"3\"}");
  ASSERT_TRUE(to_dead);
  EXPECT_EQ(to_dead->status, 504) << to_dead->body;
  EXPECT_THAT(to_dead->body, HasSubstr("did not take the leadership of shard 0"));
  // Pile every leadership onto node 1, then balance: over the two live nodes, 4 and 4.
  for (int shard = 0; shard < 8; ++shard) {
    auto moved = Call(cluster, 1, "POST", absl::StrCat("/v1/shards/", shard, "/leader"),
                      "{\"nodeId\": \"1\"}");
    ASSERT_TRUE(moved);
    ASSERT_EQ(moved->status, 200) << moved->body;
  }
  ASSERT_TRUE(testing::WaitFor([&] { return LeaderCounts(cluster, 2)[1] == 8; }, 30s));
  // Node 2 leads nothing now and is reachable; node 3 is down.
  {
    auto listed = Call(cluster, 1, "GET", "/v1/nodes");
    ASSERT_TRUE(listed);
    admin::v1::ListNodesResponse nodes;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(listed->body, &nodes).ok())
        << listed->body;
    std::map<uint64_t, bool> reachable;
    for (const auto& n : nodes.nodes()) reachable[n.node_id()] = n.reachable();
    EXPECT_EQ(reachable, (std::map<uint64_t, bool>{{1, true}, {2, true}, {3, false}}))
        << listed->body;
  }
  // GetStatus tells its peers the same way.
  {
    const admin::v1::GetStatusResponse status = Status(cluster, 1);
    std::map<uint64_t, bool> reachable;
    for (const auto& p : status.peers()) reachable[p.node_id()] = p.reachable();
    EXPECT_EQ(reachable, (std::map<uint64_t, bool>{{2, true}, {3, false}}));
  }
  auto res = Call(cluster, 2, "POST", "/v1/leaders:balance", "{}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_THAT(res->body, HasSubstr("\"transfers\":4"));
  EXPECT_THAT(res->body, HasSubstr("\"unreachable\":[\"3\"]"));
  EXPECT_EQ(LeaderCounts(cluster, 2), (std::map<uint64_t, int>{{1, 4}, {2, 4}}))
      << Status(cluster, 2).DebugString();
}

TEST_F(PaneClusterTest, EveryNodeStaysReadyUnderSteadyWrites) {
  // /readyz compared the applied and commit index at one instant: under steady writes a healthy
  // node flipped to unready now and then (and Kubernetes took it out of its Service).
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  ASSERT_TRUE(WaitForLeadersEverywhere(cluster, 4));
  for (int id = 1; id <= 3; ++id) {
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          auto r = Call(cluster, id, "GET", "/readyz");
          return r && r->status == 200;
        },
        30s));
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      // A write that fails (busy) is only one write fewer; readiness is what is measured.
      (void)sqlite::testing::RunSqliteCli(
          cluster.db_path(1 + i % 3),
          absl::StrCat(".timeout 5000\nINSERT INTO t VALUES (", i, ", randomblob(100));"));
    }
  });
  int probes = 0, unready = 0;
  std::string last_unready;
  const auto end = std::chrono::steady_clock::now() + 6s;
  while (std::chrono::steady_clock::now() < end) {
    for (int id = 1; id <= 3; ++id) {
      auto r = Call(cluster, id, "GET", "/readyz");
      ++probes;
      if (!r || r->status != 200) {
        ++unready;
        last_unready = r ? r->body : "no answer";
      }
    }
  }
  stop = true;
  writer.join();
  EXPECT_GT(probes, 30);
  EXPECT_EQ(unready, 0) << last_unready;
}

TEST_F(PaneClusterTest, SigtermDuringWritesLosesNothingAndExitsCleanly) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int batch = 0; !stop.load() && batch < 200; ++batch) {
      std::string sql;
      for (int i = 0; i < 20; ++i)
        absl::StrAppend(&sql, "INSERT INTO t VALUES (", batch * 20 + i, ", 'x');");
      cluster.Sql(2, sql);
      written += 20;
    }
  });
  ASSERT_TRUE(testing::WaitFor([&] { return written.load() >= 200; }, 30s));
  // Node 2 is asked to stop while its application keeps writing; it drains and exits 0.
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(cluster.StopNode(2), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 15s);
  std::this_thread::sleep_for(300ms);
  stop = true;
  writer.join();
  cluster.StartNode(2);
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s)) << cluster.log(2);
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*), sum(id) FROM t;", 60s))
      << cluster.Sql(1, "SELECT count(*) FROM t;") << cluster.Sql(2, "SELECT count(*) FROM t;");
  EXPECT_EQ(cluster.Sql(1, "SELECT count(*) FROM t;"), absl::StrCat(written.load(), "\n"));
}

TEST_F(PaneClusterTest, ANewEmptyNodeJoinsEveryShardReceivesAllDataAndIsRemoved) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 3, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  cluster.Sql(1,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
              "INSERT INTO t SELECT i, 'row ' || i FROM n;");
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*) FROM t;", 60s));
  // Snapshots on every node, so the new node starts from a snapshot of the rows, not the log.
  for (int id = 1; id <= 3; ++id) {
    auto snap = Call(cluster, id, "POST", "/v1/snapshots", "{\"all\": true}");
    ASSERT_TRUE(snap);
    ASSERT_EQ(snap->status, 200) << snap->body;
  }
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int id = 1; id <= 3; ++id) {
          admin::v1::GetStatusResponse status = Status(cluster, id);
          for (const auto& s : status.shards()) {
            if (s.snapshot_index() <= 1) return false;
          }
        }
        return true;
      },
      30s));

  // Given a fourth node with the schema and no rows, started with -join
  int four = cluster.StartJoiningNode();
  // When an operator adds it through any node's pane
  auto res = Call(
      cluster, 2, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", cluster.address(four), "\"}"));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body << cluster.log(2);
  // (it joined as a learner and AddNode returned once it was promoted: a voter of every shard)
  res = Call(cluster, 2, "GET", "/v1/nodes");
  ASSERT_TRUE(res);
  admin::v1::ListNodesResponse nodes;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &nodes).ok()) << res->body;
  bool listed = false;
  for (const auto& n : nodes.nodes()) {
    EXPECT_FALSE(n.learner()) << "node " << n.node_id() << " is still a learner: " << res->body;
    listed = listed || n.node_id() == static_cast<uint64_t>(four);
  }
  EXPECT_TRUE(listed) << res->body;
  EXPECT_THAT(cluster.log(2), HasSubstr(absl::StrCat("waiting for its promotion")));
  // Then it receives every existing row (through shard snapshots), and its own writes reach
  // the others
  EXPECT_TRUE(cluster.WaitForSame("SELECT count(*), sum(id) FROM t;", 60s)) << cluster.log(four);
  EXPECT_THAT(cluster.log(four), HasSubstr("installed a snapshot"));
  cluster.Sql(four, "INSERT INTO t VALUES (1000, 'from the new node');");
  EXPECT_TRUE(cluster.WaitForSame("SELECT count(*), sum(id) FROM t;", 60s));
  EXPECT_EQ(cluster.Sql(1, "SELECT v FROM t WHERE id = 1000;"), "from the new node\n");
  res = Call(cluster, 1, "GET", "/v1/nodes");
  ASSERT_TRUE(res);
  // A founder that did not add it knows its address too (it came with the membership change),
  // and lists it among its peers.
  EXPECT_THAT(res->body, HasSubstr(absl::StrCat("\"nodeId\":\"", four, "\",\"address\":\"",
                                                cluster.address(four), "\"")));
  {
    admin::v1::GetStatusResponse status = Status(cluster, 1);
    std::set<uint64_t> peers;
    for (const auto& p : status.peers()) {
      peers.insert(p.node_id());
      EXPECT_FALSE(p.address().empty()) << status.DebugString();
    }
    EXPECT_EQ(peers, (std::set<uint64_t>{2, 3, static_cast<uint64_t>(four)}))
        << status.DebugString();
  }

  // And it can be removed again; removing a node that is not a member is NOT_FOUND
  res = Call(cluster, 3, "DELETE", absl::StrCat("/v1/nodes/", four));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  res = Call(cluster, 1, "GET", "/v1/nodes");
  ASSERT_TRUE(res);
  EXPECT_THAT(res->body, Not(HasSubstr(absl::StrCat("\"nodeId\":\"", four, "\""))));
  const admin::v1::GetStatusResponse after = Status(cluster, 1);
  for (const auto& p : after.peers()) EXPECT_NE(p.node_id(), static_cast<uint64_t>(four));
  res = Call(cluster, 1, "DELETE", "/v1/nodes/9");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST_F(PaneClusterTest, ANodeJoiningWithAnEmptyFileGetsTheSchemaWithTheRows) {
  // A table made before marmot started (on every node) and one made on node 2 while it runs.
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  cluster.Sql(2,
              "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE);"
              "CREATE INDEX item_name_id ON item (name, id);"
              "INSERT INTO item VALUES (1, 'one'), (2, 'two');"
              "INSERT INTO t VALUES (1, 'a'), (2, 'b');");
  const std::string rows = "SELECT * FROM t; SELECT * FROM item;";
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s));
  for (int id = 1; id <= 3; ++id) {
    auto snap = Call(cluster, id, "POST", "/v1/snapshots", "{\"all\": true}");
    ASSERT_TRUE(snap);
    ASSERT_EQ(snap->status, 200) << snap->body;
  }
  // A fourth node from an empty file, no schema at all.
  const int four = cluster.StartJoiningNode(/*with_schema=*/false);
  auto res = Call(
      cluster, 1, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", cluster.address(four), "\"}"));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body << cluster.log(1);
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.log(four);
  const std::string schema =
      "SELECT type, name, sql FROM sqlite_master WHERE substr(name, 1, 10) != '__marmot__' "
      "ORDER BY type, name;";
  EXPECT_TRUE(cluster.WaitForSame(schema, 30s)) << cluster.Sql(four, schema);
  EXPECT_EQ(cluster.Sql(four, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n");
  // Its application writes the new tables, and the others see it.
  cluster.Sql(four, "INSERT INTO item VALUES (3, 'from the new node');");
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s));
  EXPECT_EQ(cluster.Sql(1, "SELECT name FROM item WHERE id = 3;"), "from the new node\n");
}

TEST_F(PaneClusterTest, BackupStreamsAPlainConsistentDatabase) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  cluster.Sql(1,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
              "INSERT INTO t SELECT i, randomblob(100) FROM n;");
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*) FROM t;", 60s));

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", cluster.pane_port(3)),
                                     grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kAuth);
  auto reader = admin::v1::Admin::NewStub(channel)->Backup(&ctx, {});
  std::string path = testing::NewTestDir("backup") + "/copy.db";
  std::ofstream out(path, std::ios::binary);
  admin::v1::BackupChunk chunk;
  uint64_t received = 0, total = 0;
  int chunks = 0;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), received);
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    received += chunk.data().size();
    total = chunk.total_size();
    ++chunks;
  }
  out.close();
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(received, total);
  EXPECT_GT(chunks, 1);  // Over 500 KB, in chunks.
  auto listing = sqlite::testing::RunSqliteCli(path,
                                               "SELECT name FROM sqlite_master ORDER BY name;"
                                               "SELECT count(*) FROM t; PRAGMA journal_mode;");
  ASSERT_TRUE(listing.ok()) << listing.status();
  EXPECT_EQ(*listing, "t\n5000\ndelete\n");

  // The same over REST: the file itself, or the usual 401 without the key.
  httplib::Client rest("127.0.0.1", cluster.pane_port(2));
  rest.set_read_timeout(60, 0);
  auto denied = rest.Get("/v1/backup");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 401);
  auto file = rest.Get("/v1/backup", {{"Authorization", kAuth}});
  ASSERT_TRUE(file);
  ASSERT_EQ(file->status, 200) << file->body.substr(0, 200);
  EXPECT_EQ(file->get_header_value("Content-Type"), "application/vnd.sqlite3");
  EXPECT_EQ(file->get_header_value("Content-Disposition"),
            "attachment; filename=\"marmot-backup.db\"");
  std::string rest_path = testing::NewTestDir("backup-rest") + "/copy.db";
  std::ofstream(rest_path, std::ios::binary) << file->body;
  auto rest_listing = sqlite::testing::RunSqliteCli(
      rest_path, "SELECT name FROM sqlite_master ORDER BY name; SELECT count(*) FROM t;");
  ASSERT_TRUE(rest_listing.ok()) << rest_listing.status();
  EXPECT_EQ(*rest_listing, "t\n5000\n");
}

TEST_F(PaneClusterTest, ANodeMissingATableRetriesItsDeadLettersOnceTheTableExists) {
  // Given three nodes where node 3 lacks table t
  testing::LocalCluster cluster({.nodes = 3,
                                 .shards = 2,
                                 .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);",
                                 // (A table dropped while marmot runs is dropped everywhere.)
                                 .rows_before = {{3, "DROP TABLE t;"}}});
  cluster.Start();
  auto dead_letters = [&](int id) {
    return cluster.Sql(id, "SELECT count(*) FROM \"__marmot__dead_letters\";");
  };

  // When node 1 writes 28 changes (inserts, updates, deletes of the same rows)
  cluster.Sql(1,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) "
              "INSERT INTO t SELECT i, 'row ' || i FROM n;"
              "UPDATE t SET v = 'updated' WHERE id <= 5; DELETE FROM t WHERE id > 17;");
  // Then node 2 applies them and node 3 dead-letters every one (each in its own time: node 3
  // may be done before node 2)
  ASSERT_TRUE(testing::WaitFor([&] { return dead_letters(3) == "28\n"; }, 60s))
      << dead_letters(3) << cluster.log(3);
  EXPECT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(2, "SELECT count(*) FROM t;") == "17\n"; }, 60s))
      << cluster.Sql(2, "SELECT count(*) FROM t;");
  EXPECT_EQ(dead_letters(2), "0\n");

  // An operator's retry through node 3's pane (gRPC) needs the key, and changes nothing while
  // the table is still missing
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", cluster.pane_port(3)),
                                     grpc::InsecureChannelCredentials());
  admin::v1::RetryDeadLettersResponse out;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status denied = admin::v1::Admin::NewStub(channel)->RetryDeadLetters(&ctx, {}, &out);
    EXPECT_EQ(denied.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  ctx.AddMetadata("authorization", kAuth);
  grpc::Status s = admin::v1::Admin::NewStub(channel)->RetryDeadLetters(&ctx, {}, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.applied(), 0);
  EXPECT_EQ(out.still_failing(), 28);
  EXPECT_EQ(dead_letters(3), "28\n");

  // When the table is created on node 3, marmot retries its dead letters by itself: they apply
  // in order, and a later change of one of their rows applies after them
  cluster.Sql(3, "CREATE TABLE t (id INTEGER PRIMARY KEY, v);");
  ASSERT_TRUE(testing::WaitFor([&] { return dead_letters(3) == "0\n"; }, 30s))
      << dead_letters(3) << cluster.log(3);
  cluster.Sql(1, "UPDATE t SET v = 'late' WHERE id = 1; INSERT INTO t VALUES (1000, 'new row');");
  const std::string dump = ".mode quote\nSELECT * FROM t ORDER BY id;";
  ASSERT_TRUE(testing::WaitFor([&] { return cluster.Sql(3, dump) == cluster.Sql(1, dump); }, 30s))
      << cluster.Sql(3, dump);
  EXPECT_EQ(cluster.Sql(3, "SELECT v FROM t WHERE id = 1;"), "late\n");
  EXPECT_TRUE(cluster.WaitForSame(dump, 30s));
  EXPECT_THAT(Call(cluster, 3, "GET", "/v1/status")->body, HasSubstr("\"deadLetters\":\"0\""));
}

TEST_F(PaneClusterTest, ANewNodeJoiningFromASnapshotWithDeadLettersGetsTheirChanges) {
  // Given three nodes where node 3 lacks table t and dead-lettered node 1's 28 changes of it
  testing::LocalCluster cluster({.nodes = 3,
                                 .shards = 2,
                                 .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);",
                                 // (A table dropped while marmot runs is dropped everywhere.)
                                 .rows_before = {{3, "DROP TABLE t;"}}});
  cluster.Start();
  auto dead_letters = [&](int id) {
    return cluster.Sql(id, "SELECT count(*) FROM \"__marmot__dead_letters\";");
  };
  cluster.Sql(1,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) "
              "INSERT INTO t SELECT i, 'row ' || i FROM n;"
              "UPDATE t SET v = 'updated' WHERE id <= 5; DELETE FROM t WHERE id > 17;");
  ASSERT_TRUE(testing::WaitFor([&] { return dead_letters(3) == "28\n"; }, 60s))
      << dead_letters(3) << cluster.log(3);
  // And node 3 leads both shards and snapshotted them: its snapshots hold no rows of t, and its
  // dedupe state counts the 28 changes as applied
  ASSERT_TRUE(WaitForLeadersEverywhere(cluster, 2));
  for (int shard = 0; shard < 2; ++shard) {
    auto res = Call(cluster, 1, "POST", absl::StrCat("/v1/shards/", shard, "/leader"),
                    "{\"nodeId\": \"3\"}");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
  }
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int id = 1; id <= 3; ++id) {
          if (LeaderCounts(cluster, id) != std::map<uint64_t, int>{{3, 2}}) return false;
        }
        return true;
      },
      30s))
      << Status(cluster, 1).DebugString();
  auto res = Call(cluster, 3, "POST", "/v1/snapshots", "{\"all\": true}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        admin::v1::GetStatusResponse status = Status(cluster, 3);
        for (const auto& s : status.shards()) {
          if (s.snapshot_index() <= 1) return false;
        }
        return true;
      },
      30s));

  // When a fourth node with the schema joins: it starts from node 3's snapshots
  int four = cluster.StartJoiningNode();
  res = Call(
      cluster, 1, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", cluster.address(four), "\"}"));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body << cluster.log(1);

  // Then it applied the changes those snapshots carried: its rows are node 1's, with no dead
  // letters of its own
  const std::string dump = ".mode quote\nSELECT * FROM t ORDER BY id;";
  EXPECT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(four, dump) == cluster.Sql(1, dump); }, 30s))
      << cluster.Sql(four, dump) << cluster.log(four);
  EXPECT_EQ(cluster.Sql(four, "SELECT count(*) FROM t;"), "17\n");
  EXPECT_THAT(cluster.log(four), HasSubstr("dead letter(s) of the node that made it"));
  EXPECT_EQ(dead_letters(four), "0\n");
  EXPECT_EQ(dead_letters(3), "28\n");  // The snapshot changed nothing on its maker.
  // And later writes reach it as usual
  cluster.Sql(1, "UPDATE t SET v = 'later' WHERE id = 1;");
  EXPECT_TRUE(testing::WaitFor(
      [&] { return cluster.Sql(four, "SELECT v FROM t WHERE id = 1;") == "later\n"; }, 30s));
}

TEST_F(PaneClusterTest, ConflictsAreListedAlikeOnEveryNodeAndResolvedOnOneClearThemEverywhere) {
  // Given three nodes holding rows 1 to 5 of doc (in both shards)
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 2,
       .schema = "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT, photo BLOB, score REAL);"});
  cluster.Start();
  const std::string rows = ".mode quote\nSELECT * FROM doc ORDER BY id;";
  const std::string kept =
      "SELECT tbl, key, origin, change_id, op, winner_origin, winner_change_id, hex(change) FROM "
      "\"__marmot__conflicts\" ORDER BY origin, tbl, change_id;";
  auto kept_count = [&](int id) {
    return cluster.Sql(id, "SELECT count(*) FROM \"__marmot__conflicts\";");
  };
  cluster.Sql(1,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
              "INSERT INTO doc SELECT i, 'first ' || i, NULL, 0.5 FROM n;");
  ASSERT_TRUE(cluster.WaitForSame(rows, 30s)) << cluster.Sql(3, rows);

  // When node 3's application edits rows 1 to 4 and deletes row 5 while its marmot is stopped,
  // and node 1's edits all five meanwhile: node 3's changes were made without seeing node 1's,
  // which come first in the shards, so they lose and are kept on every node
  ASSERT_EQ(cluster.StopNode(3), 0);
  cluster.Sql(3,
              "UPDATE doc SET body = 'node 3 ' || id, photo = X'00FF', score = 2.5 WHERE id <= 4;"
              "DELETE FROM doc WHERE id = 5;");
  cluster.Sql(1, "UPDATE doc SET body = 'node 1 ' || id;");
  ASSERT_TRUE(testing::WaitFor(
      [&] { return cluster.Sql(2, "SELECT body FROM doc WHERE id = 5;") == "node 1 5\n"; }, 30s));
  cluster.StartNode(3);
  ASSERT_TRUE(testing::WaitFor([&] { return kept_count(1) == "5\n"; }, 60s))
      << kept_count(1) << cluster.log(3);
  ASSERT_TRUE(cluster.WaitForSame(kept, 60s)) << cluster.Sql(3, kept);
  ASSERT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.Sql(3, rows);
  EXPECT_EQ(cluster.Sql(3, "SELECT group_concat(body, '|') FROM doc;"),
            "node 1 1|node 1 2|node 1 3|node 1 4|node 1 5\n");

  // Then ListConflicts answers the same on nodes 1 and 2 (but for each node's own ids), with the
  // losing rows' values and their storage classes
  auto list = [&](int id, const std::string& query = "") {
    admin::v1::ListConflictsResponse out;
    auto res = Call(cluster, id, "GET", "/v1/conflicts" + query);
    EXPECT_TRUE(res && res->status == 200) << (res ? res->body : "no answer");
    if (res && res->status == 200) {
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &out).ok()) << res->body;
    }
    return out;
  };
  auto without_ids = [](admin::v1::ListConflictsResponse r) {
    for (admin::v1::Conflict& c : *r.mutable_conflicts()) c.clear_id();
    std::sort(r.mutable_conflicts()->begin(), r.mutable_conflicts()->end(),
              [](const admin::v1::Conflict& a, const admin::v1::Conflict& b) {
                return a.change_id() < b.change_id();
              });
    return r.SerializeAsString();
  };
  admin::v1::ListConflictsResponse on_1 = list(1);
  admin::v1::ListConflictsResponse on_2 = list(2);
  ASSERT_EQ(on_1.total(), 5);
  ASSERT_EQ(on_1.conflicts_size(), 5);
  EXPECT_EQ(without_ids(on_1), without_ids(on_2)) << on_1.DebugString() << on_2.DebugString();
  std::set<uint32_t> shards;
  int updates = 0, deletes = 0;
  for (const admin::v1::Conflict& c : on_2.conflicts()) {
    shards.insert(c.shard());
    EXPECT_EQ(c.table(), "doc");
    EXPECT_EQ(c.origin_node(), 3u);
    EXPECT_EQ(c.winner_origin_node(), 1u);
    EXPECT_GT(c.winner_change_id(), 0);
    EXPECT_GT(c.at_ms(), 0);
    if (c.op() == "delete") {
      ++deletes;
      EXPECT_EQ(c.key(), "5");
      ASSERT_EQ(c.old_key_size(), 1) << c.DebugString();
      EXPECT_EQ(c.old_key(0).column(), "id");
      EXPECT_EQ(c.old_key(0).value().integer(), 5);
      continue;
    }
    ++updates;
    EXPECT_EQ(c.op(), "update");
    ASSERT_EQ(c.row_size(), 4) << c.DebugString();
    EXPECT_EQ(c.row(0).column(), "id");
    EXPECT_EQ(c.key(), std::to_string(c.row(0).value().integer()));
    EXPECT_EQ(c.row(1).value().text(), absl::StrCat("node 3 ", c.key()));
    EXPECT_EQ(c.row(2).value().blob(), std::string("\x00\xff", 2));
    EXPECT_EQ(c.row(3).value().real(), 2.5);
  }
  EXPECT_EQ(updates, 4);
  EXPECT_EQ(deletes, 1);
  EXPECT_EQ(shards.size(), 2u) << "rows 1 to 5 are expected in both shards";
  // Paging: two at a time, newest first, every one once.
  std::set<int64_t> paged;
  int64_t before = 0;
  for (int page = 0; page < 3; ++page) {
    admin::v1::ListConflictsResponse p =
        list(2, absl::StrCat("?limit=2&table=doc&before_id=", before));
    for (const admin::v1::Conflict& c : p.conflicts()) {
      EXPECT_TRUE(before == 0 || c.id() < before);
      paged.insert(c.id());
    }
    if (p.conflicts_size() > 0) before = p.conflicts(p.conflicts_size() - 1).id();
  }
  EXPECT_EQ(paged.size(), 5u);
  EXPECT_EQ(list(2, "?table=other").total(), 0);

  // An unknown conflict is NOT_FOUND, and nothing is resolved
  auto unknown = Call(cluster, 2, "POST", "/v1/conflicts:resolve",
                      R"({"conflicts": [{"originNode": "3", "table": "doc", "changeId": "999"}]})");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404) << unknown->body;
  EXPECT_EQ(kept_count(2), "5\n");

  // When an operator resolves the delete and one update on node 2 (REST, by what names them on
  // every node), node 2 no longer lists them when the call answers, and nodes 1 and 3 drop them
  std::vector<const admin::v1::Conflict*> first;
  for (const admin::v1::Conflict& c : on_2.conflicts()) {
    if (c.op() == "delete" || (first.size() < 2 && c.key() == "1")) first.push_back(&c);
  }
  ASSERT_EQ(first.size(), 2u);
  std::string body = R"({"conflicts": [)";
  for (const admin::v1::Conflict* c : first) {
    absl::StrAppend(&body, c == first.front() ? "" : ",", R"({"originNode": ")", c->origin_node(),
                    R"(", "table": "doc", "changeId": ")", c->change_id(), R"("})");
  }
  body += "]}";
  auto resolved = Call(cluster, 2, "POST", "/v1/conflicts:resolve", body);
  ASSERT_TRUE(resolved);
  ASSERT_EQ(resolved->status, 200) << resolved->body;
  EXPECT_THAT(resolved->body, HasSubstr("\"resolved\":\"2\""));
  EXPECT_EQ(list(2).total(), 3);
  for (int id : {1, 3}) {
    EXPECT_TRUE(testing::WaitFor([&] { return kept_count(id) == "3\n"; }, 30s))
        << "node " << id << ": " << kept_count(id);
  }
  EXPECT_TRUE(cluster.WaitForSame(kept, 30s));
  EXPECT_THAT(cluster.Sql(1, kept), Not(HasSubstr("|D|")));

  // And resolving all that remain over gRPC (with the key) clears them on all three nodes
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", cluster.pane_port(2)),
                                     grpc::InsecureChannelCredentials());
  admin::v1::ResolveConflictRequest all;
  all.set_all(true);
  admin::v1::ResolveConflictResponse out;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    EXPECT_EQ(admin::v1::Admin::NewStub(channel)->ResolveConflict(&ctx, all, &out).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  ctx.AddMetadata("authorization", kAuth);
  grpc::Status s = admin::v1::Admin::NewStub(channel)->ResolveConflict(&ctx, all, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.resolved(), 3);
  EXPECT_EQ(kept_count(2), "0\n");
  for (int id : {1, 3}) {
    EXPECT_TRUE(testing::WaitFor([&] { return kept_count(id) == "0\n"; }, 30s))
        << "node " << id << ": " << kept_count(id);
  }
  // The rows stay as they were.
  EXPECT_TRUE(cluster.WaitForSame(rows, 30s));
  EXPECT_EQ(cluster.Sql(2, "SELECT group_concat(body, '|') FROM doc;"),
            "node 1 1|node 1 2|node 1 3|node 1 4|node 1 5\n");
}

}  // namespace
}  // namespace marmot
