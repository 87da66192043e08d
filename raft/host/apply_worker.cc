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
  // write lock briefly. Tasks are taken one at a time: a shard that resumes puts the tasks it
  // held back at the front of the queue.
  constexpr size_t kMaxRoundTasks = 256;
  constexpr uint64_t kMaxRoundBytes = 16 << 20;
  ApplyRounds* rounds = options_.rounds;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
    }
    std::unique_ptr<ApplyRound> in_round;
    size_t tasks = 0;
    uint64_t bytes = 0;
    while (tasks < kMaxRoundTasks && bytes < kMaxRoundBytes) {
      ApplyTask t;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (queue_.empty()) break;
        t = std::move(queue_.front());
        queue_.pop_front();
      }
      ++tasks;
      bytes += t.bytes;
      if (t.kind == ApplyTask::Kind::kResume) {
        in_round.reset();  // ends the round: the state machine is opened outside rounds
        Resume(t);
        continue;
      }
      if (in_round == nullptr && rounds != nullptr) in_round = rounds->BeginRound();
      Process(std::move(t), in_round.get());
    }
    in_round.reset();  // ends the round
  }
}

void ApplyWorker::Process(ApplyTask t, ApplyRound* round) {
  ShardState& st = shards_.at(t.shard);
  if (t.kind == ApplyTask::Kind::kReplay) {
    Replay(t, st, round);
  } else if (st.replaying) {
    // Applied once the replay reaches the entries before it.
    st.held.push_back(std::move(t));
    return;
  } else if (!st.halted) {
    InstallAndApply(t, st, round);
  }
  Release(t, st);
  if (st.halted || st.replaying) return;
  const absl::Time now = options_.env->MonotonicNow();
  if (t.take_snapshot || st.snapshots.Due(st.applied, now)) {
    if (!TakeSnapshot(t.shard, st, round)) st.snapshots.SnapshotFailed(now);
  }
}

void ApplyWorker::Release(const ApplyTask& t, ShardState& st) {
  const uint64_t limit = options_.max_backlog_bytes;
  const uint64_t before = st.backlog_bytes.fetch_sub(t.bytes, std::memory_order_relaxed);
  if (before > limit && before - t.bytes <= limit) listener_->OnBacklogBelowLimit(t.shard);
}

void ApplyWorker::Resume(const ApplyTask& t) {
  ShardState& st = shards_.at(t.shard);
  if (!st.halted || st.replaying) return;
  {
    // A state machine opened while the host stops may not say what it holds; the next start
    // resumes every shard anyway.
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
  }
  // What the state machine holds; entries after it are applied again, as after a restart.
  const uint64_t applied = st.sm->Open();
  LOG(INFO) << LogPrefix(t.shard, options_.node_id) << "resuming: the state machine holds "
            << applied << ", applying again up to " << t.handed;
  st.halted = false;
  st.replaying = true;
  st.applied = applied;
  st.applied_term = 0;  // known again from the first entry or snapshot applied
  st.replay_through = t.handed;
  st.replay_through_term = t.handed_term;
  st.replay_conf = t.conf_after;
  if (applied >= t.handed) {
    FinishReplay(t.shard, st);
    return;
  }
  listener_->OnReplayNeeded(t.shard, applied + 1, t.handed);
}

void ApplyWorker::Replay(ApplyTask& t, ShardState& st, ApplyRound* round) {
  if (!st.replaying) return;
  if (!t.replay_error.ok()) {
    Halt(t.shard, st, "reading the log to resume", t.replay_error);
    return;
  }
  InstallAndApply(t, st, round);
  if (st.halted) return;
  if (st.applied < st.replay_through) {
    listener_->OnReplayNeeded(t.shard, st.applied + 1, st.replay_through);
    return;
  }
  FinishReplay(t.shard, st);
}

void ApplyWorker::FinishReplay(uint64_t shard, ShardState& st) {
  st.replaying = false;
  // Past it only when the log's snapshot was newer (its membership and term stand then).
  if (st.applied == st.replay_through) {
    st.conf = st.replay_conf;
    if (st.applied_term == 0) st.applied_term = st.replay_through_term;
  }
  LOG(INFO) << LogPrefix(shard, options_.node_id) << "resumed at " << st.applied << "; "
            << st.held.size() << " task(s) that came meanwhile follow";
  listener_->OnApplied(shard, st.applied);
  listener_->OnResumed(shard);
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = st.held.rbegin(); it != st.held.rend(); ++it) queue_.push_front(std::move(*it));
  st.held.clear();
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
  const uint64_t applied_before = st.applied;
  const uint64_t term_before = st.applied_term;
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
      if (std::optional<uint64_t> waits = ShardWaitEntry(s); waits.has_value()) {
        // The entries before the one that waits are applied: their proposals made here are
        // resolved now (a parked shard resolves none, and they would end with a deadline while
        // applied).
        st.applied = applied_before;
        st.applied_term = term_before;
        for (const AppliedEntry& e : todo) {
          if (e.index >= *waits) break;
          st.applied = e.index;
          st.applied_term = e.term;
        }
        if (st.applied > applied_before) ReportApplied(t, st);
      }
      Halt(t.shard, st,
           absl::StrCat("applying entries ", todo.front().index, " to ", todo.back().index), s);
      return;
    }
    // A replay's entries come without it: the membership is known again when it finishes.
    if (t.kind == ApplyTask::Kind::kApply) st.conf = t.conf_after;
  }
  ReportApplied(t, st);
}

void ApplyWorker::ReportApplied(const ApplyTask& t, const ShardState& st) {
  listener_->OnApplied(t.shard, st.applied);
  for (auto [index, id] : t.mine) {
    if (index <= st.applied) listener_->OnProposalApplied(t.shard, id, index);
  }
}

void ApplyWorker::Halt(uint64_t shard, ShardState& st, absl::string_view what,
                       const absl::Status& s) {
  st.halted = true;
  st.replaying = false;
  for (const ApplyTask& held : st.held) Release(held, st);
  st.held.clear();
  const uint64_t me = options_.node_id;
  if (absl::IsCancelled(s)) {
    LOG(INFO) << LogPrefix(shard, me) << what << " not done before stopping: " << s.message();
    return;
  }
  const std::string reason = absl::StrCat(what, ": ", s.message());
  if (std::optional<absl::Duration> at_most = ShardWaitBound(s); at_most.has_value()) {
    LOG(INFO) << LogPrefix(shard, me) << "waits: " << reason << "; it resumes once that is done, "
              << "after " << *at_most << " at the latest";
    listener_->OnWaiting(shard, reason, *at_most);
    return;
  }
  LOG(ERROR) << LogPrefix(shard, me) << "halted: " << reason
             << "; this node applies nothing more to the shard until it resumes or restarts";
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
