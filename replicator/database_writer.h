// DatabaseWriter: the one owner of marmot's writes to the database. It owns the ChangeApplier
// (marmot's write connection, and with it the deferred apply state, DeferredApplyState) and the
// transaction of the open apply round; every write of marmot goes through it: the shards' apply
// rounds, snapshots taken and installed, the shipper's marking, dead-letter retries.
//
// One user of the connection at a time holds the writer's turn: a Round for the whole of a run
// of apply work, or a one-off call (Run, RunOnce, WriteWithDeferred) for its duration. Turns are
// handed out in the order they were asked for. The writer's mutex is held only to hand turns
// over and to answer the change detector (OwnWrites), never while SQLite runs: whoever holds the
// turn uses the connection alone.
//
// A Round groups the host's apply round into one SQLite transaction: the first write begins an
// IMMEDIATE transaction (writing the deferred state first), the shards' applies inside run as
// savepoints of it, and the round's end commits it. One commit per round instead of one per
// entry is most of a follower's apply cost (every commit rewrites the pages of the applied-index
// and dedupe tables to the WAL, wakes the change detector and may checkpoint). The host bounds a
// round, so the application's writers wait for one short transaction at most. Entries that need
// no write (this node's own changes coming back, ChangeApplier::ApplyWithoutWriting) begin no
// transaction: on the origin of a write flood most rounds take no lock the application's writer
// could run into. What they leave is deferred, and written by the next transaction: a round's,
// or the shipper's marking (WriteWithDeferred). A snapshot is installed, or read, in a
// transaction of its own, after the round's transaction committed.
//
// A failure of the database itself (busy beyond the busy timeout, I/O, a full disk;
// IsDatabaseFailure) is waited out by Run and the Round's writes: the round's transaction is
// committed (what it applied stays applied), the turn is given up for a backoff of 10 ms
// doubling up to 1 s (logged every 20th time), and the step runs again from its start. After
// BeginShutdown() a retry gives up with Cancelled instead.
//
// A round's transaction that does not commit. On a full disk or an I/O error SQLite rolls the
// whole transaction back, at COMMIT or at the statement that met it, and the host already
// counts the round's entries as applied (it moved on, and resolved their proposals). So the
// round keeps every write it made in its open transaction (Write's steps own what they need)
// and, once the transaction is gone, waits and makes them again: the database has none of them
// then, and a redo is the same writes in the same order on the same state. The wait gives up
// the turn and holds no SQLite lock (one-off writes run meanwhile and fail or succeed on their
// own; the deferred state they may commit is of entries older than the round's writes); every
// backoff of up to 1 s ends with a try of the whole transaction again. The wait is logged at
// once and every 10 s ("database disk full: apply paused ...", apply_paused()); the apply
// worker, and so the shards' apply, stand still meanwhile while Raft keeps their log. Should
// the writes not come again (a failure that is not the database's), the process exits with
// kLostRoundExitCode: a restart applies them from the Raft log. After BeginShutdown() the wait
// gives up instead: the writer then refuses every later write with Cancelled (a later entry of
// a shard committed alone would skip the lost ones), and the next start applies them again.
#ifndef MARMOT_REPLICATOR_DATABASE_WRITER_H_
#define MARMOT_REPLICATOR_DATABASE_WRITER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "replicator/change_applier.h"
#include "replicator/change_detector.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// The exit code of a process whose apply round SQLite rolled back and could not be made again
// (see above): EX_IOERR of sysexits.h, as the Raft store's on a full disk
// (raft/host/storage_failure.h).
inline constexpr int kLostRoundExitCode = 74;

class DatabaseWriter : public OwnWrites {
 public:
  // A step of work on the applier, run while its caller holds the turn.
  using Step = absl::FunctionRef<absl::Status(ChangeApplier&)>;
  // A write of a round, kept to be made again (see the top): it owns everything it reads.
  using Redo = std::function<absl::Status(ChangeApplier&)>;
  // Names a step in logs; called only when the step failed.
  using What = absl::FunctionRef<std::string()>;

  explicit DatabaseWriter(std::unique_ptr<ChangeApplier> applier);
  DatabaseWriter(const DatabaseWriter&) = delete;
  DatabaseWriter& operator=(const DatabaseWriter&) = delete;

  // A run of apply work holding the writer's turn from construction to destruction (except
  // while it waits out a database failure). It lives on one thread at a time: the caller passes
  // it to whatever works inside the round. Destroying it commits the round's transaction, if one
  // was begun, and gives the turn up. A COMMIT that fails is rolled back, and the round's writes
  // are made again until they commit (see the top).
  class Round {
   public:
    // Waits for the turn, then reads what the local change logs gained (outside any
    // transaction, so that the round's transaction is shorter; ChangeApplier::
    // CatchUpLocalChanges), unless shutting down.
    explicit Round(DatabaseWriter& writer);
    ~Round();
    Round(const Round&) = delete;
    Round& operator=(const Round&) = delete;

    // Runs `step` in the round's transaction (begun if needed, after writing the deferred state)
    // until it is done, waiting out database failures (see the top), and keeps it while the
    // transaction is open, to make it again should SQLite roll the transaction back. After
    // BeginShutdown() the round begins no transaction and its writes run as transactions of
    // their own. Returns OK, Cancelled when shutting down or once a round's writes were lost,
    // or `step`'s first other error.
    absl::Status Write(What what, Redo step);
    // As Write, but in a transaction of `step`'s own (a snapshot install), after the round's
    // transaction committed.
    absl::Status WriteAlone(What what, Step step);
    // The no-write path: when the round's transaction is not open, runs `step` outside any
    // transaction and returns its result; `step` must write nothing (what it would write, it
    // defers). Returns false without running it when the transaction is open: the caller then
    // writes in it. Not retried.
    bool RunWithoutTransaction(absl::FunctionRef<bool(ChangeApplier&)> step);
    // Commits the round's transaction and the deferred state, then runs `read` outside any
    // transaction (it reads in one of its own while the application writes on: a snapshot).
    // Not retried: what `read` passed on cannot be taken back. Errors are the commit's of the
    // deferred state or `read`'s.
    absl::Status ReadCommitted(Step read);
    // Runs `check` (it writes nothing; in the round's transaction when that is open) until it
    // no longer fails as the database does, waiting as Write does (the round's transaction
    // committed): a wait that begins no transaction, so that the application's transactions do
    // not meet marmot's write lock at every try (ChangeApplier::HoldFor). Returns as Write.
    absl::Status Await(What what, Step check);

    // Whether the round's transaction is open.
    bool transaction_open() const { return transaction_open_; }
    DatabaseWriter& writer() const { return writer_; }

   private:
    friend class DatabaseWriter;
    // Begins the round's transaction unless it is open or the writer is shutting down.
    absl::Status OpenTransaction();
    // Commits the round's transaction if it is open; when it does not commit, makes its writes
    // again until they do (see the top; `cause`: the failure that led here, for the log). False
    // when they were lost (shutting down).
    bool CommitTransaction(const absl::Status& cause = absl::OkStatus());
    // With the turn, the round's transaction rolled back: BEGIN, the deferred state and every
    // kept write again, COMMIT. On failure nothing of it is left open.
    absl::Status WriteAgain();
    // Commits the round's transaction (`cause`: the failure that led here, for the log), then
    // waits `backoff` without the turn or the transaction, then takes the turn again.
    void Pause(std::chrono::milliseconds backoff, const absl::Status& cause);

    DatabaseWriter& writer_;
    bool transaction_open_ = false;
    // The writes made in the open transaction, in order.
    std::vector<Redo> written_;
  };

  // Why and since when a round waits for the database to take its writes again.
  struct ApplyPause {
    absl::Time since;
    std::string cause;  // "disk full", "I/O error", "busy" or "error"
  };

  // Outside rounds: waits for the turn and runs `step` (which makes its own transaction, if
  // any) until it is done, waiting out database failures as a Round's writes do. Returns OK,
  // Cancelled when shutting down, or `step`'s first other error.
  //
  // These three refuse with Cancelled, running nothing, once a round's writes were lost (see
  // the top).
  absl::Status Run(What what, Step step);
  // Outside rounds: waits for the turn and runs `step` once; returns its result.
  absl::Status RunOnce(Step step);
  // Outside rounds: runs `write` (may be null) in one IMMEDIATE transaction on the applier's
  // connection, after writing the deferred state, and commits both. Not retried: on any error
  // nothing is committed and the state stays deferred for the next transaction.
  absl::Status WriteWithDeferred(
      const std::function<absl::Status(sqlite::Database&)>& write = nullptr);

  // OwnWrites: blocks while a round's transaction is open, at most `timeout`; whether one was.
  bool AwaitEnd(std::chrono::microseconds timeout) override;

  // From now on database failures are not waited out: retries end with Cancelled, a backoff
  // under way ends at once. One-off writes (WriteWithDeferred at stop) still run.
  void BeginShutdown();
  bool shutting_down() const;

  // While a round waits for the database to take its rolled-back writes again: since when and
  // why (for metrics and status). Any thread.
  std::optional<ApplyPause> apply_paused() const;

 private:
  class Turn;  // The turn held for a scope (one-off calls).

  // Waits until every turn asked for before is given up; the caller then holds the turn.
  void AcquireTurn();
  void ReleaseTurn();
  // Sleeps `backoff`, or less when shutdown begins.
  void Backoff(std::chrono::milliseconds backoff);
  // Run's and the Round's retry loop: `attempt` runs one try (holding the turn); between tries
  // `pause` waits out the backoff.
  absl::Status RunUntilDone(
      What what, absl::FunctionRef<absl::Status()> attempt,
      absl::FunctionRef<void(std::chrono::milliseconds, const absl::Status&)> pause);
  // With the turn, no transaction open: WriteWithDeferred's transaction.
  absl::Status WriteDeferredTransaction(
      const std::function<absl::Status(sqlite::Database&)>& write);
  void SetTransactionOpen(bool open);
  // Cancelled once a round's writes were lost (see the top), else OK.
  absl::Status Refusal() const;
  void SetPaused(std::optional<ApplyPause> pause);

  // Used only by the holder of the turn, never by two threads at once: not guarded by mu_,
  // which is not held while SQLite runs.
  const std::unique_ptr<ChangeApplier> applier_;

  mutable absl::Mutex mu_;
  // Turns in order: the next one to hand out, and the one now held (or next to be, when none
  // is held; the turn is free when serving_ == next_turn_).
  uint64_t next_turn_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t serving_ ABSL_GUARDED_BY(mu_) = 0;
  // A round's transaction is open (for AwaitEnd).
  bool transaction_open_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_round_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<ApplyPause> paused_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DATABASE_WRITER_H_
