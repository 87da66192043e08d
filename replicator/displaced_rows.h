// Rows a replicated write deletes through another UNIQUE index than its key: kept, never lost.
//
// The applier writes a change with INSERT OR REPLACE (table_writer.h). In a table with a UNIQUE
// constraint besides its key, the upsert deletes any row of another key holding a value it
// writes to that constraint's columns: two nodes that gave one email to two rows concurrently
// end, in the shard's order, with the later write's row only. Such a deleted row is kept in
// `__marmot__conflicts` (conflict_store.h), as a conflict the later write won: its values as
// they were, as an insert made by the change that was its row's version (or, when it had none, by
// origin 0 and a negative id made of its key and the entry), with the winner's origin and change
// id. Its version becomes the winner's when the row is in the same shard, so a change of it made
// without seeing its removal is a conflict too; a row of another shard keeps its version, and a row
// without one stays without. A row whose version is the winner's own origin is not kept: that node
// gave the value away itself (its change of that row may still be on its way in another shard);
// unless the winner's change was read before a schema change this node has applied (its batch's
// schema epoch is older than this node's): its origin may not have had the UNIQUE index then,
// and held both rows (a UNIQUE index made on another node while it held rows that break it).
// A row whose version is held here (row_versions.h: this node's row still holds what its
// application wrote) is kept as every other node holds it, with the held change's values; not
// at all when that change left no row of its key there (a delete, a rekey away). And a held row
// the write replaces on the other nodes, through a value the held change gave it, but not here
// (this node's application moved it off that value since; learnt by a trial write over the
// held rows written as the others hold them, only when the table has held versions) is kept
// the same, and its held change becomes its delete: when this node's own change of it loses,
// the row goes here too, as it went everywhere else.
//
// Every node applies a shard in one order and decides the same; a node whose own change not yet
// applied holds the value keeps the other node's change at once instead (ChangeApplier,
// kKeepDisplaced), only when its write would really replace that row here (a trial write: a
// partial index holds only some rows), and deletes the change's row here, as it ends on every
// node. Until that own change applies, the kept change stands for its row's version as on the
// nodes that wrote it: a change made over it is seen (written, or kept at once in its place,
// and the older conflict goes, ChangeView::kept_at_once). If that own change loses a conflict of
// its own row, it replaces nothing anywhere, and the changes kept at once for it are written
// (TakeKeptAtOnce). Probes compare as each index does (its collation, not the column's).
// Rows of two shards meet in no single order: with more than one shard, which
// of two such rows survives may differ between nodes (Verify finds it), and neither is lost.
// Unique indexes that no probe can ask about (on an expression, on a generated column) are
// learnt by a trial write rolled back: SQLite's preupdate hook names the rows it deletes, read
// as they were before the real write (RowsATrialWriteReplaces); only such tables pay for it. A
// kept row holds the table's writable columns only: generated ones are computed on every node.
#ifndef MARMOT_REPLICATOR_DISPLACED_ROWS_H_
#define MARMOT_REPLICATOR_DISPLACED_ROWS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/conflict_store.h"
#include "replicator/row_versions.h"
#include "replicator/shard_router.h"
#include "replicator/table_writer.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// Where a write happens: the stores it keeps displaced rows in, and the entry it belongs to.
struct DisplacingWrite {
  sqlite::Database& db;
  RowVersions& versions;
  ConflictStore& conflicts;
  const ShardRouter& router;
  int shard = 0;
  uint64_t raft_index = 0;
  uint64_t origin = 0;  // The node whose change is written.
  // Whether that node had every schema change this node has applied when it read the change
  // (its batch's schema epoch is this node's or later): then it had this node's UNIQUE indexes.
  bool origin_had_schema = true;
  // Writes a change held here (a held version's, row_versions.h) as the nodes that applied it
  // wrote it, nothing kept: for a trial of what a write replaces there. Unset: rows whose
  // version is held are taken as this node holds them.
  std::function<absl::Status(const change::v1::TableChanges& held)> write_held;
};

// Writes change `c` of `t` with `write` (which writes it with `w`, or some of its columns) and
// keeps, inside the caller's transaction, the rows of other keys the write deleted (see above).
// Returns how many were kept; the write's own error when it failed (nothing is kept then).
absl::StatusOr<int64_t> WriteKeepingDisplaced(const DisplacingWrite& at, const TableWriter& w,
                                              const change::v1::TableChanges& t,
                                              const change::v1::Change& c,
                                              absl::FunctionRef<absl::Status()> write);

// The id of the change a row without a version (written behind marmot's back) is kept as when
// entry `raft_index` displaces it: named by no change, an id of its own below every change's,
// from its table's route name, its key and the entry, the same on every node.
int64_t UnversionedChangeId(const ShardRouter& router, const std::string& table,
                            const std::vector<sqlite::Value>& key, uint64_t raft_index);

// Keeps another node's change `c` of `t` (at `at`) as a conflict at once: its row is held here
// by this node's change `local_change` (of node `local_node`) of another row, not applied in the
// shard yet, which will replace it on every node (kKeepDisplaced). Its rows (the new key's, and
// the old key's for a rekey) are deleted here with `w`, as they end on every node. The versions
// of its rows, at
// `version_keys` (RowVersions::KeyOf of its keys, the row it leaves first), become that
// change's, as they will be on every node once it applied, when that row is in the same shard
// (`same_shard`); otherwise `c`'s, as on a node that writes it. Inside the caller's
// transaction.
absl::Status KeepDisplacedNow(const DisplacingWrite& at, const TableWriter& w,
                              const change::v1::TableChanges& t, const change::v1::Change& c,
                              const std::vector<std::string>& version_keys, uint64_t local_node,
                              int64_t local_change, bool same_shard);

// The conflict of id `id`, kept at once (KeepDisplacedNow), is no longer one: the change of
// its row made over it is written, or kept at once in its place. Deletes it, inside the
// caller's transaction.
absl::Status ForgetKeptAtOnce(sqlite::Database& db, int64_t id);

// A change kept at once for this node's change that lost since (TakeKeptAtOnce).
struct KeptAtOnce {
  int shard = 0;  // Of the conflict (its row's).
  uint64_t raft_index = 0;
  uint64_t origin = 0;
  change::v1::TableChanges change;  // Holding the one change.
};

// Takes out of the conflicts those kept at once for change `local_change` of node `local_node`
// to `table` (KeepDisplacedNow), of any shard, in the order they were kept: that change (of
// `shard`) lost a conflict of its own row and replaces nothing on any node, so they are to be
// written as every other node wrote them. (Change ids count per table: another table's change
// of that id is another change.) Such a conflict's row still has the version KeepDisplacedNow
// gave it (that change's in `shard`, the kept change's own in another shard, at the conflict's
// index); a change that lost to that version (made without seeing the kept one) stays a
// conflict, as on every node. Inside the caller's transaction.
absl::StatusOr<std::vector<KeptAtOnce>> TakeKeptAtOnce(sqlite::Database& db, RowVersions& versions,
                                                       int shard, const std::string& table,
                                                       uint64_t local_node, int64_t local_change);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DISPLACED_ROWS_H_
