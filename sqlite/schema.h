// Schema introspection: which tables marmot replicates and what their keys are.
//
// A user table is a plain table (`PRAGMA table_list` type "table") in the main schema whose name
// starts neither with `sqlite_` nor with `__marmot__`. Virtual tables and their shadow tables are
// not replicated (they are reported so callers can say so). A table's identity key is its
// primary key in key order; a rowid table without a declared key is identified by rowid, which
// is flagged because rowids are not stable across nodes.
#ifndef MARMOT_SQLITE_SCHEMA_H_
#define MARMOT_SQLITE_SCHEMA_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sqlite/database.h"

namespace marmot::sqlite {

// Prefix of every object marmot creates in a user's database.
inline constexpr char kMarmotPrefix[] = "__marmot__";

struct ColumnInfo {
  std::string name;
  std::string declared_type;  // As written in CREATE TABLE; may be empty.
  bool not_null = false;
  int pk_position = 0;  // 1-based position in the primary key, 0 when not part of it.
};

struct TableSchema {
  std::string name;
  // Writable columns in declaration order. Generated columns are left out: they are computed
  // from the others on every node and cannot be written.
  std::vector<ColumnInfo> columns;
  // Names of the primary key columns in key order (composite keys keep their declared order).
  // Empty when the table has no declared primary key.
  std::vector<std::string> primary_key;
  bool without_rowid = false;
  // The declared key is an INTEGER PRIMARY KEY, i.e. the rowid itself (never NULL). Not so for
  // `INTEGER PRIMARY KEY DESC` or any other type, which SQLite keeps in a separate index.
  bool key_is_rowid = false;
  int generated_columns = 0;

  // True when the table has no declared primary key and is identified by its rowid.
  bool keyed_by_rowid() const { return primary_key.empty(); }
  // Fingerprint of the shape that capture depends on (names, order, key), for change detection.
  std::string ShapeString() const;
};

struct SchemaListing {
  std::vector<TableSchema> tables;           // User tables, sorted by name.
  std::vector<std::string> skipped_virtual;  // Virtual and shadow tables, not replicated.
};

// Reads the user tables of the main schema.
absl::StatusOr<SchemaListing> ListUserTables(Database& db);

// Whether `name` (of a table, index, view, trigger or column) is reserved to SQLite
// (`sqlite_...`) or marmot (`__marmot__...`), in any case: SQLite compares names without ASCII
// case, so `__MARMOT__x` names marmot's `__marmot__x`. Everything that tells marmot's objects
// from the application's asks this, so that what one part takes for a user object no other
// refuses as marmot's.
bool IsReservedName(absl::string_view name);

// Reads one user table; NOT_FOUND when it does not exist, INVALID_ARGUMENT when it is a view, a
// virtual or shadow table, or SQLite's or marmot's own.
absl::StatusOr<TableSchema> ReadTableSchema(Database& db, const std::string& table);

}  // namespace marmot::sqlite

#endif  // MARMOT_SQLITE_SCHEMA_H_
