// GrpcTransport with a cluster key: only callers that prove the key are heard, a recorded proof
// does not replay, every message is bound to its stream's peer, and nodes with another shard
// count are refused. A hostile caller is played by a raw gRPC client.
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/transport.grpc.pb.h"
#include "raft/host/env_manual_clock.h"
#include "raft/host/grpc_transport.h"
#include "raft/host/peer_auth.h"
#include "raft/host/snapshot_receipt.h"
#include "raft/host/test_dir.h"

namespace marmot::raft::host {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;
using RawStream = grpc::ClientReaderWriter<tv1::MessageBatch, tv1::MessageBatch>;
using RawSnapshot = grpc::ClientReaderWriter<tv1::SnapshotChunk, tv1::SnapshotAck>;

constexpr char kKey[] = "a cluster key for the tests, 40 bytes ok";

class RecordingHandler : public MessageHandler {
 public:
  void HandleMessages(std::vector<v1::Message> messages) override {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& m : messages) messages_.push_back(std::move(m));
    cv_.notify_all();
  }
  void HandleUnreachable(uint64_t) override {}
  void HandleSnapshotStatus(uint64_t, uint64_t, bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    snapshot_ok_.push_back(ok);
    cv_.notify_all();
  }
  void HandleSnapshot(v1::Message m) override { HandleMessages({std::move(m)}); }
  bool WaitFor(std::function<bool()> pred, absl::Duration d = absl::Seconds(10)) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, absl::ToChronoMilliseconds(d), pred);
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu_);
    return messages_.size();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<v1::Message> messages_;
  std::vector<bool> snapshot_ok_;
};

std::unique_ptr<GrpcTransport> Start(uint64_t id, const std::string& key, uint64_t shards,
                                     MessageHandler* h) {
  GrpcTransportOptions o;
  o.node_id = id;
  o.bind_address = "127.0.0.1:0";
  o.snapshot_dir = FreshTestDir();
  o.max_message_bytes = 1 << 20;
  o.cluster_key = key;
  o.shards = shards;
  auto t = std::make_unique<GrpcTransport>(o);
  absl::Status s = t->Start(h);
  EXPECT_TRUE(s.ok()) << s;
  return t;
}

v1::Message Msg(uint64_t from, uint64_t to, uint64_t index, v1::MessageType type = v1::MSG_APP) {
  v1::Message m;
  m.set_type(type);
  m.set_from(from);
  m.set_to(to);
  m.set_index(index);
  return m;
}

tv1::MessageBatch Batch(uint64_t from, uint64_t to, std::vector<v1::Message> ms) {
  tv1::MessageBatch b;
  b.set_from_node(from);
  b.set_to_node(to);
  for (auto& m : ms) *b.add_messages() = m;
  return b;
}

std::unique_ptr<tv1::RaftTransport::Stub> Stub(int port) {
  return tv1::RaftTransport::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
}

ClusterKey Key(const std::string& secret = kKey) { return *ClusterKey::FromSecret(secret); }

// Ends a raw stream: gRPC's Finish() waits for every message the server sent to be read.
grpc::Status Close(RawStream* st) {
  st->WritesDone();
  tv1::MessageBatch ignored;
  while (st->Read(&ignored)) {
  }
  return st->Finish();
}

// What a raw client saw of a handshake it played by the book with `key`.
struct Played {
  bool server_proved = false;
  std::string client_proof;
};

// Plays the dialer's side of the handshake as node `from` to `to`, with `key` or a recorded
// `replay` proof; returns what happened. The stream stays open for more writes.
Played Handshake(RawStream* st, uint64_t from, uint64_t to, uint64_t shards, const ClusterKey& key,
                 const std::string* replay = nullptr, const std::string* replay_nonce = nullptr) {
  Played p;
  const std::string nonce = replay_nonce != nullptr ? *replay_nonce : FreshNonce();
  tv1::MessageBatch hello = Batch(from, to, {});
  hello.mutable_handshake()->set_nonce(nonce);
  hello.mutable_handshake()->set_shards(shards);
  tv1::MessageBatch reply;
  if (!st->Write(hello) || !st->Read(&reply)) return p;
  const tv1::Handshake& h = reply.handshake();
  p.server_proved =
      SameProof(h.proof(), StreamServerProof(key, nonce, h.nonce(), from, to, shards));
  p.client_proof =
      replay != nullptr ? *replay : StreamClientProof(key, nonce, h.nonce(), from, to, shards);
  tv1::MessageBatch proof = Batch(from, to, {});
  proof.mutable_handshake()->set_proof(p.client_proof);
  st->Write(proof);
  return p;
}

TEST(GrpcTransportAuthTest, NodesWithTheKeyTalk) {
  RecordingHandler h1, h2;
  auto t1 = Start(1, kKey, 4, &h1);
  auto t2 = Start(2, kKey, 4, &h2);
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
  // Both directions work on the stream node 1 dialed.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (h2.count() == 0 && absl::Now() < deadline) {
    t1->Send({Msg(1, 2, 7)});
    h2.WaitFor([&] { return !h2.messages_.empty(); }, absl::Milliseconds(50));
  }
  ASSERT_GT(h2.count(), 0u);
  t2->Send({Msg(2, 1, 8)});
  ASSERT_TRUE(h1.WaitFor([&] { return !h1.messages_.empty(); }));
  EXPECT_EQ(t2->refusals().calls, 0u);
  EXPECT_EQ(t2->refusals().messages, 0u);
  // A snapshot goes through with its proof.
  v1::Message snap = Msg(1, 2, 0, v1::MSG_SNAP);
  snap.mutable_snapshot()->mutable_metadata()->set_index(5);
  snap.mutable_snapshot()->set_data("rows");  // The payload's file in the snapshots folder.
  std::ofstream(absl::StrCat(::testing::TempDir(), "/",
                             ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                             "/rows"))
      << "the rows";
  t1->Send({snap});
  ASSERT_TRUE(h1.WaitFor([&] { return !h1.snapshot_ok_.empty(); }));
  EXPECT_TRUE(h1.snapshot_ok_[0]);
}

TEST(GrpcTransportAuthTest, ACallerWithoutTheKeyIsRefusedAndNothingItSentArrives) {
  RecordingHandler h2;
  auto t2 = Start(2, kKey, 4, &h2);
  auto stub = Stub(t2->bound_port());
  {
    // The old protocol: a hello naming node 1, then messages.
    grpc::ClientContext ctx;
    std::unique_ptr<RawStream> st = stub->Stream(&ctx);
    st->Write(Batch(1, 2, {Msg(1, 2, 1, v1::MSG_PROP)}));
    st->Write(Batch(1, 2, {Msg(1, 2, 2, v1::MSG_PROP)}));
    grpc::Status s = Close(st.get());
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  }
  {
    // The handshake played with a wrong key: the acceptor's proof does not check, ours fails.
    grpc::ClientContext ctx;
    std::unique_ptr<RawStream> st = stub->Stream(&ctx);
    Played p = Handshake(st.get(), 1, 2, 4, Key("another key that is long enough"));
    EXPECT_FALSE(p.server_proved);
    st->Write(Batch(1, 2, {Msg(1, 2, 3, v1::MSG_PROP)}));
    EXPECT_EQ(Close(st.get()).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    // A transport with another key never gets a message through.
    RecordingHandler h1;
    auto t1 = Start(1, "yet another key, long enough", 4, &h1);
    t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
    for (int i = 0; i < 10; ++i) {
      t1->Send({Msg(1, 2, 4)});
      absl::SleepFor(absl::Milliseconds(50));
    }
    t1->Stop();
  }
  EXPECT_EQ(h2.count(), 0u);
  // The first two on node 2; the third never got past node 1, which found node 2's proof wrong.
  EXPECT_GE(t2->refusals().calls, 2u);
}

TEST(GrpcTransportAuthTest, ARecordedStreamHandshakeDoesNotReplay) {
  RecordingHandler h2;
  auto t2 = Start(2, kKey, 4, &h2);
  auto stub = Stub(t2->bound_port());
  const ClusterKey key = Key();
  const std::string nonce = FreshNonce();
  std::string recorded;
  {
    // A legitimate call (played with the key), recorded.
    grpc::ClientContext ctx;
    std::unique_ptr<RawStream> st = stub->Stream(&ctx);
    Played p = Handshake(st.get(), 1, 2, 4, key, nullptr, &nonce);
    EXPECT_TRUE(p.server_proved);
    recorded = p.client_proof;
    st->Write(Batch(1, 2, {Msg(1, 2, 1)}));
    ASSERT_TRUE(h2.WaitFor([&] { return h2.messages_.size() == 1; }));
    EXPECT_TRUE(Close(st.get()).ok());
  }
  {
    // The same client nonce and proof again: the acceptor's nonce is new, the proof is stale.
    grpc::ClientContext ctx;
    std::unique_ptr<RawStream> st = stub->Stream(&ctx);
    Handshake(st.get(), 1, 2, 4, key, &recorded, &nonce);
    st->Write(Batch(1, 2, {Msg(1, 2, 2)}));
    EXPECT_EQ(Close(st.get()).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(h2.count(), 1u);
}

TEST(GrpcTransportAuthTest, MessagesClaimingAnotherSenderAreDroppedAndCounted) {
  for (const std::string& key : {std::string(kKey), std::string()}) {
    RecordingHandler h3;
    auto t3 = Start(3, key, 4, &h3);
    auto stub = Stub(t3->bound_port());
    grpc::ClientContext ctx;
    std::unique_ptr<RawStream> st = stub->Stream(&ctx);
    if (!key.empty()) {
      Handshake(st.get(), 1, 3, 4, Key());
    } else {
      st->Write(Batch(1, 3, {}));
    }
    // Node 1's stream: a vote in node 2's name, an append to node 4, then one honest message.
    st->Write(Batch(1, 3, {Msg(2, 3, 1, v1::MSG_VOTE), Msg(1, 4, 2), Msg(1, 3, 3)}));
    ASSERT_TRUE(h3.WaitFor([&] { return !h3.messages_.empty(); })) << "key: " << !key.empty();
    Close(st.get());
    std::lock_guard<std::mutex> l(h3.mu_);
    ASSERT_EQ(h3.messages_.size(), 1u);
    EXPECT_EQ(h3.messages_[0].index(), 3u);
    EXPECT_EQ(t3->refusals().messages, 2u);
  }
}

// Plays a snapshot sender as node 1 to node 2: proves with `key` unless `proof` is given.
// Returns whether the receiver accepted; `nonce` gets the receiver's challenge.
bool SendRawSnapshot(tv1::RaftTransport::Stub* stub, const ClusterKey* key, std::string* nonce,
                     const std::string* proof = nullptr, uint64_t index = 1000000) {
  const std::string data;  // an empty shard: installing it would delete every row
  tv1::SnapshotChunk c;
  c.set_from_node(1);
  c.set_to_node(2);
  v1::Message header = Msg(1, 2, 0, v1::MSG_SNAP);
  header.set_term(1000);
  header.mutable_snapshot()->mutable_metadata()->set_index(index);
  header.mutable_snapshot()->mutable_metadata()->set_term(1000);
  *c.mutable_header() = header;
  c.set_total_size(0);
  c.set_checksum(kPayloadChecksumSeed);
  c.set_last(true);
  grpc::ClientContext ctx;
  std::unique_ptr<RawSnapshot> w = stub->SendSnapshot(&ctx);
  tv1::SnapshotAck challenge, ack;
  if (!w->Read(&challenge)) return false;
  *nonce = challenge.handshake().nonce();
  c.mutable_handshake()->set_shards(4);
  if (proof != nullptr) {
    c.mutable_handshake()->set_proof(*proof);
  } else if (key != nullptr) {
    c.mutable_handshake()->set_proof(SnapshotProof(*key, *nonce,
                                                   {.from = 1,
                                                    .to = 2,
                                                    .shards = 4,
                                                    .shard = 0,
                                                    .index = index,
                                                    .term = 1000,
                                                    .total_size = 0,
                                                    .checksum = kPayloadChecksumSeed}));
  }
  w->Write(c);
  w->WritesDone();
  const bool got = w->Read(&ack);
  return w->Finish().ok() && got && ack.ok();
}

TEST(GrpcTransportAuthTest, ASnapshotNeedsAFreshProof) {
  RecordingHandler h2;
  auto t2 = Start(2, kKey, 4, &h2);
  auto stub = Stub(t2->bound_port());
  const ClusterKey key = Key(), wrong = Key("another key that is long enough");
  std::string nonce1, nonce2;
  EXPECT_FALSE(SendRawSnapshot(stub.get(), nullptr, &nonce1));
  EXPECT_EQ(nonce1.size(), kNonceBytes);
  EXPECT_FALSE(SendRawSnapshot(stub.get(), &wrong, &nonce1));
  EXPECT_EQ(h2.count(), 0u);
  // With the key: accepted. The proof of that call, sent again, is not.
  ASSERT_TRUE(SendRawSnapshot(stub.get(), &key, &nonce1));
  const std::string recorded = SnapshotProof(key, nonce1,
                                             {.from = 1,
                                              .to = 2,
                                              .shards = 4,
                                              .shard = 0,
                                              .index = 1000000,
                                              .term = 1000,
                                              .total_size = 0,
                                              .checksum = kPayloadChecksumSeed});
  EXPECT_FALSE(SendRawSnapshot(stub.get(), nullptr, &nonce2, &recorded));
  EXPECT_NE(nonce1, nonce2);
  EXPECT_EQ(h2.count(), 1u);
  EXPECT_GE(t2->refusals().calls, 3u);
}

TEST(GrpcTransportAuthTest, ANodeWithAnotherShardCountIsRefused) {
  RecordingHandler h1, h2;
  auto t1 = Start(1, "", 8, &h1);
  auto t2 = Start(2, "", 4, &h2);
  t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
  for (int i = 0; i < 10; ++i) {
    t1->Send({Msg(1, 2, 1)});
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(h2.count(), 0u);
  EXPECT_GE(t2->refusals().calls, 1u);
  t1->Stop();
}

// Waits until a message sent from `t` (node `from`) to node `to` reaches `h`.
bool Reaches(GrpcTransport* t, uint64_t from, uint64_t to, RecordingHandler* h, uint64_t index) {
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    t->Send({Msg(from, to, index)});
    if (h->WaitFor(
            [&] {
              for (const auto& m : h->messages_) {
                if (m.index() == index) return true;
              }
              return false;
            },
            absl::Milliseconds(100))) {
      return true;
    }
  }
  return false;
}

TEST(GrpcTransportAuthTest, ASecondStreamForAPairNeverLeavesThePairCut) {
  for (const std::string& key : {std::string(), std::string(kKey)}) {
    // Given nodes 1 and 2 connected (node 1 dialed),
    RecordingHandler h1, h2;
    auto t1 = Start(1, key, 4, &h1);
    auto t2 = Start(2, key, 4, &h2);
    t1->SetPeerAddress(2, absl::StrCat("127.0.0.1:", t2->bound_port()));
    t2->SetPeerAddress(1, absl::StrCat("127.0.0.1:", t1->bound_port()));
    ASSERT_TRUE(Reaches(t1.get(), 1, 2, &h2, 1));
    ASSERT_TRUE(Reaches(t2.get(), 2, 1, &h1, 2));
    // when another stream claiming node 1 opens and closes (a stranger without a key; with a
    // key, a stale redial of node 1 itself),
    {
      auto stub = Stub(t2->bound_port());
      grpc::ClientContext ctx;
      std::unique_ptr<RawStream> st = stub->Stream(&ctx);
      if (key.empty()) {
        tv1::MessageBatch reply;
        st->Write(Batch(1, 2, {}));
        ASSERT_TRUE(st->Read(&reply));
      } else {
        ASSERT_TRUE(Handshake(st.get(), 1, 2, 4, Key()).server_proved);
      }
      absl::SleepFor(absl::Milliseconds(100));  // attached meanwhile
      Close(st.get());
    }
    // then node 2's messages still reach node 1, within seconds.
    EXPECT_TRUE(Reaches(t2.get(), 2, 1, &h1, 3)) << "key: " << !key.empty();
    EXPECT_TRUE(Reaches(t1.get(), 1, 2, &h2, 4)) << "key: " << !key.empty();
    t1->Stop();
    t2->Stop();
  }
}

TEST(GrpcTransportAuthTest, ACallerThatStallsBeforeItsProofIsCutOff) {
  RecordingHandler h;
  GrpcTransportOptions o;
  o.node_id = 2;
  o.bind_address = "127.0.0.1:0";
  o.snapshot_dir = FreshTestDir();
  o.cluster_key = kKey;
  o.handshake_timeout = absl::Milliseconds(300);
  GrpcTransport t(o);
  ASSERT_TRUE(t.Start(&h).ok());
  auto stub = Stub(t.bound_port());
  {
    // A stream that never says hello,
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    std::unique_ptr<RawStream> st = stub->Stream(&ctx);
    const absl::Time start = absl::Now();
    tv1::MessageBatch b;
    EXPECT_FALSE(st->Read(&b));
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    EXPECT_EQ(st->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  {
    // and a snapshot that never sends its first chunk, are cut off.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto w = stub->SendSnapshot(&ctx);
    const absl::Time start = absl::Now();
    tv1::SnapshotAck ack;
    EXPECT_TRUE(w->Read(&ack));  // the challenge
    EXPECT_FALSE(w->Read(&ack));
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  t.Stop();
}

TEST(GrpcTransportAuthTest, AStalledHandshakeIsCutOffExactlyWhenItsTimeoutPassesOnTheClock) {
  ManualClockEnv clock;
  RecordingHandler h;
  GrpcTransportOptions o;
  o.node_id = 2;
  o.bind_address = "127.0.0.1:0";
  o.snapshot_dir = FreshTestDir();
  o.cluster_key = kKey;
  o.handshake_timeout = absl::Seconds(10);
  o.env = &clock;
  GrpcTransport t(o);
  ASSERT_TRUE(t.Start(&h).ok());
  auto stub = Stub(t.bound_port());
  // A call that never completes its handshake is cut off once the transport's clock passes its
  // timeout, and not before: a stream that never says hello, a snapshot that never sends its
  // first chunk.
  auto expect_cut_off = [&](grpc::ClientContext* ctx, std::function<bool()> read,
                            std::function<grpc::Status()> finish) {
    const absl::Time deadline = clock.MonotonicNow() + o.handshake_timeout;
    ASSERT_TRUE(clock.AwaitWaiter(deadline)) << "the call's handshake deadline is watched";
    std::atomic<bool> ended{false};
    std::thread reader([&] {
      EXPECT_FALSE(read());
      ended = true;
    });
    clock.Advance(o.handshake_timeout - absl::Milliseconds(1));
    absl::SleepFor(absl::Milliseconds(100));  // real time: a cut-off would have arrived by now
    EXPECT_FALSE(ended) << "cut off before its timeout";
    clock.Advance(absl::Milliseconds(1));
    reader.join();  // the call's own (real) deadline bounds this
    EXPECT_EQ(finish().error_code(), grpc::StatusCode::CANCELLED);
  };
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    std::unique_ptr<RawStream> st = stub->Stream(&ctx);
    tv1::MessageBatch b;
    expect_cut_off(
        &ctx, [&] { return st->Read(&b); }, [&] { return st->Finish(); });
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto w = stub->SendSnapshot(&ctx);
    tv1::SnapshotAck ack;
    ASSERT_TRUE(w->Read(&ack));  // the challenge
    expect_cut_off(
        &ctx, [&] { return w->Read(&ack); }, [&] { return w->Finish(); });
  }
  t.Stop();
}

TEST(GrpcTransportAuthTest, ATooShortKeyDoesNotStart) {
  RecordingHandler h;
  GrpcTransportOptions o;
  o.node_id = 1;
  o.bind_address = "127.0.0.1:0";
  o.cluster_key = "short";
  GrpcTransport t(o);
  EXPECT_FALSE(t.Start(&h).ok());
}

}  // namespace
}  // namespace marmot::raft::host
