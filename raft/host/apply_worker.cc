#include "raft/host/apply_worker.h"

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/host/snapshot_payloads.h"
#include "raft/log_prefix.h"

namespace marmot::raft::host {

ApplyWorker::ApplyWorker(ApplyWorkerOptions options, ApplyListener* listener)
    : options_(std::move(options)), listener_(listener) {}

ApplyWorker::~ApplyWorker() { Stop(); }

void ApplyWorker::AddShard(uint64_t shard, std::unique_ptr<StateMachine> sm, uint64_t applied,
                           uint64_t applied_term, v1::ConfState conf, uint64_t snapshot_index,
                           bool halted) {
  auto [it, added] = shards_.try_emplace(shard, options_.snapshots, snapshot_index);
  CHECK(added) << "shard " << shard << " added twice";
  ShardState& st = it->second;
  st.halted = halted;
  st.sm = std::move(sm);
  st.applied = applied;
  st.applied_term = applied_term;
  st.conf = std::move(conf);
}

void ApplyWorker::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ApplyWorker::Enqueue(ApplyTask t) {
  t.bytes = 0;
  for (const auto& e : t.entries) t.bytes += e.data.size() + 16;
  shards_.at(t.shard).backlog_bytes.fetch_add(t.bytes, std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(mu_);
  queue_.push_back(std::move(t));
  cv_.notify_one();
}

bool ApplyWorker::Backlogged(uint64_t shard) const {
  return shards_.at(shard).backlog_bytes.load(std::memory_order_relaxed) >
         options_.max_backlog_bytes;
}

void ApplyWorker::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void ApplyWorker::Run() {
  // A round is what is queued, bounded so that a store grouping it into one commit holds its
  // write lock briefly.
  constexpr size_t kMaxRoundTasks = 256;
  constexpr uint64_t kMaxRoundBytes = 16 << 20;
  ApplyRounds* rounds = options_.rounds;
  for (;;) {
    std::vector<ApplyTask> round;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      uint64_t bytes = 0;
      while (!queue_.empty() && round.size() < kMaxRoundTasks && bytes < kMaxRoundBytes) {
        bytes += queue_.front().bytes;
        round.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::unique_ptr<ApplyRound> in_round = rounds != nullptr ? rounds->BeginRound() : nullptr;
    for (ApplyTask& t : round) Process(std::move(t), in_round.get());
    in_round.reset();  // ends the round
  }
}

void ApplyWorker::Process(ApplyTask t, ApplyRound* round) {
  ShardState& st = shards_.at(t.shard);
  if (!st.halted) InstallAndApply(t, st, round);
  const uint64_t limit = options_.max_backlog_bytes;
  const uint64_t before = st.backlog_bytes.fetch_sub(t.bytes, std::memory_order_relaxed);
  if (before > limit && before - t.bytes <= limit) listener_->OnBacklogBelowLimit(t.shard);
  if (st.halted) return;
  const absl::Time now = options_.env->MonotonicNow();
  if (t.take_snapshot || st.snapshots.Due(st.applied, now)) {
    if (!TakeSnapshot(t.shard, st, round)) st.snapshots.SnapshotFailed(now);
  }
}

void ApplyWorker::InstallAndApply(ApplyTask& t, ShardState& st, ApplyRound* round) {
  const uint64_t me = options_.node_id;
  if (t.snapshot) {
    const auto& meta = t.snapshot->metadata();
    if (meta.index() > st.applied) {
      absl::Status s = st.sm->RecoverFromSnapshot(meta.index(), *t.payload, round);
      if (!s.ok()) {
        Halt(t.shard, st, absl::StrCat("installing the snapshot at ", meta.index()), s);
        return;
      }
      st.applied = meta.index();
      st.applied_term = meta.term();
      st.conf = meta.conf_state();
      st.snapshots.SnapshotInstalled(meta.index());
      LOG(INFO) << LogPrefix(t.shard, me) << "installed snapshot at " << meta.index();
    }
  }
  // Entries at or below what is applied were covered by a snapshot.
  std::vector<AppliedEntry> todo;
  todo.reserve(t.entries.size());
  uint64_t taken = 0;  // index of the last entry taken: the rest of a pack follows it
  for (auto& e : t.entries) {
    if (taken != 0 && e.index == taken) {
      st.snapshots.PackItemApplied(e.data.size());
      todo.push_back(std::move(e));
      continue;
    }
    if (e.index <= st.applied) continue;
    CHECK_EQ(e.index, st.applied + 1) << LogPrefix(t.shard, me) << "applies out of order";
    st.applied = e.index;
    st.applied_term = e.term;
    taken = e.index;
    st.snapshots.EntryApplied(e.index, e.data.size());
    todo.push_back(std::move(e));
  }
  if (!todo.empty()) {
    absl::Status s = st.sm->Apply(todo, round);
    if (!s.ok()) {
      Halt(t.shard, st,
           absl::StrCat("applying entries ", todo.front().index, " to ", todo.back().index), s);
      return;
    }
    st.conf = t.conf_after;
  }
  listener_->OnApplied(t.shard, st.applied);
  for (auto [index, id] : t.mine) {
    if (index <= st.applied) listener_->OnProposalApplied(t.shard, id, index);
  }
}

void ApplyWorker::Halt(uint64_t shard, ShardState& st, absl::string_view what,
                       const absl::Status& s) {
  st.halted = true;
  const uint64_t me = options_.node_id;
  if (absl::IsCancelled(s)) {
    LOG(INFO) << LogPrefix(shard, me) << what << " not done before stopping: " << s.message();
    return;
  }
  const std::string reason = absl::StrCat(what, ": ", s.message());
  LOG(ERROR) << LogPrefix(shard, me) << "halted: " << reason
             << "; this node applies nothing more to the shard until it restarts";
  listener_->OnHalted(shard, reason);
}

bool ApplyWorker::TakeSnapshot(uint64_t shard, ShardState& st, ApplyRound* round) {
  if (!st.snapshots.HasNew(st.applied)) return true;
  absl::StatusOr<std::string> file = WriteLocalSnapshot(
      *st.sm, round, options_.snapshot_dir, options_.node_id, shard, st.applied, st.applied_term);
  if (!file.ok()) return false;
  v1::SnapshotMetadata meta;
  meta.set_index(st.applied);
  meta.set_term(st.applied_term);
  *meta.mutable_conf_state() = st.conf;
  const uint64_t keep = st.snapshots.SnapshotTaken(st.applied);
  listener_->OnSnapshotTaken(shard, std::move(meta), *std::move(file), keep);
  return true;
}

}  // namespace marmot::raft::host
