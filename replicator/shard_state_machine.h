// The Raft state machine of one shard: committed ChangeBatch entries applied to the local
// SQLite database through the node's ChangeApplier, and the shard's snapshots.
//
// Entries must apply exactly once, in order. What can go wrong is told apart:
//   - a failure of the database itself (busy beyond the busy timeout, I/O, a full disk;
//     IsDatabaseFailure) is waited out: retried with backoff, holding neither marmot's write
//     transaction nor its mutex between tries (SharedApplier::RunUntilDone), so the application
//     and the other shards are not kept waiting on it;
//   - a change that cannot apply here goes to the dead letters (ChangeApplier), and so does a
//     snapshot table that cannot be installed here: the shard goes on;
//   - what neither can fix (no room for another dead letter, -max-dead-letters; a snapshot
//     table too large to keep as one dead letter; a snapshot payload that cannot be read) is
//     returned: the host halts this shard alone (StateMachine::Apply), says why in ShardInfo,
//     and applies nothing more to it until marmot restarts.
// On shutdown a retry gives up (Cancelled): the durable applied index is older than the host
// believes, so the entry is applied again at the next start (Open() reports the durable index).
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
#include "replicator/snapshot_stream.h"

namespace marmot::replicator {

// The node's applier, shared by the state machines of every shard (SQLite has one writer; the
// mutex makes that explicit instead of leaving it to busy waits).
//
// It also groups the host's apply rounds into one SQLite transaction: BeginRound() takes the
// mutex, the first apply that writes begins an IMMEDIATE transaction, the shards' applies inside
// run as savepoints of it, EndRound() commits and lets go. One commit per round instead of one
// per entry is most of a follower's apply cost (every commit rewrites the pages of the
// applied-index and dedupe tables to the WAL, wakes the change detector and may checkpoint). A
// round is bounded by the host, so the application's writers wait for one short transaction at
// most. Entries that need no write (this node's own changes coming back, see
// ChangeApplier::ApplyWithoutWriting) do not begin one: on the origin of a write flood most
// rounds take no lock the application's writer could run into. Their state is written by the
// next transaction: a round's, or the shipper's marking (WriteWithDeferred). A snapshot is
// installed, or read, in a transaction of its own, after the round's transaction committed.
//
// As OwnWrites it tells the change detector when a round's transaction is open.
struct SharedApplier : public raft::host::ApplyRounds, public OwnWrites {
  std::mutex mu;
  std::unique_ptr<ChangeApplier> applier;
  std::atomic<bool> stopping{false};
  ReplicatorMetrics* metrics = nullptr;  // Optional.
  // Rows of a snapshot go in pieces of about this many bytes (snapshot_stream.h).
  size_t snapshot_piece_bytes = kDefaultPieceBytes;

  void BeginRound() override;
  void EndRound() override;

  enum class RunIn {
    kRoundTransaction,  // In a round, the round's transaction (begun if needed); else its own.
    kOwnTransaction,    // Its own: in a round, the round's transaction is committed first.
  };
  // Runs `step` (a write, or read, of marmot's on the applier's connection; `mu` held, taken
  // here outside a round) until it is done. A database failure (IsDatabaseFailure) is waited out:
  // the round's transaction is committed (what it applied stays applied), and `mu` is let go for
  // a backoff of 10 ms doubling up to 1 s, logged every 20th time; then `step` runs again, from
  // the start. Returns OK, Cancelled once stopping, or `step`'s first other error. `what` names
  // the step in logs; it is only called on failure.
  absl::Status RunUntilDone(const std::function<std::string()>& what, RunIn in,
                            const std::function<absl::Status()>& step);

  bool TransactionOpen() const { return round_open_; }
  // Outside rounds: runs `write` (may be null) in one IMMEDIATE transaction on the applier's
  // connection, after writing the applier's deferred state, and commits both.
  absl::Status WriteWithDeferred(const std::function<absl::Status(sqlite::Database&)>& write);
  bool AwaitEnd(std::chrono::microseconds timeout) override;
  // Whether the calling thread runs a round (and so holds `mu` already).
  bool InRound() const { return round_owner_.load() == std::this_thread::get_id(); }
  // Locks `mu` unless the calling thread holds it for its round.
  std::unique_lock<std::mutex> Lock();
  // In a round (`mu` held): commits the round's transaction if one is open. A COMMIT that fails
  // keeps the transaction and is retried with backoff; if SQLite rolled it back instead, the
  // process exits (a restart applies those entries again from the Raft log).
  void CommitRoundTransaction();
  // `mu` held, no transaction open: the transaction of WriteWithDeferred.
  absl::Status WriteDeferredLocked(const std::function<absl::Status(sqlite::Database&)>& write);

 private:
  // In a round: begins its IMMEDIATE transaction (writing the deferred state first) unless it
  // is open; when stopping, nothing (the round's writes then run as transactions of their own).
  absl::Status OpenRoundTransaction();
  // Waits `backoff` without `mu` (and, in a round, without its transaction).
  void Backoff(std::chrono::milliseconds backoff);

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
  // Applies one entry; errors as Apply's.
  absl::Status ApplyOne(const raft::host::AppliedEntry& e);

  const int shard_;
  std::shared_ptr<SharedApplier> shared_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_
