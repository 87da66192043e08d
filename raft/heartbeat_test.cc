// Heartbeat timing: with align_heartbeats, every group a host ticks together sends its
// heartbeats in the same tick, whenever each became leader.
#include <vector>

#include "gtest/gtest.h"
#include "raft/testing/cluster.h"

namespace marmot::raft {
namespace {

using testing::Cluster;

// Given two groups ticked together (as a host ticks its groups) whose leaders were elected in
// different ticks, returns the ticks at which each leader sent heartbeats.
std::vector<std::vector<int>> HeartbeatTicks(bool align) {
  Config cfg = Cluster::DefaultConfig();
  cfg.heartbeat_tick = 4;
  cfg.align_heartbeats = align;
  std::vector<std::vector<int>> ticks(2);
  std::vector<std::unique_ptr<Cluster>> groups;
  for (int g = 0; g < 2; ++g) groups.push_back(std::make_unique<Cluster>(3, cfg));
  groups[0]->ElectLeader(1);
  for (int t = 1; t <= 12; ++t) {
    if (t == 2) groups[1]->ElectLeader(1);  // one tick later than group 0
    for (int g = 0; g < 2; ++g) {
      bool beat = false;
      groups[g]->SetFilter([&beat](const v1::Message& m) {
        if (m.type() == v1::MSG_HEARTBEAT) beat = true;
        return true;
      });
      groups[g]->Tick(1, 1);
      if (beat) ticks[g].push_back(t);
    }
  }
  return ticks;
}

TEST(HeartbeatTest, AlignedGroupsBeatInTheSameTicks) {
  std::vector<std::vector<int>> ticks = HeartbeatTicks(/*align=*/true);
  EXPECT_EQ(ticks[0].size(), 3u);  // every 4th of 12 ticks
  EXPECT_EQ(ticks[0], ticks[1]);
}

TEST(HeartbeatTest, UnalignedGroupsBeatOnTheirOwnPhase) {
  // The control for the test above: without alignment the phases differ.
  std::vector<std::vector<int>> ticks = HeartbeatTicks(/*align=*/false);
  EXPECT_EQ(ticks[0].size(), 3u);
  EXPECT_NE(ticks[0], ticks[1]);
}

}  // namespace
}  // namespace marmot::raft
