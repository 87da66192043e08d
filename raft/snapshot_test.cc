// Log compaction and snapshot installation.
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"

namespace marmot::raft {
namespace {

using testing::Cluster;
using Strings = std::vector<std::string>;

Strings Numbered(int n) {
  Strings s;
  for (int i = 0; i < n; ++i) s.push_back("e" + std::to_string(i));
  return s;
}

// Given node 3 was down while 20 entries committed and the others compacted their logs.
void FallBehind(Cluster& c) {
  c.ElectLeader(1);
  c.Crash(3);
  for (const auto& e : Numbered(20)) ASSERT_TRUE(c.Propose(1, e).ok());
  c.node(1).SnapshotAndCompact(0);
  c.node(2).SnapshotAndCompact(0);
  ASSERT_GT(c.node(1).storage().FirstIndex(), 10u);
}

TEST(SnapshotTest, FollowerFarBehindIsCaughtUpWithASnapshot) {
  Cluster c(3);
  FallBehind(c);
  // When it comes back,
  c.Restart(3);
  c.TickAll(3);
  // then it installs the leader's snapshot (its log now starts after it) and matches.
  EXPECT_EQ(c.Applied(3), Numbered(20));
  EXPECT_GT(c.node(3).storage().FirstIndex(), 10u);
  EXPECT_EQ(c.node(3).sm().hash, c.node(1).sm().hash);
  ASSERT_TRUE(c.Propose(1, "after").ok());
  EXPECT_EQ(c.Applied(3).back(), "after");
}

TEST(SnapshotTest, CrashDuringSnapshotInstallLosesNothingAndRetries) {
  Cluster c(3);
  FallBehind(c);
  c.Restart(3);
  // Hold the snapshot when the leader sends it.
  std::vector<v1::Message> held;
  c.SetFilter([&held](const v1::Message& m) {
    if (m.type() != v1::MSG_SNAP) return true;
    held.push_back(m);
    return false;
  });
  c.TickAll(2);
  ASSERT_FALSE(held.empty());
  // When node 3 receives it but crashes before persisting (its Ready is never handled),
  c.Deliver(held.front());
  c.Crash(3);
  c.Restart(3);
  // then it is back to its old state, not half-installed,
  EXPECT_TRUE(c.Applied(3).empty());
  EXPECT_LT(c.node(3).storage().LastIndex(), 5u);
  // and the leader sends the snapshot again and it catches up.
  c.Heal();
  c.TickAll(4);
  EXPECT_EQ(c.Applied(3), Numbered(20));
}

TEST(SnapshotTest, TemporarilyUnavailableSnapshotIsRetriedLater) {
  Cluster c(3);
  FallBehind(c);
  c.node(1).storage().set_snapshot_unavailable(true);
  c.Restart(3);
  c.TickAll(3);
  EXPECT_TRUE(c.Applied(3).empty());
  c.node(1).storage().set_snapshot_unavailable(false);
  c.TickAll(3);
  EXPECT_EQ(c.Applied(3), Numbered(20));
}

TEST(SnapshotTest, RestartAfterCompactionNeitherLosesNorReappliesEntries) {
  Cluster c(3);
  c.ElectLeader(1);
  for (const auto& e : Numbered(5)) ASSERT_TRUE(c.Propose(1, e).ok());
  c.node(2).SnapshotAndCompact(1);
  c.Crash(2);
  c.Restart(2);
  c.TickAll(2);
  EXPECT_EQ(c.Applied(2), Numbered(5));
  ASSERT_TRUE(c.Propose(1, "x").ok());
  EXPECT_EQ(c.Applied(2).size(), 6u);
}

TEST(SnapshotTest, StaleSnapshotIsIgnored) {
  Cluster c(3);
  c.ElectLeader(1);
  for (const auto& e : Numbered(3)) ASSERT_TRUE(c.Propose(1, e).ok());
  const uint64_t committed = c.raft(2).log().committed();
  v1::Message m;
  m.set_type(v1::MSG_SNAP);
  m.set_from(1);
  m.set_to(2);
  m.set_term(c.raft(1).term());
  m.mutable_snapshot()->mutable_metadata()->set_index(2);
  m.mutable_snapshot()->mutable_metadata()->set_term(1);
  c.Deliver(m);
  c.Settle();
  EXPECT_EQ(c.raft(2).log().committed(), committed);
  EXPECT_EQ(c.Applied(2), Numbered(3));
}

}  // namespace
}  // namespace marmot::raft
