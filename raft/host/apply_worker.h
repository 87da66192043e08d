// ApplyWorker: one apply thread of a NodeHost. The Raft loop hands it the committed entries of
// the shards hashed to it (ApplyTask); it installs snapshots, applies entries to the shard's
// StateMachine, takes the shard's snapshots, and reports back through an ApplyListener. It owns
// those state machines from AddShard() on; the loop never calls them once the worker started.
//
// A slow state machine delays only the shards of its worker. What it holds back is bounded by
// the loop: it stops taking a shard's Readys while Backlogged(shard), and the worker tells it
// when that ends (ApplyListener::OnBacklogBelowLimit).
#ifndef MARMOT_RAFT_HOST_APPLY_WORKER_H_
#define MARMOT_RAFT_HOST_APPLY_WORKER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/raft.pb.h"
#include "raft/host/env.h"
#include "raft/host/snapshot_io.h"
#include "raft/host/snapshot_policy.h"
#include "raft/host/state_machine.h"

namespace marmot::raft::host {

// One shard's work for its apply worker, from one Ready (or a snapshot request), or a step of
// resuming a halted shard (ApplyWorker::Resume).
struct ApplyTask {
  // kApply: handed out by the Raft loop. kResume: resume the shard (NodeHost::ResumeShard).
  // kReplay: entries read again from the log (or its snapshot) for a resuming shard.
  enum class Kind { kApply, kResume, kReplay };
  Kind kind = Kind::kApply;
  uint64_t shard = 0;
  std::optional<v1::Snapshot> snapshot;     // installed before the entries
  std::shared_ptr<SnapshotSource> payload;  // of `snapshot`, opened when it was recorded
  std::vector<AppliedEntry> entries;
  // (index, proposal id) of this node's own proposals among the entries.
  std::vector<std::pair<uint64_t, uint64_t>> mine;
  // The membership once the entries are applied (what a snapshot taken after them records).
  v1::ConfState conf_after;
  // Take a snapshot after this task even if none is due.
  bool take_snapshot = false;
  // Counted in the shard's backlog from Enqueue() until the task is applied (set by Enqueue).
  uint64_t bytes = 0;
  // kResume: the last index the loop handed out before it, and its term (conf_after is the
  // membership then).
  uint64_t handed = 0;
  uint64_t handed_term = 0;
  // kReplay: why the log could not be read (the shard stays halted).
  absl::Status replay_error;
};

// What a worker tells its host, from the worker's thread. Must not block on the worker.
class ApplyListener {
 public:
  virtual ~ApplyListener() = default;
  // The shard's state machine has applied everything up to `applied`.
  virtual void OnApplied(uint64_t shard, uint64_t applied) = 0;
  // This node's proposal `proposal_id` applied at `index` (after OnApplied covered it).
  virtual void OnProposalApplied(uint64_t shard, uint64_t proposal_id, uint64_t index) = 0;
  // The shard's backlog fell from above the limit to within it: Backlogged(shard) is false now.
  virtual void OnBacklogBelowLimit(uint64_t shard) = 0;
  // The shard applies nothing more until it resumes or the process restarts (see
  // ApplyWorker::Halt); `reason` says what failed. Not called when the state machine gave up
  // because of Stop().
  virtual void OnHalted(uint64_t shard, const std::string& reason) = 0;
  // The shard is parked as a halted one is, not for a failure but for an entry it may not apply
  // yet (ShardWaitStatus): the host resumes it after `at_most` unless someone does before.
  virtual void OnWaiting(uint64_t shard, const std::string& reason, absl::Duration at_most) = 0;
  // The shard, resuming, needs the committed entries `from` to `through` read again from the
  // log: the host queues them (or the log's snapshot, when they are compacted) as a kReplay
  // task, a bounded part at a time (the worker asks for the rest).
  virtual void OnReplayNeeded(uint64_t shard, uint64_t from, uint64_t through) = 0;
  // The shard resumed: it applied again everything handed out while it was halted.
  virtual void OnResumed(uint64_t shard) = 0;
  // A snapshot of the shard at `meta` is whole and fsynced in `file` (in the snapshots folder);
  // the host records it and compacts the log, keeping `keep` entries behind it. The host owns
  // the file from now on.
  virtual void OnSnapshotTaken(uint64_t shard, v1::SnapshotMetadata meta, std::string file,
                               uint64_t keep) = 0;
};

struct ApplyWorkerOptions {
  uint64_t node_id = 0;
  // Where snapshot payload files go (RocksLogStore::SnapshotDir()).
  std::string snapshot_dir;
  // Bytes queued for a shard beyond which it is Backlogged.
  uint64_t max_backlog_bytes = 64 << 20;
  SnapshotPolicyOptions snapshots;
  // Optional; must outlive the worker.
  ApplyRounds* rounds = nullptr;
  // The clock of the snapshot policy; must outlive the worker.
  Env* env = Env::Default();
};

class ApplyWorker {
 public:
  // `listener` must outlive the worker.
  ApplyWorker(ApplyWorkerOptions options, ApplyListener* listener);
  // Stop().
  ~ApplyWorker();

  // Hands the worker a shard, before Start(): its opened state machine, what it has applied
  // (`applied` at `applied_term`, with membership `conf`), the index of the log's snapshot, and
  // whether it starts halted.
  void AddShard(uint64_t shard, std::unique_ptr<StateMachine> sm, uint64_t applied,
                uint64_t applied_term, v1::ConfState conf, uint64_t snapshot_index, bool halted);
  void Start();
  // Queues a task of one of its shards and counts its bytes (payload plus a small overhead per
  // entry; a snapshot's payload is a file, not memory) in the shard's backlog. Any thread.
  void Enqueue(ApplyTask t);
  // More than max_backlog_bytes of the shard's tasks are queued or being applied. Any thread.
  bool Backlogged(uint64_t shard) const;
  // Finishes the queued tasks, then stops. Idempotent.
  void Stop();

 private:
  struct ShardState {
    explicit ShardState(const SnapshotPolicyOptions& options, uint64_t last_snapshot)
        : snapshots(options, last_snapshot) {}
    std::unique_ptr<StateMachine> sm;
    uint64_t applied = 0;
    uint64_t applied_term = 0;
    v1::ConfState conf;
    SnapshotPolicy snapshots;
    // Set when the state machine failed or gave up (see Halt): nothing more is applied to it
    // until it resumes.
    bool halted = false;
    // Resuming (see Resume): the entries up to `replay_through` (with its term, and the
    // membership then) are applied again from the log; the shard's tasks that came meanwhile
    // wait in `held`, counted in the backlog.
    bool replaying = false;
    uint64_t replay_through = 0;
    uint64_t replay_through_term = 0;
    v1::ConfState replay_conf;
    std::deque<ApplyTask> held;
    // Bytes of the shard's tasks enqueued and not yet applied (read by the Raft loop).
    std::atomic<uint64_t> backlog_bytes{0};
  };

  void Run();
  // `round`: the round the task is applied in (null without ApplyRounds), passed to every
  // StateMachine call.
  void Process(ApplyTask t, ApplyRound* round);
  // The task leaves the shard's backlog (OnBacklogBelowLimit when that ends it).
  void Release(const ApplyTask& t, ShardState& st);
  // A kResume task, outside rounds. A halted shard (not resuming already) opens its state
  // machine again (StateMachine::Open: what it holds) and asks for the entries after that, up
  // to what the loop handed out before the task, as a restart would apply them; the tasks
  // that follow wait until it has them. Nothing for a shard that is not halted.
  void Resume(const ApplyTask& t);
  // A kReplay task: applies it (halting the shard again if that fails), then asks for more or
  // finishes the replay.
  void Replay(ApplyTask& t, ShardState& st, ApplyRound* round);
  // The replay reached what was handed out: the shard runs again, its held tasks go first.
  void FinishReplay(uint64_t shard, ShardState& st);
  // Installs the task's snapshot, applies its entries and reports this node's proposals among
  // them; halts the shard when the state machine fails.
  void InstallAndApply(ApplyTask& t, ShardState& st, ApplyRound* round);
  // Nothing more is applied to the shard (until it resumes or the process restarts); a
  // replay under way ends, the tasks it held are dropped. Cancelled: the state
  // machine gave up because the host is stopping; the rest is applied at the next start (Open()
  // reports what is durable). Otherwise the reason is logged and reported (OnHalted). The
  // shard's Raft group goes on (this node stores and acknowledges its entries); its proposals
  // made here are not resolved (they end with DeadlineExceeded). A wait (ShardWaitStatus) parks
  // the shard the same way and is reported as one (OnWaiting).
  void Halt(uint64_t shard, ShardState& st, absl::string_view what, const absl::Status& s);
  // Reports the shard applied through st.applied, and resolves this node's proposals of task
  // `t` at or below it.
  void ReportApplied(const ApplyTask& t, const ShardState& st);
  // Snapshots the shard (if anything was applied since the last one) and reports it; false when
  // that failed (logged).
  bool TakeSnapshot(uint64_t shard, ShardState& st, ApplyRound* round);

  const ApplyWorkerOptions options_;
  ApplyListener* const listener_;
  std::map<uint64_t, ShardState> shards_;  // fixed before Start()
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<ApplyTask> queue_;
  std::thread thread_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_APPLY_WORKER_H_
