// Scenarios from the Raft paper (Ongaro & Ousterhout, 2014): elections, log replication and
// the safety rules of section 5.4, played on a synchronous in-process Cluster.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"
#include "raft/testing/log_builder.h"

namespace marmot::raft {
namespace {

using testing::Cluster;
using testing::LogShape;
using testing::LogWithTerms;
using Strings = std::vector<std::string>;

TEST(ElectionTest, SingleNodeElectsItselfAndCommits) {
  // Given a group of one.
  Cluster c(1);
  // When it campaigns and proposes.
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  // Then the proposal is applied without any peer.
  EXPECT_EQ(c.Applied(1), Strings{"x"});
}

TEST(ElectionTest, ThreeNodesElectByTimeoutAndReplicate) {
  // Given three fresh nodes.
  Cluster c(3);
  // When time passes, someone times out first and wins.
  c.TickAll(30);
  const uint64_t leader = c.Leader();
  ASSERT_NE(leader, 0u);
  for (uint64_t id : c.ids()) EXPECT_EQ(c.raft(id).lead(), leader);
  // Then proposals reach every node's state machine in order.
  ASSERT_TRUE(c.Propose(leader, "a").ok());
  ASSERT_TRUE(c.Propose(leader, "b").ok());
  for (uint64_t id : c.ids()) EXPECT_EQ(c.Applied(id), (Strings{"a", "b"})) << "node " << id;
}

TEST(ElectionTest, RandomizedElectionTimeoutStaysInRange) {
  Cluster c(1);
  Raft& r = c.raw(1).mutable_raft();
  for (int i = 0; i < 100; ++i) {
    r.BecomeFollowerForTest(r.term() + 1, kNone);
    EXPECT_GE(r.randomized_election_timeout(), 10);
    EXPECT_LT(r.randomized_election_timeout(), 20);
  }
}

TEST(ElectionTest, FollowerForwardsProposalsToTheLeader) {
  Cluster c(3);
  c.ElectLeader(1);
  // When a follower receives a proposal, it forwards it.
  ASSERT_TRUE(c.Propose(2, "via-2").ok());
  for (uint64_t id : c.ids()) EXPECT_EQ(c.Applied(id), Strings{"via-2"});
}

TEST(ElectionTest, ProposalWithoutLeaderIsDropped) {
  Cluster c(3);
  absl::Status s = c.Propose(2, "lost");
  EXPECT_TRUE(IsProposalDropped(s)) << s;
}

TEST(ElectionTest, VoteIsPersistedAcrossRestart) {
  // Given node 3 voted for node 1 in term 2 (node 1 then could not reach anyone else).
  Cluster c(3);
  c.Cut(1, 2);
  c.Campaign(1);
  ASSERT_EQ(c.raft(3).vote(), 1u);
  const uint64_t term = c.raft(3).term();
  // When node 3 crashes and restarts.
  c.Crash(3);
  c.Restart(3);
  // Then it still remembers its vote: a vote request from node 2 at the same term is refused.
  EXPECT_EQ(c.raft(3).term(), term);
  EXPECT_EQ(c.raft(3).vote(), 1u);
  v1::Message m;
  m.set_type(v1::MSG_VOTE);
  m.set_from(2);
  m.set_to(3);
  m.set_term(term);
  m.set_index(100);
  m.set_log_term(term);
  c.Deliver(m);
  c.HandleReadys();
  ASSERT_FALSE(c.queue().empty());
  EXPECT_EQ(c.queue().back().type(), v1::MSG_VOTE_RESP);
  EXPECT_TRUE(c.queue().back().reject());
}

TEST(ElectionTest, ElectionRestrictionRefusesCandidateWithStaleLog) {
  // Given nodes 1 and 3 hold an entry of term 2 at index 3 that node 2 lacks.
  const auto cs = Cluster::Voters({1, 2, 3});
  Cluster c(0);
  c.AddNode(1, LogWithTerms(cs, {2, 2}));
  c.AddNode(2, LogWithTerms(cs, {2}));
  c.AddNode(3, LogWithTerms(cs, {2, 2}));
  // When node 2 campaigns, then it loses: its log is less up to date than a majority's.
  c.Campaign(2);
  EXPECT_NE(c.raft(2).state(), StateType::kLeader);
  EXPECT_EQ(c.Leader(), 0u);
  // And node 1 can win.
  c.ElectLeader(1);
}

// Figure 7: a leader at term 8 and followers whose logs are missing entries (a, b), have
// extra uncommitted entries (c, d) or both (e, f). After the leader replicates, every
// follower's log equals the leader's.
class Figure7Test : public ::testing::TestWithParam<std::vector<uint64_t>> {};

TEST_P(Figure7Test, FollowerLogConvergesToLeaders) {
  const auto cs = Cluster::Voters({1, 2, 3});
  Cluster c(0);
  c.AddNode(1, LogWithTerms(cs, {1, 1, 1, 4, 4, 5, 5, 6, 6, 6}, 8));
  c.AddNode(2, LogWithTerms(cs, GetParam(), 8));
  c.AddNode(3, LogWithTerms(cs, {}, 8));
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "after").ok());
  EXPECT_EQ(LogShape(c.node(2).storage()), LogShape(c.node(1).storage()));
  EXPECT_EQ(c.raft(2).log().committed(), c.raft(1).log().committed());
  EXPECT_EQ(c.node(2).sm().hash, c.node(1).sm().hash);
}

INSTANTIATE_TEST_SUITE_P(
    PaperShapes, Figure7Test,
    ::testing::Values(std::vector<uint64_t>{1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a)
                      std::vector<uint64_t>{1, 1, 1, 4},                          // (b)
                      std::vector<uint64_t>{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c)
                      std::vector<uint64_t>{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d)
                      std::vector<uint64_t>{1, 1, 1, 4, 4, 4, 4},                 // (e)
                      std::vector<uint64_t>{1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}));   // (f)

TEST(Figure8Test, LeaderDoesNotCommitOlderTermEntryByCountingReplicas) {
  // Given node 1 becomes leader at term 3 holding an entry of term 2 at index 2 that node 2
  // also holds, and its own empty entry at index 3 has not reached anyone yet.
  const auto cs = Cluster::Voters({1, 2, 3});
  Cluster c(0);
  c.AddNode(1, LogWithTerms(cs, {2}));
  c.AddNode(2, LogWithTerms(cs, {2}));
  c.AddNode(3, LogWithTerms(cs, {}));
  c.DropType(v1::MSG_APP);
  c.ElectLeader(1);
  ASSERT_EQ(c.raft(1).log().LastIndex(), 3u);
  // When node 2 acknowledges index 2 (a majority with the leader).
  v1::Message ack;
  ack.set_type(v1::MSG_APP_RESP);
  ack.set_from(2);
  ack.set_to(1);
  ack.set_term(c.raft(1).term());
  ack.set_index(2);
  c.Deliver(ack);
  // Then index 2 is not committed: a term-2 entry on a majority can still be overwritten
  // (figure 8 c/d), so counting replicas only applies to entries of the current term.
  EXPECT_EQ(c.raft(1).log().committed(), 1u);
  // When node 2 acknowledges the leader's own entry at index 3,
  ack.set_index(3);
  c.Deliver(ack);
  // then both commit at once.
  EXPECT_EQ(c.raft(1).log().committed(), 3u);
}

TEST(Figure8Test, UncommittedOlderTermEntryIsOverwrittenByLaterLeader) {
  // Given leader 1 (term 2) got entry "x" only onto node 2, then crashed.
  Cluster c(5);
  c.ElectLeader(1);
  c.Cut(1, 3);
  c.Cut(1, 4);
  c.Cut(1, 5);
  ASSERT_TRUE(c.Propose(1, "x").ok());
  ASSERT_EQ(c.raft(2).log().LastIndex(), 3u);
  c.Crash(1);
  c.Heal();
  c.Cut(2, 5);
  for (uint64_t id : {3, 4}) c.ExpireLease(id);
  // When node 5 wins with votes of 3 and 4 (node 2 refuses: its log is longer),
  c.ElectLeader(5);
  c.Heal();
  ASSERT_TRUE(c.Propose(5, "y").ok());
  c.Tick(5);  // a heartbeat un-pauses the probe to node 2, whose first probe was cut
  // then "x" is gone from node 2 and "y" is applied everywhere alive.
  for (uint64_t id : {2, 3, 4, 5}) EXPECT_EQ(c.Applied(id), Strings{"y"}) << "node " << id;
  // And node 1, restarted, converges too.
  c.Restart(1);
  c.TickAll(3);
  EXPECT_EQ(c.Applied(1), Strings{"y"});
}

TEST(ReplicationTest, CommittedEntriesSurviveLeaderCrash) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Crash(1);
  c.TickAll(40);
  const uint64_t leader = c.Leader();
  ASSERT_NE(leader, 0u);
  ASSERT_NE(leader, 1u);
  ASSERT_TRUE(c.Propose(leader, "b").ok());
  c.Restart(1);
  c.TickAll(3);
  for (uint64_t id : c.ids()) EXPECT_EQ(c.Applied(id), (Strings{"a", "b"})) << "node " << id;
}

TEST(ReplicationTest, StaleLeaderStepsDownAndLosesItsUncommittedEntries) {
  // Given leader 1 is partitioned away and the majority elects node 2.
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  ASSERT_TRUE(c.Propose(1, "stale").ok());  // accepted locally, never committed
  c.ExpireLease(3);
  c.ElectLeader(2);
  ASSERT_TRUE(c.Propose(2, "fresh").ok());
  EXPECT_EQ(c.raft(1).state(), StateType::kLeader);  // it does not know yet
  // When the partition heals and the new leader's heartbeat arrives,
  c.Heal();
  c.Tick(2);
  // then the stale leader follows node 2 and its entry is replaced.
  EXPECT_EQ(c.raft(1).state(), StateType::kFollower);
  EXPECT_EQ(c.raft(1).lead(), 2u);
  for (uint64_t id : c.ids()) EXPECT_EQ(c.Applied(id), Strings{"fresh"}) << "node " << id;
}

TEST(ReplicationTest, StaleLeaderLearnsNewTermFromRejectedAppend) {
  // Given node 1 still thinks it leads term 2 while 2 and 3 moved to a later term.
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(1);
  c.ExpireLease(3);
  c.ElectLeader(2);
  c.Heal();
  // When the stale leader sends an append, the answer carries the newer term (with
  // check-quorum the followers do not adopt its old term) and it steps down.
  ASSERT_TRUE(c.raw(1).Propose("late").ok());
  c.Settle();
  EXPECT_EQ(c.raft(1).state(), StateType::kFollower);
  EXPECT_EQ(c.raft(1).term(), c.raft(2).term());
}

}  // namespace
}  // namespace marmot::raft
