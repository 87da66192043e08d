// The Raft state machine of one shard: committed ChangeBatch entries applied to the local
// SQLite database through the node's ChangeApplier.
//
// Entries must apply exactly once, in order, so a database failure (busy past the timeout, disk
// full) is retried until it succeeds rather than skipped; only entries that can never apply go
// to the dead letters. On shutdown a retry loop gives up: the durable applied index is older
// than the host believes, so the entry is applied again at the next start (Open() reports the
// durable index).
#ifndef MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_
#define MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "raft/host/state_machine.h"
#include "replicator/change_applier.h"
#include "replicator/change_detector.h"
#include "replicator/replicator_metrics.h"

namespace marmot::replicator {

// The node's applier, shared by the state machines of every shard (SQLite has one writer; the
// mutex makes that explicit instead of leaving it to busy waits).
//
// It also groups the host's apply rounds into one SQLite transaction: BeginRound() takes the
// mutex, the first apply that writes begins an IMMEDIATE transaction (EnsureTransaction), the
// shards' applies inside run as savepoints of it, EndRound() commits and lets go. One commit per
// round instead of one per entry is most of a follower's apply cost (every commit rewrites the
// pages of the applied-index and dedupe tables to the WAL, wakes the change detector and may
// checkpoint). A round is bounded by the host, so the application's writers wait for one short
// transaction at most. Entries that need no write (this node's own changes coming back, see
// ChangeApplier::ApplyWithoutWriting) do not begin one: on the origin of a write flood most
// rounds take no lock the application's writer could run into. Their state is written by the
// next transaction: a round's, or the shipper's marking (WriteWithDeferred).
//
// As OwnWrites it tells the change detector when a round's transaction is open.
struct SharedApplier : public raft::host::ApplyRounds, public OwnWrites {
  std::mutex mu;
  std::unique_ptr<ChangeApplier> applier;
  std::atomic<bool> stopping{false};
  ReplicatorMetrics* metrics = nullptr;  // Optional.

  void BeginRound() override;
  void EndRound() override;
  // In a round: begins its transaction unless it is open, writing the applier's deferred state
  // first. False when stopping (the applies then run as transactions of their own).
  bool EnsureTransaction();
  // Before an apply that writes: in a round, EnsureTransaction(); outside rounds nothing (the
  // apply runs a transaction of its own).
  void PrepareWrite();
  bool TransactionOpen() const { return round_open_; }
  // Outside rounds: runs `write` (may be null) in one IMMEDIATE transaction on the applier's
  // connection, after writing the applier's deferred state, and commits both.
  absl::Status WriteWithDeferred(const std::function<absl::Status(sqlite::Database&)>& write);
  // Makes the deferred state part of what the applier's connection reads and of its next
  // commit: in a round, its transaction; otherwise a transaction of its own. `mu` must be held
  // (a round, or Lock()).
  absl::Status WriteDeferredNow();
  bool AwaitEnd(std::chrono::microseconds timeout) override;
  // Whether the calling thread runs a round (and so holds `mu` already).
  bool InRound() const { return round_owner_.load() == std::this_thread::get_id(); }
  // Locks `mu` unless the calling thread holds it for its round.
  std::unique_lock<std::mutex> Lock();

 private:
  // The transaction of WriteWithDeferred; `mu` held, no transaction open.
  absl::Status WriteDeferredLocked(const std::function<absl::Status(sqlite::Database&)>& write);

  std::atomic<std::thread::id> round_owner_{};
  bool round_open_ = false;  // A transaction was begun for the round (guarded by mu).
  // Whether a round's transaction is open, for AwaitEnd (not `mu`: a round holds that for long).
  std::mutex writing_mu_;
  std::condition_variable writing_cv_;
  bool writing_ = false;
};

class ShardStateMachine : public raft::host::StateMachine {
 public:
  ShardStateMachine(int shard, std::shared_ptr<SharedApplier> shared)
      : shard_(shard), shared_(std::move(shared)) {}

  uint64_t Open() override;
  absl::Status Apply(const std::vector<raft::host::AppliedEntry>& entries) override;
  absl::Status SaveSnapshot(raft::host::SnapshotSink& out) override;
  absl::Status RecoverFromSnapshot(uint64_t index, const raft::host::SnapshotSource& in) override;

 private:
  // ChangeApplier::ApplyWithoutWriting: whether the entry is applied (false also when it failed;
  // Apply then retries it).
  bool ApplyWithoutWriting(uint64_t index, const change::v1::ChangeBatch& batch);
  // Runs `step` until it succeeds or the node stops; false when it gave up.
  bool RetryUntilDone(const char* what, uint64_t index, const std::function<absl::Status()>& step);

  const int shard_;
  std::shared_ptr<SharedApplier> shared_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_
