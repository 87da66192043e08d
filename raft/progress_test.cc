#include "raft/progress.h"

#include "gtest/gtest.h"
#include "raft/inflights.h"

namespace marmot::raft {
namespace {

TEST(InflightsTest, CountLimitAndFreeing) {
  Inflights in(3, 0);
  in.Add(1, 10);
  in.Add(2, 10);
  EXPECT_FALSE(in.Full());
  in.Add(3, 10);
  EXPECT_TRUE(in.Full());
  in.FreeLE(2);
  EXPECT_EQ(in.Count(), 1u);
  EXPECT_EQ(in.Bytes(), 10u);
  // Wraps around the ring.
  in.Add(4, 1);
  in.Add(5, 1);
  EXPECT_TRUE(in.Full());
  in.FreeFirstOne();
  EXPECT_EQ(in.Count(), 2u);
  in.FreeLE(100);
  EXPECT_EQ(in.Count(), 0u);
}

TEST(InflightsTest, ByteLimit) {
  Inflights in(100, 1000);
  in.Add(1, 600);
  EXPECT_FALSE(in.Full());
  in.Add(2, 600);
  EXPECT_TRUE(in.Full());  // over the byte budget
  in.FreeLE(1);
  EXPECT_FALSE(in.Full());
}

TEST(ProgressTest, ProbeSendsOneAtATime) {
  Progress p(5, 10, 0, false);
  EXPECT_FALSE(p.IsPaused());
  p.SentEntries(3, 7, 30);
  EXPECT_TRUE(p.IsPaused());
  EXPECT_EQ(p.next, 5u);  // probing does not advance next optimistically
  EXPECT_TRUE(p.MaybeUpdate(7));
  EXPECT_FALSE(p.IsPaused());
  EXPECT_EQ(p.next, 8u);
}

TEST(ProgressTest, ReplicateStreamsWithinWindow) {
  Progress p(5, 2, 0, false);
  p.match = 4;
  p.BecomeReplicate();
  p.SentEntries(2, 6, 10);
  EXPECT_EQ(p.next, 7u);
  p.SentEntries(1, 7, 10);
  EXPECT_TRUE(p.IsPaused());
  EXPECT_TRUE(p.MaybeUpdate(6));
  p.inflights.FreeLE(6);
  EXPECT_FALSE(p.IsPaused());
}

TEST(ProgressTest, MaybeDecrToIgnoresStaleRejections) {
  Progress p(10, 10, 0, false);
  // Probe: only a rejection of the latest probe (next-1 == 9) counts.
  EXPECT_FALSE(p.MaybeDecrTo(5, 3));
  EXPECT_TRUE(p.MaybeDecrTo(9, 3));
  EXPECT_EQ(p.next, 4u);  // jumps to the follower's hint + 1
  // Replicate: a rejection at or below match is stale.
  p.match = 6;
  p.BecomeReplicate();
  EXPECT_FALSE(p.MaybeDecrTo(6, 0));
  EXPECT_TRUE(p.MaybeDecrTo(8, 0));
  EXPECT_EQ(p.next, 7u);
}

TEST(ProgressTest, SnapshotStatePausesUntilProbe) {
  Progress p(3, 10, 0, false);
  p.BecomeSnapshot(20);
  EXPECT_TRUE(p.IsPaused());
  p.BecomeProbe();
  EXPECT_EQ(p.next, 21u);  // right after the snapshot
}

}  // namespace
}  // namespace marmot::raft
