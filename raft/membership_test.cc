// Membership changes (single server: add voter, add learner, promote, remove) and leadership
// transfer.
#include "raft/membership.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"

namespace marmot::raft {
namespace {

using testing::Cluster;
using Strings = std::vector<std::string>;

TEST(MembershipTest, AddedVoterCatchesUpAndCountsForQuorum) {
  // Given a group of three with one committed entry.
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  // When an empty node 4 is added,
  c.AddEmptyNode(4);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_NODE, 4).ok());
  c.Tick(1, 2);
  // then it receives the log (from the bootstrap snapshot on) and applies it.
  EXPECT_EQ(c.Applied(4), Strings{"a"});
  EXPECT_EQ(c.raft(4).tracker().voters().size(), 4u);
  // And it counts: with 4 voters a quorum is 3, so 1 and 4 alone cannot commit,
  c.Isolate(2);
  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, "b").ok());
  EXPECT_EQ(c.Applied(4), Strings{"a"});
  // but 1, 3 and 4 can.
  c.Heal();
  c.Isolate(2);
  c.Tick(1, 2);
  EXPECT_EQ(c.Applied(4), (Strings{"a", "b"}));
}

TEST(MembershipTest, LearnerReceivesLogButNeitherVotesNorCounts) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddEmptyNode(4);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_LEARNER, 4).ok());
  ASSERT_TRUE(c.Propose(1, "a").ok());
  c.Tick(1, 2);
  EXPECT_EQ(c.Applied(4), Strings{"a"});
  EXPECT_TRUE(c.raft(4).is_learner());
  // The learner does not count toward commit.
  c.Isolate(2);
  c.Isolate(3);
  ASSERT_TRUE(c.Propose(1, "b").ok());
  EXPECT_EQ(c.Applied(1), Strings{"a"});
  // And never campaigns, however long it waits.
  c.Heal();
  c.Isolate(4);
  c.Tick(4, 100);
  EXPECT_EQ(c.raft(4).state(), StateType::kFollower);
}

TEST(MembershipTest, PromotedLearnerBecomesVoter) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddEmptyNode(4);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_LEARNER, 4).ok());
  c.Tick(1, 2);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_NODE, 4).ok());
  c.Tick(1, 2);
  EXPECT_FALSE(c.raft(4).is_learner());
  EXPECT_TRUE(c.raft(1).tracker().voters().Contains(4));
  // It can now lead.
  c.ExpireLease(2);
  c.ExpireLease(3);
  c.ElectLeader(4);
}

TEST(MembershipTest, RemovedFollowerNoLongerCounts) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 3).ok());
  c.Crash(3);
  // Two voters left: 1 and 2 commit alone.
  ASSERT_TRUE(c.Propose(1, "a").ok());
  EXPECT_EQ(c.Applied(2), Strings{"a"});
  EXPECT_FALSE(c.raft(1).tracker().voters().Contains(3));
}

TEST(MembershipTest, RemovedLeaderStepsDownAndTheRestElectANewOne) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 1).ok());
  c.Tick(1);
  // Once its removal is applied, node 1 is no longer leader,
  EXPECT_NE(c.raft(1).state(), StateType::kLeader);
  // and 2 and 3 elect a leader among themselves that commits without node 1.
  c.TickAll(40);
  const uint64_t leader = c.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3) << leader;
  c.Crash(1);
  ASSERT_TRUE(c.Propose(leader, "after").ok());
  EXPECT_EQ(c.Applied(2), Strings{"after"});
  EXPECT_EQ(c.Applied(3), Strings{"after"});
}

TEST(MembershipTest, OnlyOneConfChangeInFlight) {
  Cluster c(3);
  c.ElectLeader(1);
  // Given a conf change that cannot commit yet,
  c.DropType(v1::MSG_APP);
  c.AddEmptyNode(4);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_LEARNER, 4).ok());
  // then a second one is refused until it is applied.
  EXPECT_TRUE(IsProposalDropped(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 3)));
  c.Heal();
  c.Tick(1, 2);
  EXPECT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 3).ok());
}

TEST(MembershipTest, NewLeaderWaitsForAnEntryOfItsTermBeforeChangingMembership) {
  // A leader that has not committed an entry of its term may hold an uncommitted change of a
  // previous leader; adding its own on top could yield configurations two steps apart.
  Cluster c(3);
  c.DropType(v1::MSG_APP);
  c.ElectLeader(1);
  EXPECT_TRUE(IsProposalDropped(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 3)));
}

TEST(MembershipTest, InvalidChangesAreRefused) {
  Cluster c(1);
  c.ElectLeader(1);
  EXPECT_EQ(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_NODE, 0).code(),
            absl::StatusCode::kInvalidArgument);
}

v1::ConfChange Change(v1::ConfChangeType type, uint64_t node, bool promote = false) {
  v1::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(node);
  cc.set_promote_when_caught_up(promote);
  return cc;
}

std::vector<uint64_t> ToPromote(const v1::ConfState& cs) {
  return {cs.learners_to_promote().begin(), cs.learners_to_promote().end()};
}

TEST(MembershipTest, PromotionMarkFollowsTheLatestChangeOfTheNode) {
  v1::ConfState cs = Cluster::Voters({1, 2, 3});
  // A learner added to be promoted carries the mark,
  cs = ApplyConfChangeTo(cs, Change(v1::CONF_CHANGE_ADD_LEARNER, 4, true));
  cs = ApplyConfChangeTo(cs, Change(v1::CONF_CHANGE_ADD_LEARNER, 5, true));
  EXPECT_TRUE(IsLearner(cs, 4));
  EXPECT_EQ(ToPromote(cs), (std::vector<uint64_t>{4, 5}));
  // its promotion clears it,
  cs = ApplyConfChangeTo(cs, Change(v1::CONF_CHANGE_ADD_NODE, 4));
  EXPECT_TRUE(IsVoter(cs, 4));
  EXPECT_EQ(ToPromote(cs), std::vector<uint64_t>{5});
  // so do a plain ADD_LEARNER (it stays a learner) and a removal,
  cs = ApplyConfChangeTo(cs, Change(v1::CONF_CHANGE_ADD_LEARNER, 5));
  EXPECT_TRUE(IsLearner(cs, 5));
  EXPECT_TRUE(ToPromote(cs).empty());
  cs = ApplyConfChangeTo(cs, Change(v1::CONF_CHANGE_ADD_LEARNER, 6, true));
  cs = ApplyConfChangeTo(cs, Change(v1::CONF_CHANGE_REMOVE_NODE, 6));
  EXPECT_FALSE(IsLearner(cs, 6));
  EXPECT_TRUE(ToPromote(cs).empty());
  // and a voter cannot be marked (that would be a demotion).
  std::string ignored;
  cs = ApplyConfChangeTo(cs, Change(v1::CONF_CHANGE_ADD_LEARNER, 1, true), &ignored);
  EXPECT_FALSE(ignored.empty());
  EXPECT_TRUE(ToPromote(cs).empty());
}

TEST(MembershipTest, PromotionMarkIsKnownToEveryMemberAndSurvivesARestart) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddEmptyNode(4);
  ASSERT_TRUE(c.raw(1).ProposeConfChange(Change(v1::CONF_CHANGE_ADD_LEARNER, 4, true)).ok());
  c.Settle();
  c.Tick(1, 2);
  for (uint64_t id : {1, 2, 3, 4}) {
    EXPECT_EQ(c.raft(id).tracker().learners_to_promote(), std::set<uint64_t>{4}) << id;
  }
  // A node that restarts rebuilds it from its log, and can act on it once it leads.
  c.Crash(2);
  c.Restart(2);
  EXPECT_EQ(c.raft(2).tracker().learners_to_promote(), std::set<uint64_t>{4});
  c.ExpireLease(1);
  c.ExpireLease(3);
  c.ElectLeader(2);
  EXPECT_EQ(c.raft(2).tracker().learners_to_promote(), std::set<uint64_t>{4});
  EXPECT_EQ(ToPromote(c.raw(2).Status().conf_state), std::vector<uint64_t>{4});
}

TEST(MembershipTest, IsCaughtUpNeedsAnActiveLearnerThatAcknowledgedTheLog) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "a").ok());
  // Given learner 4 is added while it cannot be reached,
  c.AddEmptyNode(4);
  c.Isolate(4);
  ASSERT_TRUE(c.raw(1).ProposeConfChange(Change(v1::CONF_CHANGE_ADD_LEARNER, 4, true)).ok());
  EXPECT_TRUE(c.raft(1).ConfChangePending());  // until it is applied
  c.Settle();
  EXPECT_FALSE(c.raft(1).ConfChangePending());
  // then it has not caught up, however much lag is allowed (the leader is still probing it).
  EXPECT_FALSE(c.raft(1).IsCaughtUp(4, 0));
  EXPECT_FALSE(c.raft(1).IsCaughtUp(4, 1000));
  // Once it is reachable it catches up,
  c.Heal();
  c.Tick(1, 2);
  EXPECT_EQ(c.Applied(4), Strings{"a"});
  EXPECT_TRUE(c.raft(1).IsCaughtUp(4, 0));
  // but only the leader knows: a follower answers false, and so does anyone for itself or a
  // stranger.
  EXPECT_FALSE(c.raft(2).IsCaughtUp(4, 1000));
  EXPECT_FALSE(c.raft(1).IsCaughtUp(1, 1000));
  EXPECT_FALSE(c.raft(1).IsCaughtUp(9, 1000));
  // When it is cut off again, entries committed without it count against the allowed lag,
  c.Isolate(4);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.Propose(1, absl::StrCat("b", i)).ok());
  EXPECT_FALSE(c.raft(1).IsCaughtUp(4, 2));
  EXPECT_TRUE(c.raft(1).IsCaughtUp(4, 3));
  // and after a check-quorum round without an answer from it, it no longer counts as active.
  c.Tick(1, 10);
  ASSERT_EQ(c.raft(1).state(), StateType::kLeader);
  EXPECT_FALSE(c.raft(1).IsCaughtUp(4, 1000));
}

// Every accepted change counts one membership version, the same on every node; a refused one
// (here: removing the last voter) does not.
TEST(MembershipTest, EveryAcceptedChangeAddsOneVersion) {
  v1::ConfState cs = Cluster::Voters({1});
  EXPECT_EQ(cs.version(), 0u);
  v1::ConfChange add;
  add.set_type(v1::CONF_CHANGE_ADD_LEARNER);
  add.set_node_id(2);
  cs = ApplyConfChangeTo(cs, add);
  EXPECT_EQ(cs.version(), 1u);
  v1::ConfChange remove_last;
  remove_last.set_type(v1::CONF_CHANGE_REMOVE_NODE);
  remove_last.set_node_id(1);
  std::string ignored;
  cs = ApplyConfChangeTo(cs, remove_last, &ignored);
  EXPECT_FALSE(ignored.empty());
  EXPECT_EQ(cs.version(), 1u);
}

// tests/host NodeHostTest.ALearnerCanBeRemovedBeforeItIsPromoted ended with the removed learner
// a voter: a host retries a conf change until it sees it applied, and a forwarded try can
// reach the leader late. "Add learner 4 (to promote)" arriving after "remove 4" added 4 back,
// and the leader then promoted it. A change names the membership version it was decided
// against; the leader drops it if the membership moved on.
TEST(MembershipTest, ChangeDecidedOnAnOlderMembershipIsDroppedNotAppended) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddEmptyNode(4);
  c.Isolate(4);  // never catches up, so nobody could promote it anyway
  v1::ConfChange add;
  add.set_type(v1::CONF_CHANGE_ADD_LEARNER);
  add.set_node_id(4);
  add.set_promote_when_caught_up(true);
  add.set_expected_version(c.raft(2).tracker().conf_version());
  // Given node 2 forwards "add learner 4" twice, and the second try is held up on the way,
  std::optional<v1::Message> late;
  c.SetFilter([&](const v1::Message& m) {
    if (m.type() != v1::MSG_PROP || m.from() != 2 || late.has_value()) return true;
    late = m;
    return false;
  });
  ASSERT_TRUE(c.raw(2).ProposeConfChange(add).ok());
  c.Settle();
  ASSERT_TRUE(late.has_value());
  c.SetFilter(nullptr);
  ASSERT_TRUE(c.raw(2).ProposeConfChange(add).ok());
  c.Tick(1, 2);
  ASSERT_TRUE(c.raft(1).tracker().learners().count(4));
  // and node 3 then removes 4, against the membership it sees,
  v1::ConfChange remove;
  remove.set_type(v1::CONF_CHANGE_REMOVE_NODE);
  remove.set_node_id(4);
  remove.set_expected_version(c.raft(3).tracker().conf_version());
  ASSERT_TRUE(c.raw(3).ProposeConfChange(remove).ok());
  c.Tick(1, 2);
  ASSERT_FALSE(c.raft(1).tracker().learners().count(4));
  const uint64_t last = c.raft(1).log().LastIndex();
  // when the held-up try reaches the leader,
  EXPECT_EQ(c.raft(1).state(), StateType::kLeader);
  EXPECT_EQ(c.raw(1).Step(*late).code(), absl::StatusCode::kAborted);
  c.Tick(1, 2);
  // then it is not appended, and 4 stays out of every member's membership.
  EXPECT_EQ(c.raft(1).log().LastIndex(), last);
  for (uint64_t id : {1, 2, 3}) {
    const v1::ConfState cs = c.raft(id).tracker().ConfState();
    EXPECT_FALSE(IsVoter(cs, 4) || IsLearner(cs, 4)) << id;
    EXPECT_EQ(cs.learners_to_promote_size(), 0) << id;
    EXPECT_EQ(c.node(id).sm().conf_state.learners_size(), 0) << id;
  }
}

// Without an expected version a change is appended whatever the membership (what the
// simulator and the tests that build changes by hand rely on).
TEST(MembershipTest, ChangeWithoutExpectedVersionIsNotChecked) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_LEARNER, 4).ok());
  c.Tick(1, 2);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 4).ok());
  c.Tick(1, 2);
  EXPECT_EQ(c.raft(1).tracker().conf_version(), 2u);
  v1::ConfChange stale;
  stale.set_type(v1::CONF_CHANGE_ADD_LEARNER);
  stale.set_node_id(4);
  stale.set_expected_version(1);
  EXPECT_EQ(c.raw(1).ProposeConfChange(stale).code(), absl::StatusCode::kAborted);
  stale.clear_expected_version();
  EXPECT_TRUE(c.raw(1).ProposeConfChange(stale).ok());
}

TEST(TransferTest, ToUpToDateFollower) {
  Cluster c(3);
  c.ElectLeader(1);
  const uint64_t term = c.raft(1).term();
  ASSERT_TRUE(c.raw(1).TransferLeader(2).ok());
  c.Settle();
  EXPECT_EQ(c.Leader(), 2u);
  EXPECT_EQ(c.raft(2).term(), term + 1);
  EXPECT_EQ(c.raft(1).lead(), 2u);
}

TEST(TransferTest, LaggingFollowerCatchesUpFirst) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.Propose(1, "e" + std::to_string(i)).ok());
  c.Heal();
  // When leadership goes to node 3, which misses five entries,
  ASSERT_TRUE(c.raw(1).TransferLeader(3).ok());
  c.Settle();
  c.Tick(1);
  // then it is first brought up to date, and only then told to campaign.
  EXPECT_EQ(c.Leader(), 3u);
  EXPECT_EQ(c.Applied(3).size(), 5u);
}

TEST(TransferTest, ProposalsDroppedDuringTransferAndTransferAbortsAfterTimeout) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Crash(3);
  ASSERT_TRUE(c.raw(1).TransferLeader(3).ok());
  c.Settle();
  EXPECT_EQ(c.raft(1).lead_transferee(), 3u);
  EXPECT_TRUE(IsProposalDropped(c.Propose(1, "x")));
  // After an election timeout without success the transfer is abandoned.
  c.Tick(1, Cluster::DefaultConfig().election_tick);
  EXPECT_EQ(c.raft(1).lead_transferee(), kNone);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_TRUE(c.Propose(1, "y").ok());
}

TEST(TransferTest, RequestOnFollowerIsForwarded) {
  Cluster c(3);
  c.ElectLeader(1);
  ASSERT_TRUE(c.raw(2).TransferLeader(2).ok());
  c.Settle();
  EXPECT_EQ(c.Leader(), 2u);
}

TEST(TransferTest, ToLearnerIsRefused) {
  Cluster c(3);
  c.ElectLeader(1);
  c.AddEmptyNode(4);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_ADD_LEARNER, 4).ok());
  c.Tick(1, 2);
  EXPECT_TRUE(IsProposalDropped(c.raw(1).TransferLeader(4)));
  EXPECT_EQ(c.Leader(), 1u);
}

}  // namespace
}  // namespace marmot::raft
