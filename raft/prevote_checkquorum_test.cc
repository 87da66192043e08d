// Pre-vote and check-quorum: a healthy leader is not disrupted by nodes that lost contact,
// and a leader that lost its quorum steps down.
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"

namespace marmot::raft {
namespace {

using testing::Cluster;

TEST(PreVoteTest, RejoiningPartitionedNodeDoesNotDisruptHealthyLeader) {
  // Given a healthy group led by node 1.
  Cluster c(3);
  c.ElectLeader(1);
  const uint64_t term = c.raft(1).term();
  // When node 3 is cut off for many election timeouts (it keeps pre-campaigning and losing),
  c.Isolate(3);
  c.TickAll(100);
  // then its term did not grow: a failed pre-vote leaves no trace.
  EXPECT_EQ(c.raft(3).term(), term);
  EXPECT_NE(c.raft(3).state(), StateType::kLeader);
  // And when it rejoins, node 1 is still leader of the same term and node 3 follows it.
  c.Heal();
  c.TickAll(5);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_EQ(c.raft(1).term(), term);
  EXPECT_EQ(c.raft(3).lead(), 1u);
}

TEST(PreVoteTest, MinorityCannotElectOrInflateTerms) {
  Cluster c(5);
  c.ElectLeader(1);
  const uint64_t term = c.raft(1).term();
  for (uint64_t a : {4, 5}) {
    for (uint64_t b : {1, 2, 3}) c.Cut(a, b);
  }
  c.TickAll(100);
  for (uint64_t id : {4, 5}) {
    EXPECT_NE(c.raft(id).state(), StateType::kLeader);
    EXPECT_EQ(c.raft(id).term(), term);
  }
  EXPECT_EQ(c.Leader(), 1u);
}

TEST(CheckQuorumTest, LeaderWithoutQuorumStepsDown) {
  // Given leader 1, when it cannot hear from anyone for an election timeout or two,
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  c.Tick(1, 2 * Cluster::DefaultConfig().election_tick);
  // then it steps down rather than keep serving a group that may have moved on.
  EXPECT_EQ(c.raft(1).state(), StateType::kFollower);
}

TEST(CheckQuorumTest, FollowerInLeaseIgnoresHigherTermVoteRequest) {
  Cluster c(3);
  c.ElectLeader(1);
  const uint64_t term = c.raft(2).term();
  // When node 3 (say, back from a partition with a higher term) asks node 2 for a vote,
  v1::Message m;
  m.set_type(v1::MSG_VOTE);
  m.set_from(3);
  m.set_to(2);
  m.set_term(term + 5);
  m.set_index(100);
  m.set_log_term(term + 4);
  c.Deliver(m);
  // then node 2, which heard from its leader recently, neither votes nor changes term.
  EXPECT_EQ(c.raft(2).term(), term);
  EXPECT_EQ(c.raft(2).lead(), 1u);
  EXPECT_TRUE(c.raw(2).mutable_raft().msgs().empty());
}

TEST(CheckQuorumTest, LeaderStaysWhileQuorumAnswers) {
  Cluster c(5);
  c.ElectLeader(1);
  c.Isolate(5);
  c.Cut(1, 4);
  // 1, 2, 3 still form a quorum.
  c.TickAll(60);
  EXPECT_EQ(c.Leader(), 1u);
}

TEST(ConfigTest, PreVoteAndCheckQuorumComeTogether) {
  MemoryLogStorage s = MemoryLogStorage::Bootstrap(Cluster::Voters({1}));
  Config cfg = Cluster::DefaultConfig();
  cfg.id = 1;
  cfg.storage = &s;
  cfg.pre_vote = false;
  EXPECT_EQ(RawNode::Create(cfg).status().code(), absl::StatusCode::kInvalidArgument);
  cfg.pre_vote = true;
  cfg.election_tick = 1;
  EXPECT_EQ(RawNode::Create(cfg).status().code(), absl::StatusCode::kInvalidArgument);
  cfg.election_tick = 10;
  cfg.id = 0;
  EXPECT_EQ(RawNode::Create(cfg).status().code(), absl::StatusCode::kInvalidArgument);
  cfg.id = 1;
  EXPECT_TRUE(RawNode::Create(cfg).ok());
}

}  // namespace
}  // namespace marmot::raft
