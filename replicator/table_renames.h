// Renamed tables: where their rows route, and which old names still name them.
//
// Every change of one row goes through one shard: shard = hash(route(table), key)
// (shard_router.h). A table never renamed routes by its own name. ALTER TABLE T RENAME TO U,
// replicated as a schema change (schema_changes.h), gives U T's route, so that the rows of U
// stay in the shards they were in as rows of T (two changes of one row in two shards would be
// decided in different orders on different nodes). A chain T -> U -> V keeps T's route; a
// table created or dropped under a name routes by that name again.
//
// Row batches read before a rename (another node wrote T before it saw the rename) still name
// T. Each batch carries its schema epoch (schema_epochs.h): a table name of a batch whose epoch
// is below the shard-0 index of a rename of that name is the renamed table (NameHere). A table
// created again under the old name later is not confused with it: batches that name it are read
// after its CREATE, whose index is above the rename's.
//
// A table created through shard 0 routes by the name its first CREATE there wrote
// (RecordTableCreated), so that one table spelled in another case on another node (`Item`,
// `item`: one name to SQLite) routes alike everywhere.
//
// Both are kept in marmot's state, written in the transaction of the schema change (shard 0's
// apply on every node; on the origin also when its change commits): `__marmot__table_routes`
// (name in lower case, route) and `__marmot__table_history` (from in lower case, to, the
// rename's shard-0 index). `TableRenames` holds them in memory for the routers, which every
// component that routes shares; it is reloaded whenever marmot writes them. On the node that
// renamed a table, from when it finds the rename until its entry commits, the rename is
// pending in memory (SetPending): the table's rows route as they will, and entries of other
// nodes that name the old table (read before the rename, whatever their epoch) mean the new.
#ifndef MARMOT_REPLICATOR_TABLE_RENAMES_H_
#define MARMOT_REPLICATOR_TABLE_RENAMES_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "proto/change.pb.h"
#include "sqlite/database.h"

namespace marmot::replicator {

inline constexpr char kTableRoutesTable[] = "__marmot__table_routes";
inline constexpr char kTableHistoryTable[] = "__marmot__table_history";

// Creates both tables if needed, inside or outside the caller's transaction.
absl::Status EnsureTableRenameState(sqlite::Database& db);

// Records that table `from` was renamed `to` by the schema change at shard-0 index `index`:
// `to` routes as `from` did, `from` by its own name again, and the history keeps the rename.
// Idempotent; inside the caller's transaction.
absl::Status RecordTableRenamed(sqlite::Database& db, const std::string& from,
                                const std::string& to, uint64_t index);

// Two nodes renamed one table at once to different names (T to U after T to V in shard 0's
// order): the later rename lost, and the table stays V on every node, its origin's too. Records
// that batches read before `index` (the lost rename's shard-0 index) that name `lost` (U: its
// origin read its rows under U before it adopted V) mean `winner` (where V went by then). Routes
// do not move: U routed as T did, as V does. Idempotent; inside the caller's transaction.
absl::Status RecordRenameLost(sqlite::Database& db, const std::string& lost,
                              const std::string& winner, uint64_t index);

// Whether the history holds a rename lost at `index` whose losing name is `lost`.
absl::StatusOr<bool> RenameLostAt(sqlite::Database& db, const std::string& lost, uint64_t index);

// Where table `name` went by the renames the history holds below shard-0 index `before`: the
// newest rename of `name` below it, then the renames of each new name after the one before
// (chains followed, as NameHere does). Nothing when the history holds no rename of `name` below
// `before`.
absl::StatusOr<std::optional<std::string>> RenamedBefore(sqlite::Database& db,
                                                         const std::string& name, uint64_t before);

// A table created or dropped under `name`: it routes by its own name.
absl::Status ForgetTableRoute(sqlite::Database& db, const std::string& name);

// A CREATE of table `name` applied in shard 0 (`made`: it made the table here): the table routes
// by the name as the first such CREATE in shard 0's order wrote it, on every node. SQLite's
// names are one name in any case: a table made on two nodes at once as `Item` and `item` is one
// table, whose rows must meet in one shard however each node spells it. So the first CREATE's
// spelling is kept (a later one of the table, `made` or not, leaves it), and `made` replaces a
// route the name had (a table new here routes by its own name, as with ForgetTableRoute).
// Tables never created through shard 0 (those every node had before schema changes replicated)
// keep routing by their own name. Inside the caller's transaction.
absl::Status RecordTableCreated(sqlite::Database& db, const std::string& name, bool made);

// The routes and renames as a snapshot carries them (SnapshotStart), and taking those of a
// snapshot: routes for names that have none here, renames this node lacks.
absl::Status ReadTableRenames(sqlite::Database& db, std::vector<change::v1::TableRoute>* routes,
                              std::vector<change::v1::TableRename>* renames);
absl::Status TakeTableRenames(
    sqlite::Database& db, const google::protobuf::RepeatedPtrField<change::v1::TableRoute>& routes,
    const google::protobuf::RepeatedPtrField<change::v1::TableRename>& renames);

// The routes and renames in memory. Thread-safe.
class TableRenames {
 public:
  // Replaces what it holds by what `db` holds (the tables may be missing: then nothing).
  absl::Status Load(sqlite::Database& db);

  // The name rows of `table` are routed by.
  std::string RouteOf(absl::string_view table) const;

  // The table a batch read at schema epoch `epoch` means by `table`, here: `table` itself, or
  // what a rename at a later index turned it into (chains followed), or what this node's own
  // rename not committed yet (SetPending) turned it into.
  std::string NameHere(const std::string& table, uint64_t epoch) const;

  // The renames (from, to) this node made that did not commit yet, all of them (replacing those
  // set before): until one commits (and Load finds it), `to` routes as `from` does, and batches
  // of every epoch that name `from` mean `to`.
  void SetPending(const std::vector<std::pair<std::string, std::string>>& renames);

 private:
  mutable absl::Mutex mu_;
  // routes_ from loaded_routes_ and pending_.
  void MakeRoutes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<bool> any_{false};  // Anything held: else names.
  std::map<std::string, std::string> loaded_routes_ ABSL_GUARDED_BY(mu_);  // lower name -> route
  std::map<std::string, std::string> routes_ ABSL_GUARDED_BY(mu_);         // with pending ones
  // lower from -> (index, to), every rename of that name.
  std::multimap<std::string, std::pair<uint64_t, std::string>> history_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> pending_ ABSL_GUARDED_BY(mu_);  // lower from -> to
};

// Names the tables of row batch `batch` as this node has them now (NameHere at the batch's
// schema epoch): a batch read before a rename that applied here since names the renamed table.
void NameTablesHere(const TableRenames& renames, change::v1::ChangeBatch& batch);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_TABLE_RENAMES_H_
