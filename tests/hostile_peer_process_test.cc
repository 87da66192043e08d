// The hostile peer against real marmot processes started with a cluster key
// (-cluster-key-file): a client without the key proposes, sends a snapshot that would empty a
// shard, and opens a stream in node 1's name; all are refused and counted in /metrics, no row
// changes, and a row written afterwards reaches every node. (Effects on the Raft state are
// checked in tests/host/hostile_peer_test.cc; this checks the wiring from flag to metric.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <regex>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "proto/transport.grpc.pb.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/paths.h"

namespace marmot {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

tv1::MessageBatch Batch(uint64_t from, uint64_t to) {
  tv1::MessageBatch b;
  b.set_from_node(from);
  b.set_to_node(to);
  return b;
}

// How many calls node `id` refused, from its /metrics (-1 if the line is missing).
double RefusedCalls(testing::LocalCluster& c, int id) {
  httplib::Client rest("127.0.0.1", c.pane_port(id));
  httplib::Result r = rest.Get("/metrics");
  if (!r) return -1;
  std::smatch m;
  static const std::regex line(R"(marmot_raft_refused_total\{what="call"\} ([0-9.e+]+))");
  return std::regex_search(r->body, m, line) ? std::stod(m[1]) : -1;
}

TEST(HostilePeerProcessTest, WithoutTheKeyNothingGetsInAndRowsStillFlow) {
  const std::string dir = testing::NewTestDir("hostile-processes");
  std::ofstream(dir + "/cluster.key") << "a cluster key for three processes\n";
  testing::LocalCluster c({.nodes = 3,
                           .shards = 2,
                           .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);",
                           .extra_flags = {"-cluster-key-file=" + dir + "/cluster.key"}});
  c.Start();
  c.Sql(1, "INSERT INTO t VALUES (1, 'before');");
  ASSERT_TRUE(c.WaitForSame("SELECT group_concat(v) FROM t ORDER BY id;", 20s));

  // When a client without the key calls node 3 as node 1: a proposal, a snapshot, a bare stream,
  auto stub = tv1::RaftTransport::NewStub(
      grpc::CreateChannel(c.address(3), grpc::InsecureChannelCredentials()));
  auto stream = [&](std::vector<tv1::MessageBatch> batches) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto st = stub->Stream(&ctx);
    for (const auto& b : batches) st->Write(b);
    st->WritesDone();
    tv1::MessageBatch ignored;
    while (st->Read(&ignored)) {
    }
    return st->Finish();
  };
  tv1::MessageBatch proposal = Batch(1, 3);
  raft::v1::Message* m = proposal.add_messages();
  m->set_type(raft::v1::MSG_PROP);
  m->set_from(1);
  m->set_to(3);
  m->add_entries()->set_data("not even a change batch");
  EXPECT_EQ(stream({Batch(1, 3), proposal}).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stream({Batch(1, 3)}).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    tv1::SnapshotChunk chunk;
    chunk.set_from_node(1);
    chunk.set_to_node(3);
    raft::v1::Message* h = chunk.mutable_header();
    h->set_type(raft::v1::MSG_SNAP);
    h->set_from(1);
    h->set_to(3);
    h->set_term(1000);
    h->mutable_snapshot()->mutable_metadata()->set_index(1000000);
    h->mutable_snapshot()->mutable_metadata()->set_term(1000);
    chunk.set_checksum(1469598103934665603ull);
    chunk.set_last(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto w = stub->SendSnapshot(&ctx);
    tv1::SnapshotAck ack;
    w->Read(&ack);
    w->Write(chunk);
    w->WritesDone();
    while (w->Read(&ack)) {
    }
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  // then node 3 counts the refusals, says so in its log, and rows keep flowing everywhere.
  EXPECT_GE(RefusedCalls(c, 3), 3) << c.log(3);
  EXPECT_THAT(c.log(3), HasSubstr("did not prove the cluster key"));
  EXPECT_THAT(c.log(3), HasSubstr("offered no cluster key handshake"));
  c.Sql(1, "INSERT INTO t VALUES (2, 'after');");
  c.Sql(3, "INSERT INTO t VALUES (3, 'from node 3');");
  EXPECT_TRUE(c.WaitForSame("SELECT group_concat(v) FROM t ORDER BY id;", 10s));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(c.Sql(id, "SELECT group_concat(v, ',') FROM (SELECT v FROM t ORDER BY id);"),
              "before,after,from node 3\n")
        << id;
  }
}

}  // namespace
}  // namespace marmot
