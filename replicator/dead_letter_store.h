// This node's dead letters: the table `__marmot__dead_letters` and its in-memory index by the
// rows each one holds back (DeadLetterIndex), kept equal to the table's committed content. The
// three kinds of dead letter, and why later changes of a row queue behind its dead letter, are
// in change_applier.h; the applier decides (apply_decider.h), this store records.
//
// Every write happens inside the caller's transaction on the applier's connection. The index
// follows each write at once, so while a transaction is open it holds what that transaction
// wrote; when the transaction does not commit, Sync() at the start of the next writing
// transaction reads the index again from the table.
// Not thread-safe; the applier's caller serializes it.
#ifndef MARMOT_REPLICATOR_DEAD_LETTER_STORE_H_
#define MARMOT_REPLICATOR_DEAD_LETTER_STORE_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/dead_letter_index.h"
#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::replicator {

class DeadLetterStore {
 public:
  // `db` is the applier's connection (which creates the table); it outlives the store.
  explicit DeadLetterStore(sqlite::Database& db) : db_(db) {}

  // Reads the index from the table as the connection sees it now. `fresh`: nothing uncommitted
  // was read (outside a transaction, or before its first write), so the index is in sync;
  // otherwise it is read again at the next Sync().
  absl::Status Load(bool fresh);
  // At the start of a writing transaction: reads the index again if a transaction changed it
  // and did not commit.
  absl::Status Sync();
  // The caller's transaction committed: the index matches the table.
  void Committed() { unsynced_ = false; }

  // The most dead letters this node keeps (counted over the whole node): Insert fails with
  // ResourceExhausted beyond it.
  void set_max(int64_t max) { max_ = max; }

  // Inserts a dead letter (`row`: shard, raft_index, origin, tbl, change_id, error, change) and
  // indexes it as `entry`.
  absl::Status Insert(const std::vector<sqlite::Value>& row, DeadLetterIndex::Entry entry);
  // Records change `c` of `t`, from `origin` in the entry at Raft `index` of `shard`, which
  // cannot apply here with `error`: a change dead letter holding that one change, which holds
  // its rows back. A refusal of the store itself (ResourceExhausted) says which change it was.
  absl::Status InsertChange(int shard, uint64_t index, uint64_t origin,
                            const change::v1::TableChanges& t, const change::v1::Change& c,
                            const absl::Status& error);
  // Records the payload of the entry at Raft `index` of `shard`, which cannot be decoded
  // (`error` says why), as it came: it holds back nothing.
  absl::Status InsertUndecodable(int shard, uint64_t index, const std::string& payload,
                                 absl::string_view error);
  // Deletes dead letter `id`.
  absl::Status Delete(int64_t id);
  // Deletes `shard`'s dead letters recorded at or below `raft_index` (a snapshot at that index
  // supersedes them); returns how many the table held.
  absl::StatusOr<int64_t> DeleteUpTo(int shard, uint64_t raft_index);
  // Replaces the error of dead letter `id`.
  absl::Status SetError(int64_t id, absl::string_view error);
  // The stored origin and change of dead letter `id`; nullopt when the table no longer holds
  // it (deleted by hand since the index was read: the index forgets it too). Errors are the
  // database's.
  absl::StatusOr<std::optional<std::pair<sqlite::Value, sqlite::Value>>> OriginAndChange(
      int64_t id);

  // The dead letter that a change of `rows` of `table` in `shard` (all of them: `whole_table`)
  // must stay behind, among those with an id below `before`, checked to still exist in the
  // table (one an operator deleted by hand makes the index read again), or nullopt.
  absl::StatusOr<std::optional<int64_t>> Blocker(
      int shard, const std::string& table, const std::vector<std::string>& rows, bool whole_table,
      int64_t before = std::numeric_limits<int64_t>::max());
  // The error of a change held back by dead letter `blocker`.
  absl::Status QueuedBehind(int64_t blocker) const;

  // The number of dead letters in the table.
  absl::StatusOr<int64_t> Count();
  const DeadLetterIndex& index() const { return index_; }

 private:
  sqlite::Database& db_;
  DeadLetterIndex index_;
  bool unsynced_ = false;  // The index holds changes of an uncommitted transaction.
  int64_t max_ = std::numeric_limits<int64_t>::max();
};

// The index entry of a dead letter from its stored columns. Sets `*holds_change` to false for a
// change dead letter whose change is not a TableChanges: it holds back no row.
DeadLetterIndex::Entry DeadLetterEntry(int shard, uint64_t raft_index, const sqlite::Value& origin,
                                       const sqlite::Value& table, const sqlite::Value& change,
                                       bool* holds_change);

// A dead letter a snapshot carries, as the row of `__marmot__dead_letters` it becomes here
// (shard, raft_index, origin, tbl, change_id, error, change): the columns that are NULL tell
// the kind. One of a kind this version does not know is kept like an undecodable entry.
std::vector<sqlite::Value> StoredDeadLetter(int shard,
                                            const change::v1::ShardSnapshot::DeadLetter& d);

// The other way round: a row of `__marmot__dead_letters` (raft_index, origin, tbl, change_id,
// error, change) as a snapshot carries it.
change::v1::ShardSnapshot::DeadLetter CarriedDeadLetter(const std::vector<sqlite::Value>& row);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DEAD_LETTER_STORE_H_
