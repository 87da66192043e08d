// Flow control: message size, in-flight window (count and bytes), uncommitted size.
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"

namespace marmot::raft {
namespace {

using testing::Cluster;

TEST(FlowControlTest, MaxSizePerMsgSplitsCatchUp) {
  Config cfg = Cluster::DefaultConfig();
  cfg.max_size_per_msg = 300;
  Cluster c(3, cfg);
  c.ElectLeader(1);
  c.Isolate(3);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Propose(1, std::string(100, 'a' + i)).ok());
  c.Heal();
  std::vector<int> sizes;
  c.SetFilter([&sizes](const v1::Message& m) {
    if (m.type() == v1::MSG_APP && m.to() == 3 && m.entries_size() > 0) {
      uint64_t bytes = 0;
      for (const auto& e : m.entries()) bytes += EntrySize(e);
      EXPECT_TRUE(m.entries_size() == 1 || bytes <= 300) << bytes;
      sizes.push_back(m.entries_size());
    }
    return true;
  });
  c.Tick(1, 3);
  EXPECT_EQ(c.Applied(3).size(), 10u);
  EXPECT_GE(sizes.size(), 4u);  // 116-byte entries, at most 2 per message
}

TEST(FlowControlTest, InflightWindowBoundsUnacknowledgedAppends) {
  Config cfg = Cluster::DefaultConfig();
  cfg.max_inflight_msgs = 2;
  Cluster c(3, cfg);
  c.ElectLeader(1);
  // Acks from node 2 are lost: the leader may have at most 2 appends outstanding to it.
  c.CutOneWay(2, 1);
  int apps = 0;
  c.SetFilter([&apps](const v1::Message& m) {
    if (m.type() == v1::MSG_APP && m.to() == 2 && m.entries_size() > 0) ++apps;
    return true;
  });
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Propose(1, "x").ok());
  EXPECT_EQ(apps, 2);
  // Node 3 keeps the group committing meanwhile.
  EXPECT_EQ(c.Applied(3).size(), 10u);
}

TEST(FlowControlTest, InflightBytesBoundUnacknowledgedAppends) {
  Config cfg = Cluster::DefaultConfig();
  cfg.max_size_per_msg = 1000;
  cfg.max_inflight_bytes = 1000;
  Cluster c(3, cfg);
  c.ElectLeader(1);
  c.CutOneWay(2, 1);
  uint64_t bytes = 0;
  c.SetFilter([&bytes](const v1::Message& m) {
    if (m.type() == v1::MSG_APP && m.to() == 2) {
      for (const auto& e : m.entries()) bytes += EntrySize(e);
    }
    return true;
  });
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Propose(1, std::string(400, 'b')).ok());
  // The window closes once 1000 bytes are out (the last message may cross the line).
  EXPECT_LE(bytes, 1000u + 416u);
  EXPECT_EQ(c.Applied(3).size(), 10u);
}

TEST(FlowControlTest, UncommittedSizeLimitDropsProposals) {
  Config cfg = Cluster::DefaultConfig();
  cfg.max_uncommitted_entries_size = 100;
  Cluster c(3, cfg);
  c.ElectLeader(1);
  c.Isolate(1);  // nothing commits
  EXPECT_TRUE(c.Propose(1, std::string(60, 'x')).ok());
  EXPECT_TRUE(IsProposalDropped(c.Propose(1, std::string(60, 'y'))));
  // Once the tail commits and is applied, there is room again.
  c.Heal();
  c.Tick(1, 2);
  EXPECT_TRUE(c.Propose(1, std::string(60, 'z')).ok());
}

TEST(FlowControlTest, ProbeSendsOneAppendUntilAnswered) {
  Cluster c(3);
  c.ElectLeader(1);
  c.Crash(3);
  // Make the leader probe node 3 (it reported unreachable).
  c.raw(1).ReportUnreachable(3);
  int apps = 0;
  c.SetFilter([&apps](const v1::Message& m) {
    if (m.type() == v1::MSG_APP && m.to() == 3) ++apps;
    return true;
  });
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.Propose(1, "p").ok());
  EXPECT_EQ(apps, 1);
}

}  // namespace
}  // namespace marmot::raft
