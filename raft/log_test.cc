#include "raft/log.h"

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/log_unstable.h"

namespace marmot::raft {
namespace {

std::vector<v1::Entry> Ents(uint64_t first, std::vector<uint64_t> terms) {
  std::vector<v1::Entry> out;
  for (uint64_t t : terms) {
    v1::Entry e;
    e.set_index(first++);
    e.set_term(t);
    out.push_back(e);
  }
  return out;
}

TEST(UnstableLogTest, StableToForgetsOnlyWhatWasPersisted) {
  UnstableLog u(5);
  u.TruncateAndAppend(Ents(5, {1, 1, 2}));
  // The host persisted up to 6/1: forget 5 and 6.
  u.StableTo(6, 1);
  EXPECT_EQ(u.offset(), 7u);
  EXPECT_EQ(u.entries().size(), 1u);
  // A stale acknowledgement (wrong term) is ignored.
  u.StableTo(7, 1);
  EXPECT_EQ(u.entries().size(), 1u);
}

TEST(UnstableLogTest, TruncateAndAppendReplacesSuffix) {
  UnstableLog u(5);
  u.TruncateAndAppend(Ents(5, {1, 1, 1}));
  u.TruncateAndAppend(Ents(6, {2, 2}));
  ASSERT_EQ(u.entries().size(), 3u);
  EXPECT_EQ(*u.MaybeTerm(6), 2u);
  EXPECT_EQ(*u.MaybeLastIndex(), 7u);
  // Replacing from before the offset (a conflict in persisted entries).
  u.TruncateAndAppend(Ents(3, {3}));
  EXPECT_EQ(u.offset(), 3u);
  EXPECT_EQ(*u.MaybeLastIndex(), 3u);
}

class RaftLogTest : public ::testing::Test {
 protected:
  // Stable entries 1..3 with terms 1,2,3.
  void SetUp() override { ASSERT_TRUE(storage_.Append(Ents(1, {1, 2, 3})).ok()); }
  MemoryLogStorage storage_;
};

TEST_F(RaftLogTest, FindConflictFindsFirstMismatchOrNewEntry) {
  RaftLog log(&storage_, UINT64_MAX);
  EXPECT_EQ(log.FindConflict(Ents(1, {1, 2, 3})), 0u);
  EXPECT_EQ(log.FindConflict(Ents(2, {2, 3, 4})), 4u);
  EXPECT_EQ(log.FindConflict(Ents(2, {2, 4})), 3u);
}

TEST_F(RaftLogTest, MaybeAppendMatchesThenAppendsAndCommitsOnlyVerifiedPrefix) {
  RaftLog log(&storage_, UINT64_MAX);
  uint64_t conflict;
  // Mismatching previous entry: refused.
  EXPECT_FALSE(log.MaybeAppend(3, 2, 3, Ents(4, {4}), &conflict).has_value());
  // Matching: appended; the leader's commit (10) is capped at the last new entry.
  auto last = log.MaybeAppend(3, 3, 10, Ents(4, {4}), &conflict);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, 4u);
  EXPECT_EQ(conflict, 4u);
  EXPECT_EQ(log.committed(), 4u);
  // A heartbeat-style empty append at 2 must not commit beyond 2 even though commit is 10.
  RaftLog log2(&storage_, UINT64_MAX);
  EXPECT_EQ(*log2.MaybeAppend(2, 2, 10, {}, &conflict), 2u);
  EXPECT_EQ(log2.committed(), 2u);
}

TEST_F(RaftLogTest, IsUpToDateComparesLastTermThenLength) {
  RaftLog log(&storage_, UINT64_MAX);
  EXPECT_TRUE(log.IsUpToDate(1, 4));   // higher term wins even if shorter
  EXPECT_FALSE(log.IsUpToDate(9, 2));  // lower term loses even if longer
  EXPECT_TRUE(log.IsUpToDate(3, 3));
  EXPECT_FALSE(log.IsUpToDate(2, 3));
}

TEST_F(RaftLogTest, FindConflictByTermSkipsWholeTerms) {
  RaftLog log(&storage_, UINT64_MAX);
  log.Append(Ents(4, {3, 3, 5}));
  // Largest index <= 6 with term <= 3 is 5.
  EXPECT_EQ(log.FindConflictByTerm(6, 3), (std::pair<uint64_t, uint64_t>{5, 3}));
  EXPECT_EQ(log.FindConflictByTerm(6, 1), (std::pair<uint64_t, uint64_t>{1, 1}));
}

TEST_F(RaftLogTest, MaybeCommitOnlyCurrentTerm) {
  RaftLog log(&storage_, UINT64_MAX);
  EXPECT_FALSE(log.MaybeCommit(3, 4));  // entry 3 has term 3, we lead term 4
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_TRUE(log.MaybeCommit(3, 3));
  EXPECT_EQ(log.committed(), 3u);
}

TEST_F(RaftLogTest, NextCommittedEntriesRespectsAppliedAndByteLimit) {
  RaftLog log(&storage_, 1);  // at most one entry per batch
  log.CommitTo(3);
  auto next = log.NextCommittedEntries();
  ASSERT_EQ(next.size(), 1u);
  log.AppliedTo(1);
  EXPECT_EQ(log.NextCommittedEntries().front().index(), 2u);
  log.AppliedTo(3);
  EXPECT_FALSE(log.HasNextCommittedEntries());
}

TEST_F(RaftLogTest, TermOfCompactedIndexIsAnError) {
  ASSERT_TRUE(storage_.Compact(2).ok());
  RaftLog log(&storage_, UINT64_MAX);
  EXPECT_TRUE(IsCompacted(log.Term(1).status()));
  EXPECT_EQ(*log.Term(2), 2u);
  EXPECT_EQ(*log.Term(9), 0u);  // past the end: "no entry"
  EXPECT_TRUE(IsCompacted(log.Entries(1, UINT64_MAX).status()));
}

}  // namespace
}  // namespace marmot::raft
