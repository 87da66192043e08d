// GrpcTransport and who a peer is beyond its node id: nodes of another cluster are refused and
// nodes without a cluster id learn it (cluster_identity.h); a second process with a live node's
// id is refused and told so, while a node that restarted gets its place back
// (node_incarnation.h).
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/transport.grpc.pb.h"
#include "raft/host/cluster_identity.h"
#include "raft/host/grpc_transport.h"

namespace marmot::raft::host {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;
using ::testing::HasSubstr;

class RecordingHandler : public MessageHandler {
 public:
  void HandleMessages(std::vector<v1::Message> messages) override {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& m : messages) indexes_.push_back(m.index());
  }
  void HandleUnreachable(uint64_t) override {}
  void HandleSnapshotStatus(uint64_t, uint64_t, bool) override {}
  void HandleSnapshot(v1::Message m) override { HandleMessages({std::move(m)}); }
  void HandleRefused(const char* what) override {
    std::lock_guard<std::mutex> l(mu_);
    ++refused_[what];
  }
  void HandleDuplicateNode(const std::string& why) override {
    std::lock_guard<std::mutex> l(mu_);
    duplicate_ += why;
  }
  bool Got(uint64_t index) {
    std::lock_guard<std::mutex> l(mu_);
    return std::find(indexes_.begin(), indexes_.end(), index) != indexes_.end();
  }
  int refused(const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    return refused_[what];
  }
  std::string duplicate() {
    std::lock_guard<std::mutex> l(mu_);
    return duplicate_;
  }

 private:
  std::mutex mu_;
  std::vector<uint64_t> indexes_;
  std::map<std::string, int> refused_;
  std::string duplicate_;
};

// A node's raft folder as far as its cluster id goes.
struct Folder {
  std::mutex mu;
  std::vector<std::string> written;
  ClusterIdentity::Persist persist() {
    return [this](const std::string& id) {
      std::lock_guard<std::mutex> l(mu);
      written.push_back(id);
      return absl::OkStatus();
    };
  }
};

const std::string kA(kClusterIdBytes, 'a');
const std::string kB(kClusterIdBytes, 'b');

struct Node {
  RecordingHandler handler;
  Folder folder;
  std::shared_ptr<ClusterIdentity> cluster;
  std::unique_ptr<GrpcTransport> transport;
  std::string address() const { return absl::StrCat("127.0.0.1:", transport->bound_port()); }
};

// Starts node `id` of cluster `cluster_id` ("" : none yet; `candidate` as ClusterIdentity).
std::unique_ptr<Node> StartNode(uint64_t id, const std::string& cluster_id, bool candidate = false,
                                absl::Duration liveness_window = absl::Milliseconds(400),
                                const std::string& cluster_key = "") {
  auto n = std::make_unique<Node>();
  n->cluster = std::make_shared<ClusterIdentity>(id, cluster_id, candidate, n->folder.persist());
  GrpcTransportOptions o;
  o.node_id = id;
  o.bind_address = "127.0.0.1:0";
  o.snapshot_dir = absl::StrCat(::testing::TempDir(), "/identity-", id);
  std::filesystem::create_directories(o.snapshot_dir);
  o.shards = 4;
  o.cluster = n->cluster;
  o.keepalive_interval = absl::Milliseconds(50);
  o.liveness_window = liveness_window;
  o.cluster_key = cluster_key;
  n->transport = std::make_unique<GrpcTransport>(o);
  EXPECT_TRUE(n->transport->Start(&n->handler).ok());
  return n;
}

v1::Message Msg(uint64_t from, uint64_t to, uint64_t index) {
  v1::Message m;
  m.set_type(v1::MSG_HEARTBEAT);
  m.set_from(from);
  m.set_to(to);
  m.set_index(index);
  return m;
}

// Polls `pred` every 20 ms for up to `d`.
bool Eventually(const std::function<bool()>& pred, absl::Duration d) {
  const absl::Time deadline = absl::Now() + d;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// Whether a message sent from `from` (node `from_id`) to node `to_id` reaches `to` within `d`.
bool Reaches(Node& from, uint64_t from_id, Node& to, uint64_t to_id, uint64_t index,
             absl::Duration d = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + d;
  while (absl::Now() < deadline) {
    from.transport->Send({Msg(from_id, to_id, index)});
    if (Eventually([&] { return to.handler.Got(index); }, absl::Milliseconds(50))) return true;
  }
  return false;
}

TEST(GrpcTransportIdentityTest, ANodeOfAnotherClusterIsRefused) {
  auto n1 = StartNode(1, kA);
  auto n2 = StartNode(2, kB);
  n1->transport->SetPeerAddress(2, n2->address());
  n2->transport->SetPeerAddress(1, n1->address());
  EXPECT_FALSE(Reaches(*n1, 1, *n2, 2, 1, absl::Seconds(1)));
  EXPECT_FALSE(Reaches(*n2, 2, *n1, 1, 2, absl::Seconds(1)));
  // Node 2 (which node 1 dials) refuses and counts it; neither changed its id.
  EXPECT_GE(n2->handler.refused("cluster"), 1);
  EXPECT_EQ(n1->cluster->id(), kA);
  EXPECT_EQ(n2->cluster->id(), kB);
}

TEST(GrpcTransportIdentityTest, ANodeWithoutAnIdLearnsItFromItsFirstPeerThenRefusesOthers) {
  // Node 3 is new (no id); node 1 of cluster A dials it.
  auto n3 = StartNode(3, "");
  auto n1 = StartNode(1, kA);
  n1->transport->SetPeerAddress(3, n3->address());
  ASSERT_TRUE(Reaches(*n1, 1, *n3, 3, 1));
  EXPECT_EQ(n3->cluster->id(), kA);
  EXPECT_EQ(n3->folder.written, std::vector<std::string>{kA});
  // Then node 2 of cluster B dials it: refused.
  auto n2 = StartNode(2, kB);
  n2->transport->SetPeerAddress(3, n3->address());
  EXPECT_FALSE(Reaches(*n2, 2, *n3, 3, 2, absl::Seconds(1)));
  EXPECT_GE(n3->handler.refused("cluster"), 1);
  EXPECT_TRUE(Reaches(*n1, 1, *n3, 3, 3));
}

TEST(GrpcTransportIdentityTest, FoundersWithoutAnIdTakeTheHighestFoundersCandidate) {
  auto n3 = StartNode(3, kA, /*candidate=*/true);
  auto n1 = StartNode(1, "");
  n1->transport->SetPeerAddress(3, n3->address());
  ASSERT_TRUE(Reaches(*n1, 1, *n3, 3, 1));
  EXPECT_EQ(n1->cluster->id(), kA);
  EXPECT_FALSE(n3->cluster->candidate());
}

TEST(GrpcTransportIdentityTest, AFounderThatBootstrappedAgainRejoinsItsCluster) {
  // Node 3 lost its raft folder and drew kB as a candidate; node 1 belongs to cluster kA.
  auto n3 = StartNode(3, kB, /*candidate=*/true);
  auto n1 = StartNode(1, kA);
  n1->transport->SetPeerAddress(3, n3->address());
  ASSERT_TRUE(Reaches(*n1, 1, *n3, 3, 1));
  EXPECT_EQ(n3->cluster->id(), kA);
  EXPECT_EQ(n3->folder.written, std::vector<std::string>{kA});
}

TEST(GrpcTransportIdentityTest, ASecondProcessWithALiveNodesIdIsRefusedAndTold) {
  auto n2 = StartNode(2, kA);
  auto n1 = StartNode(1, kA);
  n1->transport->SetPeerAddress(2, n2->address());
  n2->transport->SetPeerAddress(1, n1->address());
  ASSERT_TRUE(Reaches(*n1, 1, *n2, 2, 1));
  ASSERT_TRUE(Reaches(*n2, 2, *n1, 1, 2));
  // A second node 1, its own address, dials node 2 while node 1 lives.
  auto dup = StartNode(1, "");
  dup->transport->SetPeerAddress(2, n2->address());
  // It is told once it has run for two liveness windows, naming the live node's address,
  ASSERT_TRUE(Eventually([&] { return !dup->handler.duplicate().empty(); }, absl::Seconds(5)));
  EXPECT_THAT(dup->handler.duplicate(),
              HasSubstr("node 1 already runs: the process listening at " + n1->address()));
  EXPECT_GE(n2->handler.refused("duplicate"), 1);
  // and node 2's messages never went to it: they reach node 1, and node 1's reach node 2.
  EXPECT_FALSE(dup->handler.Got(3));
  EXPECT_TRUE(Reaches(*n2, 2, *n1, 1, 3));
  EXPECT_FALSE(dup->handler.Got(3));
  EXPECT_TRUE(Reaches(*n1, 1, *n2, 2, 4));
}

TEST(GrpcTransportIdentityTest, ASecondProcessOfTheHighestIdIsToldByTheNodesThatDialTheLiveOne) {
  // Node 2 is the highest id: it dials nobody, so a second node 2 is never refused a stream;
  // it asks (with and without a cluster key: with one, the answer is proven).
  for (const std::string key : {"", "a cluster key for the tests, 40 bytes ok"}) {
    const absl::Duration window = absl::Milliseconds(400);
    auto n2 = StartNode(2, kA, false, window, key);
    auto n1 = StartNode(1, kA, false, window, key);
    n1->transport->SetPeerAddress(2, n2->address());
    ASSERT_TRUE(Reaches(*n1, 1, *n2, 2, 1));
    auto dup = StartNode(2, "", false, window, key);
    dup->transport->SetPeerAddress(1, n1->address());
    ASSERT_TRUE(Eventually([&] { return !dup->handler.duplicate().empty(); }, absl::Seconds(5)))
        << "key: " << !key.empty();
    EXPECT_THAT(dup->handler.duplicate(),
                HasSubstr("says node 2 already runs: the process listening at " + n2->address()));
    EXPECT_TRUE(Reaches(*n1, 1, *n2, 2, 2));
  }
}

TEST(GrpcTransportIdentityTest, ANodeThatRestartedTakesItsPlaceBackBeforeItsOldStreamIsSeenGone) {
  auto n2 = StartNode(2, kA);
  // Node 1's previous process opened a stream to node 2 and died without closing it (power
  // loss): played by a raw client that says hello, then nothing.
  auto stub = tv1::RaftTransport::NewStub(
      grpc::CreateChannel(n2->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext old_ctx;
  auto old_stream = stub->Stream(&old_ctx);
  tv1::MessageBatch hello;
  hello.set_from_node(1);
  hello.set_to_node(2);
  hello.mutable_handshake()->set_shards(4);
  hello.mutable_handshake()->set_cluster_id(kA);
  hello.mutable_handshake()->set_incarnation(12345);
  hello.mutable_handshake()->set_bind_address("127.0.0.1:1");
  tv1::MessageBatch reply;
  ASSERT_TRUE(old_stream->Write(hello) && old_stream->Read(&reply));
  // Node 1 starts again (its old stream still open at node 2).
  auto new1 = StartNode(1, kA);
  new1->transport->SetPeerAddress(2, n2->address());
  n2->transport->SetPeerAddress(1, new1->address());
  // Node 2 takes it once the old stream was silent for a liveness window and ends the old one;
  // the new process is never told it is a duplicate.
  EXPECT_TRUE(Reaches(*n2, 2, *new1, 1, 2));
  EXPECT_TRUE(Reaches(*new1, 1, *n2, 2, 3));
  while (old_stream->Read(&reply)) {
  }
  EXPECT_EQ(old_stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_FALSE(Eventually([&] { return !new1->handler.duplicate().empty(); }, absl::Seconds(1)));
}

TEST(GrpcTransportIdentityTest, ARefusalThatEndsWithinAWindowIsNotTakenForADuplicate) {
  // Node 1 restarted a while ago, when node 2 was paused: on waking, node 2 reads the last bytes
  // its previous process sent, so that process looks alive there for one more window.
  const absl::Duration window = absl::Seconds(1);
  auto n2 = StartNode(2, kA, false, window);
  auto new1 = StartNode(1, kA, false, window);
  absl::SleepFor(3 * window);  // the new process has run for a while
  auto stub = tv1::RaftTransport::NewStub(
      grpc::CreateChannel(n2->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext old_ctx;
  auto old_stream = stub->Stream(&old_ctx);
  tv1::MessageBatch hello;
  hello.set_from_node(1);
  hello.set_to_node(2);
  hello.mutable_handshake()->set_shards(4);
  hello.mutable_handshake()->set_cluster_id(kA);
  hello.mutable_handshake()->set_incarnation(12345);
  hello.mutable_handshake()->set_bind_address(new1->address());
  tv1::MessageBatch reply;
  ASSERT_TRUE(old_stream->Write(hello) && old_stream->Read(&reply));
  // The new process dials now: refused (while the old stream is heard; the old process's last
  // bytes are played by a keepalive until then),
  new1->transport->SetPeerAddress(2, n2->address());
  tv1::MessageBatch keepalive;
  keepalive.set_from_node(1);
  keepalive.set_to_node(2);
  ASSERT_TRUE(Eventually(
      [&] { return !old_stream->Write(keepalive) || n2->handler.refused("duplicate") >= 1; },
      absl::Seconds(5)));
  ASSERT_GE(n2->handler.refused("duplicate"), 1);
  // then taken within a window, and never told it is a duplicate.
  EXPECT_TRUE(Reaches(*new1, 1, *n2, 2, 1));
  EXPECT_FALSE(Eventually([&] { return !new1->handler.duplicate().empty(); }, absl::Seconds(1)));
  old_ctx.TryCancel();
}

}  // namespace
}  // namespace marmot::raft::host
