#include "raft/storage.h"

#include "gtest/gtest.h"
#include "raft/errors.h"

namespace marmot::raft {
namespace {

std::vector<v1::Entry> Ents(uint64_t first, std::vector<uint64_t> terms, size_t payload = 0) {
  std::vector<v1::Entry> out;
  for (uint64_t t : terms) {
    v1::Entry e;
    e.set_index(first++);
    e.set_term(t);
    e.set_data(std::string(payload, 'p'));
    out.push_back(e);
  }
  return out;
}

// Given a log with snapshot at 3 (term 3) and entries 4..5.
MemoryLogStorage Sample() {
  MemoryLogStorage s;
  v1::Snapshot snap;
  snap.mutable_metadata()->set_index(3);
  snap.mutable_metadata()->set_term(3);
  EXPECT_TRUE(s.ApplySnapshot(snap).ok());
  EXPECT_TRUE(s.Append(Ents(4, {4, 5})).ok());
  return s;
}

TEST(MemoryLogStorageTest, TermAnswersFromSnapshotIndexToLast) {
  MemoryLogStorage s = Sample();
  EXPECT_TRUE(IsCompacted(s.Term(2).status()));
  EXPECT_EQ(*s.Term(3), 3u);
  EXPECT_EQ(*s.Term(5), 5u);
  EXPECT_TRUE(IsEntryUnavailable(s.Term(6).status()));
  EXPECT_EQ(s.FirstIndex(), 4u);
  EXPECT_EQ(s.LastIndex(), 5u);
}

TEST(MemoryLogStorageTest, EntriesRespectBoundsAndByteLimit) {
  MemoryLogStorage s;
  ASSERT_TRUE(s.Append(Ents(1, {1, 1, 1, 1}, 100)).ok());
  EXPECT_TRUE(IsCompacted(s.Entries(0, 2, UINT64_MAX).status()));
  EXPECT_TRUE(IsEntryUnavailable(s.Entries(1, 6, UINT64_MAX).status()));
  EXPECT_EQ(s.Entries(1, 5, UINT64_MAX)->size(), 4u);
  // One entry costs 116 bytes: a 250-byte budget fits two; a tiny one still yields one.
  EXPECT_EQ(s.Entries(1, 5, 250)->size(), 2u);
  EXPECT_EQ(s.Entries(1, 5, 1)->size(), 1u);
}

TEST(MemoryLogStorageTest, AppendTruncatesConflictingSuffixAndRejectsGaps) {
  MemoryLogStorage s = Sample();
  // A new leader overwrote index 5 with term 6 and went on.
  ASSERT_TRUE(s.Append(Ents(5, {6, 6})).ok());
  EXPECT_EQ(*s.Term(5), 6u);
  EXPECT_EQ(s.LastIndex(), 6u);
  // Entries entirely below the snapshot are ignored; a gap is an error.
  EXPECT_TRUE(s.Append(Ents(1, {1, 1})).ok());
  EXPECT_EQ(s.LastIndex(), 6u);
  EXPECT_FALSE(s.Append(Ents(9, {6})).ok());
}

TEST(MemoryLogStorageTest, CompactAndSnapshots) {
  MemoryLogStorage s = Sample();
  EXPECT_TRUE(IsCompacted(s.Compact(3)));
  ASSERT_TRUE(s.Compact(4).ok());
  EXPECT_EQ(s.FirstIndex(), 5u);
  EXPECT_EQ(*s.Term(4), 4u);
  EXPECT_FALSE(s.Compact(9).ok());

  v1::ConfState cs;
  cs.add_voters(1);
  auto snap = s.CreateSnapshot(5, cs, "state");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->metadata().term(), 5u);
  EXPECT_TRUE(IsSnapshotOutOfDate(s.CreateSnapshot(4, cs, "old").status()));
  EXPECT_EQ(s.InitialState()->conf_index, 5u);

  v1::Snapshot old;
  old.mutable_metadata()->set_index(2);
  EXPECT_TRUE(IsSnapshotOutOfDate(s.ApplySnapshot(old)));
  s.set_snapshot_unavailable(true);
  EXPECT_TRUE(IsSnapshotTemporarilyUnavailable(s.Snapshot().status()));
}

TEST(MemoryLogStorageTest, BootstrapStartsAtIndexOne) {
  v1::ConfState cs;
  cs.add_voters(1);
  cs.add_voters(2);
  MemoryLogStorage s = MemoryLogStorage::Bootstrap(cs);
  EXPECT_EQ(s.FirstIndex(), 2u);
  EXPECT_EQ(s.LastIndex(), 1u);
  EXPECT_EQ(*s.Term(1), 1u);
  EXPECT_EQ(s.InitialState()->conf_state.voters_size(), 2);
  EXPECT_EQ(s.InitialState()->hard_state.commit(), 1u);
}

}  // namespace
}  // namespace marmot::raft
