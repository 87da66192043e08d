// How a replicated change is written to one local table: the statements that write it, checked
// against the local schema (PlanWriter), and one change written with them (ApplyChange). Also
// the keys and row identities a change touches, which the applier's rules and the dead letters
// name rows by. Used by ChangeApplier, its dead letters and its snapshots.
#ifndef MARMOT_REPLICATOR_TABLE_WRITER_H_
#define MARMOT_REPLICATOR_TABLE_WRITER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::replicator {

// A failure of the database itself (busy past the busy timeout, I/O, a full disk, corruption),
// as opposed to a change that cannot apply: the operation changed nothing and is tried again
// later, nothing goes to the dead letters.
bool IsDatabaseFailure(const absl::Status& s);

// Another node's entry that waits while this node's own schema moves
// (ChangeApplier::set_own_schema_quiet): waited out as a database failure, but no failure.
absl::Status HeldForOwnSchema();
bool IsHeldForOwnSchema(const absl::Status& s);

// The SQL that writes changes to one table, checked against the local schema.
struct TableWriter {
  std::string upsert;  // INSERT OR REPLACE, binds [rowid,] columns...
  // Only when the change carries fewer columns than the table has: UPDATE OR REPLACE of the
  // carried columns by key, binds [rowid,] columns..., key values; the upsert runs when it
  // found no row.
  std::string update;
  std::string delete_key;  // DELETE by key, binds key values
  std::string select_row;  // SELECT [rowid,] columns... by key, binds key values
  std::string row_exists;  // SELECT 1 by key, binds key values
  bool keyed_by_rowid = false;
  // A UNIQUE constraint (or unique index) besides the key: the upsert may delete other rows.
  bool other_unique_constraints = false;
  // The table's columns here, in order: the rows a probe reads are [rowid,] these.
  std::vector<std::string> whole_columns;
  // Positions of the key columns among [rowid,] whole_columns, in key order.
  std::vector<int> whole_key;
  // Per UNIQUE index besides the key whose columns the change carries (partial ones included):
  // a SELECT of the whole rows ([rowid,] whole_columns) holding the values an upsert writes to
  // that index's columns, and the positions of those values among [rowid,] columns... The rows
  // an upsert replaces through that index are among them (all of them for an index that is not
  // partial; a partial one holds only some).
  // SELECT [rowid,] whole_columns of the row of a key (binds key values).
  std::string select_whole;
  struct UniqueProbe {
    std::string sql;
    std::vector<int> values;
  };
  std::vector<UniqueProbe> unique_probes;
  // A UNIQUE index that no probe asks about (on an expression, on a generated column, or on a
  // column the change does not carry): what an upsert replaces through it is learnt only by
  // writing (RowsATrialWriteReplaces).
  bool unprobed_unique = false;
  // With unprobed_unique: SELECT [rowid,] whole_columns of one row as ReplacedRowsRecorder names
  // it (binds its rowid, or its key for a WITHOUT ROWID table)...
  std::string select_replaced;
  // ...and, for a WITHOUT ROWID table, the positions of its key columns among all its columns
  // (generated ones counted), where the recorder reads a deleted row's key; empty otherwise.
  std::vector<int> replaced_key_columns;
};

// A row of another key than a change's that the change's upsert may replace through another
// UNIQUE index (RowsInTheWay): its key, and its values as they were before the write
// ([rowid,] TableWriter::whole_columns).
struct RowInTheWay {
  std::vector<sqlite::Value> key;
  std::vector<sqlite::Value> row;
};

// The rows of other keys than those `c` (a change of `t`, written with `w`) touches that its
// upsert may replace through another UNIQUE index, read by the writer's probes. None for a
// delete or a malformed change. Whether the write replaced one is known only after it: a row
// it replaced is gone (RowExists).
absl::StatusOr<std::vector<RowInTheWay>> RowsInTheWay(sqlite::Database& db, const TableWriter& w,
                                                      const change::v1::TableChanges& t,
                                                      const change::v1::Change& c);

// Those of `in_the_way` (RowsInTheWay of `c`) that the upsert of `c` replaces here: found by
// writing `c` inside a savepoint and rolling it back, so that what only the index knows counts
// (a partial index holds only some rows; both rows must be in it to clash). Nothing when the
// write would fail. Inside the caller's transaction, or a transaction of its own.
absl::StatusOr<std::vector<RowInTheWay>> RowsReplacedBy(sqlite::Database& db, const TableWriter& w,
                                                        const change::v1::TableChanges& t,
                                                        const change::v1::Change& c,
                                                        std::vector<RowInTheWay> in_the_way);

// The rows of other keys than those `c` (a change of `t`) touches that `write` (which writes
// `c`, or some of its columns, with `w`) deletes here, each as it was ([rowid,]
// whole_columns): for a writer with an index no probe asks about (unprobed_unique). Found by
// running `write` in a savepoint rolled back at once: SQLite's preupdate hook names the rows it
// deletes (ReplacedRowsRecorder), which are then read back as they were. Nothing when the write
// fails (it will fail again when it is made); only the database's own failure is an error.
// Inside the caller's transaction, or a transaction of its own.
absl::StatusOr<std::vector<RowInTheWay>> RowsATrialWriteReplaces(
    sqlite::Database& db, const TableWriter& w, const change::v1::TableChanges& t,
    const change::v1::Change& c, absl::FunctionRef<absl::Status()> write);
// The same for the write of the whole change (ApplyChange).
absl::StatusOr<std::vector<RowInTheWay>> RowsATrialWriteReplaces(sqlite::Database& db,
                                                                 const TableWriter& w,
                                                                 const change::v1::TableChanges& t,
                                                                 const change::v1::Change& c);

// A trial write: what runs after BeginTrialWrite is rolled back by EndTrialWrite, given the
// outcome of the trial (`written`). The trial's own database failure comes first: SQLite may
// have rolled back the whole transaction then (an I/O error, a full disk), so that there is no
// savepoint left. A savepoint that cannot be rolled back is a database failure too: the
// caller's transaction is not what it was, and nothing more of it may be written. Trials nest.
absl::Status BeginTrialWrite(sqlite::Database& db);
absl::Status EndTrialWrite(sqlite::Database& db, const absl::Status& written);

// The row of `key` (in key order) of the table written by `w` (one with another UNIQUE
// constraint), whole ([rowid,] whole_columns); nullopt when there is none.
absl::StatusOr<std::optional<RowInTheWay>> ReadWholeRow(sqlite::Database& db, const TableWriter& w,
                                                        const std::vector<sqlite::Value>& key);

// Whether the table written by `w` holds a row of `key` (in key order; the rowid for a table
// keyed by it).
absl::StatusOr<bool> RowExists(sqlite::Database& db, const TableWriter& w,
                               const std::vector<sqlite::Value>& key);

// The writer of changes with `columns` and `key_columns` to the local `table`.
// FailedPrecondition when the table is missing here, is not a user table (marmot's state,
// SQLite's, a view or a virtual table never applies), or lacks a column or has another key;
// other errors are the database's.
absl::StatusOr<TableWriter> PlanWriter(sqlite::Database& db, const std::string& table,
                                       const std::vector<std::string>& columns,
                                       const std::vector<std::string>& key_columns);

// Writes the change `c` of `t` with `w` (statements kept on `db`). A single-statement change
// that fails leaves nothing behind (SQLite undoes the failed statement); a rekey, two
// statements, runs inside a savepoint that is rolled back when the upsert fails.
// InvalidArgument for a malformed change (unknown operation, values that do not fit).
absl::Status ApplyChange(sqlite::Database& db, const TableWriter& w,
                         const change::v1::TableChanges& t, const change::v1::Change& c);

// Writes the insert or update `c` of `t` to `columns` (none of them a key column) and the key
// only: the row's other columns keep what they hold (a missing row is inserted with their
// defaults). The writer is planned for those columns on each call (a rare path: ChangeView,
// kWriteUncarried). Errors as ApplyChange's and PlanWriter's.
absl::Status ApplyColumns(sqlite::Database& db, const change::v1::TableChanges& t,
                          const change::v1::Change& c, const std::vector<std::string>& columns);

// Positions of `t`'s key columns among its columns, in key order (`t`: a TableChanges or a
// ShardSnapshot::Table).
template <typename TableMessage>
std::vector<int> KeyPositions(const TableMessage& t) {
  std::vector<int> positions;
  for (const std::string& k : t.key_columns()) {
    for (int i = 0; i < t.columns_size(); ++i) {
      if (t.columns(i) == k) positions.push_back(i);
    }
  }
  return positions;
}

// The key of the row a change leaves behind (the new key), or the deleted key for a delete.
std::vector<sqlite::Value> KeyOf(const change::v1::TableChanges& t,
                                 const std::vector<int>& key_positions,
                                 const change::v1::Change& c);
// The keys of the rows a change touches: one, or two for a rekey.
std::vector<std::vector<sqlite::Value>> KeysOf(const change::v1::TableChanges& t,
                                               const std::vector<int>& key_positions,
                                               const change::v1::Change& c);
// The identities (EncodeRowIdentity) of the rows a change touches: one, or two for a rekey.
std::vector<std::string> RowsOf(const change::v1::TableChanges& t,
                                const std::vector<int>& key_positions, const change::v1::Change& c);

// `names` quoted as identifiers, comma-separated.
std::string QuotedList(const std::vector<std::string>& names);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_TABLE_WRITER_H_
