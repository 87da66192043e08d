#include "raft/quorum.h"

#include "gtest/gtest.h"
#include "raft/membership.h"

namespace marmot::raft {
namespace {

TEST(MajorityConfigTest, CommittedIndexIsTheMedianAcknowledged) {
  MajorityConfig c({1, 2, 3});
  std::map<uint64_t, uint64_t> acked{{1, 5}, {2, 3}, {3, 9}};
  auto f = [&](uint64_t id) -> std::optional<uint64_t> { return acked[id]; };
  EXPECT_EQ(c.CommittedIndex(f), 5u);
  MajorityConfig four({1, 2, 3, 4});
  acked[4] = 1;
  // 4 voters need 3: the third highest of {9,5,3,1} is 3.
  EXPECT_EQ(four.CommittedIndex(f), 3u);
  EXPECT_EQ(MajorityConfig().CommittedIndex(f), 0u);
}

TEST(MajorityConfigTest, VoteResult) {
  MajorityConfig c({1, 2, 3});
  EXPECT_EQ(c.Vote({{1, true}}), VoteResult::kPending);
  EXPECT_EQ(c.Vote({{1, true}, {2, true}}), VoteResult::kWon);
  EXPECT_EQ(c.Vote({{1, true}, {2, false}, {3, false}}), VoteResult::kLost);
  // Votes of non-members do not count.
  EXPECT_EQ(c.Vote({{1, true}, {9, true}}), VoteResult::kPending);
}

TEST(MembershipTest, SingleServerChanges) {
  v1::ConfState cs;
  cs.add_voters(1);
  std::string why;
  cs = ApplyConfChangeTo(cs, [] {
    v1::ConfChange cc;
    cc.set_type(v1::CONF_CHANGE_ADD_LEARNER);
    cc.set_node_id(2);
    return cc;
  }());
  EXPECT_TRUE(IsLearner(cs, 2));
  v1::ConfChange promote;
  promote.set_type(v1::CONF_CHANGE_ADD_NODE);
  promote.set_node_id(2);
  cs = ApplyConfChangeTo(cs, promote);
  EXPECT_TRUE(IsVoter(cs, 2));
  EXPECT_FALSE(IsLearner(cs, 2));
  v1::ConfChange demote;
  demote.set_type(v1::CONF_CHANGE_ADD_LEARNER);
  demote.set_node_id(2);
  ApplyConfChangeTo(cs, demote, &why);
  EXPECT_FALSE(why.empty());
  v1::ConfChange rm;
  rm.set_type(v1::CONF_CHANGE_REMOVE_NODE);
  rm.set_node_id(1);
  cs = ApplyConfChangeTo(cs, rm);
  EXPECT_FALSE(IsVoter(cs, 1));
  rm.set_node_id(2);
  why.clear();
  cs = ApplyConfChangeTo(cs, rm, &why);
  EXPECT_EQ(why, "cannot remove the last voter");
  EXPECT_TRUE(IsVoter(cs, 2));
}

}  // namespace
}  // namespace marmot::raft
