// StreamIntake: what the batches of one stream deliver; messages bound to the stream's peer and
// this node, large ones reassembled, hostile ones dropped and counted.
#include "raft/host/stream_intake.h"

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;

v1::Message Msg(v1::MessageType type, uint64_t from, uint64_t to, uint64_t shard = 0) {
  v1::Message m;
  m.set_type(type);
  m.set_from(from);
  m.set_to(to);
  m.set_shard(shard);
  return m;
}

tv1::MessageBatch Batch(uint64_t from, uint64_t to, std::vector<v1::Message> msgs) {
  tv1::MessageBatch b;
  b.set_from_node(from);
  b.set_to_node(to);
  for (auto& m : msgs) *b.add_messages() = std::move(m);
  return b;
}

TEST(StreamIntakeTest, DeliversThePeersMessagesInOrder) {
  StreamIntake intake(2, 1);
  StreamIntake::Delivery d =
      intake.Take(Batch(1, 2, {Msg(v1::MSG_APP, 1, 2, 5), Msg(v1::MSG_HEARTBEAT, 1, 2, 6)}));
  ASSERT_EQ(d.messages.size(), 2u);
  EXPECT_EQ(d.messages[0].shard(), 5u);
  EXPECT_EQ(d.messages[1].shard(), 6u);
  EXPECT_EQ(d.refused, 0u);
}

TEST(StreamIntakeTest, DropsMessagesClaimingAnotherSenderOrReceiver) {
  StreamIntake intake(2, 1);
  StreamIntake::Delivery d =
      intake.Take(Batch(1, 2,
                        {Msg(v1::MSG_VOTE, 3, 2), Msg(v1::MSG_APP, 1, 3), Msg(v1::MSG_PROP, 1, 2),
                         // The transferee names itself as `from`; a follower forwards it unchanged.
                         Msg(v1::MSG_TRANSFER_LEADER, 3, 2)}));
  ASSERT_EQ(d.messages.size(), 2u);
  EXPECT_EQ(d.messages[0].type(), v1::MSG_PROP);
  EXPECT_EQ(d.messages[1].type(), v1::MSG_TRANSFER_LEADER);
  EXPECT_EQ(d.refused, 2u);
}

TEST(StreamIntakeTest, DropsABatchOfAnotherPairWhole) {
  StreamIntake intake(2, 1);
  tv1::MessageBatch b = Batch(3, 2, {Msg(v1::MSG_APP, 3, 2), Msg(v1::MSG_APP, 3, 2)});
  b.mutable_piece()->set_total_size(10);
  b.mutable_piece()->set_data("x");
  StreamIntake::Delivery d = intake.Take(b);
  EXPECT_TRUE(d.messages.empty());
  EXPECT_EQ(d.refused, 3u);
  EXPECT_EQ(intake.partial_bytes(), 0u);  // the piece was not taken either
}

TEST(StreamIntakeTest, ReassemblesPiecesAndChecksTheWholeMessage) {
  StreamIntake intake(2, 1);
  auto pieces = [&](const v1::Message& m) {
    const std::string bytes = m.SerializeAsString();
    StreamIntake::Delivery last;
    for (size_t off = 0; off < bytes.size(); off += 3) {
      tv1::MessageBatch b = Batch(1, 2, {});
      b.mutable_piece()->set_total_size(bytes.size());
      b.mutable_piece()->set_offset(off);
      b.mutable_piece()->set_data(bytes.substr(off, 3));
      last = intake.Take(b);
      if (off + 3 < bytes.size()) {
        EXPECT_TRUE(last.messages.empty());
      }
    }
    return last;
  };
  v1::Message big = Msg(v1::MSG_APP, 1, 2, 7);
  big.add_entries()->set_data(std::string(40, 'e'));
  StreamIntake::Delivery d = pieces(big);
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_EQ(d.messages[0].entries(0).data(), std::string(40, 'e'));
  // A large message in another node's name is dropped like a small one.
  v1::Message forged = big;
  forged.set_from(3);
  d = pieces(forged);
  EXPECT_TRUE(d.messages.empty());
  EXPECT_EQ(d.refused, 1u);
}

TEST(StreamIntakeTest, AHostilePieceIsDroppedAndTheStreamGoesOn) {
  StreamIntake intake(2, 1);
  tv1::MessageBatch b = Batch(1, 2, {Msg(v1::MSG_APP, 1, 2)});
  b.mutable_piece()->set_total_size(uint64_t{1} << 40);  // beyond what protobuf can hold
  b.mutable_piece()->set_data("x");
  StreamIntake::Delivery d = intake.Take(b);
  EXPECT_EQ(d.messages.size(), 1u);  // the batch's messages still count
  EXPECT_EQ(intake.partial_bytes(), 0u);
  // Bytes that complete a "message" but do not parse as one.
  tv1::MessageBatch junk = Batch(1, 2, {});
  junk.mutable_piece()->set_total_size(2);
  junk.mutable_piece()->set_data("\xff\xff");
  EXPECT_TRUE(intake.Take(junk).messages.empty());
  EXPECT_EQ(intake.Take(Batch(1, 2, {Msg(v1::MSG_APP, 1, 2)})).messages.size(), 1u);
}

}  // namespace
}  // namespace marmot::raft::host
