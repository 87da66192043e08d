#include "tests/host/test_cluster.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "raft/host/grpc_node_host.h"
#include "raft/membership.h"
#include "tests/testing/loopback_port.h"

namespace marmot::raft::host::testing {

namespace {
void PutStr(std::string* s, const std::string& v) {
  uint32_t n = v.size();
  s->append(reinterpret_cast<const char*>(&n), 4);
  s->append(v);
}
}  // namespace

void RecordingStateMachine::set_apply_delay(absl::Duration d) {
  std::lock_guard<std::mutex> l(mu_);
  apply_delay_ = d;
}

absl::Status RecordingStateMachine::Apply(const std::vector<AppliedEntry>& entries, ApplyRound*) {
  absl::Duration delay;
  {
    std::lock_guard<std::mutex> l(mu_);
    delay = apply_delay_;
  }
  absl::SleepFor(delay);
  std::lock_guard<std::mutex> l(mu_);
  uint64_t previous = 0;
  for (const auto& e : entries) {
    if (!apply_error_.ok() && e.data == fail_payload_) {
      absl::Status error = apply_error_;
      if (fail_once_) apply_error_ = absl::OkStatus();
      // A wait names its entry.
      if (std::optional<absl::Duration> bound = ShardWaitBound(error); bound.has_value()) {
        error = ShardWaitStatus(error.message(), *bound, e.index);
      }
      return error;
    }
    // The next index, or more proposals of a pack whose first ones came just before.
    if (e.index != previous) CHECK_EQ(e.index, applied_ + 1);
    previous = e.index;
    applied_ = e.index;
    if (e.data.empty()) continue;
    payloads_.push_back(e.data);
    indexes_.push_back(e.index);
  }
  return absl::OkStatus();
}

void RecordingStateMachine::set_apply_fails_at(const std::string& payload, absl::Status error) {
  std::lock_guard<std::mutex> l(mu_);
  fail_payload_ = payload;
  apply_error_ = std::move(error);
  fail_once_ = false;
}

void RecordingStateMachine::set_apply_fails_once_at(const std::string& payload,
                                                    absl::Status error) {
  std::lock_guard<std::mutex> l(mu_);
  fail_payload_ = payload;
  apply_error_ = std::move(error);
  fail_once_ = true;
}

absl::Status RecordingStateMachine::SaveSnapshot(SnapshotSink& out, ApplyRound*) {
  std::lock_guard<std::mutex> l(mu_);
  ++snapshot_attempts_;
  std::string s;
  for (const auto& p : payloads_) PutStr(&s, p);
  if (snapshot_fails_) {
    if (absl::Status w = out.Write(s.substr(0, s.size() / 2)); !w.ok()) return w;
    return absl::ResourceExhaustedError("test: snapshot refused half-way");
  }
  return out.Write(s);
}

void RecordingStateMachine::set_snapshot_fails(bool fails) {
  std::lock_guard<std::mutex> l(mu_);
  snapshot_fails_ = fails;
}

int RecordingStateMachine::snapshot_attempts() const {
  std::lock_guard<std::mutex> l(mu_);
  return snapshot_attempts_;
}

absl::Status RecordingStateMachine::RecoverFromSnapshot(uint64_t index, const SnapshotSource& in,
                                                        ApplyRound*) {
  std::string data;
  if (absl::Status s = in.ReadAt(0, in.size(), &data); !s.ok()) return s;
  std::vector<std::string> ps;
  size_t pos = 0;
  while (pos < data.size()) {
    if (pos + 4 > data.size()) return absl::DataLossError("truncated snapshot");
    uint32_t n;
    memcpy(&n, data.data() + pos, 4);
    pos += 4;
    if (pos + n > data.size()) return absl::DataLossError("truncated snapshot");
    ps.push_back(data.substr(pos, n));
    pos += n;
  }
  std::lock_guard<std::mutex> l(mu_);
  payloads_ = std::move(ps);
  indexes_.clear();
  applied_ = index;
  ++snapshots_installed_;
  return absl::OkStatus();
}

std::vector<std::string> RecordingStateMachine::payloads() const {
  std::lock_guard<std::mutex> l(mu_);
  return payloads_;
}
std::vector<uint64_t> RecordingStateMachine::indexes() const {
  std::lock_guard<std::mutex> l(mu_);
  return indexes_;
}
uint64_t RecordingStateMachine::applied() const {
  std::lock_guard<std::mutex> l(mu_);
  return applied_;
}
int RecordingStateMachine::snapshots_installed() const {
  std::lock_guard<std::mutex> l(mu_);
  return snapshots_installed_;
}

int PickFreePort() { return ::marmot::testing::FreeLoopbackPort(); }

TestCluster::TestCluster(std::string dir, int n, int shards)
    : dir_(std::move(dir)), shards_(shards) {
  std::filesystem::remove_all(dir_);
  for (uint64_t id = 1; id <= static_cast<uint64_t>(n); ++id) {
    founders_.push_back(id);
    addresses_[id] = absl::StrCat("127.0.0.1:", PickFreePort());
  }
}

TestCluster::~TestCluster() {
  for (auto& [id, h] : hosts_) {
    if (h) Stop(id);
  }
}

void TestCluster::Start(uint64_t id, bool join) {
  if (!addresses_.count(id)) addresses_[id] = absl::StrCat("127.0.0.1:", PickFreePort());
  NodeHostConfig c;
  c.node_id = id;
  c.bind_address = addresses_[id];
  c.raft_path = absl::StrCat(dir_, "/node-", id);
  c.shards = shards_;
  c.join = join;
  if (join) {
    for (auto& [pid, a] : addresses_) c.peers[pid] = a;
  } else {
    for (auto pid : founders_) c.peers[pid] = addresses_[pid];
  }
  c.proposal_timeout = absl::Seconds(3);
  // Fast timers keep scenarios short: elections after 100-200 ms.
  c.tick_interval = absl::Milliseconds(10);
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  if (tweak) tweak(&c);
  auto factory = [this, id](uint64_t shard) {
    auto sm = std::make_unique<RecordingStateMachine>();
    std::lock_guard<std::mutex> l(sms_mu_);
    sms_[{id, shard}] = sm.get();
    return sm;
  };
  auto h = StartNodeHost(c, factory);
  CHECK(h.ok()) << "node " << id << ": " << h.status();
  hosts_[id] = std::move(*h);
  if (blocked_.count(id)) {
    TransportFaults f;
    f.blocked = blocked_[id];
    hosts_[id]->grpc_transport()->SetFaults(f);
  }
}

void TestCluster::StartAll() {
  for (auto id : founders_) Start(id);
}

void TestCluster::Stop(uint64_t id) {
  auto it = hosts_.find(id);
  if (it == hosts_.end() || !it->second) return;
  it->second->Stop();
  {
    std::lock_guard<std::mutex> l(sms_mu_);
    for (auto s = sms_.begin(); s != sms_.end();) {
      s = s->first.first == id ? sms_.erase(s) : std::next(s);
    }
  }
  it->second.reset();
}

RecordingStateMachine* TestCluster::sm(uint64_t id, uint64_t shard) {
  std::lock_guard<std::mutex> l(sms_mu_);
  return sms_.at({id, shard});
}

std::vector<uint64_t> TestCluster::ids() const {
  std::vector<uint64_t> v;
  for (auto& [id, h] : hosts_) {
    if (h) v.push_back(id);
  }
  return v;
}

uint64_t TestCluster::Leader(uint64_t shard) {
  uint64_t leader = 0;
  for (auto id : ids()) {
    const ShardInfo info = hosts_[id]->GetShardInfo(shard);
    if (!IsVoter(info.conf_state, id) && !IsLearner(info.conf_state, id)) continue;
    if (info.leader == 0) return 0;
    if (leader != 0 && info.leader != leader) return 0;
    leader = info.leader;
  }
  if (leader == 0 || !running(leader) || !hosts_[leader]->GetShardInfo(shard).is_leader) return 0;
  return leader;
}

uint64_t TestCluster::WaitForLeader(uint64_t shard, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const uint64_t leader = Leader(shard);
    if (leader != 0 || absl::Now() >= deadline) return leader;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

bool TestCluster::WaitForLeaders(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    bool all = true;
    for (int s = 0; s < shards_ && all; ++s) all = Leader(s) != 0;
    if (all) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

absl::Status TestCluster::Propose(uint64_t via, uint64_t shard, const std::string& data,
                                  absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (absl::Now() < deadline) {
    auto r = hosts_.at(via)->ProposeAndWait(shard, data);
    if (r.ok()) return absl::OkStatus();
    last = r.status();
    // Dropped (no leader yet) or timed out (lost with a deposed leader): try again. A retry
    // after a timeout may apply the payload twice; tests use unique payloads and check sets
    // where that matters.
    absl::SleepFor(absl::Milliseconds(30));
  }
  return last;
}

bool TestCluster::WaitForPayloads(uint64_t id, uint64_t shard, const std::vector<std::string>& want,
                                  absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<std::string> got;
  while (absl::Now() < deadline) {
    got = sm(id, shard)->payloads();
    if (got == want) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  LOG(ERROR) << "node " << id << " shard " << shard << " has " << got.size() << " payloads, want "
             << want.size();
  return false;
}

void TestCluster::Isolate(uint64_t id, bool isolated) {
  for (auto& [other, a] : addresses_) {
    if (other == id) continue;
    if (isolated) {
      blocked_[id].insert(other);
      blocked_[other].insert(id);
    } else {
      blocked_[id].erase(other);
      blocked_[other].erase(id);
    }
  }
  for (auto n : ids()) {
    TransportFaults f;
    f.blocked = blocked_[n];
    hosts_[n]->grpc_transport()->SetFaults(f);
  }
}

}  // namespace marmot::raft::host::testing
