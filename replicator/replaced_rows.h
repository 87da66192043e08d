// The rows one table loses while a write runs, as SQLite's preupdate hook reports them: rows
// deleted by a DELETE, and rows that a REPLACE removes through any UNIQUE index (an index on
// expressions included, which no probe can ask about). Used by displaced_rows.h for writers that
// cannot probe every UNIQUE index of their table.
#ifndef MARMOT_REPLICATOR_REPLACED_ROWS_H_
#define MARMOT_REPLICATOR_REPLACED_ROWS_H_

#include <string>
#include <vector>

#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::replicator {

// Records, from construction until destruction, the rows deleted from `table` (of the main
// database) through `db`. At most one recorder per connection at a time (SQLite keeps one hook).
class ReplacedRowsRecorder {
 public:
  ReplacedRowsRecorder(sqlite::Database& db, std::string table, bool keyed_by_rowid);
  ~ReplacedRowsRecorder();
  ReplacedRowsRecorder(const ReplacedRowsRecorder&) = delete;
  ReplacedRowsRecorder& operator=(const ReplacedRowsRecorder&) = delete;

  // The rows deleted so far, each as it was: [rowid,] its columns in the table's order.
  std::vector<std::vector<sqlite::Value>> Take() { return std::move(rows_); }

 private:
  static void OnChange(void* self, sqlite3* db, int op, const char* schema, const char* table,
                       sqlite3_int64 old_rowid, sqlite3_int64 new_rowid);

  sqlite::Database& db_;
  const std::string table_;
  const bool keyed_by_rowid_;
  std::vector<std::vector<sqlite::Value>> rows_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_REPLACED_ROWS_H_
