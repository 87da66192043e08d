// Applies committed change batches of a shard to the local database, and makes and installs a
// shard's snapshot. This is the SQLite half of each shard's Raft state machine.
//
// Applying runs on marmot's own connection, with triggers disabled (replicated writes are not
// captured again, and the user's own triggers do not fire a second time) and foreign keys off
// (shards apply in different orders). One batch is one transaction that also records the
// shard's applied Raft index and the dedupe state, so a restart neither loses nor repeats an
// entry:
//
//   insert / update: INSERT OR REPLACE of the full row by key (a clash with another UNIQUE index
//                    resolves the same way on every node: the applied row wins)
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

#include <cstdint>
#include <map>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/shard_router.h"
#include "sqlite/database.h"

namespace marmot::replicator {

struct ApplyResult {
  int64_t applied = 0;
  int64_t duplicates = 0;     // Skipped: applied before (re-proposal).
  int64_t dead_lettered = 0;
  int64_t superseded = 0;     // Own changes skipped: a newer local change of the row is pending.
  bool stale_entry = false;   // The entry's index was already applied; nothing was done.
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
  absl::StatusOr<ApplyResult> Apply(int shard, uint64_t index, const change::v1::ChangeBatch& batch);

  // This node's id. A change that this node itself captured is skipped when the local change log
  // still holds a newer change of the same row: that newer change comes later in the same shard's
  // order, so the result is the same, but applying the older one first would show the
  // application an older version of a row it wrote (and a partial update made then would copy
  // it into a new change, losing the newer write). 0: never skip.
  void set_local_node(uint64_t node_id) { local_node_ = node_id; }

  // Records that `shard` reached `index` without changes (e.g. a membership entry).
  absl::Status AdvanceAppliedIndex(int shard, uint64_t index);

  // The shard's applied Raft index (0 when nothing was applied).
  absl::StatusOr<uint64_t> AppliedIndex(int shard);

  // The shard's rows of every table, its applied index and dedupe state, read in one read
  // transaction.
  absl::StatusOr<change::v1::ShardSnapshot> CreateSnapshot(int shard);

  // Replaces exactly the shard's rows by the snapshot's, and its applied index and dedupe state,
  // in one transaction. Rows of other shards are untouched. The applied index becomes `index`
  // when given (Raft's index of the snapshot), else the snapshot's own.
  absl::Status InstallSnapshot(const change::v1::ShardSnapshot& snapshot,
                               std::optional<uint64_t> index = std::nullopt);

  // Records an entry whose payload cannot be decoded as a dead letter and moves the shard past
  // it, in one transaction.
  absl::Status RecordUndecodable(int shard, uint64_t index, const std::string& payload,
                                 absl::string_view error);

  // Number of dead letters recorded so far.
  absl::StatusOr<int64_t> DeadLetterCount();

 private:
  struct TablePlan;  // How to write one table's changes, checked against the local schema.

  ChangeApplier(sqlite::Database db, const ShardRouter& router);
  absl::Status SetAppliedIndex(int shard, uint64_t index);
  // For each row identity (EncodeRowIdentity) touched by a change of `table`'s local change log
  // with id > `after_id`, the newest such id.
  absl::StatusOr<std::map<std::string, int64_t>> NewerLocalChanges(const std::string& table,
                                                                   int64_t after_id);
  uint64_t local_node_ = 0;

  // A statement prepared once and kept for the life of the connection, reset and ready to bind.
  absl::StatusOr<sqlite::Statement*> Cached(const std::string& sql);
  // Runs a cached statement with `values` bound, to completion.
  absl::Status RunCached(const std::string& sql, const std::vector<sqlite::Value>& values);
  // The plan of `table`, kept until the schema changes; an error status when the table is
  // missing or differs from the change's columns and key (the change goes to the dead letters).
  absl::StatusOr<const TablePlan*> Plan(const std::string& table,
                                        const std::vector<std::string>& columns,
                                        const std::vector<std::string>& key_columns);
  // Drops kept plans (and statements) when the schema changed since they were made.
  absl::Status CheckSchema();

  sqlite::Database db_;
  ShardRouter router_;
  std::unordered_map<std::string, std::unique_ptr<sqlite::Statement>> statements_;
  std::map<std::string, std::unique_ptr<TablePlan>> plans_;
  int64_t schema_version_ = -1;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_APPLIER_H_
