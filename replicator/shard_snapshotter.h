// The rows of a shard's snapshot: writes the shard's dedupe state, rows and dead letters from
// the applier's connection to a snapshot stream, and replaces the shard's rows here by those a
// snapshot holds (a table that cannot be installed here becomes a snapshot-rows dead letter).
// What a snapshot holds and why is in change_applier.h ("Snapshots"); ChangeApplier holds the
// transaction, the applied index and dedupe state, and applies the carried dead letters.
// Every call runs inside a transaction of the caller on `db`.
#ifndef MARMOT_REPLICATOR_SHARD_SNAPSHOTTER_H_
#define MARMOT_REPLICATOR_SHARD_SNAPSHOTTER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/conflict_store.h"
#include "replicator/dead_letter_store.h"
#include "replicator/row_versions.h"
#include "replicator/shard_router.h"
#include "replicator/snapshot_stream.h"
#include "replicator/table_writer.h"
#include "sqlite/database.h"
#include "sqlite/schema.h"

namespace marmot::replicator {

struct InstallResult {
  // Tables whose rows could not be installed here: kept as snapshot-rows dead letters.
  int64_t rows_kept = 0;
  // The snapshot's dead letters (see "Snapshots" in change_applier.h):
  int64_t carried_applied = 0;  // Applied here (or superseded by a pending local change).
  int64_t carried_kept = 0;     // Recorded as dead letters here.
};

// A row an install left as this node's application wrote it (a change of it, not applied in the
// shard yet, comes later than the snapshot), with what the snapshot holds of it.
struct KeptRow {
  std::string table;
  std::vector<sqlite::Value> key;
  // The snapshot's row (columns in `header`), or nullopt when the snapshot does not have it.
  std::optional<change::v1::SnapshotRow> snapshot_row;
  change::v1::ShardSnapshot::Table header;
};

// Values per row of a snapshot table, or 0 when its values do not divide into rows.
size_t SnapshotRowWidth(const change::v1::ShardSnapshot::Table& t);

// Snapshot row `row` of table `header` as the insert of change `change_id`: the table's changes
// holding that one change.
change::v1::TableChanges SnapshotRowAsInsert(const change::v1::ShardSnapshot::Table& header,
                                             const change::v1::SnapshotRow& row, int64_t change_id);

// The newest change of this node to `table` that `shard` applied here, 0 if none
// (AppliedState::LastChange).
using OwnChangesApplied =
    absl::FunctionRef<absl::StatusOr<int64_t>(int shard, const std::string& table)>;

// A snapshot payload that cannot be read now: it was checked whole when it arrived, so the file
// changed since (or this is a bug). FailedPrecondition: trying again would change nothing.
absl::Status SnapshotUnreadable(const absl::Status& s);

class ShardSnapshotter {
 public:
  // `db`, `router` and `dead_letters` (the applier's) outlive the snapshotter.
  ShardSnapshotter(sqlite::Database& db, const ShardRouter& router, DeadLetterStore& dead_letters,
                   RowVersions& versions, ConflictStore& conflicts)
      : db_(db),
        router_(router),
        dead_letters_(dead_letters),
        versions_(versions),
        conflicts_(conflicts) {}

  // Writes `shard`'s dedupe state, its rows' versions and conflicts, its rows of every table and
  // its dead
  // letters (oldest first)
  // to `out`, after out.Start() and before out.Finish(), inside a read transaction. Errors are
  // the database's or `out`'s.
  absl::Status Write(int shard, ShardSnapshotWriter& out);

  // Inside the install's write transaction, `in` past its header: replaces `shard`'s rows of
  // every local table by the tables `in` reads next (up to its dead letters), except rows that
  // `local_node` (0: none) changed after what the snapshot holds of it, and deletes the shard's
  // dead letters at or below `at`. A snapshot row whose write would replace, through another
  // UNIQUE index than its key, a row with a change of `local_node` that its shard has not
  // applied (`own_applied` says what the other shards applied) is not written: it is kept as
  // a conflict at once (KeepDisplacedNow), as every node keeps it once that change applies there.
  // A table that cannot be installed here becomes a
  // snapshot-rows dead letter (counted in result.rows_kept). Errors: the database's,
  // SnapshotUnreadable, ResourceExhausted when a dead letter does not fit.
  // The rows left as they are go to `kept` (may be null).
  absl::Status ReplaceRows(int shard, uint64_t at, uint64_t local_node,
                           OwnChangesApplied own_applied, ShardSnapshotReader& in,
                           InstallResult& result, std::vector<KeptRow>* kept = nullptr);

  // Replaces `shard`'s rows of the table of snapshot rows `t` (a snapshot-rows dead letter
  // retried) by them, inside a savepoint: a refusal (the table differs here, rows that do not
  // divide into rows, a row of another shard, a row a constraint refuses) writes nothing; a
  // database failure leaves the savepoint to the caller's rollback.
  absl::Status ReplaceWithSnapshotRows(int shard, const change::v1::ShardSnapshot::Table& t);

 private:
  // A row of a table with a change of this node in the local log that its shard has not applied.
  struct PendingOwn {
    int64_t change_id = 0;    // The newest such change.
    bool this_shard = false;  // Of the shard installed: the install leaves the row as it is.
  };
  // Such rows of a table by key (EncodeRowIdentity without the table).
  using PendingRows = absl::flat_hash_map<std::string, PendingOwn>;

  // Deletes `shard`'s rows of the local table `table`, but none whose key is in `keep` (may be
  // null).
  absl::Status DeleteShardRows(int shard, const sqlite::TableSchema& table,
                               const PendingRows* keep = nullptr);
  // Per table, the rows with a change of `local_node` pending in the local log: of `shard`, those
  // a snapshot with dedupe state `applied` does not hold (the rule: KeepRowsWithOwnChangesAbove);
  // of other shards, those above what `own_applied` says they applied.
  absl::StatusOr<std::map<std::string, PendingRows>> RowsWithLaterOwnChanges(
      int shard, uint64_t local_node,
      const std::vector<change::v1::ShardSnapshot::Applied>& applied,
      const std::vector<sqlite::TableSchema>& tables, OwnChangesApplied own_applied);
  // Installs the rows of the snapshot table `header` that `in` reads next (leaving this shard's
  // rows in `pending`, may be null, as they are; keeping a row that would replace any row in it
  // as a conflict of `local_node`'s change), or keeps them as a snapshot-rows dead letter.
  // The snapshot's rows of kept keys go to `seen` (identity -> row), may be null.
  absl::Status InstallTable(int shard, uint64_t snapshot_index, uint64_t local_node,
                            const change::v1::ShardSnapshot::Table& header, ShardSnapshotReader& in,
                            const PendingRows* pending, InstallResult& result,
                            std::map<std::string, change::v1::SnapshotRow>* seen);
  // Keeps snapshot row `row` of `header` as a conflict at once, unwritten, when its write with
  // `writer` would replace a row in `pending` (see ReplaceRows). Whether it was kept.
  absl::StatusOr<bool> KeptForPendingOwnChange(int shard, uint64_t snapshot_index,
                                               uint64_t local_node, const TableWriter& writer,
                                               const change::v1::ShardSnapshot::Table& header,
                                               const change::v1::SnapshotRow& row,
                                               const PendingRows& pending);

  sqlite::Database& db_;
  const ShardRouter& router_;
  DeadLetterStore& dead_letters_;
  RowVersions& versions_;
  ConflictStore& conflicts_;
  // Per table, identity -> key values of the rows RowsWithLaterOwnChanges found.
  std::map<std::string, std::map<std::string, std::vector<sqlite::Value>>> kept_keys_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_SNAPSHOTTER_H_
