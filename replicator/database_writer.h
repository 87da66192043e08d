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
#ifndef MARMOT_REPLICATOR_DATABASE_WRITER_H_
#define MARMOT_REPLICATOR_DATABASE_WRITER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "replicator/change_applier.h"
#include "replicator/change_detector.h"
#include "sqlite/database.h"

namespace marmot::replicator {

class DatabaseWriter : public OwnWrites {
 public:
  // A step of work on the applier, run while its caller holds the turn.
  using Step = absl::FunctionRef<absl::Status(ChangeApplier&)>;
  // Names a step in logs; called only when the step failed.
  using What = absl::FunctionRef<std::string()>;

  explicit DatabaseWriter(std::unique_ptr<ChangeApplier> applier);
  DatabaseWriter(const DatabaseWriter&) = delete;
  DatabaseWriter& operator=(const DatabaseWriter&) = delete;

  // A run of apply work holding the writer's turn from construction to destruction (except
  // while it waits out a database failure). It lives on one thread at a time: the caller passes
  // it to whatever works inside the round. Destroying it commits the round's transaction, if one
  // was begun, and gives the turn up. A COMMIT that fails keeps the transaction and is retried
  // with backoff (holding the turn: the transaction is still open on the connection); one that
  // SQLite rolled back instead ends the process, since the host already counts the round's
  // entries as applied and only a restart applies them again from the Raft log. After
  // BeginShutdown() a failing COMMIT is rolled back (those entries are applied again at the next
  // start).
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
    // until it is done, waiting out database failures (see the top). After BeginShutdown() the
    // round begins no transaction and its writes run as transactions of their own. Returns OK,
    // Cancelled when shutting down, or `step`'s first other error.
    absl::Status Write(What what, Step step);
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

    // Whether the round's transaction is open.
    bool transaction_open() const { return transaction_open_; }
    DatabaseWriter& writer() const { return writer_; }

   private:
    friend class DatabaseWriter;
    // Begins the round's transaction unless it is open or the writer is shutting down.
    absl::Status OpenTransaction();
    // Commits the round's transaction if it is open (see the class comment).
    void CommitTransaction();
    // Waits `backoff` without the turn or the transaction, then takes the turn again.
    void Pause(std::chrono::milliseconds backoff);

    DatabaseWriter& writer_;
    bool transaction_open_ = false;
  };

  // Outside rounds: waits for the turn and runs `step` (which makes its own transaction, if
  // any) until it is done, waiting out database failures as a Round's writes do. Returns OK,
  // Cancelled when shutting down, or `step`'s first other error.
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

 private:
  class Turn;  // The turn held for a scope (one-off calls).

  // Waits until every turn asked for before is given up; the caller then holds the turn.
  void AcquireTurn();
  void ReleaseTurn();
  // Sleeps `backoff`, or less when shutdown begins.
  void Backoff(std::chrono::milliseconds backoff);
  // Run's and the Round's retry loop: `attempt` runs one try (holding the turn); between tries
  // `pause` waits out the backoff.
  absl::Status RunUntilDone(What what, absl::FunctionRef<absl::Status()> attempt,
                            absl::FunctionRef<void(std::chrono::milliseconds)> pause);
  // With the turn, no transaction open: WriteWithDeferred's transaction.
  absl::Status WriteDeferredTransaction(
      const std::function<absl::Status(sqlite::Database&)>& write);
  void SetTransactionOpen(bool open);

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
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DATABASE_WRITER_H_
