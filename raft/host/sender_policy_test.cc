// SenderPolicy: members propose and vote, the term's leader appends, strangers and removed
// members are refused, and a lagging member still follows a leader it does not know yet.
#include "raft/host/sender_policy.h"

#include <gtest/gtest.h>

namespace marmot::raft::host {
namespace {

v1::Message Msg(v1::MessageType type, uint64_t from, uint64_t term) {
  v1::Message m;
  m.set_type(type);
  m.set_from(from);
  m.set_to(2);
  m.set_term(term);
  return m;
}

// Node 2, a voter following leader 1 in term 5.
SenderView Follower(ShardRole sender, bool removed = false) {
  return {
      .self = ShardRole::kVoter, .sender = sender, .sender_removed = removed, .term = 5, .lead = 1};
}

bool Ok(const SenderView& v, v1::MessageType type, uint64_t from, uint64_t term) {
  return CheckSender(v, Msg(type, from, term)).ok();
}

TEST(SenderPolicyTest, MembersProposeVoteAndAnswer) {
  for (ShardRole role : {ShardRole::kVoter, ShardRole::kLearner}) {
    for (v1::MessageType t :
         {v1::MSG_PROP, v1::MSG_READ_INDEX, v1::MSG_VOTE, v1::MSG_PRE_VOTE, v1::MSG_APP_RESP,
          v1::MSG_VOTE_RESP, v1::MSG_PRE_VOTE_RESP, v1::MSG_HEARTBEAT_RESP}) {
      EXPECT_TRUE(Ok(Follower(role), t, 3, 5)) << t;
    }
  }
}

TEST(SenderPolicyTest, StrangersAndRemovedMembersCannotProposeOrVote) {
  for (bool removed : {false, true}) {
    for (v1::MessageType t : {v1::MSG_PROP, v1::MSG_READ_INDEX, v1::MSG_VOTE, v1::MSG_PRE_VOTE,
                              v1::MSG_APP_RESP, v1::MSG_VOTE_RESP, v1::MSG_HEARTBEAT_RESP}) {
      absl::Status s = CheckSender(Follower(ShardRole::kNone, removed), Msg(t, 9, 6));
      EXPECT_TRUE(absl::IsPermissionDenied(s)) << t;
      EXPECT_NE(s.message().find(removed ? "removed" : "not a member"), absl::string_view::npos)
          << s;
    }
  }
}

TEST(SenderPolicyTest, AppendsAndSnapshotsComeFromTheTermsLeaderOnly) {
  for (v1::MessageType t : {v1::MSG_APP, v1::MSG_HEARTBEAT, v1::MSG_SNAP}) {
    EXPECT_TRUE(Ok(Follower(ShardRole::kVoter), t, 1, 5)) << t;
    // Another member claiming the same term: forged (one leader per term).
    EXPECT_FALSE(Ok(Follower(ShardRole::kVoter), t, 3, 5)) << t;
    // A member with a newer term (a new election this node missed) or an older one (a stale
    // leader, which the core answers with the newer term).
    EXPECT_TRUE(Ok(Follower(ShardRole::kVoter), t, 3, 6)) << t;
    EXPECT_TRUE(Ok(Follower(ShardRole::kVoter), t, 3, 4)) << t;
  }
  EXPECT_TRUE(Ok(Follower(ShardRole::kVoter), v1::MSG_TIMEOUT_NOW, 1, 5));
  EXPECT_FALSE(Ok(Follower(ShardRole::kVoter), v1::MSG_TIMEOUT_NOW, 3, 5));
  EXPECT_FALSE(Ok(Follower(ShardRole::kNone), v1::MSG_TIMEOUT_NOW, 9, 6));
}

TEST(SenderPolicyTest, ALaggingMemberFollowsALeaderItDoesNotKnowYetButNeverARemovedOne) {
  // Node 4 was added and then elected while node 2 lagged behind the change.
  EXPECT_TRUE(Ok(Follower(ShardRole::kNone), v1::MSG_APP, 4, 6));
  EXPECT_TRUE(Ok(Follower(ShardRole::kNone), v1::MSG_SNAP, 4, 6));
  SenderView following_4 = Follower(ShardRole::kNone);
  following_4.term = 6;
  following_4.lead = 4;
  EXPECT_TRUE(Ok(following_4, v1::MSG_HEARTBEAT, 4, 6));
  // Not with the current or an older term, and never from a removed member.
  EXPECT_FALSE(Ok(Follower(ShardRole::kNone), v1::MSG_APP, 4, 5));
  EXPECT_FALSE(Ok(Follower(ShardRole::kNone), v1::MSG_APP, 4, 4));
  EXPECT_FALSE(Ok(Follower(ShardRole::kNone, /*removed=*/true), v1::MSG_APP, 4, 7));
  EXPECT_FALSE(Ok(Follower(ShardRole::kNone, /*removed=*/true), v1::MSG_SNAP, 4, 7));
}

TEST(SenderPolicyTest, ANodeWaitingToBeAddedTakesItsFirstSnapshot) {
  const SenderView joining{
      .self = ShardRole::kNone, .sender = ShardRole::kNone, .term = 0, .lead = 0};
  EXPECT_TRUE(Ok(joining, v1::MSG_APP, 1, 3));
  EXPECT_TRUE(Ok(joining, v1::MSG_SNAP, 1, 3));
  EXPECT_FALSE(Ok(joining, v1::MSG_PROP, 1, 3));
  EXPECT_FALSE(Ok(joining, v1::MSG_VOTE, 1, 3));
}

// A node added with -join and restarted before a shard's snapshot reached it keeps the term it
// had heard (persisted) but not the leader: refusing that leader's heartbeats for the same term
// left the shard without rows on that node until the term changed, which may be never.
TEST(SenderPolicyTest, ANodeRestartedBeforeItsFirstSnapshotHearsTheLeaderOfItsTerm) {
  const SenderView restarted{
      .self = ShardRole::kNone, .sender = ShardRole::kNone, .term = 1, .lead = 0};
  EXPECT_TRUE(Ok(restarted, v1::MSG_HEARTBEAT, 3, 1));
  EXPECT_TRUE(Ok(restarted, v1::MSG_APP, 3, 1));
  EXPECT_TRUE(Ok(restarted, v1::MSG_SNAP, 3, 1));
  // Not an older term, not a removed member, and not once it follows another leader of the term.
  EXPECT_FALSE(Ok(restarted, v1::MSG_HEARTBEAT, 3, 0));
  SenderView removed = restarted;
  removed.sender_removed = true;
  EXPECT_FALSE(Ok(removed, v1::MSG_HEARTBEAT, 3, 1));
  SenderView following_2 = restarted;
  following_2.lead = 2;
  EXPECT_FALSE(Ok(following_2, v1::MSG_HEARTBEAT, 3, 1));
}

TEST(SenderPolicyTest, TransfersNeedAVoterTransfereeAndLocalTypesNeverPass) {
  EXPECT_TRUE(Ok(Follower(ShardRole::kVoter), v1::MSG_TRANSFER_LEADER, 3, 5));
  EXPECT_FALSE(Ok(Follower(ShardRole::kLearner), v1::MSG_TRANSFER_LEADER, 3, 5));
  EXPECT_FALSE(Ok(Follower(ShardRole::kNone), v1::MSG_TRANSFER_LEADER, 9, 5));
  for (v1::MessageType t : {v1::MSG_HUP, v1::MSG_BEAT, v1::MSG_CHECK_QUORUM, v1::MSG_UNREACHABLE,
                            v1::MSG_SNAP_STATUS}) {
    EXPECT_FALSE(Ok(Follower(ShardRole::kVoter), t, 1, 5)) << t;
  }
}

}  // namespace
}  // namespace marmot::raft::host
