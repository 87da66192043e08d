// ReadIndex: linearizable reads without writing to the log.
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"

namespace marmot::raft {
namespace {

using testing::Cluster;

TEST(ReadIndexTest, LeaderAnswersWithItsCommitIndexAfterAQuorumConfirms) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  const uint64_t commit = c.raft(1).log().committed();
  ASSERT_TRUE(c.raw(1).ReadIndex("q1").ok());
  c.Settle();
  ASSERT_EQ(c.read_states(1).size(), 1u);
  EXPECT_EQ(c.read_states(1)[0].index, commit);
  EXPECT_EQ(c.read_states(1)[0].request_ctx, "q1");
}

TEST(ReadIndexTest, FollowerRequestIsForwardedAndAnswered) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  ASSERT_TRUE(c.raw(2).ReadIndex("f").ok());
  c.Settle();
  ASSERT_EQ(c.read_states(2).size(), 1u);
  EXPECT_EQ(c.read_states(2)[0].index, c.raft(1).log().committed());
}

TEST(ReadIndexTest, NewLeaderWaitsUntilAnEntryOfItsTermCommits) {
  // Given a new leader whose empty entry has not committed yet: its commit index may lag
  // what the previous leader committed, so it is not a safe read index.
  Cluster c(3);
  c.DropType(v1::MSG_APP);
  c.ElectLeader(1);
  ASSERT_TRUE(c.raw(1).ReadIndex("early").ok());
  c.Settle();
  EXPECT_TRUE(c.read_states(1).empty());
  // When the entry commits, the parked read is answered, at or after it.
  c.Heal();
  c.Tick(1, 2);
  ASSERT_EQ(c.read_states(1).size(), 1u);
  EXPECT_GE(c.read_states(1)[0].index, c.raft(1).log().LastIndex());
}

TEST(ReadIndexTest, PartitionedLeaderCannotAnswer) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  ASSERT_TRUE(c.raw(1).ReadIndex("stale?").ok());
  c.Tick(1, 3);
  EXPECT_TRUE(c.read_states(1).empty());
}

TEST(ReadIndexTest, WithoutLeaderIsDropped) {
  Cluster c(3);
  EXPECT_TRUE(IsProposalDropped(c.raw(2).ReadIndex("x")));
}

TEST(ReadIndexTest, SingleVoterAnswersImmediately) {
  Cluster c(1);
  c.ElectLeader(1);
  ASSERT_TRUE(c.raw(1).ReadIndex("solo").ok());
  c.Settle();
  ASSERT_EQ(c.read_states(1).size(), 1u);
}

}  // namespace
}  // namespace marmot::raft
