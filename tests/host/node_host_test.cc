// Three (and four) NodeHosts in one process over real gRPC on loopback: election, replication,
// restart, partition, snapshot catch-up, leadership transfer, membership changes.
#include "raft/host/node_host.h"

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/host/cluster_identity.h"
#include "raft/host/grpc_node_host.h"
#include "raft/membership.h"
#include "tests/host/test_cluster.h"

namespace marmot::raft::host::testing {
namespace {

std::string TestDir() {
  return absl::StrCat(::testing::TempDir(), "/",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

// Waits until every running node holds the same payloads for `shard`, containing all of
// `must_have`.
bool WaitConverged(TestCluster& c, uint64_t shard, const std::set<std::string>& must_have,
                   absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    bool ok = true;
    std::vector<std::string> first;
    for (auto id : c.ids()) {
      auto p = c.sm(id, shard)->payloads();
      if (id == c.ids().front()) first = p;
      if (p != first) ok = false;
    }
    std::set<std::string> have(first.begin(), first.end());
    for (const auto& m : must_have) ok = ok && have.count(m);
    if (ok) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// Proposes `count` entries of about `bytes` each to `shard` through node `via`; adds their
// payloads to `sent`. False if one was not committed.
bool ProposeLarge(TestCluster& c, uint64_t via, uint64_t shard, int count, size_t bytes,
                  std::set<std::string>& sent) {
  for (int k = 0; k < count; ++k) {
    std::string p = absl::StrCat("big-", k, "-") + std::string(bytes, 'a' + k % 26);
    if (!c.Propose(via, shard, p).ok()) return false;
    sent.insert(p);
  }
  return true;
}

// What the callbacks of one proposal reported: its status and index, and how often it was
// called (exactly once is the contract).
struct Outcome {
  absl::Status status;
  uint64_t index = 0;
  int calls = 0;
};

struct BurstProposal {
  uint64_t via;
  uint64_t shard;
  std::string payload;  // distinct within a burst
};

// Proposes all of `burst` without waiting in between (so the hosts find them queued together),
// waits up to `timeout` for every callback and 100 ms more for any second one; the outcomes by
// payload, or nothing if some callback never came. Late callbacks touch only shared state.
std::optional<std::map<std::string, Outcome>> ProposeBurst(TestCluster& c,
                                                           const std::vector<BurstProposal>& burst,
                                                           absl::Duration timeout) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, Outcome> outcomes;
  };
  auto state = std::make_shared<State>();
  for (const BurstProposal& p : burst) {
    c.host(p.via)->Propose(p.shard, p.payload,
                           [state, payload = p.payload](absl::Status s, uint64_t index) {
                             std::lock_guard<std::mutex> l(state->mu);
                             Outcome& o = state->outcomes[payload];
                             o.status = std::move(s);
                             o.index = index;
                             ++o.calls;
                             state->cv.notify_all();
                           });
  }
  std::unique_lock<std::mutex> l(state->mu);
  if (!state->cv.wait_for(l, absl::ToChronoNanoseconds(timeout),
                          [&] { return state->outcomes.size() == burst.size(); })) {
    return std::nullopt;
  }
  l.unlock();
  absl::SleepFor(absl::Milliseconds(100));
  l.lock();
  return state->outcomes;
}

// ProposeBurst, then again with the proposals that came back dropped (ABORTED: never appended,
// so a client proposes them again; a leader change makes some on a busy machine), until none
// is. The last outcome of each payload; calls counts the callbacks of every try, so each try
// is resolved exactly once where calls == tries.
struct RetriedOutcome {
  Outcome last;
  int calls = 0;
  int tries = 0;
};
std::optional<std::map<std::string, RetriedOutcome>> ProposeBurstRetryingDropped(
    TestCluster& c, std::vector<BurstProposal> burst, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::map<std::string, RetriedOutcome> out;
  while (!burst.empty()) {
    if (absl::Now() >= deadline) return std::nullopt;
    const auto outcomes = ProposeBurst(c, burst, deadline - absl::Now());
    if (!outcomes.has_value()) return std::nullopt;
    std::vector<BurstProposal> dropped;
    for (const BurstProposal& p : burst) {
      RetriedOutcome& r = out[p.payload];
      r.last = outcomes->at(p.payload);
      r.calls += r.last.calls;
      ++r.tries;
      if (r.last.status.code() == absl::StatusCode::kAborted) dropped.push_back(p);
    }
    burst = std::move(dropped);
    if (!burst.empty()) absl::SleepFor(absl::Milliseconds(30));
  }
  return out;
}

TEST(NodeHostTest, LeadersAreElectedForAllSixteenShards) {
  TestCluster c(TestDir(), 3, 16);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  for (int s = 0; s < 16; ++s) {
    const uint64_t l = c.WaitForLeader(s);
    EXPECT_TRUE(l >= 1 && l <= 3) << "shard " << s;
    EXPECT_EQ(c.host(l)->GetShardInfo(s).conf_state.voters_size(), 3);
  }
}

TEST(NodeHostTest, ProposalsOnAnyNodeCommitEverywhere) {
  TestCluster c(TestDir(), 3, 4);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  std::map<uint64_t, std::set<std::string>> sent;
  for (uint64_t via = 1; via <= 3; ++via) {
    for (uint64_t s = 0; s < 4; ++s) {
      for (int k = 0; k < 5; ++k) {
        const std::string p = absl::StrCat("n", via, "-s", s, "-", k);
        ASSERT_TRUE(c.Propose(via, s, p).ok()) << p;
        sent[s].insert(p);
      }
    }
  }
  for (uint64_t s = 0; s < 4; ++s) {
    EXPECT_TRUE(WaitConverged(c, s, sent[s])) << "shard " << s;
    EXPECT_EQ(c.sm(1, s)->payloads().size(), sent[s].size());  // no duplicates on a calm cluster
  }
}

TEST(NodeHostTest, PackedProposalsShareEntriesCommitEverywhereAndReplayAfterRestart) {
  TestCluster c(TestDir(), 3, 2);
  c.tweak = [](NodeHostConfig* cfg) { cfg->pack_proposals = true; };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given bursts of proposals from every node (followers forward their packs),
  constexpr int kPerNode = 500;
  std::vector<BurstProposal> burst;
  std::set<std::string> sent;
  for (uint64_t via = 1; via <= 3; ++via) {
    for (int k = 0; k < kPerNode; ++k) {
      burst.push_back({via, 0, absl::StrCat("n", via, "-", k, std::string(k % 7 * 100, 'x'))});
      sent.insert(burst.back().payload);
    }
  }
  const auto outcomes = ProposeBurstRetryingDropped(c, burst, absl::Seconds(20));
  ASSERT_TRUE(outcomes.has_value());
  for (const auto& [payload, o] : *outcomes) {
    ASSERT_TRUE(o.last.status.ok()) << o.last.status;
    ASSERT_EQ(o.calls, o.tries) << payload;
  }
  // then every proposal is applied once on every node, at the index its callback reported,
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  const std::vector<std::string> payloads = c.sm(1, 0)->payloads();
  const std::vector<uint64_t> indexes = c.sm(1, 0)->indexes();
  ASSERT_EQ(payloads.size(), sent.size());
  ASSERT_EQ(indexes.size(), payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) {
    EXPECT_EQ(outcomes->at(payloads[i]).last.index, indexes[i]) << i;
  }
  // and proposals shared entries (far fewer indexes than proposals).
  const std::set<uint64_t> distinct(indexes.begin(), indexes.end());
  EXPECT_LT(distinct.size() * 2, payloads.size());
  // A node restarted with an empty state machine decodes the packs from its log again.
  c.Stop(2);
  c.Start(2);
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  EXPECT_EQ(c.sm(2, 0)->payloads(), payloads);
}

TEST(NodeHostTest, RestartedNodeLosesNothingCommitted) {
  TestCluster c(TestDir(), 3, 4);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  std::set<std::string> sent;
  for (int k = 0; k < 10; ++k) {
    sent.insert(absl::StrCat("before-", k));
    ASSERT_TRUE(c.Propose(1 + k % 3, 0, absl::StrCat("before-", k)).ok());
  }
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  // Given the leader of shard 0 stops abruptly (its in-memory state machine is lost),
  const uint64_t victim = c.WaitForLeader(0);
  c.Stop(victim);
  // when the others keep committing,
  const uint64_t other = victim == 1 ? 2 : 1;
  for (int k = 0; k < 10; ++k) {
    sent.insert(absl::StrCat("during-", k));
    ASSERT_TRUE(c.Propose(other, 0, absl::StrCat("during-", k)).ok());
  }
  // then after a restart it rebuilds everything from its log and catches up,
  c.Start(victim);
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  // and its new proposals are told apart from the ones of its previous run that it replayed.
  auto idx = c.host(victim)->ProposeAndWait(0, "new-run");
  ASSERT_TRUE(idx.ok()) << idx.status();
  sent.insert("new-run");
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  const auto payloads = c.sm(victim, 0)->payloads();
  EXPECT_EQ(payloads.back(), "new-run");
  EXPECT_GT(*idx, 20u);
  // And a full-cluster restart keeps everything too.
  for (uint64_t id = 1; id <= 3; ++id) c.Stop(id);
  c.StartAll();
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  EXPECT_GE(c.sm(victim, 0)->payloads().size(), sent.size());
}

TEST(NodeHostTest, PartitionedMinorityCatchesUpAfterHealing) {
  TestCluster c(TestDir(), 3, 4);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given node 3 is cut off from the others,
  c.Isolate(3, true);
  std::set<std::string> sent;
  for (uint64_t s = 0; s < 4; ++s) {
    for (int k = 0; k < 5; ++k) {
      const std::string p = absl::StrCat("s", s, "-", k);
      // when the majority commits (through whichever of 1 and 2),
      ASSERT_TRUE(c.Propose(1 + k % 2, s, p).ok()) << p;
      sent.insert(p);
    }
  }
  // then node 3 did not see it, and cannot commit on its own,
  for (uint64_t s = 0; s < 4; ++s) EXPECT_TRUE(c.sm(3, s)->payloads().empty());
  auto lone = c.host(3)->ProposeAndWait(0, "lonely");
  EXPECT_FALSE(lone.ok());
  // and after healing it catches up on every shard without disturbing the leaders.
  c.Isolate(3, false);
  for (uint64_t s = 0; s < 4; ++s) {
    std::set<std::string> want;
    for (const auto& p : sent) {
      if (p.rfind(absl::StrCat("s", s, "-"), 0) == 0) want.insert(p);
    }
    EXPECT_TRUE(WaitConverged(c, s, want)) << "shard " << s;
  }
}

TEST(NodeHostTest, NodeDownDuringCompactionCatchesUpThroughChunkedSnapshot) {
  TestCluster c(TestDir(), 3, 2);
  c.tweak = [](NodeHostConfig* cfg) {
    cfg->snapshot_entries = 20;
    cfg->compaction_overhead = 5;
    cfg->snapshot_chunk_bytes = 64 << 10;
  };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  c.Stop(3);
  // While node 3 is down, ~300 KB go into shard 1 and the others compact their logs.
  std::set<std::string> sent;
  for (int k = 0; k < 150; ++k) {
    std::string p = absl::StrCat("big-", k, "-") + std::string(2000, 'a' + k % 26);
    ASSERT_TRUE(c.Propose(1 + k % 2, 1, p).ok());
    sent.insert(p);
  }
  ASSERT_TRUE(WaitConverged(c, 1, sent));
  const uint64_t leader = c.WaitForLeader(1);
  ASSERT_NE(leader, 0u);
  const ShardInfo info = c.host(leader)->GetShardInfo(1);
  EXPECT_GT(info.first_index, 20u) << "the leader should have compacted its log";
  // Node 3 restarts with a log that ends before the leader's first entry.
  c.Start(3);
  ASSERT_TRUE(WaitConverged(c, 1, sent, absl::Seconds(30)));
  EXPECT_GE(c.sm(3, 1)->snapshots_installed(), 1);
  // And it keeps following afterwards.
  ASSERT_TRUE(c.Propose(3, 1, "after-snapshot").ok());
  sent.insert("after-snapshot");
  EXPECT_TRUE(WaitConverged(c, 1, sent));
}

TEST(NodeHostTest, ARefusedSnapshotIsSentAgainAndNothingOfItStays) {
  TestCluster c(TestDir(), 3, 1);
  // Node 3 refuses the first two payloads it receives whole (as its state machine's check
  // refuses a bad one), then takes them.
  auto checks = std::make_shared<std::atomic<int>>(0);
  c.tweak = [checks](NodeHostConfig* cfg) {
    cfg->snapshot_entries = 20;
    cfg->compaction_overhead = 5;
    if (cfg->node_id != 3) return;
    cfg->check_snapshot = [checks](uint64_t, const SnapshotSource&) {
      return checks->fetch_add(1) < 2 ? absl::InvalidArgumentError("test: refused")
                                      : absl::OkStatus();
    };
  };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  c.Stop(3);
  std::set<std::string> sent;
  ASSERT_TRUE(ProposeLarge(c, 1, 0, 60, 1000, sent));
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  c.Start(3);
  // The leader sends again after each refusal; node 3 catches up from the third.
  ASSERT_TRUE(WaitConverged(c, 0, sent, absl::Seconds(30)));
  EXPECT_GE(checks->load(), 3);
  EXPECT_EQ(c.sm(3, 0)->snapshots_installed(), 2);  // The bootstrap one at start, the leader's.
  // Only the snapshot it keeps is on its disk.
  std::vector<std::string> files;
  for (const auto& f : std::filesystem::directory_iterator(TestDir() + "/node-3/snapshots")) {
    files.push_back(f.path().filename());
  }
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].rfind("recv-0-", 0), 0u) << files[0];
}

TEST(NodeHostTest, LargeEntriesTriggerASnapshotByBytesBeforeTheEntryCount) {
  TestCluster c(TestDir(), 3, 1);
  c.tweak = [](NodeHostConfig* cfg) {
    cfg->snapshot_entries = 100000;  // never reached here
    cfg->snapshot_bytes = 64 << 10;
    cfg->compaction_overhead = 2;
  };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // 40 entries of 4 KiB: 160 KiB, past the byte limit twice, far below the entry count.
  std::set<std::string> sent;
  ASSERT_TRUE(ProposeLarge(c, 1, 0, 40, 4096, sent));
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  for (uint64_t id = 1; id <= 3; ++id) {
    const ShardInfo info = c.host(id)->GetShardInfo(0);
    EXPECT_GE(info.snapshot_index, 16u) << "node " << id;
    EXPECT_GT(info.first_index, 10u) << "node " << id << " should have compacted its log";
  }
}

TEST(NodeHostTest, CompactionKeepsNoMoreThanTheByteBudgetOfLargeEntries) {
  TestCluster c(TestDir(), 3, 1);
  c.tweak = [](NodeHostConfig* cfg) {
    cfg->snapshot_entries = 20;
    cfg->compaction_overhead = 1000;            // would keep every entry of this test
    cfg->compaction_overhead_bytes = 16 << 10;  // 4 entries of 4 KiB
  };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  std::set<std::string> sent;
  ASSERT_TRUE(ProposeLarge(c, 1, 0, 45, 4096, sent));
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  for (uint64_t id = 1; id <= 3; ++id) {
    const ShardInfo info = c.host(id)->GetShardInfo(0);
    ASSERT_GE(info.snapshot_index, 40u) << "node " << id;
    EXPECT_GE(info.first_index + 5, info.snapshot_index) << "node " << id << " kept too much log";
  }
}

TEST(NodeHostTest, AFailedSnapshotIsNotRetriedAfterEveryBatch) {
  TestCluster c(TestDir(), 3, 1);
  c.tweak = [](NodeHostConfig* cfg) { cfg->snapshot_entries = 5; };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  c.sm(1, 0)->set_snapshot_fails(true);
  // 60 entries, each its own batch: past the snapshot interval again and again.
  std::set<std::string> sent;
  for (int k = 0; k < 60; ++k) {
    std::string p = absl::StrCat("entry-", k);
    ASSERT_TRUE(c.Propose(2, 0, p).ok());
    sent.insert(p);
  }
  ASSERT_TRUE(WaitConverged(c, 0, sent));
  // A snapshot that failed half-way is not recorded, and nothing of it stays on disk.
  EXPECT_EQ(c.host(1)->GetShardInfo(0).snapshot_index, 1u);
  EXPECT_TRUE(std::filesystem::is_empty(TestDir() + "/node-1/snapshots"));
  // The first failure holds automatic snapshots back (10 s); the other nodes snapshot as usual.
  EXPECT_LE(c.sm(1, 0)->snapshot_attempts(), 2);
  EXPECT_GE(c.sm(2, 0)->snapshot_attempts(), 5);
  // An explicit request is not held back.
  const int before = c.sm(1, 0)->snapshot_attempts();
  c.sm(1, 0)->set_snapshot_fails(false);
  c.host(1)->RequestSnapshot(0);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (c.host(1)->GetShardInfo(0).snapshot_index < 60 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(c.host(1)->GetShardInfo(0).snapshot_index, 60u);
  EXPECT_EQ(c.sm(1, 0)->snapshot_attempts(), before + 1);
}

TEST(NodeHostTest, AShardWhoseStateMachineFailsHaltsAloneAndRestartsWhole) {
  TestCluster c(TestDir(), 3, 2);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given node 3's state machine of shard 0, which cannot apply one entry,
  c.sm(3, 0)->set_apply_fails_at("poison", absl::FailedPreconditionError("test: cannot apply"));
  ASSERT_TRUE(c.Propose(1, 0, "before").ok());
  // when that entry commits,
  ASSERT_TRUE(c.Propose(1, 0, "poison").ok());
  ASSERT_TRUE(c.Propose(2, 0, "after-0").ok());
  ASSERT_TRUE(c.Propose(3, 1, "after-1").ok());
  // then node 3 halts shard 0 with the reason and applies nothing more of it, while its other
  // shard and the other nodes go on.
  ASSERT_TRUE(WaitConverged(c, 1, {"after-1"}));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (c.host(3)->GetShardInfo(0).halted.empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const ShardInfo halted = c.host(3)->GetShardInfo(0);
  EXPECT_NE(halted.halted.find("test: cannot apply"), std::string::npos) << halted.halted;
  EXPECT_EQ(c.sm(3, 0)->payloads(), std::vector<std::string>{"before"});
  EXPECT_TRUE(c.host(3)->GetShardInfo(1).halted.empty());
  // (Each node applies in its own time: a proposal returns once its proposer applied it.)
  for (uint64_t id : {1, 2}) {
    const std::vector<std::string> all = {"before", "poison", "after-0"};
    const absl::Time applied_deadline = absl::Now() + absl::Seconds(20);
    while (c.sm(id, 0)->payloads() != all && absl::Now() < applied_deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(c.sm(id, 0)->payloads(), all) << id;
  }
  // Its Raft group goes on: node 3 still takes the shard's entries and learns their commit.
  ASSERT_TRUE(c.Propose(1, 0, "while-halted").ok());
  const uint64_t committed = c.host(1)->GetShardInfo(0).commit;
  const absl::Time commit_deadline = absl::Now() + absl::Seconds(10);
  while (c.host(3)->GetShardInfo(0).commit < committed && absl::Now() < commit_deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(c.host(3)->GetShardInfo(0).commit, committed);
  EXPECT_EQ(c.sm(3, 0)->payloads(), std::vector<std::string>{"before"});
  // A restart (the cause gone) applies everything from the log.
  c.Stop(3);
  c.Start(3);
  EXPECT_TRUE(WaitConverged(c, 0, {"before", "poison", "after-0", "while-halted"}));
  EXPECT_TRUE(c.host(3)->GetShardInfo(0).halted.empty());
}

// Whether `done` holds within `timeout`.
bool Eventually(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

TEST(NodeHostTest, AHaltedShardResumesWithoutARestartOnceTheCauseIsGone) {
  TestCluster c(TestDir(), 3, 2);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given node 3's shard 0 halted on an entry its state machine cannot apply,
  c.sm(3, 0)->set_apply_fails_at("poison", absl::FailedPreconditionError("test: cannot apply"));
  ASSERT_TRUE(c.Propose(1, 0, "before").ok());
  ASSERT_TRUE(c.Propose(1, 0, "poison").ok());
  ASSERT_TRUE(c.Propose(2, 0, "after").ok());
  ASSERT_TRUE(Eventually([&] { return !c.host(3)->GetShardInfo(0).halted.empty(); }));
  // and about 10 MB committed while it is halted (more than one part of a replay),
  std::set<std::string> sent = {"before", "poison", "after"};
  ASSERT_TRUE(ProposeLarge(c, 2, 0, 10, 1 << 20, sent));
  ASSERT_TRUE(c.Propose(1, 1, "other shard").ok());

  // when it is resumed while the cause is still there, it halts again with the new reason and
  // applies nothing more,
  c.sm(3, 0)->set_apply_fails_at("poison",
                                 absl::FailedPreconditionError("test: still cannot apply"));
  c.host(3)->ResumeShard(0);
  ASSERT_TRUE(Eventually([&] {
    return c.host(3)->GetShardInfo(0).halted.find("test: still cannot apply") != std::string::npos;
  })) << c.host(3)->GetShardInfo(0).halted;
  EXPECT_EQ(c.sm(3, 0)->payloads(), std::vector<std::string>{"before"});

  // and once the cause is gone, a resume applies every entry it missed, in order, and the
  // shard goes on without a restart.
  c.sm(3, 0)->set_apply_fails_at("", absl::OkStatus());
  const std::vector<std::string> other = c.sm(3, 1)->payloads();
  c.host(3)->ResumeShard(0);
  c.host(3)->ResumeShard(1);  // not halted: nothing happens
  ASSERT_TRUE(WaitConverged(c, 0, sent, absl::Seconds(30)));
  EXPECT_TRUE(c.host(3)->GetShardInfo(0).halted.empty());
  ASSERT_TRUE(c.Propose(3, 0, "after resuming").ok());
  sent.insert("after resuming");
  EXPECT_TRUE(WaitConverged(c, 0, sent));
  EXPECT_EQ(c.sm(3, 1)->payloads(), other);
  EXPECT_TRUE(WaitConverged(c, 1, {"other shard"}));
}

TEST(NodeHostTest, AWaitingShardStopsAtItsEntryAndResumesWhenAskedOrAfterItsBound) {
  TestCluster c(TestDir(), 3, 2);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given node 3's shard 0, whose state machine may not apply one entry yet (it waits; the
  // test's state machine names the entry),
  c.sm(3, 0)->set_apply_fails_once_at("needs more",
                                      ShardWaitStatus("test: waits for more", absl::Hours(1), 0));
  ASSERT_TRUE(c.Propose(1, 0, "before").ok());
  ASSERT_TRUE(c.Propose(1, 0, "needs more").ok());
  ASSERT_TRUE(c.Propose(2, 0, "after").ok());
  ASSERT_TRUE(c.Propose(3, 1, "other shard").ok());
  // then the shard stops at that entry, saying so as a wait and not a halt, while its other
  // shard goes on,
  ASSERT_TRUE(Eventually([&] { return !c.host(3)->GetShardInfo(0).waiting.empty(); }));
  const ShardInfo waiting = c.host(3)->GetShardInfo(0);
  EXPECT_NE(waiting.waiting.find("test: waits for more"), std::string::npos) << waiting.waiting;
  EXPECT_TRUE(waiting.halted.empty()) << waiting.halted;
  ASSERT_TRUE(WaitConverged(c, 1, {"other shard"}));
  EXPECT_EQ(c.sm(3, 0)->payloads(), std::vector<std::string>{"before"});
  // and when it is resumed, it applies that entry and what came after, in order.
  c.host(3)->ResumeShard(0);
  ASSERT_TRUE(WaitConverged(c, 0, {"before", "needs more", "after"}));
  EXPECT_TRUE(c.host(3)->GetShardInfo(0).waiting.empty());

  // Given a wait bounded to 2 seconds that nobody ends,
  c.sm(3, 0)->set_apply_fails_once_at("needs more again",
                                      ShardWaitStatus("test: waits again", absl::Seconds(2), 0));
  ASSERT_TRUE(c.Propose(1, 0, "needs more again").ok());
  ASSERT_TRUE(c.Propose(2, 0, "after again").ok());
  ASSERT_TRUE(Eventually([&] { return !c.host(3)->GetShardInfo(0).waiting.empty(); }));
  // the host resumes the shard by itself once the bound passed.
  EXPECT_TRUE(WaitConverged(c, 0, {"needs more again", "after again"}));
  EXPECT_TRUE(c.host(3)->GetShardInfo(0).waiting.empty());
}

TEST(NodeHostTest, AHaltedShardWhoseLogWasReplacedBySnapshotResumesFromIt) {
  TestCluster c(TestDir(), 3, 1);
  c.tweak = [](NodeHostConfig* cfg) {
    cfg->snapshot_entries = 20;
    cfg->compaction_overhead = 5;
  };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given node 3 halted on an entry,
  c.sm(3, 0)->set_apply_fails_at("poison", absl::FailedPreconditionError("test: cannot apply"));
  std::set<std::string> sent;
  ASSERT_TRUE(ProposeLarge(c, 1, 0, 5, 100, sent));
  ASSERT_TRUE(c.Propose(1, 0, "poison").ok());
  sent.insert("poison");
  ASSERT_TRUE(Eventually([&] { return !c.host(3)->GetShardInfo(0).halted.empty(); }));
  // then cut off while the others commit and compact their logs past its log's end, and
  // reconnected: the leader sends it a snapshot, which replaces its log (it installs nothing),
  c.Isolate(3, true);
  for (int k = 0; k < 60; ++k) {
    const std::string p = absl::StrCat("while-away-", k);
    ASSERT_TRUE(c.Propose(1 + k % 2, 0, p).ok());
    sent.insert(p);
  }
  c.Isolate(3, false);
  ASSERT_TRUE(Eventually([&] { return c.host(3)->GetShardInfo(0).snapshot_index > 20; }));
  EXPECT_EQ(c.sm(3, 0)->snapshots_installed(), 1);  // The bootstrap one.

  // when it is resumed once the cause is gone, it installs that snapshot and applies the rest.
  c.sm(3, 0)->set_apply_fails_at("", absl::OkStatus());
  c.host(3)->ResumeShard(0);
  ASSERT_TRUE(WaitConverged(c, 0, sent, absl::Seconds(30)));
  EXPECT_TRUE(c.host(3)->GetShardInfo(0).halted.empty());
  EXPECT_EQ(c.sm(3, 0)->snapshots_installed(), 2);
  ASSERT_TRUE(c.Propose(3, 0, "after resuming").ok());
  sent.insert("after resuming");
  EXPECT_TRUE(WaitConverged(c, 0, sent));
}

TEST(NodeHostTest, LeadershipTransferMovesTheLeader) {
  TestCluster c(TestDir(), 3, 4);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  for (uint64_t s = 0; s < 4; ++s) {
    const uint64_t from = c.WaitForLeader(s);
    const uint64_t to = from % 3 + 1;
    // Asked through a node that is not the leader: the request is forwarded.
    const uint64_t via = to % 3 + 1 == from ? to : to % 3 + 1;
    // Best effort, like every transfer: retried if the forwarding node had no leader yet.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    for (int attempt = 0; c.Leader(s) != to && absl::Now() < deadline; ++attempt) {
      if (attempt % 25 == 0) c.host(via)->TransferLeadership(s, to);
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(c.Leader(s), to) << "shard " << s;
    EXPECT_TRUE(c.Propose(from, s, absl::StrCat("after-transfer-", s)).ok());
  }
}

TEST(NodeHostTest, FourthNodeJoinsEveryShardAndANodeIsRemoved) {
  TestCluster c(TestDir(), 3, 4);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  std::map<uint64_t, std::set<std::string>> sent;
  for (uint64_t s = 0; s < 4; ++s) {
    for (int k = 0; k < 3; ++k) {
      const std::string p = absl::StrCat("s", s, "-", k);
      ASSERT_TRUE(c.Propose(1, s, p).ok());
      sent[s].insert(p);
    }
  }
  // Given a new, empty node 4 that knows the others' addresses,
  c.Start(4, /*join=*/true);
  // when it is added to every shard,
  for (uint64_t s = 0; s < 4; ++s) {
    ASSERT_TRUE(c.host(1)->AddNode(s, 4, c.address(4), absl::Seconds(10)).ok()) << "shard " << s;
  }
  // then it receives the whole history and counts as a voter,
  for (uint64_t s = 0; s < 4; ++s) {
    EXPECT_TRUE(WaitConverged(c, s, sent[s])) << "shard " << s;
    EXPECT_TRUE(IsVoter(c.host(4)->GetShardInfo(s).conf_state, 4));
  }
  // and when node 3 is removed and stopped, the remaining three keep committing.
  for (uint64_t s = 0; s < 4; ++s) {
    ASSERT_TRUE(c.host(2)->RemoveNode(s, 3, absl::Seconds(10)).ok()) << "shard " << s;
  }
  c.Stop(3);
  for (uint64_t s = 0; s < 4; ++s) {
    EXPECT_FALSE(IsVoter(c.host(1)->GetShardInfo(s).conf_state, 3));
    const std::string p = absl::StrCat("after-remove-", s);
    ASSERT_TRUE(c.Propose(4, s, p).ok());
    sent[s].insert(p);
    EXPECT_TRUE(WaitConverged(c, s, sent[s])) << "shard " << s;
  }
}

// Waits until `pred` holds for every shard; false on timeout.
bool WaitAllShards(int shards, const std::function<bool(uint64_t)>& pred,
                   absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    bool all = true;
    for (int s = 0; s < shards && all; ++s) all = pred(s);
    if (all) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// Whether node `id` knows, as committed and applied, that `node` is a learner to promote.
bool IsLearnerToBePromoted(TestCluster& c, uint64_t id, uint64_t shard, uint64_t node) {
  const v1::ConfState cs = c.host(id)->GetShardInfo(shard).applied_conf_state;
  return IsLearner(cs, node) && IsLearnerToPromote(cs, node) && !IsVoter(cs, node);
}

bool IsPromotedVoter(TestCluster& c, uint64_t id, uint64_t shard, uint64_t node) {
  const v1::ConfState cs = c.host(id)->GetShardInfo(shard).applied_conf_state;
  return IsVoter(cs, node) && !IsLearner(cs, node) && cs.learners_to_promote_size() == 0;
}

// Moves the leadership of `shard` away from its current leader; false if it did not move.
bool MoveLeadership(TestCluster& c, uint64_t shard) {
  const uint64_t from = c.WaitForLeader(shard);
  if (from == 0) return false;
  const uint64_t to = from % 3 + 1;  // another founding voter
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (int attempt = 0; c.Leader(shard) != to && absl::Now() < deadline; ++attempt) {
    if (attempt % 25 == 0) c.host(to)->TransferLeadership(shard, to);
    absl::SleepFor(absl::Milliseconds(20));
  }
  return c.Leader(shard) == to;
}

TEST(NodeHostTest, AddedLearnerStaysALearnerUntilItCatchesUpThenIsPromoted) {
  TestCluster c(TestDir(), 3, 2);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  std::map<uint64_t, std::set<std::string>> sent;
  for (uint64_t s = 0; s < 2; ++s) {
    for (int k = 0; k < 5; ++k) {
      const std::string p = absl::StrCat("s", s, "-", k);
      ASSERT_TRUE(c.Propose(1 + k % 3, s, p).ok());
      sent[s].insert(p);
    }
  }
  // Given a new, empty node 4 that cannot be reached yet,
  c.Isolate(4, true);
  c.Start(4, /*join=*/true);
  // when it is added as a learner to every shard (through a node that may not lead),
  for (uint64_t s = 0; s < 2; ++s) {
    ASSERT_TRUE(c.host(2)->AddLearner(s, 4, c.address(4), absl::Seconds(10)).ok()) << s;
  }
  // then it is a learner marked for promotion on every member, and stays one while it
  // cannot catch up (many promotion checks pass meanwhile),
  EXPECT_TRUE(WaitAllShards(2, [&](uint64_t s) {
    return IsLearnerToBePromoted(c, 1, s, 4) && IsLearnerToBePromoted(c, 3, s, 4);
  }));
  absl::SleepFor(absl::Seconds(1));
  for (uint64_t s = 0; s < 2; ++s) {
    const uint64_t leader = c.WaitForLeader(s);
    ASSERT_NE(leader, 0u) << s;
    EXPECT_TRUE(IsLearnerToBePromoted(c, leader, s, 4)) << s;
    EXPECT_FALSE(IsVoter(c.host(leader)->GetShardInfo(s).conf_state, 4)) << s;
  }
  // and once it is reachable it receives the history and is promoted to voter everywhere.
  c.Isolate(4, false);
  for (uint64_t s = 0; s < 2; ++s) EXPECT_TRUE(WaitConverged(c, s, sent[s])) << s;
  EXPECT_TRUE(WaitAllShards(2, [&](uint64_t s) {
    for (uint64_t id = 1; id <= 4; ++id) {
      if (!IsPromotedVoter(c, id, s, 4)) return false;
    }
    return true;
  }));
  // As a voter it counts: with 2 and 3 down, 1 and 4 are not a quorum of four, but with 3
  // back they are.
  c.Stop(2);
  c.Stop(3);
  auto lone = c.host(1)->ProposeAndWait(0, "two-of-four");
  EXPECT_FALSE(lone.ok());
  c.Start(3);
  ASSERT_TRUE(c.Propose(4, 0, "three-of-four").ok());
}

TEST(NodeHostTest, LearnerIsPromotedByTheNextLeaderAfterATransfer) {
  TestCluster c(TestDir(), 3, 2);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  ASSERT_TRUE(c.Propose(1, 0, "x").ok());
  c.Isolate(4, true);
  c.Start(4, /*join=*/true);
  // Given learner 4 was added through each shard's leader (which alone knew it proposed it),
  for (uint64_t s = 0; s < 2; ++s) {
    const uint64_t leader = c.WaitForLeader(s);
    ASSERT_NE(leader, 0u);
    ASSERT_TRUE(c.host(leader)->AddLearner(s, 4, c.address(4), absl::Seconds(10)).ok()) << s;
  }
  // when leadership moves to another node before the learner caught up,
  for (uint64_t s = 0; s < 2; ++s) {
    ASSERT_TRUE(MoveLeadership(c, s)) << s;
    const uint64_t leader = c.WaitForLeader(s);
    ASSERT_NE(leader, 0u) << s;
    EXPECT_TRUE(IsLearnerToBePromoted(c, leader, s, 4)) << s;
  }
  // then the new leader promotes it once it can catch up.
  c.Isolate(4, false);
  // Every member applies the promotion on its own time: node 4 seeing it says nothing of node 1
  // (a check of node 1 right after failed once, 0.6 ms before node 1 applied it).
  for (uint64_t id : {uint64_t{4}, uint64_t{1}}) {
    EXPECT_TRUE(WaitAllShards(2, [&](uint64_t s) { return IsPromotedVoter(c, id, s, 4); })) << id;
  }
  EXPECT_TRUE(WaitConverged(c, 0, {"x"}));
}

TEST(NodeHostTest, PendingPromotionSurvivesARestartOfEveryMemberAndCompaction) {
  TestCluster c(TestDir(), 3, 2);
  c.tweak = [](NodeHostConfig* cfg) { cfg->compaction_overhead = 0; };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  ASSERT_TRUE(c.Propose(1, 0, "x").ok());
  c.Isolate(4, true);
  c.Start(4, /*join=*/true);
  std::map<uint64_t, uint64_t> added_at;
  for (uint64_t s = 0; s < 2; ++s) {
    ASSERT_TRUE(c.host(1)->AddLearner(s, 4, c.address(4), absl::Seconds(10)).ok()) << s;
    added_at[s] = c.host(1)->GetShardInfo(s).commit;
  }
  ASSERT_TRUE(c.Propose(2, 0, "y").ok());
  ASSERT_TRUE(c.Propose(2, 1, "y").ok());
  // Given every founding member snapshots and compacts away the entry that added the learner
  // (once it applied it: a member that snapshots before holds that entry until its next
  // snapshot, which this test never reaches),
  ASSERT_TRUE(WaitAllShards(2, [&](uint64_t s) {
    for (uint64_t id = 1; id <= 3; ++id) {
      if (c.host(id)->GetShardInfo(s).applied < added_at[s]) return false;
    }
    return true;
  }));
  for (uint64_t id = 1; id <= 3; ++id) {
    for (uint64_t s = 0; s < 2; ++s) c.host(id)->RequestSnapshot(s);
  }
  ASSERT_TRUE(WaitAllShards(2, [&](uint64_t s) {
    for (uint64_t id = 1; id <= 3; ++id) {
      const ShardInfo info = c.host(id)->GetShardInfo(s);
      if (info.first_index <= added_at[s]) return false;
    }
    return true;
  }));
  // when they all restart (no memory of the pending promotion survives outside the store),
  for (uint64_t id = 1; id <= 3; ++id) c.Stop(id);
  for (uint64_t id = 1; id <= 3; ++id) c.Start(id);
  ASSERT_TRUE(c.WaitForLeaders());
  for (uint64_t s = 0; s < 2; ++s) {
    const uint64_t leader = c.WaitForLeader(s);
    ASSERT_NE(leader, 0u) << s;
    EXPECT_TRUE(IsLearnerToPromote(c.host(leader)->GetShardInfo(s).conf_state, 4)) << s;
  }
  // then the learner is still promoted once it can catch up.
  c.Isolate(4, false);
  EXPECT_TRUE(WaitAllShards(2, [&](uint64_t s) {
    for (uint64_t id = 1; id <= 4; ++id) {
      if (!IsPromotedVoter(c, id, s, 4)) return false;
    }
    return true;
  }));
  EXPECT_TRUE(WaitConverged(c, 0, {"x", "y"}));
}

TEST(NodeHostTest, ALearnerCanBeRemovedBeforeItIsPromoted) {
  TestCluster c(TestDir(), 3, 2);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  c.Isolate(4, true);
  c.Start(4, /*join=*/true);
  for (uint64_t s = 0; s < 2; ++s) {
    ASSERT_TRUE(c.host(1)->AddLearner(s, 4, c.address(4), absl::Seconds(10)).ok()) << s;
  }
  // When the learner is removed before it could catch up,
  for (uint64_t s = 0; s < 2; ++s) {
    ASSERT_TRUE(c.host(3)->RemoveNode(s, 4, absl::Seconds(10)).ok()) << s;
  }
  // then it is no member at all and, reachable again, is not promoted.
  c.Isolate(4, false);
  absl::SleepFor(absl::Seconds(1));
  for (uint64_t s = 0; s < 2; ++s) {
    const uint64_t leader = c.WaitForLeader(s);
    ASSERT_NE(leader, 0u) << s;
    const v1::ConfState cs = c.host(leader)->GetShardInfo(s).conf_state;
    EXPECT_FALSE(IsVoter(cs, 4) || IsLearner(cs, 4)) << s;
    EXPECT_EQ(cs.learners_to_promote_size(), 0) << s;
    EXPECT_EQ(cs.voters_size(), 3) << s;
  }
}

// A node behind the others used to answer "remove 4" with OK at once when it had not yet
// applied "add learner 4": 4 was no member *there*. The learner stayed, and was promoted.
TEST(NodeHostTest, ARemovalAskedOfANodeThatHasNotSeenTheLearnerYetRemovesIt) {
  TestCluster c(TestDir(), 3, 1);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  c.Isolate(4, true);
  c.Start(4, /*join=*/true);
  // Given node 3 is cut off while learner 4 is added through node 1,
  c.Isolate(3, true);
  ASSERT_TRUE(c.host(1)->AddLearner(0, 4, c.address(4), absl::Seconds(15)).ok());
  ASSERT_FALSE(IsLearner(c.host(3)->GetShardInfo(0).applied_conf_state, 4));
  // when node 3 is asked to remove 4 and hears from the others again a second later,
  std::thread heal([&c] {
    absl::SleepFor(absl::Seconds(1));
    c.Isolate(3, false);
  });
  const absl::Status removed = c.host(3)->RemoveNode(0, 4, absl::Seconds(15));
  heal.join();
  ASSERT_TRUE(removed.ok()) << removed;
  // then 4 is out of the membership of every member, not only of node 3's stale view.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  auto member_somewhere = [&c] {
    for (uint64_t id = 1; id <= 3; ++id) {
      const v1::ConfState cs = c.host(id)->GetShardInfo(0).applied_conf_state;
      if (IsVoter(cs, 4) || IsLearner(cs, 4)) return true;
    }
    return false;
  };
  while (member_somewhere() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(member_somewhere());
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(c.host(id)->GetShardInfo(0).conf_state.voters_size(), 3) << id;
  }
}

TEST(NodeHostTest, SlowStateMachineDoesNotStallOtherShards) {
  TestCluster c(TestDir(), 3, 4);  // 4 apply workers: shards 0 and 1 apply on different ones
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  std::map<uint64_t, uint64_t> terms;
  for (uint64_t s = 0; s < 4; ++s) terms[s] = c.host(1)->GetShardInfo(s).term;
  // Given shard 0's state machine takes 3 s per batch on every node,
  for (uint64_t id = 1; id <= 3; ++id) c.sm(id, 0)->set_apply_delay(absl::Seconds(3));
  std::atomic<bool> slow_done{false};
  c.host(1)->Propose(0, "slow", [&](absl::Status, uint64_t) { slow_done = true; });
  absl::SleepFor(absl::Milliseconds(100));
  // when shard 1 commits meanwhile, it is not held up,
  const absl::Time start = absl::Now();
  for (int k = 0; k < 5; ++k) ASSERT_TRUE(c.Propose(1, 1, absl::StrCat("fast-", k)).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_FALSE(slow_done.load());
  // and ticks kept running for every shard: no leader lost its term.
  for (uint64_t id = 1; id <= 3; ++id) c.sm(id, 0)->set_apply_delay(absl::ZeroDuration());
  for (uint64_t s = 0; s < 4; ++s) EXPECT_EQ(c.host(1)->GetShardInfo(s).term, terms[s]) << s;
  EXPECT_TRUE(WaitConverged(c, 0, {"slow"}));
}

TEST(NodeHostTest, AProposalAboveTheEntryLimitIsRefusedAtOnce) {
  TestCluster c(TestDir(), 1, 1);
  c.tweak = [](NodeHostConfig* cfg) { cfg->max_entry_bytes = 1 << 20; };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  auto r = c.host(1)->ProposeAndWait(0, std::string((1 << 20) + 1, 'x'));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_TRUE(c.host(1)->ProposeAndWait(0, std::string(1 << 20, 'x')).ok());
}

TEST(NodeHostTest, ProposalCallbacksReportDroppedAndTimedOut) {
  TestCluster c(TestDir(), 3, 2);
  c.tweak = [](NodeHostConfig* cfg) { cfg->proposal_timeout = absl::Seconds(1); };
  // A lone founding member has no leader: its proposal is dropped at once.
  c.Start(1);
  auto r = c.host(1)->ProposeAndWait(0, "nobody-leads");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  // A leader cut off from its followers accepts a proposal that can never commit: it times out.
  c.Start(2);
  c.Start(3);
  ASSERT_TRUE(c.WaitForLeaders());
  const uint64_t leader = c.WaitForLeader(0);
  c.Isolate(leader, true);
  r = c.host(leader)->ProposeAndWait(0, "cut-off");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  // A proposal still pending when the host stops is cancelled.
  std::atomic<int> code{-1};
  c.host(leader)->Propose(1, "stopping",
                          [&](absl::Status s, uint64_t) { code = static_cast<int>(s.code()); });
  c.Stop(leader);
  EXPECT_NE(code.load(), -1);
  EXPECT_NE(code.load(), static_cast<int>(absl::StatusCode::kOk));
}

TEST(NodeHostTest, EveryProposalOfADroppedPackIsResolvedOnce) {
  TestCluster c(TestDir(), 3, 2);
  c.tweak = [](NodeHostConfig* cfg) { cfg->pack_proposals = true; };
  // A lone founding member has no leader: its packs are dropped at once.
  c.Start(1);
  std::vector<BurstProposal> burst;
  for (int k = 0; k < 300; ++k)
    burst.push_back({1, static_cast<uint64_t>(k % 2), absl::StrCat("p", k)});
  const auto outcomes = ProposeBurst(c, burst, absl::Seconds(10));
  ASSERT_TRUE(outcomes.has_value());
  for (const auto& [payload, o] : *outcomes) {
    ASSERT_EQ(o.calls, 1) << payload;
    EXPECT_EQ(o.status.code(), absl::StatusCode::kAborted) << payload;
  }
}

TEST(NodeHostTest, RestartWithExistingStateIgnoresTheBootstrapList) {
  TestCluster c(TestDir(), 3, 2);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  ASSERT_TRUE(c.Propose(1, 0, "x").ok());
  c.Stop(2);
  // Restarted with a bootstrap list naming only itself, node 2 keeps the 3-member groups.
  c.tweak = [](NodeHostConfig* cfg) {
    if (cfg->node_id == 2) cfg->peers.erase(3);
  };
  c.Start(2);
  ASSERT_TRUE(WaitConverged(c, 0, {"x"}));
  for (uint64_t s = 0; s < 2; ++s) {
    EXPECT_EQ(c.host(2)->GetShardInfo(s).conf_state.voters_size(), 3) << s;
  }
  // It still reaches node 3 (address remembered from the bootstrap): with node 1 down, 2 and 3
  // form a quorum.
  c.Stop(1);
  ASSERT_TRUE(c.Propose(2, 0, "y").ok());
  EXPECT_TRUE(WaitConverged(c, 0, {"x", "y"}));
}

TEST(NodeHostTest, LossyDelayedNetworkStillConverges) {
  TestCluster c(TestDir(), 3, 4);
  // A forwarded proposal lost on the way is only noticed by its timeout: keep that short.
  c.tweak = [](NodeHostConfig* cfg) { cfg->proposal_timeout = absl::Milliseconds(500); };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given every node drops 10% of its outgoing messages and delays the rest by 5 ms,
  TransportFaults f;
  f.drop_probability = 0.1;
  f.delay = absl::Milliseconds(5);
  for (uint64_t id = 1; id <= 3; ++id) c.host(id)->grpc_transport()->SetFaults(f);
  // when proposals go through every node,
  std::map<uint64_t, std::set<std::string>> sent;
  for (int k = 0; k < 24; ++k) {
    const uint64_t s = k % 4;
    const std::string p = absl::StrCat("lossy-", k);
    ASSERT_TRUE(c.Propose(1 + k % 3, s, p, absl::Seconds(20)).ok()) << p;
    sent[s].insert(p);
  }
  // then every shard converges on every node (a retried proposal may appear twice, on all).
  for (uint64_t s = 0; s < 4; ++s) EXPECT_TRUE(WaitConverged(c, s, sent[s])) << "shard " << s;
}

TEST(NodeHostTest, OneWayPartitionOfALeaderMovesLeadershipAndHeals) {
  TestCluster c(TestDir(), 3, 1);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  const uint64_t old = c.WaitForLeader(0);
  // Given the leader can still send but hears nothing back (the others' traffic to it is cut),
  for (uint64_t id = 1; id <= 3; ++id) {
    if (id == old) continue;
    TransportFaults f;
    f.blocked = {old};
    c.host(id)->grpc_transport()->SetFaults(f);
  }
  // then check-quorum deposes it and the others elect a leader and commit without it.
  const uint64_t other = old == 1 ? 2 : 1;
  ASSERT_TRUE(c.Propose(other, 0, "while-one-way").ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (c.host(old)->GetShardInfo(0).is_leader && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(c.host(old)->GetShardInfo(0).is_leader);
  // After healing, the old leader catches up.
  for (uint64_t id = 1; id <= 3; ++id) c.host(id)->grpc_transport()->SetFaults(TransportFaults());
  EXPECT_TRUE(WaitConverged(c, 0, {"while-one-way"}));
}

TEST(NodeHostTest, ApplyBacklogLimitPausesOnlyThatShardAndResumes) {
  TestCluster c(TestDir(), 3, 2);
  // Any unapplied entry blocks the shard's next Ready: the tightest possible limit.
  c.tweak = [](NodeHostConfig* cfg) { cfg->max_apply_backlog_bytes = 1; };
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  for (uint64_t id = 1; id <= 3; ++id) c.sm(id, 0)->set_apply_delay(absl::Milliseconds(100));
  std::set<std::string> sent0, sent1;
  std::atomic<int> done{0};
  for (int k = 0; k < 10; ++k) {
    const std::string p = absl::StrCat("slow-", k);
    sent0.insert(p);
    c.host(1)->Propose(0, p, [&](absl::Status, uint64_t) { ++done; });
  }
  for (int k = 0; k < 10; ++k) {
    const std::string p = absl::StrCat("fast-", k);
    ASSERT_TRUE(c.Propose(1, 1, p).ok());
    sent1.insert(p);
  }
  EXPECT_TRUE(WaitConverged(c, 1, sent1));
  EXPECT_TRUE(WaitConverged(c, 0, sent0));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (done.load() < 10 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(done.load(), 10);
}

int ThreadCount() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

TEST(NodeHostTest, StopLeavesNoThreadsBehind) {
  auto cycle = [](int round) {
    TestCluster c(absl::StrCat(TestDir(), "-", round), 3, 4);
    c.StartAll();
    ASSERT_TRUE(c.WaitForLeaders());
    ASSERT_TRUE(c.Propose(2, 1, "x").ok());
  };         // every host stops here
  cycle(0);  // gRPC starts its process-wide threads once
  absl::SleepFor(absl::Milliseconds(200));
  const int before = ThreadCount();
  cycle(1);
  cycle(2);
  // gRPC's own pool threads wind down lazily; ours are joined in Stop(). A leak never goes away.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (ThreadCount() > before && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_LE(ThreadCount(), before);
}

// A transport that reaches no one: enough for a one-node cluster, which needs no peer.
struct SilentTransportLog {
  std::atomic<bool> started{false};
  std::atomic<bool> stopped{false};
};

class SilentTransport : public Transport {
 public:
  explicit SilentTransport(SilentTransportLog* log) : log_(log) {}
  absl::Status Start(MessageHandler* handler) override {
    log_->started = handler != nullptr;
    return absl::OkStatus();
  }
  void Stop() override { log_->stopped = true; }
  void SetPeerAddress(uint64_t node, const std::string& address) override {}
  void Send(std::vector<v1::Message> messages) override {}

 private:
  SilentTransportLog* log_;
};

NodeHostConfig OneNodeConfig(const std::string& dir) {
  NodeHostConfig cfg;
  cfg.node_id = 1;
  cfg.raft_path = dir;
  cfg.shards = 2;
  cfg.peers[1] = "127.0.0.1:1";  // never dialed
  cfg.tick_interval = absl::Milliseconds(10);
  cfg.heartbeat_ticks = 1;
  return cfg;
}

TEST(NodeHostTest, RunsOnTheTransportAndStoreItIsGiven) {
  const NodeHostConfig cfg = OneNodeConfig(TestDir());
  absl::StatusOr<std::unique_ptr<RocksLogStore>> store = OpenHostLogStore(cfg);
  ASSERT_TRUE(store.ok()) << store.status();
  SilentTransportLog log;
  std::shared_ptr<ClusterIdentity> cluster;
  auto h = NodeHost::Start(
      cfg, *std::move(store),
      [&](std::shared_ptr<ClusterIdentity> c) {
        cluster = c;
        return std::make_unique<SilentTransport>(&log);
      },
      [](uint64_t) { return std::make_unique<RecordingStateMachine>(); });
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(log.started);
  EXPECT_EQ((*h)->grpc_transport(), nullptr);
  // The only voter of shard 0 is the highest: it drew the cluster id the transport compares.
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(cluster->id().size(), kClusterIdBytes);
  EXPECT_EQ((*h)->cluster_id(), cluster->id());
  // Alone, the node elects itself and commits without a peer.
  absl::StatusOr<uint64_t> index = absl::UnavailableError("not tried");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!index.ok() && absl::Now() < deadline) {
    index = (*h)->ProposeAndWait(1, "alone");
    if (!index.ok()) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ((*h)->GetShardInfo(1).applied, *index);
  (*h)->Stop();
  EXPECT_TRUE(log.stopped);
}

TEST(NodeHostTest, StoreOpenForAnotherShardCountIsRefused) {
  NodeHostConfig cfg = OneNodeConfig(TestDir());
  absl::StatusOr<std::unique_ptr<RocksLogStore>> store = OpenHostLogStore(cfg);
  ASSERT_TRUE(store.ok()) << store.status();
  cfg.shards = 3;
  bool built = false;
  auto h = NodeHost::Start(
      cfg, *std::move(store),
      [&](std::shared_ptr<ClusterIdentity>) {
        built = true;
        return std::unique_ptr<Transport>();
      },
      [](uint64_t) { return std::make_unique<RecordingStateMachine>(); });
  ASSERT_FALSE(h.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(h.status())) << h.status();
  EXPECT_FALSE(built);
}

TEST(NodeHostTest, ForeignRaftFolderIsRefusedAtStart) {
  TestCluster c(TestDir(), 1, 2);
  c.StartAll();
  c.Stop(1);
  NodeHostConfig cfg;
  cfg.node_id = 7;
  cfg.bind_address = absl::StrCat("127.0.0.1:", PickFreePort());
  cfg.raft_path = TestDir() + "/node-1";
  cfg.shards = 2;
  cfg.peers[7] = cfg.bind_address;
  auto h = StartNodeHost(cfg, [](uint64_t) { return std::make_unique<RecordingStateMachine>(); });
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("belongs to node 1"), std::string::npos) << h.status();
}

}  // namespace
}  // namespace marmot::raft::host::testing
