// Applies committed change batches of a shard to the local database, and makes and installs a
// shard's snapshot. This is the SQLite half of each shard's Raft state machine.
//
// Its parts: the rules that decide what becomes of each entry and change (apply_decider.h, no
// SQLite), the answers to the decider's questions (change_view.h), the statements that write a
// table's changes (table_writer.h) and their cache (table_plans.h), the applied index and
// dedupe state (applied_state.h), the dead letters (dead_letter_store.h) and their retry
// (dead_letter_retrier.h), and the rows of a snapshot (shard_snapshotter.h). ChangeApplier owns
// the connection and the transactions, applies batches, and hands the rest to its parts.
//
// Applying runs on marmot's own connection, with triggers disabled (replicated writes are not
// captured again, and the user's own triggers do not fire a second time) and foreign keys off
// (shards apply in different orders). One batch is one transaction that also records the
// shard's applied Raft index and the dedupe state, so a restart neither loses nor repeats an
// entry:
//
//   insert / update: INSERT OR REPLACE of the full row by key (a clash with another UNIQUE index
//                    resolves the same way on every node: the applied row wins); a change that
//                    carries fewer columns than the local table has (read before a column was
//                    added there) updates the columns it carries and leaves the others, or
//                    inserts with their defaults
// A change whose columns are not all in the local table, or whose key differs, cannot apply.
//   rekey:           delete the old key, then the same upsert
//   delete:          delete by key
//
// Dedupe: each change carries (origin node, table, change id). Per shard the newest id applied
// for each (origin, table) is kept; a change at or below it is skipped as a re-proposal. This is
// exact as long as an origin proposes a table's changes to a shard in increasing id order, one
// batch in flight per shard at a time (the proposer's contract).
//
// A change that cannot be applied (its table is missing, its columns differ from the local
// schema, a constraint fails) is never dropped silently and never wedges the shard: it goes to
// `__marmot__dead_letters` with its error, and the rest of the batch applies.
//
// Dead letters are this node's own: each node keeps those of the changes it could not apply.
// A row of `__marmot__dead_letters` is one of three kinds, told apart by its columns:
//
//   a change:       origin set; `change` is a TableChanges holding that one change
//   snapshot rows:  origin NULL, tbl set; `change` is the ShardSnapshot.Table of a table that
//                   could not be installed (its rows in that shard)
//   undecodable:    tbl NULL; `change` is the Raft entry's payload as it came
//
// Per-row order. Dead-lettering a change and applying a later change of the same row would let
// a retry of the older one overwrite the newer version: this node would differ from the others
// forever. So while a row has a dead letter, every later change of that row (its identity as
// the router hashes it; a rekey touches two) is dead-lettered as well, "queued behind" the first,
// and snapshot rows of a table hold back every later change of that table in their shard. The
// rows concerned are kept in memory (DeadLetterIndex): loaded at Open(), changed with the table,
// read again from the table at every retry and whenever the dead letter that blocks a change
// turns out to be gone (an operator deleted it by hand). While there are no dead letters the
// check costs nothing.
//
// RetryDeadLetters() applies dead letters again, in id order, in steps; see there. Ids
// are rowids handed out in apply order: a new dead letter's id is above every existing one (an
// id freed at the top may be handed out again, so an operator's id names what is there now).
// Dedupe is unaffected: a dead-lettered change counted as applied for dedupe when it was
// dead-lettered (its id was recorded in `__marmot__applied` in the same transaction), so a
// re-proposal of it is skipped whether or not it was retried since, and a retry does not touch
// the dedupe state or the applied index.
//
// Snapshots. A snapshot holds the shard's rows as the node that made it has them, its dedupe
// state, and its dead letters of the shard (all three kinds, oldest first). The rows lack the
// changes of those dead letters (they never applied there) while the dedupe state counts them
// as applied: for the rows they concern, the rows are the state BEFORE those changes, and the
// dead letters are the rest of those rows' history up to the snapshot's index. (The maker's
// applications may have written such a row since; that write is a change ordered after the
// dead letters, so applying them first and the write later ends where the others end.) Without
// them a node installing the snapshot would silently differ from the nodes that applied them,
// and their re-proposals would be skipped as duplicates. Installing one, in one transaction:
//
//   1. The shard's rows here are replaced by the snapshot's. This node's own dead letters of the
//      shard at or below the index are superseded and deleted (logged with their number):
//      their entries are part of the snapshot, applied or carried. (The host installs a
//      snapshot only above the applied index, so none of the shard's stays; one of a later
//      entry, which a caller installing below its applied index would keep, would come before
//      the carried ones in id order.) A snapshot table that cannot be installed here (missing
//      or different here, a row a constraint of this node refuses, a row whose key routes to
//      another shard) becomes a snapshot-rows dead letter holding all its rows in the shard,
//      which the carried changes of that table then queue behind.
//   2. The carried dead letters then go through in their order, each the way RetryDeadLetters
//      would retry it: applied when it can be (this node then has the change, as the nodes that
//      applied it have), otherwise recorded here as a dead letter with its original raft index,
//      origin, table, change id and change, and the error it met here. Per-row order holds
//      across them: once one of a row's letters is recorded here (or snapshot rows of its table
//      were, in step 1), the row's later ones are recorded behind it without being tried.
//      An own change whose row has a newer change in the local change log is skipped, as
//      a retry skips it: that newer change comes later in the shard's order. Undecodable
//      entries are recorded as they came.
//   3. The dedupe state and applied index become the snapshot's. Carried changes are counted in
//      it already (their maker counted them when it dead-lettered them), so a re-proposal of
//      one is skipped here whether it applied in step 2 or waits as a dead letter; a later
//      retry does not touch the dedupe state either.
//
// The snapshot is read as a stream of pieces (snapshot_stream.h): the dedupe state first, then
// table by table, rows in chunks, inside a savepoint per table; a table refused part-way is read
// again from its first rows into its dead letter (bounded by what one SQLite value holds). An
// install that cannot keep what it must keep (-max-dead-letters reached, a table too large for
// one dead letter) or whose payload no longer reads fails whole and changes nothing.
// A node that installs its own snapshot again (the host does at a start when the database is
// behind the log's start) gets its own dead letters of the shard back the same way.
//
// Cost. Statements are prepared once per connection and kept; each table's plan (its local
// schema, checked against the change's) is kept until the database's schema_version changes.
// A change runs without a SAVEPOINT when it is one statement (SQLite undoes a failed statement
// by itself); only a rekey (delete plus upsert) runs inside one. The connection commits with
// synchronous=NORMAL (WAL): a commit is atomic and survives a crash of any process, but does not
// wait for the disk; after a power loss the last commits may be undone together with the applied
// index they recorded, and the host applies those entries again from its durable Raft log (or
// installs the shard's snapshot) at the next start, as after any restart.
#ifndef MARMOT_REPLICATOR_CHANGE_APPLIER_H_
#define MARMOT_REPLICATOR_CHANGE_APPLIER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/change.pb.h"
#include "replicator/applied_state.h"
#include "replicator/change_view.h"
#include "replicator/conflict_store.h"
#include "replicator/dead_letter_retrier.h"
#include "replicator/dead_letter_store.h"
#include "replicator/displaced_rows.h"
#include "replicator/local_change_index.h"
#include "replicator/row_versions.h"
#include "replicator/schema_changes.h"
#include "replicator/shard_router.h"
#include "replicator/shard_snapshotter.h"
#include "replicator/snapshot_stream.h"
#include "replicator/table_plans.h"
#include "sqlite/database.h"

namespace marmot::replicator {

struct ApplyResult {
  int64_t applied = 0;
  int64_t duplicates = 0;  // Skipped: applied before (re-proposal).
  int64_t dead_lettered = 0;
  int64_t superseded = 0;  // Own changes skipped: a newer local change of the row is pending.
  int64_t unchanged = 0;   // Own changes (counted in applied) whose row already held them.
  // Schema changes (schema_changes.h): applied or already so; conflicting (kept as they are
  // here); refused.
  int64_t schema_applied = 0;
  int64_t schema_conflicts = 0;
  int64_t schema_refused = 0;
  // Changes made without seeing their row's version, kept in the conflicts table (not applied).
  int64_t conflicts = 0;
  // Other nodes' changes that won over this node's changes of their rows not applied yet: held
  // until those lose (counted in applied).
  int64_t held = 0;
  bool stale_entry = false;  // The entry's index was already applied; nothing was done.
};

class ChangeApplier {
 public:
  // Opens marmot's applying connection to `db_path` and creates marmot's state tables if needed.
  static absl::StatusOr<std::unique_ptr<ChangeApplier>> Open(const std::string& db_path,
                                                             const ShardRouter& router);
  ~ChangeApplier();

  // Applies the batch committed at Raft `index` of `shard`, in one transaction. An index at or
  // below the shard's applied index is skipped (stale_entry). Errors only when the database
  // itself fails (busy beyond the timeout, disk full); the caller retries then.
  absl::StatusOr<ApplyResult> Apply(int shard, uint64_t index,
                                    const change::v1::ChangeBatch& batch);

  // This node's id. A change that this node itself captured is skipped when the local change log
  // still holds a newer change of the same row: that newer change comes later in the same shard's
  // order, so the result is the same, but applying the older one first would show the
  // application an older version of a row it wrote (and a partial update made then would copy
  // it into a new change, losing the newer write). Likewise another node's change is skipped
  // when the local log holds a change of the same row not yet applied in its shard: that one
  // comes later in the shard's order and overwrites it everywhere. It must be skipped, not
  // applied: the local change carries its row as read when it is shipped (sqlite/change_log.h),
  // and would carry the other node's values instead of what this node's application wrote.
  // Skipped for the columns the local change carries only: one read before a column existed
  // here leaves that column to the other node's change on every node, so it is written here too
  // (set_shipped_columns).
  // Own changes of a table this node no longer has, or whose columns changed since they were
  // read, write nothing (the row is what this node's application left). 0: never skip.
  void set_local_node(uint64_t node_id) { state_.local_node = node_id; }
  // The columns this node's changes were shipped with (must outlive the applier): another node's
  // change is then skipped only for the columns that the local changes coming after it carry,
  // and writes the others (ChangeView::LocalChangeNotYetApplied). Null: skipped whole.
  void set_shipped_columns(const ShippedColumns* shipped) { state_.shipped = shipped; }

  // Another node's entries wait while this node's own schema moves (a migration running here:
  // a local process changed the schema, and DiffSchema finds it), until it stood still for
  // `quiet`: Apply fails with Unavailable meanwhile, which the caller waits out as a busy
  // database. The migration then runs on the schema and rows it made itself, as if alone, and
  // the other nodes' changes of the same migration meet what it made (an object that exists
  // with the same SQL is already so, ApplySchemaChange). Zero (the default): never held.
  // Held no longer than `at_most` from when the schema began to move (a schema that never
  // stands still does not stop the apply).
  void set_own_schema_quiet(absl::Duration quiet,
                            absl::Duration at_most = absl::InfiniteDuration()) {
    own_schema_quiet_ = quiet;
    own_schema_quiet_at_most_ = at_most;
  }
  // Also held while `*pending` (the shipper's: a schema change found here that waits to be
  // proposed, ShipperOptions::schema_pending): this node's change goes first. Must outlive the
  // applier; null: not asked.
  void set_own_schema_pending(const std::atomic<bool>* pending) { own_schema_pending_ = pending; }
  // HeldForOwnSchema when Apply would hold `batch` now; it writes nothing (DatabaseWriter::
  // Round::Await waits on it before the apply's transaction).
  absl::Status HoldFor(const change::v1::ChangeBatch& batch);

  // Reads what the local change logs gained since the last apply, outside any transaction, so
  // that the next Apply holds the database's write lock for less time (LocalChangeIndex::
  // CatchUpKnown). Only worth it before a write transaction; a no-op without a local node.
  void CatchUpLocalChanges() {
    if (state_.local_node != 0) local_changes_.CatchUpKnown(db_);
  }

  // The applying connection, for a caller that groups several calls into one transaction
  // (DatabaseWriter's rounds); every call here then runs as a savepoint of it.
  sqlite::Database& database() { return db_; }

  // Applies the entry at Raft `index` of `shard` without a write transaction when it needs no
  // write: an entry of this node's own changes, each a duplicate, superseded by a newer local
  // change, or already held by its row (known to LocalChangeIndex, or else read), in a table
  // without other UNIQUE constraints, while no dead letter exists (DecideUnwrittenEntry,
  // TableMayGoUnwritten, DecideBatchChange). Its applied index and dedupe state are deferred
  // (DeferredApplyState; written by the next WriteDeferred). Nothing, and nothing changed, when
  // the entry needs a write or a transaction is open on the connection (the caller then uses
  // Apply). Errors only when the database itself fails.
  absl::StatusOr<std::optional<ApplyResult>> ApplyWithoutWriting(
      int shard, uint64_t index, const change::v1::ChangeBatch& batch);
  // Writes the deferred state inside the caller's transaction on database(); DeferredCommitted()
  // after that transaction committed.
  absl::Status WriteDeferred() {
    if (absl::Status s = applied_.deferred().Write(db_); !s.ok()) return s;
    return versions_.WriteDeferred();
  }
  void DeferredCommitted() {
    applied_.deferred().Committed();
    versions_.DeferredCommitted();
  }
  // The caller's transaction on database() was rolled back (by SQLite, after a full disk or an
  // I/O error): what this applier keeps in memory of the writes made in it (the dead-letter
  // index, the local change index) is read again from the database. The deferred state stays
  // deferred. Call it outside any transaction.
  void TransactionRolledBack();
  bool has_deferred() const { return !applied_.deferred().empty() || versions_.has_deferred(); }

  // Records that `shard` reached `index` without changes (e.g. a membership entry).
  absl::Status AdvanceAppliedIndex(int shard, uint64_t index);

  // The shard's applied Raft index (0 when nothing was applied), deferred entries included.
  absl::StatusOr<uint64_t> AppliedIndex(int shard);

  // Writes the shard's snapshot to `out` (Start to Finish): its applied index, dedupe state, the
  // shard's rows of every table and its dead letters, streamed from one read transaction (the
  // application writes on meanwhile). Errors are the database's or `out`'s; what was written is
  // then of no use.
  absl::Status CreateSnapshot(int shard, ShardSnapshotWriter& out);

  // Installs the snapshot `in` reads (from its start), in one transaction: replaces exactly the
  // snapshot's shard's rows by the snapshot's, and its applied index and dedupe state, then
  // applies the snapshot's dead letters or records them here (see "Snapshots" above). Rows of
  // other shards are untouched. The applied index becomes `index` when given (Raft's index of
  // the snapshot), else the snapshot's own. A table whose rows cannot be installed here (missing
  // or different table, a constraint that fails, a row whose key routes to another shard: that
  // shard orders it) becomes a snapshot-rows dead letter and the install goes on. Errors change
  // nothing: a database failure (IsDatabaseFailure; the caller tries again later), or one that
  // trying again cannot fix: FailedPrecondition when the payload cannot be read,
  // ResourceExhausted when its dead letters do not fit (set_max_dead_letters, or a table's rows
  // too large for one dead letter).
  absl::StatusOr<InstallResult> InstallSnapshot(ShardSnapshotReader& in,
                                                std::optional<uint64_t> index = std::nullopt);

  // The most dead letters this node keeps. A change, snapshot table or carried dead letter that
  // would be one more fails its apply or install with ResourceExhausted instead (the shard then
  // halts, ShardStateMachine). Counted over the whole node.
  void set_max_dead_letters(int64_t max) { dead_letters_.set_max(max); }

  // Records an entry whose payload cannot be decoded as a dead letter and moves the shard past
  // it, in one transaction.
  absl::Status RecordUndecodable(int shard, uint64_t index, const std::string& payload,
                                 absl::string_view error);

  // Number of dead letters recorded so far.
  absl::StatusOr<int64_t> DeadLetterCount();

  // Carries out the next step of `retry` in one transaction: applies the next dead letters it
  // selects again, in id order, while `more` says so (asked after each; at least one) and at
  // most retry.max_per_step() of them, the way Apply() applies changes (upsert, delete, rekey;
  // triggers off; an own change superseded by a newer one still in the local change log is
  // skipped). Snapshot rows replace the shard's rows of their table. Each one that applies is
  // deleted; one that fails again keeps its place with its new error. A dead letter is not
  // applied while an earlier dead letter of the same row (or snapshot rows of its table and
  // shard) remains, whether that one was not selected or failed again: it counts as still
  // failing. Undecodable entries always count as still failing. `retry` moves on when the step
  // commits. The first step reads the dead letters from the table (an operator may have edited
  // it) and fails with NOT_FOUND, nothing done, when a selected id does not exist. Other errors
  // only when the database itself fails (the step changed nothing; it can be run again).
  absl::Status RetryDeadLetters(DeadLetterRetry& retry, absl::FunctionRef<bool()> more);
  // Every step of DeadLetterRetry(ids) back to back (each its own transaction); the totals.
  // On an error, the steps before it stay done.
  absl::StatusOr<RetryResult> RetryDeadLetters(const std::vector<int64_t>& ids);

 private:
  ChangeApplier(sqlite::Database db, const ShardRouter& router);
  absl::StatusOr<ApplyResult> ApplyInTransaction(int shard, uint64_t index,
                                                 const change::v1::ChangeBatch& batch);
  // Drops kept plans (and statements) and the local change index when the schema changed.
  absl::Status CheckSchema();
  // Applies `changes` (of an entry or a snapshot: `from`, for the log; `own`: made by this
  // node; `shard0_index`: the entry's, 0 for a snapshot) inside the caller's transaction,
  // counting them in `result`.
  absl::Status ApplySchemaChanges(
      const google::protobuf::RepeatedPtrField<change::v1::SchemaChange>& changes,
      const std::string& from, bool own, ApplyResult& result, uint64_t shard0_index = 0);
  // Makes the schema of snapshot `in` of `shard` (installed at `at`) so here, inside the
  // install's transaction: what this node lacks is made; a snapshot of shard 0 (which orders
  // schema changes, and the node goes on from its index there) also drops first what its
  // maker's schema no longer has (DropsOfSnapshotSchema), logged. Returns what it made that
  // this node dropped after the snapshot's schema (DroppedSinceSnapshot), to drop again once
  // the snapshot's rows are in.
  absl::StatusOr<DroppedSince> InstallSnapshotSchema(ShardSnapshotReader& in, int shard,
                                                     uint64_t at);
  // Commits `txn`; the dead-letter index then matches the table again.
  absl::Status Commit(sqlite::Transaction& txn);
  // Keeps change `c` of `t` from `origin` (at Raft `index` of `shard`), which lost to the
  // version of its row `view` read. An own change whose row waits for a held version (and has no
  // newer local change that will lose too) gets that version written now.
  // Where a write of `origin`'s change at `index` of `shard` keeps the rows it displaces.
  DisplacingWrite Displacing(int shard, uint64_t index, uint64_t origin);
  absl::Status KeepConflict(int shard, uint64_t index, uint64_t origin, bool own,
                            const change::v1::TableChanges& t, const change::v1::Change& c,
                            ChangeView& view, ApplyResult& result);
  // A change `kept` (KeptAtOnce; `t` as here, planned `plan`), to be written back because this
  // node's change it was kept for lost: when its write would replace yet another row whose
  // change of this node is not applied yet, it is kept at once for that change in turn
  // (KeepDisplacedNow), as it would have been had the loser not been there, instead of written.
  // Whether it was.
  absl::StatusOr<bool> KeptAgainForAnotherOwnChange(const KeptAtOnce& kept,
                                                    const change::v1::TableChanges& t,
                                                    const TablePlan& plan);
  // Writes the version `version` of row `key` of `table` holds (RowVersion::held) into the row,
  // and records that the row holds it.
  absl::Status WriteHeld(int shard, const std::string& table, const std::string& key,
                         RowVersion version);
  // After a snapshot's install: rows this node kept (its own changes of them come later) wait
  // for their version when it is another node's; the versions the snapshot's maker held are
  // written into the other rows.
  absl::Status SettleHeldVersions(int shard,
                                  const std::vector<std::pair<std::string, std::string>>& held,
                                  const std::vector<KeptRow>& kept);
  // HeldForOwnSchema while this node's own schema moved less than own_schema_quiet_ ago, or its
  // change waits to be proposed.
  absl::Status HoldWhileOwnSchemaMoves();

  sqlite::Database db_;
  ShardRouter router_;
  RowVersions versions_;
  ConflictStore conflicts_;
  DeadLetterStore dead_letters_;
  ShardSnapshotter snapshotter_;
  AppliedState applied_;  // Deferred entries included.
  ApplierState state_;    // What the decider's questions read; its local_node is this node's.
  TablePlans plans_;
  LocalChangeIndex local_changes_;  // Consulted when state_.local_node is set.
  DeadLetterRetrier retrier_;
  // The schema_version this applier last saw or left, and when a local process last moved it.
  absl::Duration own_schema_quiet_ = absl::ZeroDuration();
  const std::atomic<bool>* own_schema_pending_ = nullptr;
  int64_t schema_version_seen_ = -1;
  absl::Time own_schema_moved_ = absl::InfinitePast();
  absl::Duration own_schema_quiet_at_most_ = absl::InfiniteDuration();
  absl::Time own_schema_moving_since_ = absl::InfinitePast();  // Since when it holds.
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_APPLIER_H_
