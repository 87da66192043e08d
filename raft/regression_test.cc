// Bugs the simulator found, each written down as a scenario that would have caught it.
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"
#include "raft/testing/simulator.h"

namespace marmot::raft {
namespace {

using testing::Cluster;
using Strings = std::vector<std::string>;

// Sim seed 22: two leaders in one term. A node that held two unapplied removals won an
// election in the configuration two steps old. Membership must follow the log, not the
// state machine: a conf change counts from the moment it is appended, and is undone if the
// entry is truncated.
TEST(RegressionTest, MembershipTakesEffectOnAppendAndRevertsOnTruncation) {
  Cluster c(3);
  c.ElectLeader(1);
  // Given node 2 receives "remove 3" but nobody learns it committed (acks are lost),
  c.CutOneWay(2, 1);
  c.CutOneWay(3, 1);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 3).ok());
  const uint64_t cc_index = c.raft(1).log().LastIndex();
  ASSERT_EQ(c.raft(2).log().LastIndex(), cc_index);
  ASSERT_LT(c.raft(2).log().committed(), cc_index);
  // then node 2 already uses the new membership, before commit or apply.
  EXPECT_FALSE(c.raft(2).tracker().voters().Contains(3));
  EXPECT_EQ(c.node(2).sm().conf_state.voters_size(), 3);  // not applied yet
  // When node 3, leading a newer term without that entry, overwrites it on node 2,
  c.Heal();
  c.Crash(1);
  v1::Message app;
  app.set_type(v1::MSG_APP);
  app.set_from(3);
  app.set_to(2);
  app.set_term(c.raft(2).term() + 1);
  app.set_index(cc_index - 1);
  app.set_log_term(*c.raft(2).log().Term(cc_index - 1));
  auto* e = app.add_entries();
  e->set_index(cc_index);
  e->set_term(app.term());
  c.Deliver(app);
  // then the membership reverts: 3 is a voter again.
  EXPECT_TRUE(c.raft(2).tracker().voters().Contains(3));
  EXPECT_EQ(*c.raft(2).log().Term(cc_index), app.term());
}

// Sim seed 114 (first failure): a leader that appended its own removal and crashed held the
// only copy; the others could not win against its longer log and it would not campaign.
TEST(RegressionTest, NodeWhoseRemovalIsUncommittedCanStillLeadToCommitIt) {
  Cluster c(2);
  c.ElectLeader(1);
  c.DropType(v1::MSG_APP);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 1).ok());
  c.Crash(1);
  c.Restart(1);
  c.Heal();
  c.TickAll(80);
  // The removal committed and node 2 leads the group alone.
  EXPECT_EQ(c.Leader(), 2u);
  EXPECT_EQ(c.raft(2).tracker().voters().size(), 1u);
  ASSERT_TRUE(c.Propose(2, "alone").ok());
  EXPECT_EQ(c.Applied(2), Strings{"alone"});
}

// Sim seed 114: a leader that had appended its own removal saw a single-voter configuration
// and answered ReadIndex at once, though the single voter was another node that had moved on.
TEST(RegressionTest, LeaderOutsideSingleVoterConfigDoesNotShortcutReads) {
  Cluster c(2);
  c.ElectLeader(1);
  c.DropType(v1::MSG_APP);
  ASSERT_TRUE(c.ProposeConfChange(1, v1::CONF_CHANGE_REMOVE_NODE, 1).ok());
  ASSERT_EQ(c.raft(1).tracker().voters().size(), 1u);  // {2}
  c.Isolate(1);
  ASSERT_TRUE(c.raw(1).ReadIndex("r").ok());
  c.Tick(1, 3);
  EXPECT_TRUE(c.read_states(1).empty());
}

// Sim seed 268: every append in a follower's in-flight window was lost; no ack could free it
// and the follower never caught up.
TEST(RegressionTest, WindowFullOfLostAppendsRecoversOnHeartbeat) {
  Config cfg = Cluster::DefaultConfig();
  cfg.max_inflight_msgs = 2;
  Cluster c(3, cfg);
  c.ElectLeader(1);
  ASSERT_TRUE(c.Propose(1, "warm").ok());  // node 2 is in replicate state
  c.SetFilter([](const v1::Message& m) { return !(m.type() == v1::MSG_APP && m.to() == 2); });
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.Propose(1, "x" + std::to_string(i)).ok());
  c.Heal();
  c.Tick(1, 4);
  EXPECT_EQ(c.Applied(2).size(), 6u);
}

// The seeds that failed once, replayed (their runs differ now that the code changed, but
// they are cheap and were interesting).
TEST(RegressionTest, PinnedSimulatorSeeds) {
  for (auto [seed, events] :
       std::vector<std::pair<uint64_t, int>>{{22, 2000}, {114, 2000}, {268, 2000}, {14326, 4000}}) {
    testing::SimOptions o;
    o.seed = seed;
    o.events = events;
    auto r = testing::RunSimulation(o);
    EXPECT_TRUE(r.ok) << r.failure;
  }
}

}  // namespace
}  // namespace marmot::raft
