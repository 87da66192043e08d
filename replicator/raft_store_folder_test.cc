// Where each node's Raft store lives under -raft-path, stores of older versions included.
#include "replicator/raft_store_folder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "raft/host/rocks_log_store.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

namespace fs = std::filesystem;
using raft::host::RocksLogStore;
using ::testing::HasSubstr;

// Makes (or reopens) node `node`'s store in `dir` with one committed entry per start; returns
// how many starts the store has seen.
uint64_t StartStore(const std::string& dir, uint64_t node) {
  RocksLogStore::Options o;
  o.node_id = node;
  o.shards = 2;
  absl::StatusOr<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(dir, o);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return 0;
  raft::host::ShardLog* log = (*store)->shard(0);
  if ((*store)->fresh()) {
    raft::ConfState cs;
    cs.add_voters(node);
    (*store)->Bootstrap(0, cs);
  }
  raft::Entry e;
  e.set_index(log->LastIndex() + 1);
  e.set_term(1);
  EXPECT_TRUE(log->Append({e}).ok());
  EXPECT_TRUE((*store)->Commit().ok());
  return log->LastIndex() - 1;  // The bootstrap snapshot is at index 1.
}

TEST(RaftStoreFolderTest, EachNodeHasAFolderOfItsOwnUnderTheRaftPath) {
  const std::string raft = sqlite::testing::NewTempDir("raft-shared");
  ASSERT_EQ(*RaftStoreFolder(raft, 1), raft + "/node-1");
  ASSERT_EQ(*RaftStoreFolder(raft, 2), raft + "/node-2");
  EXPECT_TRUE(fs::is_empty(raft));  // Asking changes nothing.
  // Two nodes of one machine share the default -raft-path, each with its own store.
  EXPECT_EQ(StartStore(*RaftStoreFolder(raft, 1), 1), 1u);
  EXPECT_EQ(StartStore(*RaftStoreFolder(raft, 2), 2), 1u);
  EXPECT_EQ(StartStore(*RaftStoreFolder(raft, 1), 1), 2u);
  EXPECT_EQ(*RaftStoreFolder(raft, 1), raft + "/node-1");
}

TEST(RaftStoreFolderTest, AStoreOfTheOlderLayoutIsUsedWhereItLies) {
  // Given node 1's store kept directly in the raft path by an older version, started twice
  const std::string raft = sqlite::testing::NewTempDir("raft-older");
  ASSERT_EQ(StartStore(raft, 1), 1u);
  ASSERT_EQ(StartStore(raft, 1), 2u);
  // then node 1 goes on with that store, where it is: nothing is moved or created
  ASSERT_EQ(*RaftStoreFolder(raft, 1), raft);
  EXPECT_EQ(StartStore(*RaftStoreFolder(raft, 1), 1), 3u);
  EXPECT_FALSE(fs::exists(raft + "/node-1"));
  // and another node of the same machine gets a folder of its own beside it.
  EXPECT_EQ(*RaftStoreFolder(raft, 2), raft + "/node-2");
  EXPECT_EQ(StartStore(*RaftStoreFolder(raft, 2), 2), 1u);
  EXPECT_EQ(StartStore(*RaftStoreFolder(raft, 1), 1), 4u);
}

TEST(RaftStoreFolderTest, TwoStoresOfOneNodeOrAnUnreadableOneAreRefused) {
  const std::string raft = sqlite::testing::NewTempDir("raft-both");
  ASSERT_EQ(StartStore(raft, 1), 1u);
  ASSERT_EQ(StartStore(raft + "/node-1", 1), 1u);
  absl::StatusOr<std::string> both = RaftStoreFolder(raft, 1);
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(std::string(both.status().message()),
              HasSubstr("move the one that is not current away"));

  // db/CURRENT without a store behind it: never replaced by a fresh store.
  const std::string broken = sqlite::testing::NewTempDir("raft-broken");
  fs::create_directories(broken + "/db");
  std::ofstream(broken + "/db/CURRENT") << "MANIFEST-000042\n";
  absl::StatusOr<std::string> unreadable = RaftStoreFolder(broken, 1);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_THAT(std::string(unreadable.status().message()), HasSubstr("cannot be read"));
  EXPECT_EQ(fs::directory_iterator(broken + "/db")->path().filename(), "CURRENT");
}

}  // namespace
}  // namespace marmot::replicator
