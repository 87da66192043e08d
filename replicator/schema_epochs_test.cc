#include "replicator/schema_epochs.h"

#include <vector>

#include "gtest/gtest.h"

namespace marmot::replicator {
namespace {

TEST(SchemaEpochsTest, TheEpochOnlyMovesUp) {
  SchemaEpochs epochs(4);
  EXPECT_EQ(epochs.current(), 0u);
  epochs.SchemaAt(7);
  epochs.SchemaAt(5);
  EXPECT_EQ(epochs.current(), 7u);
}

TEST(SchemaEpochsTest, AWaiterIsWokenOnceTheShardItWaitsForGetsThere) {
  SchemaEpochs epochs(4);
  std::vector<int> woken;
  epochs.set_wake([&](int shard) { woken.push_back(shard); });
  epochs.Applied(0, 3);
  // Given shard 2 waiting for shard 0 to apply 5 (shard 0 stands at 3),
  EXPECT_FALSE(epochs.WaitFor(2, 0, 5));
  // then shard 0 applying 4 wakes nobody, and applying 5 wakes shard 2, once.
  epochs.Applied(0, 4);
  EXPECT_TRUE(woken.empty());
  epochs.Applied(0, 5);
  epochs.Applied(0, 6);
  EXPECT_EQ(woken, std::vector<int>{2});
  // What is applied already needs no wait.
  EXPECT_TRUE(epochs.WaitFor(3, 0, 6));
  epochs.Applied(0, 7);
  EXPECT_EQ(woken, std::vector<int>{2});
}

TEST(SchemaEpochsTest, AWaiterThatStoppedWaitingIsNotWoken) {
  SchemaEpochs epochs(2);
  std::vector<int> woken;
  epochs.set_wake([&](int shard) { woken.push_back(shard); });
  EXPECT_FALSE(epochs.WaitFor(1, 0, 2));
  epochs.StopWaiting(1);
  epochs.Applied(0, 2);
  EXPECT_TRUE(woken.empty());
}

TEST(SchemaEpochsTest, WaitersRegisteredBeforeTheWakeIsSetAreWokenWhenItIs) {
  SchemaEpochs epochs(3);
  // Given shards waiting while the host did not run yet (replaying at a start),
  EXPECT_FALSE(epochs.WaitFor(1, 0, 9));
  EXPECT_FALSE(epochs.WaitFor(2, 1, 9));
  epochs.Applied(1, 9);  // no wake to call yet
  // then setting the wake wakes every one registered (each looks again).
  std::vector<int> woken;
  epochs.set_wake([&](int shard) { woken.push_back(shard); });
  EXPECT_EQ(woken, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace marmot::replicator
