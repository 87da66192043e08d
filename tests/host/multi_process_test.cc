// Three NodeHosts as separate processes on loopback: a node killed with SIGKILL (no clean
// shutdown, no flush) and restarted loses nothing that was acknowledged as committed.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "tests/host/test_cluster.h"
#include "tests/testing/piped_process.h"

namespace marmot::raft::host::testing {
namespace {

using Child = ::marmot::testing::PipedProcess;

class MultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/multi_process");
    std::filesystem::remove_all(dir_);
    std::vector<std::string> members;
    for (uint64_t id = 1; id <= 3; ++id) {
      addr_[id] = absl::StrCat("127.0.0.1:", PickFreePort());
      members.push_back(absl::StrCat(id, "@", addr_[id]));
    }
    peers_ = absl::StrJoin(members, ",");
  }
  void StartNode(uint64_t id) {
    nodes_[id] = std::make_unique<Child>(std::vector<std::string>{
        "tests/host/host_node_main", absl::StrCat("--node_id=", id),
        absl::StrCat("--bind=", addr_[id]), absl::StrCat("--raft_path=", dir_, "/node-", id),
        "--shards=4", absl::StrCat("--peers=", peers_), "--logtostderr", "--minloglevel=1"});
    ASSERT_EQ(nodes_[id]->ReadLine(), "ready") << "node " << id << " did not start";
  }
  uint64_t Leader(uint64_t shard) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      std::set<std::string> seen;
      for (auto& [id, n] : nodes_) {
        if (n) seen.insert(n->Call(absl::StrCat("leader ", shard)));
      }
      if (seen.size() == 1 && *seen.begin() != "leader 0") {
        return std::stoull(seen.begin()->substr(7));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return 0;
  }
  void Propose(uint64_t via, uint64_t shard, const std::string& p) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    std::string r;
    while (absl::Now() < deadline) {
      r = nodes_[via]->Call(absl::StrCat("propose ", shard, " ", p));
      if (r.rfind("ok ", 0) == 0) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    FAIL() << "proposal " << p << " via node " << via << ": " << r;
  }
  bool WaitCount(uint64_t id, uint64_t shard, size_t want) {
    const std::string w = absl::StrCat("count ", want);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    std::string got;
    while (absl::Now() < deadline) {
      got = nodes_[id]->Call(absl::StrCat("count ", shard));
      if (got == w) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    LOG(ERROR) << "node " << id << " shard " << shard << ": " << got << ", want " << want;
    return false;
  }

  std::string dir_, peers_;
  std::map<uint64_t, std::string> addr_;
  std::map<uint64_t, std::unique_ptr<Child>> nodes_;
};

TEST_F(MultiProcessTest, KilledNodeRestartsWithEverythingCommitted) {
  for (uint64_t id = 1; id <= 3; ++id) StartNode(id);
  const uint64_t leader = Leader(0);
  ASSERT_NE(leader, 0u);
  // Given entries acknowledged as committed through the leader of shard 0,
  for (int k = 0; k < 20; ++k) Propose(leader, 0, absl::StrCat("a", k));
  // when that leader is killed with SIGKILL right after,
  nodes_[leader]->Kill();
  nodes_[leader].reset();
  // the others elect a new one and keep committing,
  const uint64_t other = leader == 1 ? 2 : 1;
  for (int k = 0; k < 20; ++k) Propose(other, 0, absl::StrCat("b", k));
  // and the killed node, restarted on its folder, has every entry.
  StartNode(leader);
  EXPECT_TRUE(WaitCount(leader, 0, 40));
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_TRUE(WaitCount(id, 0, 40)) << id;
}

}  // namespace
}  // namespace marmot::raft::host::testing
