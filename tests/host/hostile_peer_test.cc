// A hostile peer against a cluster with a cluster key (issue 17): hosts on loopback, the
// attacker a raw gRPC client of the node port. Without the key it proposes a row, a membership
// change and a snapshot, and opens a stream in node 1's name that then closes: each is refused,
// nothing is written, and a row written afterwards reaches every node. With the key (an insider,
// or a member since removed) it cannot speak for another node or write to a shard it left.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/transport.grpc.pb.h"
#include "raft/host/grpc_transport.h"
#include "raft/host/node_host.h"
#include "raft/host/peer_auth.h"
#include "raft/host/proposal_codec.h"
#include "raft/host/snapshot_receipt.h"
#include "raft/membership.h"
#include "tests/host/test_cluster.h"

namespace marmot::raft::host::testing {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;
using RawStream = grpc::ClientReaderWriter<tv1::MessageBatch, tv1::MessageBatch>;

constexpr char kKey[] = "the hostile peer test's cluster key";
constexpr int kShards = 2;

std::string TestDir() {
  return absl::StrCat(::testing::TempDir(), "/",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

v1::Message Proposal(uint64_t from, uint64_t to, uint64_t shard, const std::string& payload) {
  v1::Message m;
  m.set_type(v1::MSG_PROP);
  m.set_from(from);
  m.set_to(to);
  m.set_shard(shard);
  v1::Entry* e = m.add_entries();
  e->set_data(EncodeSingle(from, 777, payload));
  return m;
}

v1::Message AddNodeNine(uint64_t from, uint64_t to, uint64_t shard) {
  v1::ConfChange cc;
  cc.set_type(v1::CONF_CHANGE_ADD_LEARNER);
  cc.set_node_id(9);
  cc.set_context("127.0.0.1:9");
  v1::Message m;
  m.set_type(v1::MSG_PROP);
  m.set_from(from);
  m.set_to(to);
  m.set_shard(shard);
  v1::Entry* e = m.add_entries();
  e->set_type(v1::ENTRY_CONF_CHANGE);
  e->set_data(cc.SerializeAsString());
  return m;
}

tv1::MessageBatch Batch(uint64_t from, uint64_t to, std::vector<v1::Message> ms = {}) {
  tv1::MessageBatch b;
  b.set_from_node(from);
  b.set_to_node(to);
  for (auto& m : ms) *b.add_messages() = std::move(m);
  return b;
}

// A hand-driven caller of one node's transport service.
class RawPeer {
 public:
  explicit RawPeer(const std::string& address)
      : stub_(tv1::RaftTransport::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

  // Opens a stream as node `from` to `to`, plays the handshake (honestly with `key`, or the
  // key-less way), writes `batches`, closes; returns how the call ended.
  grpc::Status Stream(uint64_t from, uint64_t to, const ClusterKey* key,
                      std::vector<tv1::MessageBatch> batches) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::unique_ptr<RawStream> st = stub_->Stream(&ctx);
    const std::string nonce = key != nullptr ? FreshNonce() : "";
    tv1::MessageBatch hello = Batch(from, to);
    hello.mutable_handshake()->set_nonce(nonce);
    hello.mutable_handshake()->set_shards(kShards);
    tv1::MessageBatch reply;
    if (st->Write(hello) && st->Read(&reply) && key != nullptr) {
      tv1::MessageBatch proof = Batch(from, to);
      proof.mutable_handshake()->set_proof(
          StreamClientProof(*key, nonce, reply.handshake().nonce(), from, to, kShards));
      st->Write(proof);
    }
    for (const auto& b : batches) st->Write(b);
    absl::SleepFor(absl::Milliseconds(200));  // let the receiver step what it took
    st->WritesDone();
    while (st->Read(&reply)) {
    }
    return st->Finish();
  }

  // Sends a snapshot of an empty shard at index 1,000,000 as node `from` (installing it would
  // delete every row of the shard); whether the receiver accepted it.
  bool Snapshot(uint64_t from, uint64_t to, uint64_t shard) {
    tv1::SnapshotChunk c;
    c.set_from_node(from);
    c.set_to_node(to);
    v1::Message* h = c.mutable_header();
    h->set_type(v1::MSG_SNAP);
    h->set_from(from);
    h->set_to(to);
    h->set_shard(shard);
    h->set_term(1000);
    h->mutable_snapshot()->mutable_metadata()->set_index(1000000);
    h->mutable_snapshot()->mutable_metadata()->set_term(1000);
    h->mutable_snapshot()->mutable_metadata()->mutable_conf_state()->add_voters(from);
    c.set_total_size(0);
    c.set_checksum(kPayloadChecksumSeed);
    c.set_last(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto w = stub_->SendSnapshot(&ctx);
    tv1::SnapshotAck challenge, ack;
    w->Read(&challenge);
    w->Write(c);
    w->WritesDone();
    const bool got = w->Read(&ack);
    return w->Finish().ok() && got && ack.ok();
  }

 private:
  std::unique_ptr<tv1::RaftTransport::Stub> stub_;
};

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Waits until every running node applied `payload` to `shard`.
bool ReachesEveryNode(TestCluster& c, uint64_t shard, const std::string& payload,
                      absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    bool all = true;
    for (uint64_t id : c.ids()) all = all && Contains(c.sm(id, shard)->payloads(), payload);
    if (all) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

class HostilePeerTest : public ::testing::Test {
 protected:
  HostilePeerTest() : c_(TestDir(), 3, kShards) {
    c_.tweak = [](NodeHostConfig* cfg) { cfg->cluster_key = kKey; };
  }
  TestCluster c_;
};

TEST_F(HostilePeerTest, WithoutTheKeyNothingGetsInAndThePairsStayConnected) {
  c_.StartAll();
  ASSERT_TRUE(c_.WaitForLeaders());
  ASSERT_TRUE(c_.Propose(1, 0, "before").ok());
  ASSERT_TRUE(ReachesEveryNode(c_, 0, "before"));
  const uint64_t term_before = c_.host(3)->GetShardInfo(0).term;
  std::map<uint64_t, int> snapshots_before;  // the bootstrap's, installed at start
  for (uint64_t id : c_.ids()) snapshots_before[id] = c_.sm(id, 0)->snapshots_installed();

  // When a peer without the key, claiming to be node 1, sends node 3 (which forwards
  // proposals to the leader) a row, a membership change adding node 9, and a snapshot that
  // would empty the shard, and opens and closes a stream in node 1's name,
  RawPeer attacker(c_.address(3));
  const grpc::Status row =
      attacker.Stream(1, 3, nullptr, {Batch(1, 3, {Proposal(1, 3, 0, "forged row")})});
  const grpc::Status conf = attacker.Stream(1, 3, nullptr, {Batch(1, 3, {AddNodeNine(1, 3, 0)})});
  const bool snapshot = attacker.Snapshot(1, 3, 0);
  const grpc::Status hijack = attacker.Stream(1, 3, nullptr, {});

  // then each call is refused,
  EXPECT_EQ(row.error_code(), grpc::StatusCode::UNAUTHENTICATED) << row.error_message();
  EXPECT_EQ(conf.error_code(), grpc::StatusCode::UNAUTHENTICATED) << conf.error_message();
  EXPECT_FALSE(snapshot);
  EXPECT_EQ(hijack.error_code(), grpc::StatusCode::UNAUTHENTICATED) << hijack.error_message();
  EXPECT_GE(c_.host(3)->grpc_transport()->refusals().calls, 4u);
  // a row written afterwards reaches every node within seconds (node 1 and node 3 still talk),
  ASSERT_TRUE(c_.Propose(1, 0, "after").ok());
  ASSERT_TRUE(ReachesEveryNode(c_, 0, "after"));
  ASSERT_TRUE(c_.Propose(3, 1, "after on shard 1").ok());
  ASSERT_TRUE(ReachesEveryNode(c_, 1, "after on shard 1"));
  // and nothing of the attacker's was written anywhere.
  for (uint64_t id : c_.ids()) {
    EXPECT_FALSE(Contains(c_.sm(id, 0)->payloads(), "forged row")) << id;
    EXPECT_TRUE(Contains(c_.sm(id, 0)->payloads(), "before")) << id;
    EXPECT_EQ(c_.sm(id, 0)->snapshots_installed(), snapshots_before[id]) << id;
    const ShardInfo info = c_.host(id)->GetShardInfo(0);
    EXPECT_FALSE(IsVoter(info.conf_state, 9) || IsLearner(info.conf_state, 9)) << id;
    EXPECT_LT(info.term, 1000u) << id;
  }
  EXPECT_LT(c_.host(3)->GetShardInfo(0).term, term_before + 5);
}

TEST_F(HostilePeerTest, AnInsiderCannotSpeakForAnotherNodeNorAStrangerForAShardItLeft) {
  c_.StartAll();
  ASSERT_TRUE(c_.WaitForLeaders());
  const ClusterKey key = *ClusterKey::FromSecret(kKey);
  RawPeer insider(c_.address(3));

  // A stream authenticated as node 1 carrying a proposal in node 2's name: dropped.
  const uint64_t dropped_before = c_.host(3)->grpc_transport()->refusals().messages;
  EXPECT_TRUE(
      insider.Stream(1, 3, &key, {Batch(1, 3, {Proposal(2, 3, 0, "in node 2's name")})}).ok());
  EXPECT_EQ(c_.host(3)->grpc_transport()->refusals().messages, dropped_before + 1);

  // Node 1 removed from shard 0 (it stays in shard 1): its proposals to shard 0 are refused.
  // (Only the payload tells: the removed node's own pre-votes are refused and counted too.)
  ASSERT_TRUE(c_.host(2)->RemoveNode(0, 1, absl::Seconds(10)).ok());
  // (Node 1 no longer follows shard 0: wait for nodes 2 and 3 only.)
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  auto settled = [&] {
    const ShardInfo i2 = c_.host(2)->GetShardInfo(0), i3 = c_.host(3)->GetShardInfo(0);
    // A new leader: the removed one steps down, but followers keep its id until they elect.
    return i2.leader != 0 && i2.leader != 1 && i2.leader == i3.leader &&
           !IsVoter(i3.applied_conf_state, 1);
  };
  while (!settled() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(settled());
  EXPECT_TRUE(
      insider.Stream(1, 3, &key, {Batch(1, 3, {Proposal(1, 3, 0, "from a removed member")})}).ok());
  ASSERT_TRUE(c_.Propose(2, 0, "after").ok());
  for (uint64_t id : {2u, 3u}) {
    ASSERT_TRUE(c_.WaitForPayloads(id, 0, c_.sm(2, 0)->payloads()));
    EXPECT_FALSE(Contains(c_.sm(id, 0)->payloads(), "from a removed member")) << id;
  }
}

}  // namespace
}  // namespace marmot::raft::host::testing
