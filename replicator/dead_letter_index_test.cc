// The bookkeeping behind per-row ordering of dead letters: which earlier dead letter a change
// of a row must stay behind.
#include "replicator/dead_letter_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace marmot::replicator {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

DeadLetterIndex::Entry Row(int shard, uint64_t raft_index, std::vector<std::string> rows) {
  return {.shard = shard, .raft_index = raft_index, .table = "t", .rows = std::move(rows)};
}

TEST(DeadLetterIndexTest, AChangeWaitsForTheOldestEarlierDeadLetterOfItsRow) {
  DeadLetterIndex index;
  index.Add(3, Row(0, 10, {"r1"}));
  index.Add(5, Row(0, 11, {"r1"}));
  index.Add(7, Row(0, 12, {"r2"}));
  // A new change of r1 waits for 3, the oldest; one of r3 for nothing.
  EXPECT_THAT(index.Blocker(0, "t", {"r1"}, false), Optional(3));
  EXPECT_EQ(index.Blocker(0, "t", {"r3"}, false), std::nullopt);
  // Dead letter 5 itself waits for 3; 3 waits for nothing; 7 (another row) neither.
  EXPECT_THAT(index.Blocker(0, "t", {"r1"}, false, 5), Optional(3));
  EXPECT_EQ(index.Blocker(0, "t", {"r1"}, false, 3), std::nullopt);
  EXPECT_EQ(index.Blocker(0, "t", {"r2"}, false, 7), std::nullopt);
  // A rekey touches two rows: either holds it back.
  EXPECT_THAT(index.Blocker(0, "t", {"r9", "r2"}, false), Optional(7));
  // Once 3 is gone, 5 is first in line.
  index.Remove(3);
  EXPECT_EQ(index.Blocker(0, "t", {"r1"}, false, 5), std::nullopt);
  EXPECT_THAT(index.Blocker(0, "t", {"r1"}, false), Optional(5));
  index.Remove(5);
  index.Remove(7);
  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.Blocker(0, "t", {"r1", "r2"}, false), std::nullopt);
}

TEST(DeadLetterIndexTest, SnapshotRowsHoldBackTheWholeTableOfTheirShard) {
  DeadLetterIndex index;
  index.Add(2, Row(1, 10, {"r1"}));
  index.Add(4, {.shard = 1, .raft_index = 20, .table = "t", .whole_table = true});
  EXPECT_THAT(index.Blocker(1, "t", {"any row"}, false), Optional(4));
  EXPECT_EQ(index.Blocker(0, "t", {"any row"}, false), std::nullopt);  // Another shard.
  EXPECT_EQ(index.Blocker(1, "u", {"any row"}, false), std::nullopt);  // Another table.
  // The whole-table entry itself waits for the older row entry of that table and shard.
  EXPECT_THAT(index.Blocker(1, "t", {}, true, 4), Optional(2));
}

TEST(DeadLetterIndexTest, IdsUpToSelectsOneShardAtOrBelowAnIndex) {
  DeadLetterIndex index;
  index.Add(1, Row(0, 5, {"a"}));
  index.Add(2, Row(1, 5, {"b"}));
  index.Add(3, Row(0, 9, {"c"}));
  index.Add(4, {.shard = 0, .raft_index = 6});  // Undecodable: no table, no rows.
  EXPECT_THAT(index.IdsUpTo(0, 6), ElementsAre(1, 4));
  EXPECT_THAT(index.Ids(), ElementsAre(1, 2, 3, 4));
}

TEST(DeadLetterIndexTest, AnIdAddedAgainReplacesTheStaleEntry) {
  DeadLetterIndex index;
  index.Add(1, Row(0, 5, {"a"}));
  index.Add(1, Row(0, 6, {"b"}));
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.Blocker(0, "t", {"a"}, false), std::nullopt);
  EXPECT_THAT(index.Blocker(0, "t", {"b"}, false), Optional(1));
}

}  // namespace
}  // namespace marmot::replicator
