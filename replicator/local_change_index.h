// LocalChangeIndex: for this node's own changes coming back through Raft, which rows still have
// a newer change of this node waiting in the local change log (see
// ChangeApplier::set_local_node for why such an own change is skipped), and which rows still
// hold exactly what their newest local change wrote (so that applying it can be skipped without
// reading the row).
//
// Reading the change log anew for every applied entry costs the whole backlog per entry, which
// is quadratic under a write flood, on the node that writes. The index reads every
// change-log row once: per table it remembers the highest change id read and reads only rows
// above it; per row it remembers the newest change id seen. That is exact because change ids
// only grow (the shipper keeps each log's newest row, so SQLite never hands an id out again) and
// a change-log row is deleted only after its entry was applied here, which is after every older
// change of the same row (same shard, in order): no row that could still matter is deleted
// before the index read it.
//
// Rewritten rows. The applier catches up the table's log inside its write transaction before it
// writes a row (Rewritten()), so every log row a later CatchUp reads was committed after that
// write: it resets the mark. Rows read by the first CatchUp of a table (after construction or
// Clear()) count as rewritten, since writes before it were not seen.
//
// A row is forgotten when its newest change seen is itself applied (or skipped, or
// dead-lettered): no older change of the row can come after it. Clear() forgets everything; the
// next CatchUp() reads the logs from their start again.
#ifndef MARMOT_REPLICATOR_LOCAL_CHANGE_INDEX_H_
#define MARMOT_REPLICATOR_LOCAL_CHANGE_INDEX_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sqlite/database.h"
#include "sqlite/schema.h"
#include "sqlite/value.h"

namespace marmot::replicator {

class LocalChangeIndex {
 public:
  // One table's part of the index. Rows are known by their key values; a key of one integer
  // (the common INTEGER PRIMARY KEY or rowid) is looked up as that integer, any other key by
  // its encoding (EncodeRowIdentity without the table), so the two never meet.
  class TableRows {
   public:
    // The newest change id seen for the row with `key`, 0 if none.
    int64_t Newest(const std::vector<sqlite::Value>& key) const;
    // Whether the row holds exactly what local change `id` left: `id` is its newest change seen
    // and the applier has not written the row since.
    bool Holds(const std::vector<sqlite::Value>& key, int64_t id) const;
    // The applier wrote the row (in a transaction where CatchUp of its table ran first).
    void Rewritten(const std::vector<sqlite::Value>& key);
    // Change `id` of the row was applied, skipped or dead-lettered here: forgets the row if `id`
    // is the newest change of it seen.
    void Processed(const std::vector<sqlite::Value>& key, int64_t id);
    size_t size() const { return by_integer_.size() + by_encoding_.size(); }

   private:
    friend class LocalChangeIndex;
    struct RowState {
      int64_t newest = 0;
      bool rewritten = false;
    };
    static bool IsInteger(const std::vector<sqlite::Value>& key);
    const RowState* Find(const std::vector<sqlite::Value>& key) const;
    RowState* Find(const std::vector<sqlite::Value>& key);
    // A change of the row read from the log.
    void Saw(const std::vector<sqlite::Value>& key, int64_t id, bool rewritten);

    sqlite::TableSchema schema_;
    int64_t read_up_to_ = 0;
    absl::flat_hash_map<int64_t, RowState> by_integer_;
    absl::flat_hash_map<std::string, RowState> by_encoding_;
  };

  // Reads the pending rows of `table`'s change log added since the last call and returns the
  // table's part of the index, valid until Clear() or a failed CatchUp. An error when the table
  // or its log cannot be read (e.g. the table is gone); the index is cleared then, since writes
  // the caller makes without a caught-up index would go unnoticed.
  absl::StatusOr<TableRows*> CatchUp(sqlite::Database& db, const std::string& table);
  // CatchUp of every table read before, outside any transaction: a CatchUp inside the applier's
  // write transaction then reads only what was written since, which keeps the application's
  // writers waiting for less. Rows read here were committed after every write of the applier so
  // far, just as those of a CatchUp inside the next transaction. A failing table clears the
  // index, as CatchUp does.
  void CatchUpKnown(sqlite::Database& db);
  // The part of a table read before (by CatchUp), or null.
  const TableRows* Find(const std::string& table) const;
  // After a snapshot install or a schema change.
  void Clear();

 private:
  std::map<std::string, TableRows> tables_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_LOCAL_CHANGE_INDEX_H_
