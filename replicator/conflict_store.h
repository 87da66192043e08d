// The changes that lost to a concurrent change of their row: kept, never dropped.
//
// A change that carries the version of its row it was made after (Change.prev) and finds in its
// shard that the row's version is another node's, one it did not see (row_versions.h), was made
// concurrently with that one: the first in the shard's order wins, and the later one does not
// apply; it is kept in `__marmot__conflicts` instead, whole (the change with its row's values
// and storage classes, as a TableChanges holding that one change), with the version it lost
// to. Every node applies the shard in one order and decides the same: every node keeps the
// same conflicts (their ids are each node's own). A change of a row made after seeing the row's
// version, or over its own node's earlier write, is never a conflict.
#ifndef MARMOT_REPLICATOR_CONFLICT_STORE_H_
#define MARMOT_REPLICATOR_CONFLICT_STORE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "sqlite/database.h"

namespace marmot::replicator {

inline constexpr char kConflictsTable[] = "__marmot__conflicts";
// `key` is the row's key as __marmot__versions has it, as text (RowVersions::KeyOf); `op` the
// losing change's (I, U, D); `at_ms` when its origin read it; `winner_*` the version it lost to.
inline constexpr char kCreateConflicts[] =
    "CREATE TABLE IF NOT EXISTS \"__marmot__conflicts\" (id INTEGER PRIMARY KEY, "
    "shard INTEGER NOT NULL, raft_index INTEGER NOT NULL, tbl TEXT NOT NULL, key TEXT NOT NULL, "
    "origin INTEGER NOT NULL, change_id INTEGER NOT NULL, op TEXT NOT NULL, change BLOB NOT NULL, "
    "winner_origin INTEGER NOT NULL, winner_change_id INTEGER NOT NULL, at_ms INTEGER NOT NULL, "
    "UNIQUE (origin, tbl, change_id))";

struct LostChange {
  int shard = 0;
  uint64_t raft_index = 0;
  uint64_t origin = 0;
  std::string key;  // As RowVersions::KeyOf.
  uint64_t winner_origin = 0;
  int64_t winner_change_id = 0;
};

class ConflictStore {
 public:
  explicit ConflictStore(sqlite::Database& db) : db_(db) {}

  // Keeps change `c` of `t` (its header and that change alone), inside the caller's
  // transaction.
  absl::Status Insert(const LostChange& lost, const change::v1::TableChanges& t,
                      const change::v1::Change& c);

  // How many are kept.
  absl::StatusOr<int64_t> Count();

  // For snapshots: every conflict of `shard`, in id order; deleting them; keeping one a
  // snapshot carries.
  absl::Status ForEachOfShard(
      int shard, const std::function<absl::Status(change::v1::SnapshotVersions::Conflict)>& visit);
  absl::Status DeleteShard(int shard);
  absl::Status InsertCarried(int shard, const change::v1::SnapshotVersions::Conflict& c);

  // Deletes the conflicts of `shard` that `resolved` names (an operator resolved them: the
  // pane's ResolveConflict), inside the caller's transaction; names of another shard or of none
  // kept here are passed over. Their entry comes after the entries that kept them in the same
  // shard, so every node deletes the same ones. Returns how many were deleted.
  absl::StatusOr<int64_t> Resolve(
      int shard, const google::protobuf::RepeatedPtrField<change::v1::ConflictId>& resolved);

 private:
  sqlite::Database& db_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CONFLICT_STORE_H_
