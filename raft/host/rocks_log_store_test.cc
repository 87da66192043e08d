// RocksLogStore: restart exactness, refusal of foreign or damaged folders, compaction.
#include "raft/host/rocks_log_store.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/host/env.h"

namespace marmot::raft::host {
namespace {

namespace fs = std::filesystem;

class RocksLogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
  }
  std::unique_ptr<RocksLogStore> MustOpen(uint64_t node = 1, int shards = 4) {
    RocksLogStore::Options o;
    o.node_id = node;
    o.shards = shards;
    o.cache_entries = 8;  // small, so reads also go to RocksDB
    auto s = RocksLogStore::Open(dir_, o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  static std::vector<Entry> Ents(uint64_t lo, uint64_t hi, uint64_t term) {
    std::vector<Entry> v;
    for (uint64_t i = lo; i < hi; ++i) {
      Entry e;
      e.set_index(i);
      e.set_term(term);
      e.set_data("payload-" + std::to_string(i));
      v.push_back(e);
    }
    return v;
  }
  std::string dir_;
};

ConfState Voters(std::initializer_list<uint64_t> ids) {
  ConfState cs;
  for (auto id : ids) cs.add_voters(id);
  return cs;
}

TEST_F(RocksLogStoreTest, TheClusterIdIsKeptAcrossRestarts) {
  {
    auto store = MustOpen();
    EXPECT_EQ(store->cluster_id_at_open(), "");
    store->Bootstrap(0, Voters({1}));
    ASSERT_TRUE(store->Commit().ok());
    // Written while the loop stages other things: its own write, not part of the staged batch.
    store->Bootstrap(1, Voters({1}));
    ASSERT_TRUE(store->SetClusterId("sixteen bytes id").ok());
  }
  auto store = MustOpen();
  EXPECT_EQ(store->cluster_id_at_open(), "sixteen bytes id");
  EXPECT_EQ(store->shard(1)->snapshot_metadata().index(), 0u);  // the staged write was not
}

TEST_F(RocksLogStoreTest, RestartRestoresHardStateLogAndSnapshotExactly) {
  // Given a bootstrapped store with a log, an overwritten tail, a hard state and a snapshot,
  {
    auto store = MustOpen();
    ASSERT_TRUE(store->fresh());
    store->Bootstrap(2, Voters({1, 2, 3}));
    ShardLog* log = store->shard(2);
    ASSERT_TRUE(log->Append(Ents(2, 40, 1)).ok());
    ASSERT_TRUE(log->Append(Ents(30, 35, 2)).ok());  // new leader replaces 30..39
    HardState hs;
    hs.set_term(2);
    hs.set_vote(3);
    hs.set_commit(33);
    log->SetHardState(hs);
    ASSERT_TRUE(store->Commit().ok());
    v1::SnapshotMetadata meta;
    meta.set_index(20);
    meta.set_term(1);
    *meta.mutable_conf_state() = Voters({1, 2, 3});
    ASSERT_TRUE(
        WriteFileDurably(Env::Default(), store->SnapshotDir() + "/s20", "state-at-20").ok());
    ASSERT_TRUE(log->SetLocalSnapshot(meta, "s20").ok());
    ASSERT_TRUE(log->Compact(15).ok());
    ASSERT_TRUE(store->Commit().ok());
  }
  // when it is reopened,
  auto store = MustOpen();
  ASSERT_FALSE(store->fresh());
  ShardLog* log = store->shard(2);
  // then everything reads back exactly.
  EXPECT_EQ(log->FirstIndex(), 16u);
  EXPECT_EQ(log->LastIndex(), 34u);
  EXPECT_EQ(*log->Term(15), 1u);
  EXPECT_EQ(*log->Term(29), 1u);
  EXPECT_EQ(*log->Term(30), 2u);
  EXPECT_TRUE(IsCompacted(log->Term(14).status()));
  EXPECT_TRUE(IsEntryUnavailable(log->Term(35).status()));
  auto st = log->InitialState();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->hard_state.term(), 2u);
  EXPECT_EQ(st->hard_state.vote(), 3u);
  EXPECT_EQ(st->hard_state.commit(), 33u);
  EXPECT_EQ(st->conf_index, 20u);
  EXPECT_EQ(st->conf_state.voters_size(), 3);
  auto snap = log->Snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->metadata().index(), 20u);
  EXPECT_EQ(snap->data(), "s20");  // The payload's file, not the payload.
  auto ents = log->Entries(16, 35, UINT64_MAX);
  ASSERT_TRUE(ents.ok());
  ASSERT_EQ(ents->size(), 19u);
  for (size_t k = 0; k < ents->size(); ++k) {
    EXPECT_EQ((*ents)[k].index(), 16 + k);
    EXPECT_EQ((*ents)[k].data(), "payload-" + std::to_string(16 + k));
  }
  // Size limit: at least one entry, then stop once over the budget.
  auto one = log->Entries(16, 35, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);
  // Other shards are untouched.
  EXPECT_EQ(store->shard(0)->LastIndex(), 0u);
}

// Term() answers from memory (an entry may carry a 70 MB row): the terms it keeps must follow
// every append, overwritten tail, compaction and restart.
TEST_F(RocksLogStoreTest, TermsFollowAppendsOverwritesCompactionAndRestarts) {
  auto expect_terms = [](ShardLog* log, uint64_t lo, uint64_t hi, auto term_of) {
    for (uint64_t i = lo; i <= hi; ++i) {
      auto t = log->Term(i);
      ASSERT_TRUE(t.ok()) << "index " << i << ": " << t.status();
      EXPECT_EQ(*t, term_of(i)) << "index " << i;
    }
  };
  auto term_of = [](uint64_t i) -> uint64_t { return i < 30 ? 1 : i < 33 ? 2 : 4; };
  {
    auto store = MustOpen();
    store->Bootstrap(3, Voters({1, 2}));
    ShardLog* log = store->shard(3);
    ASSERT_TRUE(log->Append(Ents(2, 40, 1)).ok());
    ASSERT_TRUE(log->Append(Ents(30, 35, 2)).ok());  // replaces 30..39
    ASSERT_TRUE(log->Append(Ents(33, 50, 4)).ok());  // replaces 33..34, appends up to 49
    ASSERT_TRUE(store->Commit().ok());
    expect_terms(log, 2, 49, term_of);
    v1::SnapshotMetadata meta;
    meta.set_index(31);
    meta.set_term(2);
    ASSERT_TRUE(log->SetLocalSnapshot(meta, "").ok());
    ASSERT_TRUE(log->Compact(31).ok());
    ASSERT_TRUE(store->Commit().ok());
    EXPECT_EQ(*log->Term(31), 2u);  // the compacted entry's term is kept
    expect_terms(log, 32, 49, term_of);
  }
  auto store = MustOpen();
  ShardLog* log = store->shard(3);
  EXPECT_EQ(*log->Term(31), 2u);
  expect_terms(log, 32, 49, term_of);
  EXPECT_TRUE(IsEntryUnavailable(log->Term(50).status()));
  ASSERT_TRUE(log->Append(Ents(50, 52, 5)).ok());
  EXPECT_EQ(*log->Term(51), 5u);
}

TEST_F(RocksLogStoreTest, CompactionDeletesTheRangeAndStopsAtTheSnapshot) {
  auto store = MustOpen();
  store->Bootstrap(0, Voters({1}));
  ShardLog* log = store->shard(0);
  ASSERT_TRUE(log->Append(Ents(2, 101, 1)).ok());
  ASSERT_TRUE(store->Commit().ok());
  // Compaction past what the state machine made durable (the snapshot at 1) is refused.
  EXPECT_FALSE(log->Compact(50).ok());
  v1::SnapshotMetadata meta;
  meta.set_index(60);
  meta.set_term(1);
  ASSERT_TRUE(log->SetLocalSnapshot(meta, "").ok());
  ASSERT_TRUE(log->Compact(50).ok());
  ASSERT_TRUE(store->Commit().ok());
  EXPECT_TRUE(IsCompacted(log->Entries(50, 60, UINT64_MAX).status()));
  EXPECT_TRUE(IsCompacted(log->Compact(40)));
  store.reset();
  // After a restart the deleted range is really gone from RocksDB (the log starts at 51).
  store = MustOpen();
  log = store->shard(0);
  EXPECT_EQ(log->FirstIndex(), 51u);
  EXPECT_EQ(log->LastIndex(), 100u);
  auto e = log->Entries(51, 52, UINT64_MAX);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)[0].data(), "payload-51");
}

TEST_F(RocksLogStoreTest, ReceivedSnapshotReplacesTheLog) {
  auto store = MustOpen();
  store->Bootstrap(1, Voters({1, 2}));
  ShardLog* log = store->shard(1);
  ASSERT_TRUE(log->Append(Ents(2, 10, 1)).ok());
  v1::Snapshot snap;
  snap.mutable_metadata()->set_index(500);
  snap.mutable_metadata()->set_term(7);
  *snap.mutable_metadata()->mutable_conf_state() = Voters({1, 2, 3});
  // Its data names a payload file the receiver put in the folder; a name that is not there, or
  // that leaves the folder, is refused.
  snap.set_data("../db/CURRENT");
  EXPECT_TRUE(absl::IsInvalidArgument(log->ApplySnapshot(snap)));
  snap.set_data("received.snap");
  EXPECT_TRUE(absl::IsInvalidArgument(log->ApplySnapshot(snap)));
  ASSERT_TRUE(WriteFileDurably(Env::Default(), store->SnapshotDir() + "/received.snap",
                               std::string(100000, 'x'))
                  .ok());
  ASSERT_TRUE(log->ApplySnapshot(snap).ok());
  ASSERT_TRUE(store->Commit().ok());
  EXPECT_TRUE(IsSnapshotOutOfDate(log->ApplySnapshot(snap)));
  store.reset();
  store = MustOpen();
  log = store->shard(1);
  EXPECT_EQ(log->FirstIndex(), 501u);
  EXPECT_EQ(log->LastIndex(), 500u);
  EXPECT_EQ(*log->Term(500), 7u);
  EXPECT_EQ(log->Snapshot()->data(), "received.snap");
  EXPECT_EQ(fs::file_size(store->SnapshotDir() + "/received.snap"), 100000u);
  EXPECT_EQ(log->InitialState()->conf_state.voters_size(), 3);
}

TEST_F(RocksLogStoreTest, ForeignNodeOrShardCountIsRefusedAndNothingDeleted) {
  {
    auto store = MustOpen(1, 4);
    store->Bootstrap(0, Voters({1}));
    ASSERT_TRUE(store->shard(0)->Append(Ents(2, 5, 1)).ok());
    ASSERT_TRUE(store->Commit().ok());
  }
  RocksLogStore::Options o;
  o.node_id = 2;
  o.shards = 4;
  auto other_node = RocksLogStore::Open(dir_, o);
  ASSERT_FALSE(other_node.ok());
  EXPECT_NE(other_node.status().message().find("belongs to node 1"), std::string::npos)
      << other_node.status();
  o.node_id = 1;
  o.shards = 8;
  auto other_shards = RocksLogStore::Open(dir_, o);
  ASSERT_FALSE(other_shards.ok());
  EXPECT_NE(other_shards.status().message().find("shards"), std::string::npos)
      << other_shards.status();
  // The original still opens with everything in it.
  auto store = MustOpen(1, 4);
  EXPECT_EQ(store->shard(0)->LastIndex(), 4u);
}

TEST_F(RocksLogStoreTest, AStoreInUseIsRefusedAsInUseNotAsDataLoss) {
  auto first = MustOpen();
  RocksLogStore::Options o;
  o.node_id = 1;
  o.shards = 4;
  auto second = RocksLogStore::Open(dir_, o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_NE(second.status().message().find("is in use by another process"), std::string::npos)
      << second.status();
}

TEST_F(RocksLogStoreTest, FolderThatIsNotAStoreIsRefused) {
  fs::create_directories(dir_);
  std::ofstream(dir_ + "/somebody-elses-file") << "hello";
  RocksLogStore::Options o;
  o.node_id = 1;
  o.shards = 4;
  auto s = RocksLogStore::Open(dir_, o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("holds no raft store"), std::string::npos) << s.status();
  EXPECT_TRUE(fs::exists(dir_ + "/somebody-elses-file"));
}

TEST_F(RocksLogStoreTest, CorruptStoreIsRefused) {
  {
    auto store = MustOpen();
    store->Bootstrap(0, Voters({1}));
    ASSERT_TRUE(store->Commit().ok());
  }
  // Damage the MANIFEST: every byte after the header becomes garbage.
  std::string manifest;
  for (const auto& f : fs::directory_iterator(dir_ + "/db")) {
    if (f.path().filename().string().rfind("MANIFEST", 0) == 0) manifest = f.path();
  }
  ASSERT_FALSE(manifest.empty());
  {
    std::fstream f(manifest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    std::string junk(200, '\xab');
    f.write(junk.data(), junk.size());
  }
  RocksLogStore::Options o;
  o.node_id = 1;
  o.shards = 4;
  auto s = RocksLogStore::Open(dir_, o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("refusing to start"), std::string::npos) << s.status();
  EXPECT_TRUE(fs::exists(manifest));
}

// The write-ahead log RocksDB appends to: the .log file with the highest number.
std::string NewestWal(const std::string& dir) {
  std::string newest;
  for (const auto& f : fs::directory_iterator(dir + "/db")) {
    const std::string p = f.path().string();
    if (f.path().extension() == ".log" && p > newest) newest = p;  // same-width numbers
  }
  return newest;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A store whose write-ahead log ends with two writes of shard 0: entries 2..11 (commit 11),
// then entries 12..40 with 4 KB payloads (commit 40), a record over several 32 KB log blocks.
// The log's size after each write goes to *after_first and *after_second.
class TornWriteTest : public RocksLogStoreTest {
 protected:
  void WriteTwoRecords(uint64_t* after_first, uint64_t* after_second) {
    {
      auto store = MustOpen();
      store->Bootstrap(0, Voters({1}));
      ASSERT_TRUE(store->Commit().ok());
    }
    // Reopening moves what was logged so far into table files: the log now starts empty.
    auto store = MustOpen();
    ShardLog* log = store->shard(0);
    ASSERT_TRUE(log->Append(Ents(2, 12, 1)).ok());
    log->SetHardState(Commit(11));
    ASSERT_TRUE(store->Commit().ok());
    wal_ = NewestWal(dir_);
    *after_first = fs::file_size(wal_);
    std::vector<Entry> big = Ents(12, 41, 1);
    for (auto& e : big) e.mutable_data()->append(4000, 'x');
    ASSERT_TRUE(log->Append(big).ok());
    log->SetHardState(Commit(40));
    ASSERT_TRUE(store->Commit().ok());
    *after_second = fs::file_size(wal_);
    ASSERT_GT(*after_second - *after_first, 3u * 32 * 1024);
    store.reset();
    ASSERT_EQ(NewestWal(dir_), wal_);
    ASSERT_EQ(fs::file_size(wal_), *after_second) << "closing the store wrote to its log";
  }
  static HardState Commit(uint64_t index) {
    HardState hs;
    hs.set_term(1);
    hs.set_commit(index);
    return hs;
  }
  std::string wal_;
};

TEST_F(TornWriteTest, TornLastWriteIsDroppedAndEverythingBeforeItKept) {
  // Given a log whose last write was cut short anywhere: in its first header, right after it,
  // in a middle block, at a block boundary, one byte before its end (a disk that filled up
  // during the write, or a crash),
  uint64_t first = 0, second = 0;
  WriteTwoRecords(&first, &second);
  const uint64_t block = 32 * 1024;
  const uint64_t boundary = (first / block + 2) * block;
  for (uint64_t size : {first + 1, first + 7, first + 100, boundary, boundary + 3, second - 1}) {
    SCOPED_TRACE(absl::StrCat("log cut to ", size, " bytes (", first, " before the last write, ",
                              second, " after it)"));
    const std::string copy = absl::StrCat(dir_, "-cut-", size);
    fs::remove_all(copy);
    fs::copy(dir_, copy, fs::copy_options::recursive);
    fs::resize_file(NewestWal(copy), size);
    // when the store is opened,
    RocksLogStore::Options o;
    o.node_id = 1;
    o.shards = 4;
    auto store = RocksLogStore::Open(copy, o);
    // then it opens with exactly what the earlier writes made durable.
    ASSERT_TRUE(store.ok()) << store.status();
    ShardLog* log = (*store)->shard(0);
    EXPECT_EQ(log->LastIndex(), 11u);
    EXPECT_EQ(log->InitialState()->hard_state.commit(), 11u);
    auto ents = log->Entries(2, 12, UINT64_MAX);
    ASSERT_TRUE(ents.ok()) << ents.status();
    ASSERT_EQ(ents->size(), 10u);
    EXPECT_EQ(ents->back().data(), "payload-11");
  }
}

TEST_F(TornWriteTest, DamageBeforeTheLastWriteIsRefusedNotSkipped) {
  // Given a log whose next-to-last write, durable and acknowledged, is damaged (and the last
  // write intact after it),
  uint64_t first = 0, second = 0;
  WriteTwoRecords(&first, &second);
  const std::string bytes = ReadAll(wal_);
  const size_t at = bytes.find("payload-5");
  ASSERT_NE(at, std::string::npos);
  ASSERT_LT(at, first);
  {
    std::fstream f(wal_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(at);
    f.write("PAYLOAD", 7);
  }
  // when the store is opened,
  RocksLogStore::Options o;
  o.node_id = 1;
  o.shards = 4;
  auto store = RocksLogStore::Open(dir_, o);
  // then it is refused as damaged: replaying up to the damage and dropping the rest would
  // silently lose the entries of both writes.
  ASSERT_FALSE(store.ok()) << "opened with last index " << (*store)->shard(0)->LastIndex();
  EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
  EXPECT_NE(store.status().message().find("refusing to start"), std::string::npos)
      << store.status();
  EXPECT_EQ(fs::file_size(wal_), second);
}

TEST_F(RocksLogStoreTest, UnreferencedSnapshotFilesAreRemovedAtOpen) {
  std::string dir;
  {
    auto store = MustOpen();
    store->Bootstrap(0, Voters({1}));
    ASSERT_TRUE(store->shard(0)->Append(Ents(2, 10, 1)).ok());
    ASSERT_TRUE(WriteFileDurably(Env::Default(), store->SnapshotDir() + "/kept", "k").ok());
    v1::SnapshotMetadata meta;
    meta.set_index(5);
    meta.set_term(1);
    ASSERT_TRUE(store->shard(0)->SetLocalSnapshot(meta, "kept").ok());
    ASSERT_TRUE(store->Commit().ok());
    // A file written but never recorded (a crash in between).
    ASSERT_TRUE(WriteFileDurably(Env::Default(), store->SnapshotDir() + "/orphan", "o").ok());
    dir = store->SnapshotDir();
  }
  auto store = MustOpen();
  EXPECT_TRUE(fs::exists(dir + "/kept"));
  EXPECT_FALSE(fs::exists(dir + "/orphan"));
  EXPECT_EQ(store->shard(0)->Snapshot()->data(), "kept");
}

TEST_F(RocksLogStoreTest, AReplacedSnapshotFileStaysUntilItsReplacementIsSynced) {
  // An unsynced commit may be undone by a power loss, which would bring back the record of the
  // older snapshot: its file must still be there then.
  auto store = MustOpen();
  store->Bootstrap(0, Voters({1}));
  ShardLog* log = store->shard(0);
  ASSERT_TRUE(log->Append(Ents(2, 40, 1)).ok());
  ASSERT_TRUE(store->Commit().ok());
  v1::SnapshotMetadata meta;
  meta.set_term(1);
  *meta.mutable_conf_state() = Voters({1});
  meta.set_index(10);
  ASSERT_TRUE(WriteFileDurably(Env::Default(), store->SnapshotDir() + "/s10", "state-at-10").ok());
  ASSERT_TRUE(log->SetLocalSnapshot(meta, "s10").ok());
  ASSERT_TRUE(store->Commit().ok());
  meta.set_index(20);
  ASSERT_TRUE(WriteFileDurably(Env::Default(), store->SnapshotDir() + "/s20", "state-at-20").ok());
  ASSERT_TRUE(log->SetLocalSnapshot(meta, "s20").ok());
  ASSERT_TRUE(store->Commit(/*sync=*/false).ok());
  EXPECT_TRUE(fs::exists(store->SnapshotDir() + "/s10"));
  HardState hs;
  hs.set_term(1);
  log->SetHardState(hs);
  ASSERT_TRUE(store->Commit(/*sync=*/true).ok());
  EXPECT_FALSE(fs::exists(store->SnapshotDir() + "/s10"));
  EXPECT_TRUE(fs::exists(store->SnapshotDir() + "/s20"));
}

TEST_F(RocksLogStoreTest, CommitIsOneBatchForAllShards) {
  auto store = MustOpen();
  for (int s = 0; s < 4; ++s) {
    store->Bootstrap(s, Voters({1}));
    ASSERT_TRUE(store->shard(s)->Append(Ents(2, 4, 1)).ok());
  }
  EXPECT_TRUE(store->HasStaged());
  ASSERT_TRUE(store->Commit().ok());
  EXPECT_FALSE(store->HasStaged());
}

}  // namespace
}  // namespace marmot::raft::host
