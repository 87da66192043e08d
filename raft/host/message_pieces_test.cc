// PeerOutbox and MessageAssembler: large messages cut into pieces and put back together, each
// shard's order kept, other shards' messages between the pieces, bounded holding, hostile pieces.
#include "raft/host/message_pieces.h"

#include <algorithm>
#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;

v1::Message App(uint64_t shard, uint64_t index, size_t payload_bytes = 0) {
  v1::Message m;
  m.set_type(v1::MSG_APP);
  m.set_from(1);
  m.set_to(2);
  m.set_shard(shard);
  m.set_index(index);
  if (payload_bytes > 0) {
    v1::Entry* e = m.add_entries();
    e->set_index(index + 1);
    std::string data(payload_bytes, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + index);
    e->set_data(std::move(data));
  }
  return m;
}

PeerOutboxOptions Small() {
  PeerOutboxOptions o;
  o.batch_bytes = 1000;
  o.max_held_messages = 100;
  o.max_held_bytes = 50000;
  return o;
}

// Drains `outbox` the way the transport's sender does (every ready batch, then one piece, per
// round) through an assembler; returns what a receiver gets, in order.
std::vector<v1::Message> Drain(PeerOutbox& outbox, MessageAssembler& assembler,
                               size_t* writes = nullptr, size_t* largest = nullptr) {
  std::vector<v1::Message> got;
  tv1::MessageBatch b;
  for (int round = 0; round < 100000 && !outbox.empty(); ++round) {
    while (outbox.NextBatch(&b)) {
      if (writes) ++*writes;
      if (largest) *largest = std::max(*largest, b.ByteSizeLong());
      for (auto& m : *b.mutable_messages()) got.push_back(std::move(m));
    }
    if (outbox.NextPiece(&b)) {
      if (writes) ++*writes;
      if (largest) *largest = std::max(*largest, b.ByteSizeLong());
      auto whole = assembler.Add(b.piece());
      EXPECT_TRUE(whole.ok()) << whole.status();
      if (whole.ok() && whole->has_value()) got.push_back(std::move(**whole));
    }
  }
  return got;
}

TEST(PeerOutboxTest, ALargeMessageTravelsInPiecesNoLargerThanABatchAndArrivesWhole) {
  // Given an outbox cutting at 1000 bytes and an append 50 times that size
  PeerOutbox outbox(Small());
  const v1::Message big = App(3, 7, 50000);
  // When it is sent
  ASSERT_TRUE(outbox.Add(big));
  size_t writes = 0, largest = 0;
  MessageAssembler assembler;
  std::vector<v1::Message> got = Drain(outbox, assembler, &writes, &largest);
  // Then it arrives equal, in pieces of at most a batch (plus the piece's framing)
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].SerializeAsString(), big.SerializeAsString());
  EXPECT_GE(writes, 50u);
  EXPECT_LE(largest, 1000u + 32);
}

TEST(PeerOutboxTest, OtherShardsGoBetweenPiecesWhileTheLargeMessagesShardKeepsItsOrder) {
  PeerOutbox outbox(Small());
  // Given a large append of shard 3, then a small one of shard 3 and one of shard 1
  ASSERT_TRUE(outbox.Add(App(3, 1, 5000)));
  ASSERT_TRUE(outbox.Add(App(3, 2)));
  ASSERT_TRUE(outbox.Add(App(1, 9)));
  tv1::MessageBatch b;
  // Then shard 1's message goes first, before any piece
  ASSERT_TRUE(outbox.NextBatch(&b));
  ASSERT_EQ(b.messages_size(), 1);
  EXPECT_EQ(b.messages(0).shard(), 1u);
  EXPECT_FALSE(outbox.NextBatch(&b));
  // And a message of shard 1 added while pieces go out does not wait for them either
  MessageAssembler assembler;
  ASSERT_TRUE(outbox.NextPiece(&b));
  ASSERT_TRUE(assembler.Add(b.piece()).ok());
  ASSERT_TRUE(outbox.Add(App(1, 10)));
  ASSERT_TRUE(outbox.NextBatch(&b));
  EXPECT_EQ(b.messages(0).index(), 10u);
  // While shard 3's small message arrives only after its large one
  std::vector<v1::Message> rest = Drain(outbox, assembler);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].index(), 1u);
  EXPECT_EQ(rest[0].entries(0).data().size(), 5000u);
  EXPECT_EQ(rest[1].index(), 2u);
  EXPECT_TRUE(outbox.empty());
}

TEST(PeerOutboxTest, ShardOrderHoldsAcrossSeveralLargeMessages) {
  PeerOutbox outbox(Small());
  // Given large and small messages of two shards, interleaved
  std::vector<v1::Message> sent = {App(1, 1, 3000), App(2, 1, 4000), App(1, 2),
                                   App(2, 2),       App(1, 3, 2500), App(2, 3)};
  for (const auto& m : sent) ASSERT_TRUE(outbox.Add(m));
  // When everything is drained
  MessageAssembler assembler;
  std::vector<v1::Message> got = Drain(outbox, assembler);
  // Then every message arrives, and each shard's in the order it was added
  ASSERT_EQ(got.size(), sent.size());
  std::map<uint64_t, uint64_t> last;
  for (const auto& m : got) {
    EXPECT_GT(m.index(), last[m.shard()]) << "shard " << m.shard();
    last[m.shard()] = m.index();
  }
  EXPECT_EQ(last[1], 3u);
  EXPECT_EQ(last[2], 3u);
}

TEST(PeerOutboxTest, MessagesHeldBehindALargeOneAreBoundedInBytes) {
  PeerOutboxOptions o = Small();
  o.max_held_bytes = 10000;
  PeerOutbox outbox(o);
  // Given a large message in progress
  ASSERT_TRUE(outbox.Add(App(1, 1, 8000)));
  // Then one large message of another shard waits even above the byte bound (it could never
  // be sent otherwise), but a second copy is dropped (Raft sends it again)
  EXPECT_TRUE(outbox.Add(App(2, 1, 20000)));
  EXPECT_FALSE(outbox.Add(App(2, 1, 20000)));
  EXPECT_EQ(outbox.held_messages(), 1u);
  // And Clear drops everything
  outbox.Clear();
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ(outbox.held_bytes(), 0u);
}

tv1::MessagePiece Piece(uint64_t total, uint64_t offset, std::string data) {
  tv1::MessagePiece p;
  p.set_total_size(total);
  p.set_offset(offset);
  p.set_data(std::move(data));
  return p;
}

TEST(MessageAssemblerTest, RefusesPiecesThatDoNotContinueTheMessage) {
  const std::string bytes = App(4, 2, 300).SerializeAsString();
  const uint64_t n = bytes.size();
  MessageAssembler a;
  // A continuation with nothing in progress, a bogus total, an empty piece
  EXPECT_FALSE(a.Add(Piece(n, 100, bytes.substr(100, 10))).ok());
  EXPECT_FALSE(a.Add(Piece(0, 0, "x")).ok());
  EXPECT_FALSE(a.Add(Piece(kMaxRaftMessageBytes + 1, 0, "x")).ok());
  EXPECT_FALSE(a.Add(Piece(n, 0, "")).ok());
  // A gap, a changed total, a piece longer than what is left
  ASSERT_TRUE(a.Add(Piece(n, 0, bytes.substr(0, 100))).ok());
  EXPECT_FALSE(a.Add(Piece(n, 150, bytes.substr(150, 10))).ok());
  EXPECT_EQ(a.partial_bytes(), 0u);
  ASSERT_TRUE(a.Add(Piece(n, 0, bytes.substr(0, 100))).ok());
  EXPECT_FALSE(a.Add(Piece(n + 1, 100, bytes.substr(100, 10))).ok());
  ASSERT_TRUE(a.Add(Piece(n, 0, bytes.substr(0, 100))).ok());
  EXPECT_FALSE(a.Add(Piece(n, 100, bytes.substr(100) + "extra")).ok());
  // Bytes that are no message
  EXPECT_FALSE(a.Add(Piece(3, 0, "\xff\xff\xff")).ok());
  // A new message at offset 0 replaces a partial one, which is then complete as sent
  ASSERT_TRUE(a.Add(Piece(n, 0, bytes.substr(0, 100))).ok());
  ASSERT_TRUE(a.Add(Piece(n, 0, bytes.substr(0, 50))).ok());
  auto whole = a.Add(Piece(n, 50, bytes.substr(50)));
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE(whole->has_value());
  EXPECT_EQ((*whole)->SerializeAsString(), bytes);
  EXPECT_EQ(a.partial_bytes(), 0u);
}

}  // namespace
}  // namespace marmot::raft::host
