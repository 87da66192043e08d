#include "raft/host/snapshot_policy.h"

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1000);

SnapshotPolicyOptions Options(uint64_t entries, uint64_t bytes, uint64_t overhead,
                              uint64_t overhead_bytes) {
  return {.snapshot_entries = entries,
          .snapshot_bytes = bytes,
          .compaction_overhead = overhead,
          .compaction_overhead_bytes = overhead_bytes};
}

TEST(SnapshotPolicyTest, DueAfterEntriesOrBytes) {
  struct Case {
    const char* name;
    uint64_t every, max_bytes;
    uint64_t applied_entries, entry_bytes;
    bool due;
  };
  const Case cases[] = {
      {"entries not reached", 5, 0, 4, 1, false},  {"entries reached", 5, 0, 5, 1, true},
      {"bytes not reached", 0, 100, 3, 33, false}, {"bytes reached", 0, 100, 3, 34, true},
      {"either trigger", 100, 100, 2, 50, true},   {"no trigger", 0, 0, 1000, 1000, false},
  };
  for (const Case& c : cases) {
    SnapshotPolicy p(Options(c.every, c.max_bytes, 10, 1 << 20), /*last_snapshot=*/10);
    for (uint64_t i = 1; i <= c.applied_entries; ++i) p.EntryApplied(10 + i, c.entry_bytes);
    EXPECT_EQ(p.Due(10 + c.applied_entries, kNow), c.due) << c.name;
  }
}

TEST(SnapshotPolicyTest, TakenOrInstalledSnapshotRestartsTheCount) {
  for (bool installed : {false, true}) {
    SnapshotPolicy p(Options(5, 100, 10, 1 << 20), 0);
    for (uint64_t i = 1; i <= 5; ++i) p.EntryApplied(i, 30);
    ASSERT_TRUE(p.Due(5, kNow));
    if (installed) {
      p.SnapshotInstalled(5);
    } else {
      p.SnapshotTaken(5);
    }
    EXPECT_FALSE(p.HasNew(5));
    EXPECT_FALSE(p.Due(5, kNow));
    p.EntryApplied(6, 30);
    EXPECT_TRUE(p.HasNew(6));
    EXPECT_FALSE(p.Due(6, kNow)) << "30 bytes and 1 entry since the snapshot";
  }
}

TEST(SnapshotPolicyTest, FailureHoldsAutomaticSnapshotsBack) {
  SnapshotPolicy p(Options(1, 0, 10, 1 << 20), 0);
  p.EntryApplied(1, 1);
  p.SnapshotFailed(kNow);
  EXPECT_FALSE(p.Due(1, kNow));
  EXPECT_FALSE(p.Due(1, kNow + SnapshotPolicy::kRetryAfter - absl::Milliseconds(1)));
  EXPECT_TRUE(p.Due(1, kNow + SnapshotPolicy::kRetryAfter));
}

TEST(SnapshotPolicyTest, EntriesKeptBehindASnapshot) {
  struct Case {
    const char* name;
    uint64_t overhead, overhead_bytes;
    std::vector<uint64_t> entry_bytes;  // of entries 1, 2, ...
    uint64_t keep;
  };
  const Case cases[] = {
      {"small entries: the overhead", 3, 100, {10, 10, 10, 10}, 3},
      {"large entries: fewer", 3, 100, {10, 60, 50}, 1},
      {"the last entry alone too large", 3, 100, {10, 10, 150}, 0},
      {"fewer applied in this run: the overhead", 3, 100, {10, 10}, 3},
      {"fewer applied in this run but too large", 3, 100, {150}, 0},
      {"no overhead", 0, 100, {10, 10}, 0},
  };
  for (const Case& c : cases) {
    SnapshotPolicy p(Options(0, 0, c.overhead, c.overhead_bytes), 0);
    uint64_t index = 0;
    for (uint64_t b : c.entry_bytes) p.EntryApplied(++index, b);
    EXPECT_EQ(p.SnapshotTaken(index), c.keep) << c.name;
  }
}

TEST(SnapshotPolicyTest, PackItemsCountWithTheirEntry) {
  SnapshotPolicy p(Options(0, 100, 3, 100), 0);
  p.EntryApplied(1, 10);
  p.EntryApplied(2, 10);
  p.PackItemApplied(85);  // entry 2 now holds 95 bytes
  EXPECT_TRUE(p.Due(2, kNow)) << "105 bytes applied";
  EXPECT_EQ(p.SnapshotTaken(2), 1u) << "entry 2 fits the 100 bytes, entries 1 and 2 do not";
}

TEST(SnapshotPolicyTest, PackItemWithoutOverheadKeepsNothing) {
  SnapshotPolicy p(Options(0, 0, 0, 100), 0);
  p.EntryApplied(1, 10);
  p.PackItemApplied(10);
  EXPECT_EQ(p.SnapshotTaken(1), 0u);
}

}  // namespace
}  // namespace marmot::raft::host
