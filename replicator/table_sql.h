// Reading SQLite's SQL text of a table as sqlite_master keeps it: its tokens, its column
// definitions, and how two versions of a table differ column by column (what ALTER TABLE ADD,
// RENAME or DROP COLUMN made of it). SQLite keeps a table's CREATE statement as written, and
// ALTER TABLE edits that text: ADD COLUMN writes ", <definition>" at the end of the column list,
// RENAME COLUMN rewrites the name wherever the statement uses it, DROP COLUMN cuts the
// definition out.
#ifndef MARMOT_REPLICATOR_TABLE_SQL_H_
#define MARMOT_REPLICATOR_TABLE_SQL_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace marmot::replicator {

// The next token of `sql` from `*at` (skipping blanks and comments): a word, a quoted name as
// written, or one character; empty at the end.
std::string NextSqlToken(const std::string& sql, size_t* at);

// A table's SQL as its column definitions (each as written, without blanks around it) and the
// rest: the statement without them (its table constraints and what follows the column list).
// Nothing when the SQL has no column list SQLite would take.
struct TableParts {
  std::vector<std::string> columns;
  std::string rest;
};
std::optional<TableParts> SplitTable(const std::string& sql);

// A name as SQLite reads it: without its quotes ("x", `x`, [x], 'x'), doubled quotes single.
std::string UnquotedName(const std::string& token);

// The name a column definition gives its column, unquoted, in lower case (SQLite compares
// column names without case).
std::string ColumnName(const std::string& definition);

// How a table's columns changed from SQL `before` to SQL `after`: renamed (the old name
// unquoted, the new as `after` writes it, quotes and all, for a rename that writes it alike),
// dropped (lower case) and added (definitions), each in the table's order. A column removed and one
// added that are defined alike but for their name, and are the only such pair, were renamed.
// Nothing when anything else changed: a column defined otherwise, a constraint, the name, the
// options after the column list, or when nothing changed.
struct ColumnDiff {
  std::vector<std::pair<std::string, std::string>> renamed;
  std::vector<std::string> dropped;
  std::vector<std::string> added;
};
std::optional<ColumnDiff> DiffColumns(const std::string& before, const std::string& after);

// Whether a column both table SQLs have (by name) is defined otherwise, or the table's
// constraints or options differ: a change that only a table made again makes (a column's type,
// its NOT NULL, a CHECK), unlike columns renamed, added, dropped or moved about.
bool DefinitionsChanged(const std::string& before, const std::string& after);

// The table name of CREATE TABLE statement `sql` as written (quotes and all), and the statement
// with that name (and any schema before it) replaced by `name`; nothing when `sql` has no name
// before its column list.
std::optional<std::string> TableNameToken(const std::string& sql);
std::optional<std::string> WithTableName(const std::string& sql, const std::string& name);

// Whether `before` and `after` read the same, token by token, but for names `renames` maps
// (lower case, unquoted) from before's to after's: an index or trigger SQLite rewrote when a
// column it names was renamed.
bool SameButRenamed(const std::string& before, const std::string& after,
                    const std::map<std::string, std::string>& renames);

// When `after` is a table's SQL `before` with columns added (by ALTER TABLE ADD COLUMN, or the
// table made again with more columns): the added columns' definitions, in `after`'s order.
// Nothing when anything else differs: a column removed, renamed or defined otherwise, a
// constraint, the name, the options after the column list.
std::optional<std::vector<std::string>> AddedColumns(const std::string& before,
                                                     const std::string& after);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_TABLE_SQL_H_
