// NodeHosts and the cluster id (raft/host/cluster_identity.h): founders agree on the one the
// highest of them draws and keep it across restarts; a joining node learns it; a raft folder
// written before cluster ids gets one; a founder that lost its raft folder and bootstrapped again
// takes its cluster's id back.
#include "raft/host/cluster_identity.h"

#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/host/node_host.h"
#include "rocksdb/db.h"
#include "tests/host/test_cluster.h"

namespace marmot::raft::host {
namespace {

using testing::TestCluster;

constexpr int kShards = 2;

std::string Dir() {
  return absl::StrCat(::testing::TempDir(), "/",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

// The one cluster id every running node holds, once they agree ("" if they did not within
// `timeout`).
std::string TheClusterId(TestCluster& c, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    std::set<std::string> distinct;
    for (uint64_t id : c.ids()) {
      if (c.running(id)) distinct.insert(c.host(id)->cluster_id());
    }
    if (distinct.size() == 1 && !distinct.begin()->empty()) return *distinct.begin();
    if (absl::Now() > deadline) return "";
    absl::SleepFor(absl::Milliseconds(20));
  }
}

// Removes the cluster id from a stopped node's raft folder, as a folder written before cluster
// ids were kept.
void ForgetClusterId(const std::string& raft_path) {
  const std::string db_dir = raft_path + "/db";
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), db_dir, &families).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& f : families) descs.emplace_back(f, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status opened =
      rocksdb::DB::Open(rocksdb::DBOptions(), db_dir, descs, &handles, &db);
  ASSERT_TRUE(opened.ok()) << opened.ToString();
  std::string value;
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), handles[0], "cluster_id", &value).ok());
  EXPECT_TRUE(db->Delete(rocksdb::WriteOptions(), handles[0], "cluster_id").ok());
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
}

TEST(ClusterIdentityTest, FoundersAgreeOnOneIdAndKeepIt) {
  TestCluster c(Dir(), 3, kShards);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  const std::string id = TheClusterId(c);
  ASSERT_EQ(id.size(), kClusterIdBytes);
  for (uint64_t n : {1, 2, 3}) c.Stop(n);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  for (uint64_t n : {1, 2, 3}) EXPECT_EQ(c.host(n)->cluster_id(), id) << n;
  ASSERT_TRUE(c.Propose(1, 0, "after restart").ok());
}

TEST(ClusterIdentityTest, AJoiningNodeLearnsTheClusterId) {
  TestCluster c(Dir(), 3, kShards);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  const std::string id = TheClusterId(c);
  ASSERT_FALSE(id.empty());
  c.Start(4, /*join=*/true);
  EXPECT_EQ(c.host(4)->cluster_id(), "");
  for (uint64_t s = 0; s < kShards; ++s) {
    ASSERT_TRUE(c.host(1)->AddNode(s, 4, c.address(4), absl::Seconds(10)).ok()) << s;
  }
  EXPECT_EQ(TheClusterId(c), id);
  ASSERT_TRUE(c.Propose(4, 1, "from the new node").ok());
}

TEST(ClusterIdentityTest, FoldersFromBeforeClusterIdsGetOneAndKeepWorking) {
  TestCluster c(Dir(), 3, kShards);
  c.StartAll();
  ASSERT_TRUE(c.Propose(1, 0, "before the upgrade").ok());
  ASSERT_FALSE(TheClusterId(c).empty());
  for (uint64_t n : {1, 2, 3}) c.Stop(n);
  for (uint64_t n : {1, 2, 3}) ForgetClusterId(absl::StrCat(Dir(), "/node-", n));
  c.StartAll();
  EXPECT_EQ(TheClusterId(c).size(), kClusterIdBytes);
  ASSERT_TRUE(c.Propose(2, 0, "after the upgrade").ok());
  for (uint64_t n : {1, 2, 3}) {
    EXPECT_TRUE(c.WaitForPayloads(n, 0, {"before the upgrade", "after the upgrade"})) << n;
  }
}

TEST(ClusterIdentityTest, AFounderThatLostItsRaftFolderTakesItsClustersIdBack) {
  TestCluster c(Dir(), 3, kShards);
  c.StartAll();
  ASSERT_TRUE(c.Propose(1, 0, "one").ok());
  const std::string id = TheClusterId(c);
  ASSERT_FALSE(id.empty());
  // Node 3, the founder that drew the id, loses its raft folder and bootstraps again: it draws
  // another id, and gives it up for its cluster's (it would otherwise be refused by every node).
  // Whether it then catches up is another matter (README, "Not done yet"): this checks the id.
  c.Stop(3);
  std::filesystem::remove_all(absl::StrCat(Dir(), "/node-3"));
  c.Start(3);
  EXPECT_EQ(TheClusterId(c), id);
  ASSERT_TRUE(c.Propose(1, 0, "two").ok());
}

}  // namespace
}  // namespace marmot::raft::host
