// Verify on a live 3-node cluster: an unchanged cluster differs nowhere; rows changed behind
// marmot's back (triggers off, as a tool writing the file directly would) are found, with the
// shard, the table, the node and the key; bad arguments are refused with a clear error; a node
// that is down is reported unreachable within the timeout instead of holding the call.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/admin.grpc.pb.h"
#include "replicator/shard_router.h"
#include "tests/testing/local_cluster.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kAuth[] = "Basic dmVyaWZ5OnZlcmlmeQ==";
constexpr int kShards = 4;
constexpr char kSchema[] =
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);"
    "CREATE TABLE tags (k TEXT PRIMARY KEY, v) WITHOUT ROWID;";

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("AUTH_KEY", kAuth, 1); }

  // Verify over REST on node `id`; the HTTP status and the answer.
  std::pair<int, admin::v1::VerifyResponse> VerifyRest(testing::LocalCluster& c, int id,
                                                       const std::string& body) {
    httplib::Client client("127.0.0.1", c.pane_port(id));
    client.set_read_timeout(120, 0);
    auto res = client.Post("/v1/verify", {{"Authorization", kAuth}}, body, "application/json");
    if (!res) return {0, {}};
    admin::v1::VerifyResponse out;
    if (res->status == 200) {
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &out).ok()) << res->body;
    }
    last_body_ = res->body;
    return {res->status, out};
  }

  grpc::Status VerifyGrpc(testing::LocalCluster& c, int id, const admin::v1::VerifyRequest& req,
                          admin::v1::VerifyResponse* out) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", c.pane_port(id)),
                                       grpc::InsecureChannelCredentials());
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kAuth);
    ctx.set_deadline(std::chrono::system_clock::now() + 120s);
    return admin::v1::Admin::NewStub(channel)->Verify(&ctx, req, out);
  }

  static int ShardOf(const std::string& table, sqlite::Value key) {
    return replicator::ShardRouter(kShards).ShardOf(table, {std::move(key)});
  }

  std::string last_body_;
};

TEST_F(VerifyTest, FindsRowsChangedBehindMarmotsBackWithTheirShardTableNodeAndKey) {
  testing::LocalCluster cluster({.nodes = 3, .shards = kShards, .schema = kSchema});
  cluster.Start();
  // Given rows written on two nodes and replicated everywhere,
  cluster.Sql(1,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) "
              "INSERT INTO items SELECT i, 'item ' || i, i * 10 FROM n;");
  cluster.Sql(2, "INSERT INTO tags VALUES ('red', 1), ('green', 2.5), ('blue', X'00ff');");
  ASSERT_TRUE(cluster.WaitForSame(
      "SELECT count(*), sum(qty) FROM items; SELECT k, quote(v) FROM tags ORDER BY k;", 60s));

  // when nothing differs, Verify says so for every shard, each measured by every node;
  auto [status, clean] = VerifyRest(cluster, 2, "{}");
  ASSERT_EQ(status, 200) << last_body_;
  EXPECT_EQ(clean.divergent_shards(), 0u) << last_body_;
  ASSERT_EQ(clean.shards_size(), kShards) << last_body_;
  for (const admin::v1::ShardVerification& s : clean.shards()) {
    EXPECT_FALSE(s.divergent());
    EXPECT_THAT(s.reported(), ElementsAre(1, 2, 3)) << last_body_;
    EXPECT_TRUE(s.unreachable().empty()) << last_body_;
    EXPECT_GT(s.index(), 0u);
  }

  // when node 3's file is written with triggers off (marmot never sees it): one row changed,
  // and on node 1 a row that no other node has, of another storage class than its value
  // elsewhere would be;
  cluster.Sql(3, ".dbconfig enable_trigger off\nUPDATE items SET qty = 999 WHERE id = 7;");
  cluster.Sql(1, ".dbconfig enable_trigger off\nINSERT INTO tags VALUES ('zz-only-here', '1');");
  ASSERT_EQ(cluster.Sql(3, "SELECT qty FROM items WHERE id = 7;"), "999\n");
  ASSERT_EQ(cluster.Sql(2, "SELECT qty FROM items WHERE id = 7;"), "70\n");

  // then Verify (over gRPC, on node 1) finds exactly those shards, tables, nodes and keys.
  admin::v1::VerifyResponse found;
  ASSERT_TRUE(VerifyGrpc(cluster, 1, {}, &found).ok());
  const int items_shard = ShardOf("items", sqlite::Value::Integer(7));
  const int tags_shard = ShardOf("tags", sqlite::Value::Text("zz-only-here"));
  EXPECT_EQ(found.divergent_shards(), items_shard == tags_shard ? 1u : 2u) << found.DebugString();
  bool saw_items = false, saw_tags = false;
  for (const admin::v1::ShardVerification& s : found.shards()) {
    EXPECT_EQ(s.divergent(), static_cast<int>(s.shard()) == items_shard ||
                                 static_cast<int>(s.shard()) == tags_shard)
        << found.DebugString();
    EXPECT_THAT(s.reported(), ElementsAre(1, 2, 3));
    for (const admin::v1::TableDivergence& t : s.tables()) {
      ASSERT_EQ(t.keys_size(), 1) << t.DebugString();
      if (t.table() == "items") {
        saw_items = true;
        EXPECT_EQ(static_cast<int>(s.shard()), items_shard);
        EXPECT_THAT(t.differing_nodes(), ElementsAre(3));
        EXPECT_EQ(t.keys(0).node_id(), 3u);
        EXPECT_EQ(t.keys(0).key(), "[7]");
        EXPECT_EQ(t.keys(0).difference(), "changed");
        ASSERT_EQ(t.digests_size(), 3);
        for (const admin::v1::TableDigest& d : t.digests()) EXPECT_FALSE(d.missing());
      } else {
        ASSERT_EQ(t.table(), "tags");
        saw_tags = true;
        EXPECT_EQ(static_cast<int>(s.shard()), tags_shard);
        EXPECT_THAT(t.differing_nodes(), ElementsAre(1));
        EXPECT_EQ(t.keys(0).node_id(), 1u);
        EXPECT_EQ(t.keys(0).key(), "['zz-only-here']");
        EXPECT_EQ(t.keys(0).difference(), "extra");
      }
    }
  }
  EXPECT_TRUE(saw_items && saw_tags) << found.DebugString();

  // The gauge of the node that verified counts them.
  httplib::Client metrics("127.0.0.1", cluster.pane_port(1));
  auto scrape = metrics.Get("/metrics");
  ASSERT_TRUE(scrape);
  EXPECT_THAT(scrape->body, HasSubstr(absl::StrCat("marmot_divergent_shards ",
                                                   items_shard == tags_shard ? 1 : 2)));

  // Repair, asked of node 2, has node 1 or 2 write row 7 again and node 1 delete its extra row:
  // every node then holds what the others hold, and the shards agree.
  httplib::Client pane("127.0.0.1", cluster.pane_port(2));
  pane.set_read_timeout(120, 0);
  int64_t rewritten = 0, deleted = 0;
  for (int shard : std::set<int>{items_shard, tags_shard}) {
    auto res = pane.Post("/v1/repair", {{"Authorization", kAuth}},
                         absl::StrCat(R"({"shard": )", shard, "}"), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    admin::v1::RepairResponse repaired;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &repaired).ok());
    EXPECT_FALSE(repaired.after().divergent()) << res->body;
    EXPECT_GE(repaired.rounds(), 1u);
    rewritten += repaired.rewritten();
    deleted += repaired.deleted();
  }
  EXPECT_EQ(rewritten, 1);
  EXPECT_EQ(deleted, 1);
  EXPECT_TRUE(cluster.WaitForSame(
      "SELECT count(*), sum(qty) FROM items; SELECT k, quote(v) FROM tags ORDER BY k;", 30s));
  EXPECT_EQ(cluster.Sql(3, "SELECT qty FROM items WHERE id = 7;"), "70\n");
  EXPECT_EQ(cluster.Sql(1, "SELECT count(*) FROM tags WHERE k = 'zz-only-here';"), "0\n");
  auto [after_status, after] = VerifyRest(cluster, 3, "{}");
  ASSERT_EQ(after_status, 200);
  EXPECT_EQ(after.divergent_shards(), 0u) << last_body_;
}

TEST_F(VerifyTest, RefusesBadArgumentsAndReportsADownNodeUnreachableWithinTheTimeout) {
  testing::LocalCluster cluster({.nodes = 3, .shards = kShards, .schema = kSchema});
  cluster.Start();
  cluster.Sql(2, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2);");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM items ORDER BY id;", 60s));

  auto [status, unused] = VerifyRest(cluster, 1, R"({"shards": [1, 99]})");
  EXPECT_EQ(status, 400);
  EXPECT_THAT(last_body_, HasSubstr("no shard 99: this cluster has 4 (0 to 3)"));
  admin::v1::VerifyRequest too_long;
  too_long.set_timeout_seconds(601);
  admin::v1::VerifyResponse out;
  grpc::Status refused = VerifyGrpc(cluster, 1, too_long, &out);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("at most 600"));
  std::tie(status, unused) = VerifyRest(cluster, 1, R"({"shards": "x"})");
  EXPECT_EQ(status, 400) << last_body_;
  httplib::Client pane("127.0.0.1", cluster.pane_port(1));
  auto repair =
      pane.Post("/v1/repair", {{"Authorization", kAuth}}, R"({"shard": 4})", "application/json");
  ASSERT_TRUE(repair);
  EXPECT_EQ(repair->status, 400);
  EXPECT_THAT(repair->body, HasSubstr("no shard 4"));
  // Without the key: refused as every call is.
  httplib::Client anonymous("127.0.0.1", cluster.pane_port(1));
  auto res = anonymous.Post("/v1/verify", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);

  // A node that is down does not hold the call: it is unreachable in every shard, and the
  // other two still measure and compare (where it led, once they elected another leader).
  cluster.KillNode(3);
  auto start = std::chrono::steady_clock::now();
  std::tie(status, out) = VerifyRest(cluster, 1, R"({"timeoutSeconds": 15})");
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(status, 200) << last_body_;
  EXPECT_GE(took, 15s);  // It waited for node 3 as long as it was told,
  EXPECT_LT(took, 25s);  // and not longer.
  ASSERT_EQ(out.shards_size(), kShards);
  for (const admin::v1::ShardVerification& s : out.shards()) {
    EXPECT_THAT(s.unreachable(), ElementsAre(3)) << last_body_;
    EXPECT_THAT(s.reported(), ElementsAre(1, 2)) << last_body_;
    EXPECT_FALSE(s.divergent()) << last_body_;
  }
  // With a majority down, no shard commits its marker: every member is unreachable, and the
  // call still answers by its timeout.
  cluster.KillNode(2);
  start = std::chrono::steady_clock::now();
  std::tie(status, out) = VerifyRest(cluster, 1, R"({"shards": [2], "timeoutSeconds": 3})");
  took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(status, 200) << last_body_;
  EXPECT_LT(took, 10s);
  ASSERT_EQ(out.shards_size(), 1);
  EXPECT_THAT(out.shards(0).unreachable(), ElementsAre(1, 2, 3)) << last_body_;
  EXPECT_FALSE(out.shards(0).error().empty()) << last_body_;
}

TEST_F(VerifyTest, FindsADifferenceBeyondTheFirstPageOfKeys) {
  testing::LocalCluster cluster({.nodes = 3, .shards = kShards, .schema = kSchema});
  cluster.Start();
  // Given about 1,250 rows per shard (keys are listed 1,000 at a time),
  cluster.Sql(1,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
              "INSERT INTO items SELECT i, 'item ' || i, i FROM n;");
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*), sum(qty) FROM items;", 60s));
  const int shard = ShardOf("items", sqlite::Value::Integer(4999));
  int before = 0;  // Keys of the shard listed before 4999.
  for (int id = 1; id < 4999; ++id) before += ShardOf("items", sqlite::Value::Integer(id)) == shard;
  ASSERT_GT(before, 1000);
  // when node 3 loses one of the last rows behind marmot's back,
  cluster.Sql(3, ".dbconfig enable_trigger off\nDELETE FROM items WHERE id = 4999;");
  // then Verify finds it, past the first page.
  auto [status, found] = VerifyRest(cluster, 2, absl::StrCat(R"({"shards": [)", shard, "]}"));
  ASSERT_EQ(status, 200) << last_body_;
  ASSERT_EQ(found.shards_size(), 1);
  ASSERT_EQ(found.shards(0).tables_size(), 1) << last_body_;
  const admin::v1::TableDivergence& t = found.shards(0).tables(0);
  EXPECT_THAT(t.differing_nodes(), ElementsAre(3));
  ASSERT_EQ(t.keys_size(), 1) << last_body_;
  EXPECT_EQ(t.keys(0).key(), "[4999]");
  EXPECT_EQ(t.keys(0).difference(), "missing");
  EXPECT_EQ(t.keys_note(), "");
  ASSERT_EQ(t.digests_size(), 3);
  EXPECT_EQ(t.digests(2).node_id(), 3u);
  // Node 3 holds the shard's other rows: those before 4999 and maybe 5000.
  EXPECT_EQ(t.digests(2).rows(),
            before + (ShardOf("items", sqlite::Value::Integer(5000)) == shard ? 1 : 0));
  EXPECT_EQ(t.digests(0).rows(), t.digests(2).rows() + 1);

  // Repair over gRPC: a node that has the row writes it again, and node 3 has it back.
  admin::v1::RepairRequest req;
  req.set_shard(shard);
  admin::v1::RepairResponse repaired;
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", cluster.pane_port(1)),
                                     grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kAuth);
  ASSERT_TRUE(admin::v1::Admin::NewStub(channel)->Repair(&ctx, req, &repaired).ok());
  EXPECT_EQ(repaired.rewritten(), 1);
  EXPECT_EQ(repaired.deleted(), 0);
  EXPECT_FALSE(repaired.after().divergent()) << repaired.DebugString();
  EXPECT_TRUE(cluster.WaitForSame("SELECT count(*), sum(qty) FROM items;", 30s));
  EXPECT_EQ(cluster.Sql(3, "SELECT name, qty FROM items WHERE id = 4999;"), "item 4999|4999\n");
}

TEST_F(VerifyTest, VerifyEveryMakesEachLeaderVerifyItsShardsAndCountTheDivergentOnes) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = kShards, .schema = kSchema, .extra_flags = {"-verify-every=1"}});
  cluster.Start();
  cluster.Sql(1, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM items ORDER BY id;", 60s));
  // The gauge of every node, summed: each shard is verified by its leader.
  auto divergent = [&] {
    int sum = 0;
    for (int id = 1; id <= 3; ++id) {
      httplib::Client client("127.0.0.1", cluster.pane_port(id));
      auto res = client.Get("/metrics");
      if (!res) return -1;
      const size_t at = res->body.find("\nmarmot_divergent_shards ");
      if (at == std::string::npos) return -1;
      sum += std::stoi(res->body.substr(at + 25));
    }
    return sum;
  };
  // A few rounds find nothing,
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(divergent(), 0);
  // then a row changed behind marmot's back on node 2 is found by the shard's leader, and logged.
  cluster.Sql(2, ".dbconfig enable_trigger off\nDELETE FROM items WHERE id = 2;");
  // (A shard whose leadership moved since may be counted by its old leader too.)
  EXPECT_TRUE(testing::WaitFor([&] { return divergent() >= 1; }, 30s)) << divergent();
  bool logged = false;
  for (int id = 1; id <= 3; ++id) {
    logged |= cluster.log(id).find("table \"items\" differs on node(s) 2") != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

}  // namespace
}  // namespace marmot
