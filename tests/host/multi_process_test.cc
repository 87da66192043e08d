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

namespace marmot::raft::host::testing {
namespace {

// A child process with its stdin/stdout as pipes.
class Child {
 public:
  Child(const std::vector<std::string>& argv) {
    int in[2], out[2];
    CHECK_EQ(pipe(in), 0);
    CHECK_EQ(pipe(out), 0);
    pid_ = fork();
    CHECK_GE(pid_, 0);
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    CHECK_EQ(ReadLine(), "ready");
  }
  ~Child() {
    if (pid_ > 0) Kill();
  }
  std::string Call(const std::string& cmd) {
    fprintf(to_, "%s\n", cmd.c_str());
    fflush(to_);
    return ReadLine();
  }
  void Kill() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    fclose(to_);
    fclose(from_);
    pid_ = -1;
  }

 private:
  std::string ReadLine() {
    char buf[4096];
    if (fgets(buf, sizeof(buf), from_) == nullptr) return "";
    std::string s(buf);
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

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
