// The rows one table loses while a write runs, as SQLite's preupdate hook reports them: rows
// deleted by a DELETE, and rows that a REPLACE removes through any UNIQUE index (an index on
// expressions or on a generated column included, which no probe can ask about). Used by
// table_writer.h for writers that cannot probe every UNIQUE index of their table.
//
// Only the deleted rows' identities are recorded, never their values: which value
// sqlite3_preupdate_old(i) gives for a table with generated columns depends on SQLite's version
// (3.40 indexes a rowid table's stored record, where VIRTUAL columns are missing, while
// sqlite3_preupdate_count counts every column). The rowid the hook passes is reliable, and so
// are the key columns of a WITHOUT ROWID table read at their positions among all columns (3.40
// maps those through the key's index; a key column is never generated). The caller reads the
// rows by these identities while they still exist (a trial write rolled back).
#ifndef MARMOT_REPLICATOR_REPLACED_ROWS_H_
#define MARMOT_REPLICATOR_REPLACED_ROWS_H_

#include <string>
#include <vector>

#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::replicator {

// Records, from construction until destruction, the identities of the rows deleted from `table`
// (of the main database) through `db`: for a rowid table (`key_columns` empty) each row's
// rowid; for a WITHOUT ROWID table its key, the values of the columns at `key_columns`
// (positions among all the table's columns, generated ones counted, in key order). At most one
// recorder per connection at a time (SQLite keeps one hook).
class ReplacedRowsRecorder {
 public:
  ReplacedRowsRecorder(sqlite::Database& db, std::string table, std::vector<int> key_columns);
  ~ReplacedRowsRecorder();
  ReplacedRowsRecorder(const ReplacedRowsRecorder&) = delete;
  ReplacedRowsRecorder& operator=(const ReplacedRowsRecorder&) = delete;

  // The identities of the rows deleted so far, in the order they were deleted: [rowid], or the
  // key's values.
  std::vector<std::vector<sqlite::Value>> Take() { return std::move(rows_); }

 private:
  static void OnChange(void* self, sqlite3* db, int op, const char* schema, const char* table,
                       sqlite3_int64 old_rowid, sqlite3_int64 new_rowid);

  sqlite::Database& db_;
  const std::string table_;
  const std::vector<int> key_columns_;
  std::vector<std::vector<sqlite::Value>> rows_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_REPLACED_ROWS_H_
