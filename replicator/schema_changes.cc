#include "replicator/schema_changes.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replicator/table_renames.h"
#include "replicator/table_sql.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "sqlite/value.h"

namespace marmot::replicator {

namespace {

using change::v1::SchemaChange;
using sqlite::Value;

constexpr char kBaseline[] = "\"__marmot__schema\"";

// Every object of sqlite_master, (type, name), for telling what a statement made.
using Names = std::set<std::pair<std::string, std::string>>;

absl::StatusOr<Names> AllObjects(sqlite::Database& db) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows =
      db.QueryRows("SELECT type, name FROM sqlite_master");
  if (!rows.ok()) return rows.status();
  Names out;
  for (const std::vector<Value>& r : *rows) out.emplace(r[0].bytes(), r[1].bytes());
  return out;
}

// Why `sql`, another node's definition of an object or column, must not run here, or nothing:
// it names marmot's own objects (marmot's state is written by marmot alone: no index or
// trigger on it, no trigger that writes it when the application writes), or makes values of a
// size it does not state or larger than 1 MiB: zeroblob, randomblob (a default or generated
// column every read of a row would build; `randomblob(16)` for ids is fine), or printf/format
// with a width from an argument (`*`) or of 7 digits or more; however the function's name is
// quoted.
std::optional<std::string> Hostile(const std::string& sql) {
  if (absl::StrContains(absl::AsciiStrToLower(sql), "__marmot__")) {
    return "it names marmot's own objects";
  }
  size_t at = 0;
  for (std::string token = NextSqlToken(sql, &at); !token.empty(); token = NextSqlToken(sql, &at)) {
    const std::string word = absl::AsciiStrToLower(UnquotedName(token));
    if (word == "printf" || word == "format") {
      size_t next = at;
      if (NextSqlToken(sql, &next) != "(") continue;
      const std::string pattern = NextSqlToken(sql, &next);
      int digits = 0;
      bool wide = absl::StrContains(pattern, '*');
      for (const char ch : pattern) {
        digits = absl::ascii_isdigit(static_cast<unsigned char>(ch)) ? digits + 1 : 0;
        wide = wide || digits >= 7;
      }
      if (wide || pattern.empty() || pattern.front() != '\'') {
        return absl::StrCat("it formats values of a width it does not bound: ", word, "(", pattern,
                            " ...)");
      }
      continue;
    }
    if (word != "zeroblob" && word != "randomblob") continue;
    size_t next = at;
    if (NextSqlToken(sql, &next) != "(") continue;
    const std::string size = NextSqlToken(sql, &next);
    int64_t bytes = 0;
    if (!absl::SimpleAtoi(size, &bytes) || bytes > (1 << 20) || NextSqlToken(sql, &next) != ")") {
      return absl::StrCat("it makes blobs of ", word, "(", size,
                          " ...): no more than 1 MiB, stated as a number");
    }
  }
  return std::nullopt;
}

// A column of that name would hide the rowid that marmot's capture and writer name.
bool RowidAlias(const std::string& name) {
  const std::string lower = absl::AsciiStrToLower(name);
  return lower == "rowid" || lower == "_rowid_" || lower == "oid";
}

// Whether `sql` is CREATE TABLE ... AS SELECT: it runs a query of this node's data, which no
// schema change of a node holds (sqlite_master keeps such a table as column definitions).
bool CreatesTableFromQuery(const std::string& sql) {
  size_t at = 0;
  auto word = [&] { return absl::AsciiStrToUpper(NextSqlToken(sql, &at)); };
  if (word() != "CREATE") return false;
  std::string w = word();
  if (w == "TEMP" || w == "TEMPORARY") w = word();
  if (w != "TABLE") return false;
  w = word();
  if (w == "IF") {
    word();  // NOT
    word();  // EXISTS
    w = word();
  }
  w = word();  // After the name: "(", "AS", or "." before the name proper.
  if (w == ".") {
    word();
    w = word();
  }
  return w == "AS";
}

SchemaChange CreateOf(const SchemaObject& o) {
  SchemaChange c;
  c.set_kind(SchemaChange::CREATE);
  c.set_type(o.type);
  c.set_name(o.name);
  c.set_sql(o.sql);
  return c;
}

bool KnownType(const std::string& type) {
  return type == "table" || type == "index" || type == "view" || type == "trigger";
}

std::string Upper(const std::string& type) { return absl::AsciiStrToUpper(type); }

absl::Status RecordInBaseline(sqlite::Database& db, const std::string& type,
                              const std::string& name) {
  return db.RunKept(absl::StrCat("INSERT OR REPLACE INTO ", kBaseline,
                                 " (type, name, tbl_name, sql, rootpage, schema_rowid) SELECT "
                                 "type, name, tbl_name, sql, rootpage, rowid FROM sqlite_master"
                                 " WHERE type = ?1 AND name = ?2"),
                    {Value::Text(type), Value::Text(name)});
}

// The baseline's object (type, name) is this node's own change, ordered in shard 0 at
// `shard0_index` (0: never, it does not replicate); see own_at in schema_changes.h.
absl::Status MarkOwnInBaseline(sqlite::Database& db, const std::string& type,
                               const std::string& name, uint64_t shard0_index) {
  return db.RunKept(
      absl::StrCat("UPDATE ", kBaseline, " SET own_at = ?3 WHERE type = ?1 AND name = ?2"),
      {Value::Text(type), Value::Text(name), Value::Integer(static_cast<int64_t>(shard0_index))});
}

// The baseline's own_at of object (type, name): nullopt without a row, NULL for an object as
// shard 0 ordered it.
absl::StatusOr<std::optional<Value>> OwnAtInBaseline(sqlite::Database& db, const std::string& type,
                                                     const std::string& name) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(absl::StrCat(
      "SELECT own_at FROM ", kBaseline, " WHERE type = ", Value::Text(type).DebugString(),
      " AND name = ", Value::Text(name).DebugString()));
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<Value>();
  return std::make_optional((*rows)[0][0]);
}

absl::Status SetOwnAtInBaseline(sqlite::Database& db, const std::string& type,
                                const std::string& name, const Value& own_at) {
  return db.RunKept(
      absl::StrCat("UPDATE ", kBaseline, " SET own_at = ?3 WHERE type = ?1 AND name = ?2"),
      {Value::Text(type), Value::Text(name), own_at});
}

// Object (type, name) was dropped here by the change at `shard0_index` of shard 0 (kept unless
// a later one is); nothing for 0 (unknown).
absl::Status RecordDropped(sqlite::Database& db, const std::string& type, const std::string& name,
                           uint64_t shard0_index) {
  if (shard0_index == 0) return absl::OkStatus();
  return db.RunKept(
      absl::StrCat("INSERT INTO ", sqlite::QuoteIdentifier(kSchemaDropsTable),
                   " (type, name, shard0_index) VALUES (?1, lower(?2), ?3) ON CONFLICT (type, name)"
                   " DO UPDATE SET shard0_index = max(shard0_index, excluded.shard0_index)"),
      {Value::Text(type), Value::Text(name), Value::Integer(static_cast<int64_t>(shard0_index))});
}

absl::Status ForgetInBaseline(sqlite::Database& db, const std::string& type,
                              const std::string& name) {
  return db.RunKept(absl::StrCat("DELETE FROM ", kBaseline, " WHERE type = ?1 AND name = ?2"),
                    {Value::Text(type), Value::Text(name)});
}

SchemaApplied Refused(std::string why) {
  return {.outcome = SchemaApplied::kRefused, .detail = std::move(why)};
}

// Runs `sql` if it is exactly one statement and begins with `verb` (CREATE, ALTER, INSERT);
// what it made is checked by the caller. Nothing of another kind runs, even for a moment: a
// query could run for ever holding the write lock, a PRAGMA would stay set on marmot's
// connection after the savepoint is rolled back. A database failure is an error; a statement
// that cannot run here is a refusal (`why`).
absl::StatusOr<bool> RunOneStatement(sqlite::Database& db, const std::string& sql,
                                     absl::string_view verb, std::string* why) {
  size_t first = 0;
  if (!absl::EqualsIgnoreCase(NextSqlToken(sql, &first), verb)) {
    *why = absl::StrCat("it is not a ", verb, " statement");
    return false;
  }
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v2(db.raw(), sql.data(), static_cast<int>(sql.size()), &stmt, &tail);
  if (rc != SQLITE_OK || stmt == nullptr) {
    *why = rc == SQLITE_OK ? "no statement" : sqlite3_errmsg(db.raw());
    sqlite3_finalize(stmt);
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_ERROR) {
      return absl::UnavailableError(absl::StrCat("preparing a schema change: ", *why));
    }
    return false;
  }
  // Anything after the statement but blanks, semicolons and comments is a second statement.
  sqlite3_stmt* second = nullptr;
  const size_t rest = sql.size() - static_cast<size_t>(tail - sql.data());
  rc = sqlite3_prepare_v2(db.raw(), tail, static_cast<int>(rest), &second, nullptr);
  const bool more = rc != SQLITE_OK || second != nullptr;
  sqlite3_finalize(second);
  if (more) {
    sqlite3_finalize(stmt);
    *why = "it holds more than one statement";
    return false;
  }
  rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return true;
  *why = sqlite3_errmsg(db.raw());
  const int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_IOERR ||
      primary == SQLITE_FULL || primary == SQLITE_NOMEM || primary == SQLITE_CORRUPT) {
    return absl::UnavailableError(absl::StrCat("applying a schema change: ", *why));
  }
  return false;
}

// `what` of each of `table`'s columns here (`where` them), in order: by default their names in
// lower case (SQLite compares them without case).
absl::StatusOr<std::vector<std::string>> ColumnsHere(sqlite::Database& db, const std::string& table,
                                                     absl::string_view what = "lower(name)",
                                                     absl::string_view where = "1") {
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(
      absl::StrCat("SELECT ", what, " FROM pragma_table_xinfo(", Value::Text(table).DebugString(),
                   ", 'main') WHERE ", where, " ORDER BY cid"));
  if (!rows.ok()) return rows.status();
  std::vector<std::string> out;
  for (const std::vector<Value>& r : *rows) out.push_back(r[0].bytes());
  return out;
}

absl::StatusOr<std::string> TableSqlHere(sqlite::Database& db, const std::string& table) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows =
      db.QueryRows(absl::StrCat("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ",
                                Value::Text(table).DebugString()));
  if (!rows.ok()) return rows.status();
  if (rows->empty() || (*rows)[0][0].is_null()) return std::string();
  return (*rows)[0][0].bytes();
}

// Whether table SQL `here` has every column of `there`, defined as there, and the same rest.
// Names read alike in any case (SQLite's): the table `Item` here is the origin's `item`, and
// its column `Extra` the origin's `extra`.
bool HasEveryColumnOf(const std::string& here, const std::string& there) {
  std::optional<TableParts> mine = SplitTable(here), theirs = SplitTable(there);
  if (!mine.has_value() || !theirs.has_value() || !SameButRenamed(mine->rest, theirs->rest, {})) {
    return false;
  }
  std::map<std::string, std::string> columns;
  for (const std::string& c : mine->columns) columns[ColumnName(c)] = c;
  for (const std::string& c : theirs->columns) {
    auto it = columns.find(ColumnName(c));
    if (it == columns.end() || !SameButRenamed(it->second, c, {})) return false;
  }
  return true;
}

// Table SQL `sql` of another node naming the table as this node's SQL `here` does: the baseline
// holds what this node's schema reads when it is as the origin's, a table named otherwise in
// case included (DiffSchema compares the text).
std::string NamedAsHere(const std::string& sql, const std::string& here) {
  std::optional<std::string> theirs = TableNameToken(sql), mine = TableNameToken(here);
  if (!theirs.has_value() || !mine.has_value() || *theirs == *mine ||
      !absl::EqualsIgnoreCase(UnquotedName(*theirs), UnquotedName(*mine))) {
    return sql;
  }
  return WithTableName(sql, *mine).value_or(sql);
}

// Records table `name` in the baseline as `sql`, the origin's table, which this node's has every
// column of; for columns added, unless the baseline has them all already. Columns this node
// added itself and did not replicate yet stay its own change.
absl::Status RecordTableInBaseline(sqlite::Database& db, const std::string& name,
                                   const std::string& sql, bool only_with_more_columns = true) {
  // The table's root page and row of sqlite_master here, with it (DiffSchema tells a table made
  // anew under its name by the page, and a table renamed from one created by the row).
  const std::string record = absl::StrCat(
      "INSERT OR REPLACE INTO ", kBaseline,
      " (type, name, tbl_name, sql, rootpage, schema_rowid) SELECT 'table', ?1, ?1, ?2, "
      "(SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?1), "
      "(SELECT rowid FROM sqlite_master WHERE type = 'table' AND name = ?1)");
  absl::StatusOr<std::string> here = TableSqlHere(db, name);
  if (!here.ok()) return here.status();
  const std::string named = NamedAsHere(sql, *here);
  if (!only_with_more_columns) return db.RunKept(record, {Value::Text(name), Value::Text(named)});
  // Columns added never take columns away: a change older than what it holds leaves it.
  absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(
      absl::StrCat("SELECT sql FROM ", kBaseline,
                   " WHERE type = 'table' AND name = ", Value::Text(name).DebugString()));
  if (!known.ok()) return known.status();
  if (!known->empty() && !(*known)[0][0].is_null() &&
      HasEveryColumnOf((*known)[0][0].bytes(), sql)) {
    return absl::OkStatus();
  }
  return db.RunKept(record, {Value::Text(name), Value::Text(named)});
}

// Makes `table` (its name here; `here_sql` its SQL) hold `columns` (definitions), adding with
// ALTER TABLE ADD COLUMN those whose name it lacks, in order; `target` is the table's SQL on
// the origin.
template <typename Definitions>
absl::StatusOr<SchemaApplied> AddColumns(sqlite::Database& db, const std::string& table,
                                         const std::string& here_sql, const Definitions& columns,
                                         const std::string& target) {
  if (HasEveryColumnOf(here_sql, target)) {
    if (absl::Status s = RecordTableInBaseline(db, table, target); !s.ok()) return s;
    return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
  }
  absl::StatusOr<std::vector<std::string>> names = ColumnsHere(db, table);
  if (!names.ok()) return names.status();
  int added = 0;
  for (const std::string& definition : columns) {
    const std::string name = ColumnName(definition);
    if (name.empty() || sqlite::IsReservedName(name) || RowidAlias(name)) {
      return Refused(absl::StrCat("'", definition, "' does not define a user column"));
    }
    if (std::optional<std::string> why = Hostile(definition)) {
      return Refused(absl::StrCat("a column definition: ", *why));
    }
    if (std::find(names->begin(), names->end(), name) != names->end()) continue;
    absl::StatusOr<Names> before = AllObjects(db);
    if (!before.ok()) return before.status();
    std::string why;
    absl::StatusOr<bool> ran = RunOneStatement(
        db,
        absl::StrCat("ALTER TABLE ", sqlite::QuoteIdentifier(table), " ADD COLUMN ", definition),
        "ALTER", &why);
    if (!ran.ok()) return ran.status();
    if (!*ran) return Refused(absl::StrCat("ADD COLUMN ", definition, " cannot run here: ", why));
    absl::StatusOr<Names> after = AllObjects(db);
    if (!after.ok()) return after.status();
    absl::StatusOr<std::vector<std::string>> now = ColumnsHere(db, table);
    if (!now.ok()) return now.status();
    names->push_back(name);
    if (*after != *before || *now != *names) {
      return Refused(absl::StrCat("'", definition, "' does not add exactly column ", name));
    }
    ++added;
  }
  absl::StatusOr<std::string> result = TableSqlHere(db, table);
  if (!result.ok()) return result.status();
  if (HasEveryColumnOf(*result, target)) {
    if (absl::Status s = RecordTableInBaseline(db, table, target); !s.ok()) return s;
    return SchemaApplied{.outcome = added > 0 ? SchemaApplied::kApplied : SchemaApplied::kAlreadySo,
                         .table_changed = added > 0};
  }
  if (absl::Status s = RecordInBaseline(db, "table", table); !s.ok()) return s;
  return SchemaApplied{
      .outcome = SchemaApplied::kConflict,
      .detail = absl::StrCat(added > 0 ? absl::StrCat(added, " column(s) added, but t") : "T",
                             "able ", table, " is defined otherwise here than on its origin (",
                             *result, " here, ", target, " there); kept"),
      .table_changed = added > 0};
}

absl::StatusOr<SchemaApplied> ApplyCreate(sqlite::Database& db, const SchemaChange& c,
                                          const std::string& type, const std::string& name) {
  absl::StatusOr<std::vector<std::vector<Value>>> existing = db.QueryRows(absl::StrCat(
      "SELECT type, name, sql FROM sqlite_master WHERE name = ", Value::Text(name).DebugString(),
      " COLLATE NOCASE"));
  if (!existing.ok()) return existing.status();
  if (!existing->empty()) {
    const std::vector<Value>& here = existing->front();
    // A table this node has with fewer columns, or more (added since), is this table.
    if (type == "table" && here[0].bytes() == "table" && !here[2].is_null()) {
      if (std::optional<std::vector<std::string>> columns =
              AddedColumns(here[2].bytes(), c.sql())) {
        return AddColumns(db, here[1].bytes(), here[2].bytes(), *columns, c.sql());
      }
      if (AddedColumns(c.sql(), here[2].bytes()).has_value()) {
        return AddColumns(db, here[1].bytes(), here[2].bytes(), std::vector<std::string>(),
                          c.sql());
      }
    }
    // The same object, its name written in another case or not (one name to SQLite).
    if (here[0].bytes() == type && absl::EqualsIgnoreCase(here[1].bytes(), name) &&
        !here[2].is_null() && SameButRenamed(here[2].bytes(), c.sql(), {})) {
      if (absl::Status s = RecordInBaseline(db, type, here[1].bytes()); !s.ok()) return s;
      return SchemaApplied{.outcome = SchemaApplied::kAlreadySo,
                           .detail = here[1].bytes() == name
                                         ? ""
                                         : absl::StrCat(type, " ", name, " is ", type, " ",
                                                        here[1].bytes(), " here")};
    }
    if (absl::Status s = RecordInBaseline(db, here[0].bytes(), here[1].bytes()); !s.ok()) {
      return s;
    }
    return SchemaApplied{
        .outcome = SchemaApplied::kConflict,
        .detail = absl::StrCat(here[0].bytes(), " ", here[1].bytes(),
                               " exists here with another definition; kept as it is here (",
                               here[2].is_null() ? "" : here[2].bytes(), ")")};
  }
  if (std::optional<std::string> why = Hostile(c.sql())) {
    return Refused(absl::StrCat("its statement: ", *why));
  }
  if (type == "table" && CreatesTableFromQuery(c.sql())) {
    return Refused("CREATE TABLE ... AS runs a query; a table travels as its columns");
  }
  absl::StatusOr<Names> before = AllObjects(db);
  if (!before.ok()) return before.status();
  std::string why;
  absl::StatusOr<bool> ran = RunOneStatement(db, c.sql(), "CREATE", &why);
  if (!ran.ok()) return ran.status();
  if (!*ran) return Refused(absl::StrCat("its statement cannot run here: ", why));
  absl::StatusOr<Names> after = AllObjects(db);
  if (!after.ok()) return after.status();
  // It made the object it names, and nothing else but what SQLite makes with such an object
  // (automatic indexes of a table, `sqlite_sequence` for its AUTOINCREMENT, shadow tables of a
  // virtual table); it removed nothing.
  bool made = false,
       only_that = std::includes(after->begin(), after->end(), before->begin(), before->end());
  for (const auto& object : *after) {
    if (before->count(object)) continue;
    if (object == std::make_pair(type, name)) {
      made = true;
    } else if (!absl::StartsWith(object.second, "sqlite_autoindex_") &&
               !(type == "table" && object.second == "sqlite_sequence") &&
               !(type == "table" && absl::StartsWith(object.second, name + "_"))) {
      only_that = false;
    }
  }
  if (!made || !only_that) {
    return Refused(absl::StrCat("its statement does not create exactly ", type, " ", name));
  }
  if (absl::Status s = RecordInBaseline(db, type, name); !s.ok()) return s;
  // A table new here routes by its own name (table_renames.h).
  if (type == "table") {
    if (absl::Status s = ForgetTableRoute(db, name); !s.ok()) return s;
  }
  return SchemaApplied{.outcome = SchemaApplied::kApplied, .table_changed = type == "table"};
}

absl::StatusOr<bool> Exists(sqlite::Database& db, const std::string& type,
                            const std::string& name) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(
      absl::StrCat("SELECT 1 FROM sqlite_master WHERE type = ", Value::Text(type).DebugString(),
                   " AND name = ", Value::Text(name).DebugString()));
  if (!rows.ok()) return rows.status();
  return !rows->empty();
}

// The tables here that carry the capture of a table of another name, and are that table
// renamed: table -> those names. SQLite moves marmot's capture triggers with a table renamed,
// and in no other way (a table dropped takes its triggers along, one made anew has none): a
// table U that has `__marmot__T_insert` is T renamed, until capture is installed again, which
// gives T's log to U and leaves a trace of that (sqlite/change_log.h, kMovedCaptureTable), taken
// while U stands on the page it had then and the baseline knows T on that page (a trace left
// by an earlier table of either name is not this one's). `on_any_page`: every trace, whatever
// pages it names (those of tables that may have been renamed, VACUUM or not). A table renamed
// before it had capture carries none.
absl::StatusOr<std::map<std::string, std::set<std::string>>> CarriedCaptures(
    sqlite::Database& db, bool on_any_page = false) {
  std::map<std::string, std::set<std::string>> out;
  absl::StatusOr<std::vector<std::vector<Value>>> triggers = db.QueryRows(
      "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND "
      "substr(name, 1, 10) = '__marmot__' AND substr(name, -7) = '_insert'");
  if (!triggers.ok()) return triggers.status();
  for (const std::vector<Value>& r : *triggers) {
    const std::string& name = r[0].bytes();
    if (name.size() <= 17) continue;
    const std::string of = name.substr(10, name.size() - 17);
    if (of != r[1].bytes()) out[r[1].bytes()].insert(of);
  }
  absl::StatusOr<bool> traced = Exists(db, "table", sqlite::kMovedCaptureTable);
  if (!traced.ok()) return traced.status();
  if (!*traced) return out;
  absl::StatusOr<std::vector<std::vector<Value>>> moved = db.QueryRows(
      on_any_page
          ? absl::StrCat("SELECT tbl, was FROM ",
                         sqlite::QuoteIdentifier(sqlite::kMovedCaptureTable))
          : absl::StrCat("SELECT c.tbl, c.was FROM ",
                         sqlite::QuoteIdentifier(sqlite::kMovedCaptureTable),
                         " AS c JOIN sqlite_master AS m ON m.type = 'table' AND m.name = c.tbl AND "
                         "m.rootpage = c.rootpage JOIN ",
                         kBaseline,
                         " AS b ON b.type = 'table' AND b.name = c.was AND b.rootpage = "
                         "c.rootpage"));
  if (!moved.ok()) return moved.status();
  for (const std::vector<Value>& r : *moved) out[r[0].bytes()].insert(r[1].bytes());
  return out;
}

// What marmot keeps of a table that is gone: the baseline forgets it with its indexes and
// triggers; its log's pending changes are done (made before the drop or concurrently with it,
// they would otherwise ship, read against a table made again under its name, as deletes of its
// rows); its rows' versions go (a table made again under its name starts without versions). Its
// kept conflicts and dead letters stay: they are a trace of writes the drop undid.
absl::Status ForgetDroppedTable(sqlite::Database& db, const std::string& name) {
  if (absl::Status s = db.RunKept(absl::StrCat("DELETE FROM ", kBaseline,
                                               " WHERE (type = 'table' AND name = ?1) OR "
                                               "(type IN ('index', 'trigger') AND tbl_name = ?1)"),
                                  {Value::Text(name)});
      !s.ok()) {
    return s;
  }
  const std::string log = sqlite::ChangeLogTableName(name);
  // A log as capture makes it (none when the table never had capture).
  absl::StatusOr<std::vector<std::string>> state_column =
      ColumnsHere(db, log, "name", "name = '__marmot__state'");
  if (!state_column.ok()) return state_column.status();
  if (!state_column->empty()) {
    // Done (state 1) like the rows that move a log's ids up (sqlite/change_log.h).
    if (absl::Status s =
            db.Exec(absl::StrCat("UPDATE ", sqlite::QuoteIdentifier(log),
                                 " SET \"__marmot__state\" = 1 WHERE \"__marmot__state\" = 0"));
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<bool> has_versions = Exists(db, "table", sqlite::kRowVersionsTable);
  if (!has_versions.ok()) return has_versions.status();
  if (!*has_versions) return absl::OkStatus();
  return db.RunKept(absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(sqlite::kRowVersionsTable),
                                 " WHERE tbl = ?1"),
                    {Value::Text(name)});
}

absl::StatusOr<SchemaApplied> ApplyDrop(sqlite::Database& db, const std::string& type,
                                        const std::string& dropped) {
  // The object of that name in any case (one name to SQLite), under its name here.
  absl::StatusOr<std::vector<std::vector<Value>>> existing = db.QueryRows(absl::StrCat(
      "SELECT type, name FROM sqlite_master WHERE name = ", Value::Text(dropped).DebugString(),
      " COLLATE NOCASE"));
  if (!existing.ok()) return existing.status();
  const std::string name = existing->empty() ? dropped : existing->front()[1].bytes();
  if (existing->empty()) {
    absl::Status s =
        type == "table" ? ForgetDroppedTable(db, name) : ForgetInBaseline(db, type, name);
    if (!s.ok()) return s;
    return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
  }
  if (existing->front()[0].bytes() != type) {
    return SchemaApplied{.outcome = SchemaApplied::kConflict,
                         .detail = absl::StrCat(name, " is a ", existing->front()[0].bytes(),
                                                " here, not a ", type, "; kept")};
  }
  if (absl::Status s =
          db.Exec(absl::StrCat("DROP ", Upper(type), " ", sqlite::QuoteIdentifier(name)));
      !s.ok()) {
    return s;
  }
  if (type == "table") {
    if (absl::Status s = ForgetDroppedTable(db, name); !s.ok()) return s;
    if (absl::Status s = ForgetTableRoute(db, name); !s.ok()) return s;
    return SchemaApplied{.outcome = SchemaApplied::kApplied, .table_changed = true};
  }
  if (absl::Status s = ForgetInBaseline(db, type, name); !s.ok()) return s;
  return SchemaApplied{.outcome = SchemaApplied::kApplied};
}

// Looks up table `name` here (without case): its name and SQL, or nothing.
absl::StatusOr<std::optional<std::pair<std::string, std::string>>> TableHere(
    sqlite::Database& db, const std::string& name) {
  absl::StatusOr<std::vector<std::vector<Value>>> existing = db.QueryRows(
      absl::StrCat("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name = ",
                   Value::Text(name).DebugString(), " COLLATE NOCASE"));
  if (!existing.ok()) return existing.status();
  if (existing->empty() || existing->front()[1].is_null()) {
    return std::optional<std::pair<std::string, std::string>>();
  }
  return std::make_optional(
      std::make_pair(existing->front()[0].bytes(), existing->front()[1].bytes()));
}

SchemaApplied NoTableHere(const std::string& name) {
  return {.outcome = SchemaApplied::kConflict,
          .detail = absl::StrCat("there is no table ", name, " here")};
}

absl::StatusOr<SchemaApplied> ApplyAddColumns(sqlite::Database& db, const SchemaChange& c) {
  if (c.type() != "table") return Refused("only a table gets columns");
  if (c.columns().empty()) return Refused("it adds no column");
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>> table =
      TableHere(db, c.name());
  if (!table.ok()) return table.status();
  if (!table->has_value()) return NoTableHere(c.name());
  return AddColumns(db, (*table)->first, (*table)->second, c.columns(), c.sql());
}

absl::Status RecordColumnGone(sqlite::Database& db, const std::string& table,
                              const std::string& old_name, const std::optional<std::string>& to) {
  return db.RunKept(
      absl::StrCat("INSERT OR REPLACE INTO ", sqlite::QuoteIdentifier(kColumnHistoryTable),
                   " (tbl, old, new) VALUES (lower(?1), lower(?2), ?3)"),
      {Value::Text(table), Value::Text(old_name),
       to.has_value() ? Value::Text(*to) : Value::Null()});
}

// Where column `column` of `table` went by the column history: nullopt when it says nothing of
// it, "" when it was dropped, else its new name (as written).
absl::StatusOr<std::optional<std::string>> ColumnWentTo(sqlite::Database& db,
                                                        const std::string& table,
                                                        const std::string& column) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows =
      db.QueryRows(absl::StrCat("SELECT new FROM ", sqlite::QuoteIdentifier(kColumnHistoryTable),
                                " WHERE tbl = lower(", Value::Text(table).DebugString(),
                                ") AND old = lower(", Value::Text(column).DebugString(), ")"));
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  return (*rows)[0][0].is_null() ? std::string() : (*rows)[0][0].bytes();
}

// This node's own changes of `table`'s columns not applied in shard 0 yet: its table as the
// baseline has it against its table now (nothing when they differ otherwise).
absl::StatusOr<std::optional<ColumnDiff>> OwnColumnChanges(sqlite::Database& db,
                                                           const std::string& table) {
  absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(
      absl::StrCat("SELECT sql FROM ", kBaseline,
                   " WHERE type = 'table' AND name = ", Value::Text(table).DebugString()));
  if (!known.ok()) return known.status();
  if (known->empty() || (*known)[0][0].is_null()) return std::nullopt;
  absl::StatusOr<std::string> here = TableSqlHere(db, table);
  if (!here.ok()) return here.status();
  return DiffColumns((*known)[0][0].bytes(), *here);
}

// The column of `table` here (one of `columns`, lower case) that its column `column`, not here
// any more, became: by the renames of the column history (applied here), or by this node's own
// rename not applied in shard 0 yet. Nullopt when none is.
absl::StatusOr<std::optional<std::string>> ColumnNowNamed(sqlite::Database& db,
                                                          const std::string& table,
                                                          const std::string& column,
                                                          const std::vector<std::string>& columns) {
  auto here = [&](const std::string& name) {
    return std::find(columns.begin(), columns.end(), name) != columns.end();
  };
  // To the end of the chain: a name on the way may have been taken again since by a column
  // added under it.
  std::string at = absl::AsciiStrToLower(column);
  bool renamed = false;
  for (size_t step = 0; step <= columns.size() + 1; ++step) {
    absl::StatusOr<std::optional<std::string>> went = ColumnWentTo(db, table, at);
    if (!went.ok()) return went.status();
    if (!went->has_value()) break;
    if ((*went)->empty()) return std::nullopt;
    at = absl::AsciiStrToLower(UnquotedName(**went));
    renamed = true;
  }
  if (renamed && here(at)) return at;
  absl::StatusOr<std::optional<ColumnDiff>> own = OwnColumnChanges(db, table);
  if (!own.ok()) return own.status();
  if (!own->has_value()) return std::nullopt;
  for (const auto& [from, to] : (*own)->renamed) {
    const std::string now = absl::AsciiStrToLower(UnquotedName(to));
    if (absl::AsciiStrToLower(from) == absl::AsciiStrToLower(column) && here(now)) return now;
  }
  return std::nullopt;
}

// Whether column `column` of `table` was dropped here: by a change applied here (the column
// history), or, unless `applied_only`, by this node itself, not applied in shard 0 yet.
absl::StatusOr<bool> ColumnDroppedHere(sqlite::Database& db, const std::string& table,
                                       const std::string& column, bool applied_only = false) {
  absl::StatusOr<std::optional<std::string>> went = ColumnWentTo(db, table, column);
  if (!went.ok()) return went.status();
  if (went->has_value() && (*went)->empty()) return true;
  if (applied_only) return false;
  absl::StatusOr<std::optional<ColumnDiff>> own = OwnColumnChanges(db, table);
  if (!own.ok()) return own.status();
  if (!own->has_value()) return false;
  const std::vector<std::string>& dropped = (*own)->dropped;
  return std::find(dropped.begin(), dropped.end(), absl::AsciiStrToLower(column)) != dropped.end();
}

// The user objects other than tables: (type, name) -> SQL.
absl::StatusOr<std::map<std::pair<std::string, std::string>, std::string>> OtherObjectsSql(
    sqlite::Database& db) {
  absl::StatusOr<std::vector<SchemaObject>> objects = ListUserObjects(db);
  if (!objects.ok()) return objects.status();
  std::map<std::pair<std::string, std::string>, std::string> out;
  for (const SchemaObject& o : *objects) {
    if (o.type != "table") out[{o.type, o.name}] = o.sql;
  }
  return out;
}

// Pairs each table of `gone` with the table of `made` it `match`es when each is the only match
// of the other, and hands the pair to `take`, which says whether it took it; the tables of the
// pairs taken leave both lists.
template <typename Match, typename Take>
void PairOneToOne(std::vector<const SchemaObject*>& gone, std::vector<const SchemaObject*>& made,
                  Match match, Take take) {
  std::map<const SchemaObject*, std::vector<const SchemaObject*>> matches_of_gone;
  std::map<const SchemaObject*, int> matches_of_made;
  for (const SchemaObject* g : gone) {
    for (const SchemaObject* m : made) {
      if (!match(g, m)) continue;
      matches_of_gone[g].push_back(m);
      ++matches_of_made[m];
    }
  }
  std::set<const SchemaObject*> paired;
  for (const auto& [g, ms] : matches_of_gone) {
    if (ms.size() != 1 || matches_of_made[ms[0]] != 1 || !take(g, ms[0])) continue;
    paired.insert(g);
    paired.insert(ms[0]);
  }
  for (std::vector<const SchemaObject*>* tables : {&gone, &made}) {
    tables->erase(std::remove_if(tables->begin(), tables->end(),
                                 [&](const SchemaObject* t) { return paired.count(t) > 0; }),
                  tables->end());
  }
}

// Records in the baseline the indexes, triggers and views whose SQL here reads as the
// baseline's but for `from` renamed to `to` (a table or a column; what its rename rewrote).
absl::Status RecordRewrittenByRename(sqlite::Database& db, const std::string& from,
                                     const std::string& to) {
  absl::StatusOr<std::map<std::pair<std::string, std::string>, std::string>> others =
      OtherObjectsSql(db);
  if (!others.ok()) return others.status();
  const std::map<std::string, std::string> renamed = {
      {absl::AsciiStrToLower(from), absl::AsciiStrToLower(to)}};
  for (const auto& [key, sql] : *others) {
    absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(absl::StrCat(
        "SELECT sql FROM ", kBaseline, " WHERE type = ", Value::Text(key.first).DebugString(),
        " AND name = ", Value::Text(key.second).DebugString()));
    if (!known.ok()) return known.status();
    if (!known->empty() && !(*known)[0][0].is_null() && (*known)[0][0].bytes() != sql &&
        SameButRenamed((*known)[0][0].bytes(), sql, renamed)) {
      if (absl::Status s = RecordInBaseline(db, key.first, key.second); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

// Runs one ALTER TABLE statement that must leave the same objects and the table with
// `columns_after` (lower case, in order); a refusal otherwise.
absl::StatusOr<std::optional<SchemaApplied>> AlterExactly(
    sqlite::Database& db, const std::string& table, const std::string& statement,
    const std::vector<std::string>& columns_after) {
  absl::StatusOr<Names> before = AllObjects(db);
  if (!before.ok()) return before.status();
  std::string why;
  absl::StatusOr<bool> ran = RunOneStatement(db, statement, "ALTER", &why);
  if (!ran.ok()) return ran.status();
  if (!*ran) return std::make_optional(Refused(absl::StrCat(statement, " cannot run here: ", why)));
  absl::StatusOr<Names> after = AllObjects(db);
  if (!after.ok()) return after.status();
  absl::StatusOr<std::vector<std::string>> now = ColumnsHere(db, table);
  if (!now.ok()) return now.status();
  if (*after != *before || *now != columns_after) {
    return std::make_optional(Refused(absl::StrCat(statement, " did not do only that here")));
  }
  return std::optional<SchemaApplied>();
}

// After a change of columns: the baseline takes the origin's table when this node's has every
// column of it (columns this node added itself stay its own change); otherwise it stays, and
// what differs is looked at again as this node's change.
absl::Status RecordColumnsChanged(sqlite::Database& db, const std::string& table,
                                  const std::string& target) {
  absl::StatusOr<std::string> here = TableSqlHere(db, table);
  if (!here.ok()) return here.status();
  if (!HasEveryColumnOf(*here, target)) return absl::OkStatus();
  return RecordTableInBaseline(db, table, target, /*only_with_more_columns=*/false);
}

// Whether rename `c` of column `from` of `table` (its name here; `columns` its columns here, lower
// case) to `to` lost to another node's rename of the column to another name that came first in
// shard 0's order (neither `from` nor `to` here, and the column history renamed `from` to a
// column here): that column, which changes that name `to` mean (RenameColumnLost). Nothing
// otherwise.
absl::StatusOr<std::optional<std::string>> ColumnRenameLostTo(
    sqlite::Database& db, const std::string& table, const std::vector<std::string>& columns,
    const std::string& from, const std::string& to) {
  auto here = [&](const std::string& column) {
    return std::find(columns.begin(), columns.end(), absl::AsciiStrToLower(column)) !=
           columns.end();
  };
  if (here(from) || here(to)) return std::nullopt;
  absl::StatusOr<std::optional<std::string>> went = ColumnWentTo(db, table, from);
  if (!went.ok() || !went->has_value()) return went;
  const std::string winner = UnquotedName(**went);
  if (winner.empty() || !here(winner) ||
      absl::AsciiStrToLower(winner) == absl::AsciiStrToLower(to)) {
    return std::nullopt;
  }
  return **went;
}

// Rename `c` lost to `winner` (ColumnRenameLostTo): a change that names its new name means
// `winner`. Reported as a conflict, on its origin too.
absl::StatusOr<SchemaApplied> RenameColumnLost(sqlite::Database& db, const std::string& table,
                                               const SchemaChange& c, const std::string& winner) {
  const std::string to = UnquotedName(c.columns(1));
  if (absl::Status s = RecordColumnGone(db, table, to, winner); !s.ok()) return s;
  return SchemaApplied{
      .outcome = SchemaApplied::kConflict,
      .detail = absl::StrCat("column ", c.columns(0), " of ", table, " was renamed to ", winner,
                             " first in shard 0's order; it stays ", winner,
                             " everywhere, and values written to ", to, " go to it")};
}

absl::StatusOr<SchemaApplied> ApplyRenameColumn(sqlite::Database& db, const SchemaChange& c) {
  if (c.type() != "table") return Refused("only a table's column is renamed");
  if (c.columns_size() != 2 || c.columns(0).empty() || c.columns(1).empty()) {
    return Refused("a rename names one column and its new name");
  }
  const std::string& from = c.columns(0);
  // The new name as the origin's statement wrote it (quoted or not), so that the table's SQL
  // reads the same here: one name token and nothing else.
  const std::string& to_token = c.columns(1);
  size_t at = 0;
  const std::string token = NextSqlToken(to_token, &at);
  const std::string to = UnquotedName(to_token);
  if (token != to_token || to.empty() || sqlite::IsReservedName(to) || RowidAlias(to) ||
      absl::StrContains(absl::AsciiStrToLower(to), "__marmot__") ||
      !(absl::ascii_isalnum(static_cast<unsigned char>(token[0])) || token[0] == '_' ||
        token[0] == '"' || token[0] == '`' || token[0] == '[' ||
        static_cast<unsigned char>(token[0]) >= 0x80)) {
    return Refused(absl::StrCat("'", to_token, "' is not the name of a user column"));
  }
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>> table =
      TableHere(db, c.name());
  if (!table.ok()) return table.status();
  if (!table->has_value()) return NoTableHere(c.name());
  const std::string& name = (*table)->first;
  absl::StatusOr<std::vector<std::string>> columns = ColumnsHere(db, name);
  if (!columns.ok()) return columns.status();
  auto has = [&](const std::string& column) {
    return std::find(columns->begin(), columns->end(), absl::AsciiStrToLower(column)) !=
           columns->end();
  };
  SchemaApplied applied{.outcome = SchemaApplied::kAlreadySo};
  // This node renamed the column to another name itself, not ordered in shard 0 yet (nor applied
  // here, which the column history would tell), and `c` came first: the column takes `c`'s name
  // here too (this node's rename will lose everywhere, RenameColumnLost).
  std::optional<std::string> own_rename;
  if (!has(from) && !has(to)) {
    absl::StatusOr<std::optional<ColumnDiff>> own = OwnColumnChanges(db, name);
    if (!own.ok()) return own.status();
    absl::StatusOr<std::optional<std::string>> went = ColumnWentTo(db, name, from);
    if (!went.ok()) return went.status();
    const std::vector<std::pair<std::string, std::string>> own_renamed =
        own->has_value() ? (*own)->renamed : std::vector<std::pair<std::string, std::string>>();
    for (const auto& [was, now] : own_renamed) {
      const std::string now_name = UnquotedName(now);
      if (absl::AsciiStrToLower(was) == absl::AsciiStrToLower(from) && has(now_name) &&
          !(went->has_value() &&
            absl::AsciiStrToLower(UnquotedName(**went)) == absl::AsciiStrToLower(now_name))) {
        own_rename = now_name;
      }
    }
    if (!own_rename.has_value()) {
      absl::StatusOr<std::optional<std::string>> winner =
          ColumnRenameLostTo(db, name, *columns, from, to);
      if (!winner.ok()) return winner.status();
      if (winner->has_value()) return RenameColumnLost(db, name, c, **winner);
    }
  }
  if (own_rename.has_value()) {
    absl::StatusOr<std::map<std::pair<std::string, std::string>, std::string>> others =
        OtherObjectsSql(db);
    if (!others.ok()) return others.status();
    std::vector<std::string> after = *columns;
    for (std::string& column : after) {
      if (column == absl::AsciiStrToLower(*own_rename)) column = absl::AsciiStrToLower(to);
    }
    absl::StatusOr<std::optional<SchemaApplied>> refused =
        AlterExactly(db, name,
                     absl::StrCat("ALTER TABLE ", sqlite::QuoteIdentifier(name), " RENAME COLUMN ",
                                  sqlite::QuoteIdentifier(*own_rename), " TO ", to_token),
                     after);
    if (!refused.ok()) return refused.status();
    if (refused->has_value()) return **refused;
    // The indexes, triggers and views that name the column read as the baseline's but for it.
    if (absl::Status s = RecordRewrittenByRename(db, from, to); !s.ok()) return s;
    if (absl::Status s = RecordColumnGone(db, name, *own_rename, to); !s.ok()) return s;
    applied = {.outcome = SchemaApplied::kApplied,
               .detail = absl::StrCat("this node's own rename of column ", from, " of ", name,
                                      " to ", *own_rename,
                                      " comes later in shard 0's order and loses: ", *own_rename,
                                      " renamed to ", to, " here"),
               .table_changed = true};
  } else if (has(from) && !has(to)) {
    absl::StatusOr<std::map<std::pair<std::string, std::string>, std::string>> others =
        OtherObjectsSql(db);
    if (!others.ok()) return others.status();
    std::vector<std::string> after = *columns;
    for (std::string& column : after) {
      if (column == absl::AsciiStrToLower(from)) column = absl::AsciiStrToLower(to);
    }
    absl::StatusOr<std::optional<SchemaApplied>> refused =
        AlterExactly(db, name,
                     absl::StrCat("ALTER TABLE ", sqlite::QuoteIdentifier(name), " RENAME COLUMN ",
                                  sqlite::QuoteIdentifier(from), " TO ", to_token),
                     after);
    if (!refused.ok()) return refused.status();
    if (refused->has_value()) return **refused;
    // SQLite rewrote the indexes, triggers and views that name the column: those that were as
    // the baseline holds them still are.
    absl::StatusOr<std::map<std::pair<std::string, std::string>, std::string>> rewritten =
        OtherObjectsSql(db);
    if (!rewritten.ok()) return rewritten.status();
    for (const auto& [key, sql] : *rewritten) {
      auto was = others->find(key);
      if (was == others->end() || was->second == sql) continue;
      absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(absl::StrCat(
          "SELECT sql FROM ", kBaseline, " WHERE type = ", Value::Text(key.first).DebugString(),
          " AND name = ", Value::Text(key.second).DebugString()));
      if (!known.ok()) return known.status();
      if (!known->empty() && !(*known)[0][0].is_null() && (*known)[0][0].bytes() == was->second) {
        if (absl::Status s = RecordInBaseline(db, key.first, key.second); !s.ok()) return s;
      }
    }
    applied = {.outcome = SchemaApplied::kApplied, .table_changed = true};
  } else if (!has(from) && !has(to)) {
    // The column was dropped here (by a drop that came first in shard 0, or by this node's own
    // drop that will come after it and drop what the rename made on every other node): the
    // rename makes nothing, and a change that carries the renamed column leaves it out.
    absl::StatusOr<bool> dropped = ColumnDroppedHere(db, name, from);
    if (!dropped.ok()) return dropped.status();
    if (*dropped) {
      if (absl::Status s = RecordColumnGone(db, name, to, std::nullopt); !s.ok()) return s;
      return SchemaApplied{.outcome = SchemaApplied::kAlreadySo,
                           .detail = absl::StrCat("column ", from, " of ", name,
                                                  " was dropped here: the rename makes nothing")};
    }
    applied = {
        .outcome = SchemaApplied::kConflict,
        .detail = absl::StrCat("table ", name, " has neither ", from, " nor ", to, " here; kept")};
  } else if (!(has(to) && !has(from))) {
    applied = {.outcome = SchemaApplied::kConflict,
               .detail = absl::StrCat("table ", name, " has ", has(from) ? "both " : "neither ",
                                      from, has(from) ? " and " : " nor ", to, " here; kept")};
  }
  // A rename that conflicts is not this node's story of the column: the history keeps what it
  // holds (another rename of the same column that came first, a drop), and no change naming the
  // column is moved onto a column this rename did not make.
  if (applied.outcome == SchemaApplied::kConflict) return applied;
  if (absl::Status s = RecordColumnGone(db, name, from, to); !s.ok()) return s;
  if (absl::Status s = RecordColumnsChanged(db, name, c.sql()); !s.ok()) return s;
  return applied;
}

absl::StatusOr<SchemaApplied> ApplyDropColumns(sqlite::Database& db, const SchemaChange& c) {
  if (c.type() != "table") return Refused("only a table's columns are dropped");
  if (c.columns().empty()) return Refused("it drops no column");
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>> table =
      TableHere(db, c.name());
  if (!table.ok()) return table.status();
  if (!table->has_value()) return NoTableHere(c.name());
  const std::string& name = (*table)->first;
  int dropped = 0;
  for (const std::string& column : c.columns()) {
    if (column.empty() || sqlite::IsReservedName(column)) {
      return Refused(absl::StrCat("'", column, "' is not the name of a user column"));
    }
    absl::StatusOr<std::vector<std::string>> columns = ColumnsHere(db, name);
    if (!columns.ok()) return columns.status();
    // Not here, but renamed here (by a rename that came first in shard 0, which the drop's
    // origin had not seen, or by this node's own rename that comes after it): the column the
    // drop names goes under its name here.
    std::string here = absl::AsciiStrToLower(column);
    if (std::find(columns->begin(), columns->end(), here) == columns->end()) {
      absl::StatusOr<std::optional<std::string>> now = ColumnNowNamed(db, name, column, *columns);
      if (!now.ok()) return now.status();
      if (now->has_value()) here = **now;
    }
    std::vector<std::string> after = *columns;
    after.erase(std::remove(after.begin(), after.end(), here), after.end());
    if (after.size() != columns->size()) {
      absl::StatusOr<std::optional<SchemaApplied>> refused =
          AlterExactly(db, name,
                       absl::StrCat("ALTER TABLE ", sqlite::QuoteIdentifier(name), " DROP COLUMN ",
                                    sqlite::QuoteIdentifier(here)),
                       after);
      if (!refused.ok()) return refused.status();
      if (refused->has_value()) return **refused;
      ++dropped;
    }
    if (here != absl::AsciiStrToLower(column)) {
      if (absl::Status s = RecordColumnGone(db, name, here, std::nullopt); !s.ok()) return s;
    }
    if (absl::Status s = RecordColumnGone(db, name, column, std::nullopt); !s.ok()) return s;
  }
  if (absl::Status s = RecordColumnsChanged(db, name, c.sql()); !s.ok()) return s;
  return SchemaApplied{.outcome = dropped > 0 ? SchemaApplied::kApplied : SchemaApplied::kAlreadySo,
                       .table_changed = dropped > 0};
}

absl::StatusOr<SchemaApplied> ApplyRedefine(sqlite::Database& db, const SchemaChange& c) {
  constexpr char kNew[] = "__marmot__redefined";
  if (c.type() != "table") return Refused("only a table is made again");
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>> table =
      TableHere(db, c.name());
  if (!table.ok()) return table.status();
  if (!table->has_value()) return NoTableHere(c.name());
  const std::string name = (*table)->first;
  const std::string here = (*table)->second;
  if (SameButRenamed(here, c.sql(), {})) {
    if (absl::Status s = RecordTableInBaseline(db, name, c.sql(), false); !s.ok()) return s;
    return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
  }
  if (!SameButRenamed(here, c.before_sql(), {})) {
    return SchemaApplied{
        .outcome = SchemaApplied::kConflict,
        .detail = absl::StrCat("table ", name, " here (", here,
                               ") is neither as the origin had it before nor as it has it now; "
                               "kept")};
  }
  // The new definition: one CREATE TABLE of this very table, of columns.
  if (std::optional<std::string> why = Hostile(c.sql())) {
    return Refused(absl::StrCat("its statement: ", *why));
  }
  if (CreatesTableFromQuery(c.sql())) {
    return Refused("CREATE TABLE ... AS runs a query; a table travels as its columns");
  }
  std::optional<std::string> name_token = TableNameToken(c.sql());
  std::optional<std::string> made = WithTableName(c.sql(), sqlite::QuoteIdentifier(kNew));
  if (!name_token.has_value() || !made.has_value() ||
      absl::AsciiStrToLower(UnquotedName(*name_token)) != absl::AsciiStrToLower(name)) {
    return Refused(absl::StrCat("its statement does not define table ", name));
  }
  // Its indexes and triggers go with it, and are made again after.
  absl::StatusOr<std::vector<std::vector<Value>>> others = db.QueryRows(
      absl::StrCat("SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
                   " AND sql IS NOT NULL AND substr(name, 1, 10) != '__marmot__' AND tbl_name = ",
                   Value::Text(name).DebugString(), " ORDER BY rowid"));
  if (!others.ok()) return others.status();
  absl::StatusOr<Names> before = AllObjects(db);
  if (!before.ok()) return before.status();
  std::string why;
  absl::StatusOr<bool> ran = RunOneStatement(db, *made, "CREATE", &why);
  if (!ran.ok()) return ran.status();
  if (!*ran) return Refused(absl::StrCat("its statement cannot run here: ", why));
  absl::StatusOr<Names> after = AllObjects(db);
  if (!after.ok()) return after.status();
  for (const auto& object : *after) {
    if (before->count(object) ||
        object == std::make_pair(std::string("table"), std::string(kNew)) ||
        absl::StartsWith(object.second, "sqlite_autoindex_")) {
      continue;
    }
    return Refused(absl::StrCat("its statement does not create exactly table ", name));
  }
  // The rows, column by column of the same name (generated columns are not stored).
  absl::StatusOr<std::vector<std::string>> old_columns =
      ColumnsHere(db, name, "name", "hidden = 0");
  if (!old_columns.ok()) return old_columns.status();
  absl::StatusOr<std::vector<std::string>> new_columns =
      ColumnsHere(db, kNew, "name", "hidden = 0");
  if (!new_columns.ok()) return new_columns.status();
  std::vector<std::string> into, from;
  for (const std::string& n : *new_columns) {
    for (const std::string& o : *old_columns) {
      if (absl::AsciiStrToLower(n) != absl::AsciiStrToLower(o)) continue;
      into.push_back(sqlite::QuoteIdentifier(n));
      from.push_back(sqlite::QuoteIdentifier(o));
    }
  }
  if (!into.empty()) {
    ran = RunOneStatement(
        db,
        absl::StrCat("INSERT INTO ", sqlite::QuoteIdentifier(kNew), " (", absl::StrJoin(into, ", "),
                     ") SELECT ", absl::StrJoin(from, ", "), " FROM ",
                     sqlite::QuoteIdentifier(name)),
        "INSERT", &why);
    if (!ran.ok()) return ran.status();
    if (!*ran) return Refused(absl::StrCat("the rows here do not fit the new definition: ", why));
  }
  if (absl::Status s = db.Exec(absl::StrCat("DROP TABLE ", sqlite::QuoteIdentifier(name)));
      !s.ok()) {
    return s;
  }
  // As SQLite's documentation does it: views and triggers that name the table are left as they
  // are (they name it again once renamed).
  absl::StatusOr<Value> legacy = db.QueryValue("PRAGMA legacy_alter_table");
  if (!legacy.ok()) return legacy.status();
  if (absl::Status s = db.Exec("PRAGMA legacy_alter_table = ON"); !s.ok()) return s;
  absl::Status renamed = db.Exec(
      absl::StrCat("ALTER TABLE ", sqlite::QuoteIdentifier(kNew), " RENAME TO ", *name_token));
  if (absl::Status s = db.Exec(absl::StrCat("PRAGMA legacy_alter_table = ", legacy->integer()));
      !s.ok()) {
    return s;
  }
  if (!renamed.ok()) return renamed;
  std::vector<std::string> lost;
  for (const std::vector<Value>& o : *others) {
    ran = RunOneStatement(db, o[2].bytes(), "CREATE", &why);
    if (!ran.ok()) return ran.status();
    if (*ran) continue;
    // One the new definition cannot hold (a column it names is gone): the origin dropped it.
    lost.push_back(absl::StrCat(o[0].bytes(), " ", o[1].bytes()));
    if (absl::Status s = ForgetInBaseline(db, o[0].bytes(), o[1].bytes()); !s.ok()) return s;
  }
  absl::StatusOr<std::string> result = TableSqlHere(db, name);
  if (!result.ok()) return result.status();
  if (!SameButRenamed(*result, c.sql(), {})) {
    return Refused(absl::StrCat("the table made again reads ", *result, ", not ", c.sql()));
  }
  if (absl::Status s = RecordTableInBaseline(db, name, c.sql(), false); !s.ok()) return s;
  return SchemaApplied{
      .outcome = SchemaApplied::kApplied,
      .detail = lost.empty() ? "" : absl::StrCat("not made again: ", absl::StrJoin(lost, ", ")),
      .table_changed = true};
}

// What marmot keeps by table name follows a table renamed here: its conflicts, dead letters and
// column history (the rows' versions and the change log follow with its capture,
// sqlite/change_log.h).
absl::Status RenameTableState(sqlite::Database& db, const std::string& from,
                              const std::string& to) {
  absl::StatusOr<Names> objects = AllObjects(db);
  if (!objects.ok()) return objects.status();
  auto has = [&](const char* table) { return objects->count({"table", table}) > 0; };
  if (has("__marmot__conflicts")) {
    if (absl::Status s =
            db.RunKept("UPDATE OR IGNORE \"__marmot__conflicts\" SET tbl = ?2 WHERE tbl = ?1",
                       {Value::Text(from), Value::Text(to)});
        !s.ok()) {
      return s;
    }
  }
  if (has("__marmot__dead_letters")) {
    if (absl::Status s = db.RunKept("UPDATE \"__marmot__dead_letters\" SET tbl = ?2 WHERE tbl = ?1",
                                    {Value::Text(from), Value::Text(to)});
        !s.ok()) {
      return s;
    }
  }
  return db.RunKept(absl::StrCat("UPDATE OR REPLACE ", sqlite::QuoteIdentifier(kColumnHistoryTable),
                                 " SET tbl = lower(?2) WHERE tbl = lower(?1)"),
                    {Value::Text(from), Value::Text(to)});
}

// Whether the baseline holds table `to` on the page it stands on here: this node's own rename to
// it was taken already, from another node's same rename away that came first in shard 0's order
// (ApplyRenameTable). The history keeps that first one only: a second, at a later index, would
// name the rows of the table made again under the old name in between as the renamed table's.
absl::StatusOr<bool> RenameTakenAlready(sqlite::Database& db, const std::string& to) {
  absl::StatusOr<std::vector<std::vector<Value>>> taken = db.QueryRows(
      absl::StrCat("SELECT 1 FROM ", kBaseline,
                   " AS b JOIN sqlite_master AS m ON m.type = b.type AND m.name = b.name"
                   " WHERE b.type = 'table' AND b.name = ",
                   Value::Text(to).DebugString(), " AND b.rootpage = m.rootpage"));
  if (!taken.ok()) return taken.status();
  return !taken->empty();
}

// Whether rename `c` of a table renamed away (its old name made again) was made here too: the
// table of the new name reads as the origin's and stands on the page the baseline knows the old
// table on (this node's own rename not committed yet), or on the page the baseline knows it on
// under the new name with this rename in the history (committed first).
absl::StatusOr<bool> RenamedAwayHere(sqlite::Database& db, const SchemaChange& c) {
  absl::StatusOr<std::vector<std::vector<Value>>> here = db.QueryRows(
      absl::StrCat("SELECT name, sql, rootpage FROM sqlite_master WHERE type = 'table' AND name = ",
                   Value::Text(c.new_name()).DebugString(), " COLLATE NOCASE"));
  if (!here.ok()) return here.status();
  if (here->empty() || (*here)[0][1].is_null() ||
      !SameButRenamed((*here)[0][1].bytes(), c.sql(), {})) {
    return false;
  }
  const Value page = (*here)[0][2];
  auto known_on = [&](const std::string& name) -> absl::StatusOr<bool> {
    absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(
        absl::StrCat("SELECT 1 FROM ", kBaseline, " WHERE type = 'table' AND name = ",
                     Value::Text(name).DebugString(), " AND rootpage = ", page.DebugString()));
    if (!known.ok()) return known.status();
    return !known->empty();
  };
  absl::StatusOr<bool> old_page = known_on(c.name());
  if (!old_page.ok() || *old_page) return old_page;
  absl::StatusOr<bool> new_page = known_on((*here)[0][0].bytes());
  if (!new_page.ok() || !*new_page) return new_page;
  absl::StatusOr<bool> history = Exists(db, "table", kTableHistoryTable);
  if (!history.ok() || !*history) return history;
  absl::StatusOr<std::vector<std::vector<Value>>> renamed = db.QueryRows(
      absl::StrCat("SELECT 1 FROM ", sqlite::QuoteIdentifier(kTableHistoryTable),
                   " WHERE \"from\" = ", Value::Text(absl::AsciiStrToLower(c.name())).DebugString(),
                   " AND \"to\" = ", Value::Text(c.new_name()).DebugString(), " COLLATE NOCASE"));
  if (!renamed.ok()) return renamed.status();
  return !renamed->empty();
}

// This node's own rename of table `c.name()` that shard 0 has not ordered yet, where `c`, another
// node's rename of it to another name, comes first: the table here on the page the baseline
// knows the old one on, under a name the baseline does not know, reading as the table `c` made
// but for its name, and no rename of the old name to it in the history (that one was ordered
// and applied here, its baseline not taken yet, and `c` comes after it). Its name here, or
// nothing.
absl::StatusOr<std::optional<std::string>> OwnRenameNotOrderedYet(sqlite::Database& db,
                                                                  const SchemaChange& c) {
  absl::StatusOr<std::vector<std::vector<Value>>> here = db.QueryRows(absl::StrCat(
      "SELECT m.name, m.sql FROM ", kBaseline,
      " AS b JOIN sqlite_master AS m ON m.type = 'table' AND m.rootpage = b.rootpage"
      " WHERE b.type = 'table' AND b.name = ",
      Value::Text(c.name()).DebugString(), " COLLATE NOCASE AND m.name NOT IN (SELECT name FROM ",
      kBaseline, " WHERE type = 'table')"));
  if (!here.ok()) return here.status();
  if (here->size() != 1 || (*here)[0][1].is_null()) return std::nullopt;
  const std::string name = (*here)[0][0].bytes();
  if (!SameButRenamed((*here)[0][1].bytes(), c.sql(),
                      {{absl::AsciiStrToLower(name), absl::AsciiStrToLower(c.new_name())}})) {
    return std::nullopt;
  }
  // Ordered already, before `c` (applied here, its baseline not taken yet): then `c` lost.
  absl::StatusOr<bool> history = Exists(db, "table", kTableHistoryTable);
  if (!history.ok()) return history.status();
  if (*history) {
    absl::StatusOr<std::vector<std::vector<Value>>> ordered = db.QueryRows(absl::StrCat(
        "SELECT 1 FROM ", sqlite::QuoteIdentifier(kTableHistoryTable),
        " WHERE \"from\" = ", Value::Text(absl::AsciiStrToLower(c.name())).DebugString(),
        " AND \"to\" = ", Value::Text(name).DebugString(), " COLLATE NOCASE"));
    if (!ordered.ok()) return ordered.status();
    if (!ordered->empty()) return std::nullopt;
  }
  return name;
}

// Whether rename `c` at `shard0_index` lost to another node's rename of the same table to
// another name that came first in shard 0's order (the table is neither under its old name nor
// under `c`'s new one here, and the history renamed the old name before): the table's name here
// then, which batches read before `shard0_index` under `c`'s new name mean. Nothing otherwise.
absl::StatusOr<std::optional<std::string>> RenameLostTo(sqlite::Database& db, const SchemaChange& c,
                                                        uint64_t shard0_index) {
  if (shard0_index == 0) return std::nullopt;
  for (const std::string& name : {c.name(), c.new_name()}) {
    absl::StatusOr<std::optional<std::pair<std::string, std::string>>> here = TableHere(db, name);
    if (!here.ok()) return here.status();
    if (here->has_value()) return std::nullopt;
  }
  absl::StatusOr<std::optional<std::string>> winner = RenamedBefore(db, c.name(), shard0_index);
  if (!winner.ok() || !winner->has_value()) return winner;
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>> here = TableHere(db, **winner);
  if (!here.ok()) return here.status();
  if (!here->has_value()) return std::nullopt;
  return (*here)->first;
}

// Rename `c` at `shard0_index` lost to `winner` (RenameLostTo): batches read before it that name
// its new name mean `winner`, and what marmot keeps by that name (dead letters of such batches)
// is `winner`'s. Reported as a conflict, on its origin too.
absl::StatusOr<SchemaApplied> RenameLost(sqlite::Database& db, const SchemaChange& c,
                                         uint64_t shard0_index, const std::string& winner) {
  if (absl::Status s = RecordRenameLost(db, c.new_name(), winner, shard0_index); !s.ok()) return s;
  if (absl::Status s = RenameTableState(db, c.new_name(), winner); !s.ok()) return s;
  return SchemaApplied{
      .outcome = SchemaApplied::kConflict,
      .detail = absl::StrCat("table ", c.name(), " was renamed to ", winner,
                             " first in shard 0's order; it stays ", winner,
                             " everywhere, and rows written under ", c.new_name(), " go to it")};
}

// Rename `c` of table T to U, where this node renamed T to U itself and its baseline did not
// take that yet (it holds T and not U, and the table U here carries T's capture,
// CarriedCaptures): `c` comes first in shard 0's order, and this node's own rename is taken
// as it, as every other node applies it here: what marmot keeps by T follows U, and the
// baseline holds U as `c` made it (and the indexes, triggers and views the rename rewrote
// here). What this node changed of U besides (columns added in the same look, say) stays its
// own change, and its own rename is none any more: otherwise, a column change of `c`'s origin
// that came next would take U into the baseline beside T, and T would go as a drop.
absl::Status TakeOwnRenameNow(sqlite::Database& db, const SchemaChange& c) {
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>> here =
      TableHere(db, c.new_name());
  if (!here.ok()) return here.status();
  if (!here->has_value()) return absl::OkStatus();
  const std::string to = (*here)->first;
  absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(
      absl::StrCat("SELECT name FROM ", kBaseline, " WHERE type = 'table' AND name IN (",
                   Value::Text(c.name()).DebugString(), ", ", Value::Text(to).DebugString(), ")"));
  if (!known.ok()) return known.status();
  if (known->size() != 1 || (*known)[0][0].bytes() != c.name()) return absl::OkStatus();
  absl::StatusOr<std::map<std::string, std::set<std::string>>> carries = CarriedCaptures(db);
  if (!carries.ok()) return carries.status();
  auto it = carries->find(to);
  if (it == carries->end() || it->second.count(c.name()) == 0) return absl::OkStatus();
  if (absl::Status s = RenameTableState(db, c.name(), to); !s.ok()) return s;
  if (absl::Status s = ForgetInBaseline(db, "table", c.name()); !s.ok()) return s;
  if (absl::Status s = RecordTableInBaseline(db, to, c.sql(), /*only_with_more_columns=*/false);
      !s.ok()) {
    return s;
  }
  return RecordRewrittenByRename(db, c.name(), to);
}

absl::StatusOr<SchemaApplied> ApplyRenameTable(sqlite::Database& db, const SchemaChange& c,
                                               uint64_t shard0_index) {
  if (c.type() != "table") return Refused("only a table is renamed");
  const std::string& to = c.new_name();
  if (to.empty() || sqlite::IsReservedName(to) ||
      absl::StrContains(absl::AsciiStrToLower(to), "__marmot__")) {
    return Refused(absl::StrCat("'", to, "' is not the name of a user table"));
  }
  absl::StatusOr<std::optional<std::pair<std::string, std::string>>> from_here =
      TableHere(db, c.name());
  if (!from_here.ok()) return from_here.status();
  // `c` as named here: names are one name in any ASCII case to SQLite, and the origin may spell
  // the old table otherwise (`KV` for this node's `kv`); the baseline knows it under this node's
  // spelling. What routes and names batches (RecordTableRenamed) keeps the origin's spelling, as
  // every node records it.
  SchemaChange named_here = c;
  {
    absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(
        absl::StrCat("SELECT name FROM ", kBaseline, " WHERE type = 'table' AND name = ",
                     Value::Text(c.name()).DebugString(), " COLLATE NOCASE"));
    if (!known.ok()) return known.status();
    if (known->size() == 1) named_here.set_name((*known)[0][0].bytes());
  }
  absl::StatusOr<std::vector<std::vector<Value>>> to_here = db.QueryRows(absl::StrCat(
      "SELECT type, sql FROM sqlite_master WHERE name = ", Value::Text(to).DebugString(),
      " COLLATE NOCASE"));
  if (!to_here.ok()) return to_here.status();
  if (!from_here->has_value() && !to_here->empty() && (*to_here)[0][0].bytes() == "table") {
    // Renamed here already (the same migration ran here, or this node's file was made from
    // its snapshot).
    if (absl::Status s = TakeOwnRenameNow(db, named_here); !s.ok()) return s;
    if (absl::Status s = RecordTableRenamed(db, c.name(), to, shard0_index); !s.ok()) return s;
    return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
  }
  if (from_here->has_value() && !to_here->empty() &&
      absl::AsciiStrToLower((*from_here)->first) != absl::AsciiStrToLower(to)) {
    absl::StatusOr<bool> away = RenamedAwayHere(db, named_here);
    if (!away.ok()) return away.status();
    if (*away) {
      // The same migration ran here: the table of the old name is a new one (its CREATE
      // follows in the same batch). The first of such renames in shard 0's order is the one
      // batches read before it are named by: a later one would take the new table's rows
      // written between the two for the renamed table's.
      if (absl::Status s = EnsureTableRenameState(db); !s.ok()) return s;
      absl::StatusOr<std::vector<std::vector<Value>>> earlier = db.QueryRows(absl::StrCat(
          "SELECT 1 FROM ", sqlite::QuoteIdentifier(kTableHistoryTable),
          " WHERE \"from\" = ", Value::Text(absl::AsciiStrToLower(c.name())).DebugString(),
          " AND \"to\" = ", Value::Text(to).DebugString(), " COLLATE NOCASE AND shard0_index < ",
          shard0_index));
      if (!earlier.ok()) return earlier.status();
      if (earlier->empty()) {
        if (absl::Status s = RenameTableState(db, (*from_here)->first, to); !s.ok()) return s;
        if (absl::Status s = RecordTableRenamed(db, c.name(), to, shard0_index); !s.ok()) {
          return s;
        }
      }
      if (absl::Status s = RecordInBaseline(db, "table", to); !s.ok()) return s;
      // And the indexes, triggers and views its rename rewrote here, as the origin's did.
      if (absl::Status s = RecordRewrittenByRename(db, c.name(), to); !s.ok()) return s;
      return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
    }
  }
  // This node renamed the table to another name itself, and `c` came first in shard 0's order:
  // the table takes `c`'s name here too (this node's rename will lose everywhere, RenameLost).
  std::optional<std::string> own_rename;
  if (!from_here->has_value() && to_here->empty()) {
    absl::StatusOr<std::optional<std::string>> own = OwnRenameNotOrderedYet(db, c);
    if (!own.ok()) return own.status();
    own_rename = *own;
    if (!own_rename.has_value()) {
      absl::StatusOr<std::optional<std::string>> winner = RenameLostTo(db, c, shard0_index);
      if (!winner.ok()) return winner.status();
      if (winner->has_value()) return RenameLost(db, c, shard0_index, **winner);
    }
  }
  if ((!from_here->has_value() && !own_rename.has_value()) || !to_here->empty()) {
    return SchemaApplied{
        .outcome = SchemaApplied::kConflict,
        .detail =
            absl::StrCat("table ", c.name(), from_here->has_value() ? " exists" : " is missing",
                         " here and ", to, to_here->empty() ? " does not" : " exists", "; kept")};
  }
  const std::string from = own_rename.has_value() ? *own_rename : (*from_here)->first;
  absl::StatusOr<std::map<std::pair<std::string, std::string>, std::string>> others =
      OtherObjectsSql(db);
  if (!others.ok()) return others.status();
  std::string why;
  absl::StatusOr<bool> ran =
      RunOneStatement(db,
                      absl::StrCat("ALTER TABLE ", sqlite::QuoteIdentifier(from), " RENAME TO ",
                                   sqlite::QuoteIdentifier(to)),
                      "ALTER", &why);
  if (!ran.ok()) return ran.status();
  if (!*ran) return Refused(absl::StrCat("the rename cannot run here: ", why));
  // The baseline: the table under its new name, and the indexes, triggers and views SQLite
  // rewrote that were as the baseline holds them.
  const std::string baseline_name = own_rename.has_value() ? c.name() : from;
  if (absl::Status s = ForgetInBaseline(db, "table", baseline_name); !s.ok()) return s;
  if (absl::Status s = RecordInBaseline(db, "table", to); !s.ok()) return s;
  absl::StatusOr<std::map<std::pair<std::string, std::string>, std::string>> rewritten =
      OtherObjectsSql(db);
  if (!rewritten.ok()) return rewritten.status();
  // Objects this node's own rename rewrote read as the baseline's but for the table's name.
  const std::map<std::string, std::string> renamed = {
      {absl::AsciiStrToLower(c.name()), absl::AsciiStrToLower(to)}};
  for (const auto& [key, sql] : *rewritten) {
    auto was = others->find(key);
    if (was == others->end()) continue;
    absl::StatusOr<std::vector<std::vector<Value>>> known =
        db.QueryRows(absl::StrCat("SELECT sql, tbl_name FROM ", kBaseline,
                                  " WHERE type = ", Value::Text(key.first).DebugString(),
                                  " AND name = ", Value::Text(key.second).DebugString()));
    if (!known.ok()) return known.status();
    if (!known->empty() && !(*known)[0][0].is_null() &&
        ((*known)[0][0].bytes() == was->second ||
         (own_rename.has_value() && SameButRenamed((*known)[0][0].bytes(), sql, renamed)))) {
      if (absl::Status s = RecordInBaseline(db, key.first, key.second); !s.ok()) return s;
    }
  }
  if (own_rename.has_value()) {
    // What marmot keeps by the old name (the own rename was pending: nothing moved yet).
    if (absl::Status s = RenameTableState(db, c.name(), to); !s.ok()) return s;
  }
  if (absl::Status s = RenameTableState(db, from, to); !s.ok()) return s;
  if (absl::Status s = RecordTableRenamed(db, c.name(), to, shard0_index); !s.ok()) return s;
  absl::StatusOr<std::string> result = TableSqlHere(db, to);
  if (!result.ok()) return result.status();
  SchemaApplied applied{.outcome = SchemaApplied::kApplied, .table_changed = true};
  if (own_rename.has_value()) {
    applied.detail = absl::StrCat("this node's own rename of ", c.name(), " to ", from,
                                  " comes later in shard 0's order and loses: ", from,
                                  " renamed to ", to, " here");
  }
  if (!SameButRenamed(*result, c.sql(), {})) {
    // Renamed, but its columns differ from the origin's: as a table given other columns here.
    applied.detail = absl::StrCat("renamed; table ", to, " here (", *result,
                                  ") is defined otherwise than on its origin (", c.sql(), ")");
  }
  return applied;
}

}  // namespace

absl::StatusOr<std::vector<SchemaObject>> ListUserObjects(sqlite::Database& db) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(
      "SELECT type, name, tbl_name, sql FROM sqlite_master"
      " WHERE type IN ('table', 'index', 'view', 'trigger') AND sql IS NOT NULL"
      " AND name NOT IN (SELECT name FROM pragma_table_list WHERE schema = 'main'"
      "                  AND type = 'shadow')"
      " ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3"
      " END, rowid");
  if (!rows.ok()) return rows.status();
  std::vector<SchemaObject> out;
  for (const std::vector<Value>& r : *rows) {
    // Marmot's and SQLite's names in any case, and what stands on their tables, as every node
    // refuses them when applying (ApplySchemaChange): `__Marmot__notes` is no user table.
    if (sqlite::IsReservedName(r[1].bytes()) || sqlite::IsReservedName(r[2].bytes())) continue;
    out.push_back({.type = r[0].bytes(),
                   .name = r[1].bytes(),
                   .tbl_name = r[2].bytes(),
                   .sql = r[3].bytes()});
  }
  return out;
}

absl::Status EnsureSchemaBaseline(sqlite::Database& db, bool with_existing) {
  absl::StatusOr<sqlite::Transaction> txn = sqlite::Transaction::Begin(db);
  if (!txn.ok()) return txn.status();
  if (absl::Status s = db.Exec(
          absl::StrCat("CREATE TABLE IF NOT EXISTS ", sqlite::QuoteIdentifier(kColumnHistoryTable),
                       " (tbl TEXT NOT NULL, old TEXT NOT NULL, new TEXT, PRIMARY KEY (tbl, old))"
                       " WITHOUT ROWID"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = db.Exec(
          absl::StrCat("CREATE TABLE IF NOT EXISTS ", sqlite::QuoteIdentifier(kSchemaDropsTable),
                       " (type TEXT NOT NULL, name TEXT NOT NULL, shard0_index INTEGER NOT NULL,"
                       " PRIMARY KEY (type, name)) WITHOUT ROWID"));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Value> exists = db.QueryValue(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '__marmot__schema'");
  if (!exists.ok()) return exists.status();
  if (exists->integer() > 0) {
    // A baseline of an older version lacks the root pages and rows of sqlite_master: NULL,
    // unknown, until DiffSchema records them. It lacks own_at too: NULL, every object taken as
    // ordered in shard 0.
    absl::StatusOr<std::vector<std::string>> columns = ColumnsHere(db, "__marmot__schema");
    if (!columns.ok()) return columns.status();
    for (const char* column : {"rootpage", "schema_rowid", "own_at"}) {
      if (std::find(columns->begin(), columns->end(), column) != columns->end()) continue;
      if (absl::Status s =
              db.Exec(absl::StrCat("ALTER TABLE ", kBaseline, " ADD COLUMN ", column, " INTEGER"));
          !s.ok()) {
        return s;
      }
    }
    return txn->Commit();
  }
  if (absl::Status s =
          db.Exec(absl::StrCat("CREATE TABLE ", kBaseline,
                               " (type TEXT NOT NULL, name TEXT NOT NULL, tbl_name TEXT, sql TEXT,"
                               " rootpage INTEGER, schema_rowid INTEGER, own_at INTEGER,"
                               " PRIMARY KEY (type, name))"
                               " WITHOUT ROWID"));
      !s.ok()) {
    return s;
  }
  if (!with_existing) return txn->Commit();
  absl::StatusOr<std::vector<SchemaObject>> objects = ListUserObjects(db);
  if (!objects.ok()) return objects.status();
  for (const SchemaObject& o : *objects) {
    if (absl::Status s =
            db.RunKept(absl::StrCat("INSERT INTO ", kBaseline,
                                    " (type, name, tbl_name, sql, rootpage, schema_rowid, own_at) "
                                    "SELECT ?1, ?2, ?3, ?4, rootpage, rowid, ?5 FROM sqlite_master "
                                    "WHERE type = ?1 AND name = ?2"),
                       {Value::Text(o.type), Value::Text(o.name), Value::Text(o.tbl_name),
                        Value::Text(o.sql), Value::Integer(kOwnAtFoundAtStart)});
        !s.ok()) {
      return s;
    }
  }
  return txn->Commit();
}

absl::StatusOr<SchemaDiff> DiffSchema(sqlite::Database& db) {
  absl::StatusOr<std::vector<SchemaObject>> objects = ListUserObjects(db);
  if (!objects.ok()) return objects.status();
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(
      absl::StrCat("SELECT type, name, tbl_name, sql, rootpage, schema_rowid FROM ", kBaseline));
  if (!rows.ok()) return rows.status();
  using Key = std::pair<std::string, std::string>;
  std::map<Key, SchemaObject> baseline;
  std::map<Key, int64_t> roots_known;  // 0: not known (a baseline of an older version).
  std::map<Key, int64_t> rows_known;   // Rowids in sqlite_master; 0: not known.
  for (const std::vector<Value>& r : *rows) {
    baseline[{r[0].bytes(), r[1].bytes()}] = {.type = r[0].bytes(),
                                              .name = r[1].bytes(),
                                              .tbl_name = r[2].is_null() ? "" : r[2].bytes(),
                                              .sql = r[3].is_null() ? "" : r[3].bytes()};
    roots_known[{r[0].bytes(), r[1].bytes()}] = r[4].is_null() ? 0 : r[4].integer();
    rows_known[{r[0].bytes(), r[1].bytes()}] = r[5].is_null() ? 0 : r[5].integer();
  }
  std::map<Key, const SchemaObject*> here;
  for (const SchemaObject& o : *objects) here[{o.type, o.name}] = &o;
  std::map<Key, int64_t> roots_here;
  std::map<Key, int64_t> rows_here;
  {
    absl::StatusOr<std::vector<std::vector<Value>>> pages =
        db.QueryRows("SELECT type, name, rootpage, rowid FROM sqlite_master");
    if (!pages.ok()) return pages.status();
    for (const std::vector<Value>& r : *pages) {
      roots_here[{r[0].bytes(), r[1].bytes()}] = r[2].is_null() ? 0 : r[2].integer();
      rows_here[{r[0].bytes(), r[1].bytes()}] = r[3].integer();
    }
  }
  auto root_here = [&](const Key& key) -> int64_t {
    auto it = roots_here.find(key);
    return it == roots_here.end() ? 0 : it->second;
  };
  auto row_here = [&](const Key& key) -> int64_t {
    auto it = rows_here.find(key);
    return it == rows_here.end() ? 0 : it->second;
  };

  SchemaDiff diff;
  // Tables first: which are new, gone, altered, and which stay as they were.
  std::vector<const SchemaObject*> new_tables;
  std::vector<const SchemaObject*> gone_tables;
  std::vector<const SchemaObject*> changed_tables;
  std::set<std::string> settled;  // Unchanged, given columns or created by this diff.
  for (const SchemaObject& o : *objects) {
    if (o.type != "table") continue;
    auto known = baseline.find({o.type, o.name});
    if (known == baseline.end()) {
      new_tables.push_back(&o);
    } else if (known->second.sql == o.sql) {
      settled.insert(o.name);
    } else if (SameButRenamed(known->second.sql, o.sql, {})) {
      // Names written in another case (another node's table `Item` applied to this node's
      // `item`, its column `Extra` to `extra`): one name to SQLite, no change; the baseline
      // takes the text as here.
      settled.insert(o.name);
      diff.keep.push_back(o);
    } else {
      changed_tables.push_back(&o);
    }
  }
  for (const auto& [key, o] : baseline) {
    if (o.type == "table" && !here.count(key)) gone_tables.push_back(&o);
  }
  auto body = [](const std::string& sql) { return WithTableName(sql, "t"); };
  std::vector<SchemaChange> table_renames;
  std::map<std::string, std::string> renamed_names;  // lower case: old -> new, tables, columns
  // Table `from` (as the baseline has it) renamed to `to` (as it is now; `renamed_sql` its SQL
  // right after the rename when its columns changed since).
  auto renamed_table = [&](const SchemaObject& from, const SchemaObject& to,
                           const std::string* renamed_sql = nullptr) {
    SchemaChange& c = table_renames.emplace_back();
    c.set_kind(SchemaChange::RENAME_TABLE);
    c.set_type("table");
    c.set_name(from.name);
    c.set_new_name(to.name);
    c.set_sql(renamed_sql != nullptr ? *renamed_sql : to.sql);
    c.set_before_sql(from.sql);
    renamed_names[absl::AsciiStrToLower(from.name)] = absl::AsciiStrToLower(to.name);
    settled.insert(to.name);
  };
  // Tables renamed away and made again under their name (ALTER TABLE T RENAME TO U; CREATE
  // TABLE T ...): T reads as before, or not, but it is another table. A table is its root page
  // (ALTER TABLE RENAME keeps it), so T is renamed away when it stands on another root page than
  // the baseline's, and a new table U stands on T's and reads as T did but for its name: T -> U
  // is a rename, and the T here a new table. Root pages also move without a rename, and a new
  // table may then take a page that was T's: a VACUUM lays every table and index out again, and
  // in an auto_vacuum database a DROP moves the last root page into the dropped one's. So none
  // counts as renamed away when an index or table that stays as it was (same name, same SQL)
  // moved too, nor, in an auto_vacuum database, when T's page was another object's.
  std::set<std::string> renamed_away;  // The tables made again under their name.
  {
    std::vector<std::pair<const SchemaObject*, const SchemaObject*>> away;  // (T before, U)
    bool moved = false;  // Root pages moved otherwise.
    std::set<int64_t> pages_known;
    for (const auto& [key, page] : roots_known) pages_known.insert(page);
    for (const auto& [key, b] : baseline) {
      const int64_t was = roots_known[key];
      const int64_t now = root_here(key);
      auto it = here.find(key);
      if (was <= 0 || now <= 0 || now == was || it == here.end()) continue;
      const SchemaObject* to = nullptr;
      if (b.type == "table") {
        for (const SchemaObject* o : new_tables) {
          if (root_here({o->type, o->name}) == was && body(o->sql).has_value() &&
              body(o->sql) == body(b.sql)) {
            to = o;
          }
        }
      }
      if (to != nullptr) {
        away.emplace_back(&b, to);
      } else if (it->second->sql == b.sql) {
        moved = true;
      }
    }
    absl::StatusOr<Value> auto_vacuum = db.QueryValue("PRAGMA auto_vacuum");
    if (!auto_vacuum.ok()) return auto_vacuum.status();
    for (const auto& [b, to] : away) {
      if (auto_vacuum->integer() != 0 && pages_known.count(root_here({b->type, b->name}))) {
        moved = true;
      }
    }
    for (const auto& [b, to] : away) {
      auto unpaired = std::find(new_tables.begin(), new_tables.end(), to);
      if (moved || unpaired == new_tables.end()) break;
      renamed_table(*b, *to);
      renamed_away.insert(b->name);
      new_tables.erase(unpaired);
      // The table under the old name is a new one: created, or renamed from a table gone.
      const SchemaObject* made = here.at({b->type, b->name});
      settled.erase(made->name);
      changed_tables.erase(std::remove(changed_tables.begin(), changed_tables.end(), made),
                           changed_tables.end());
      new_tables.push_back(made);
    }
  }
  // A table gone and a new one whose SQL reads the same but for its name (ALTER TABLE RENAME
  // rewrites only the name), each the only match of the other: renamed.
  PairOneToOne(
      gone_tables, new_tables,
      [&](const SchemaObject* gone, const SchemaObject* o) {
        const std::optional<std::string> was = body(gone->sql);
        return was.has_value() && body(o->sql) == was;
      },
      [&](const SchemaObject* gone, const SchemaObject* o) {
        renamed_table(*gone, *o);
        return true;
      });
  // A table gone and a new one that carries its capture: renamed, its columns changed in the
  // same look (ALTER TABLE T RENAME TO U; ALTER TABLE U ADD COLUMN ...). SQLite moves marmot's
  // capture triggers with a table renamed and in no other way (a table dropped takes its
  // triggers along), and the install after it records that U took T's capture
  // (CarriedCaptures). Each the only such match of the other, and U's columns as T's but for
  // renames, drops and adds (DiffColumns): a rename (its SQL as T's but for the name, as every
  // node's rename writes it), then U's column changes. A table renamed before it had capture
  // carries none: a drop and a create then, which do not replicate (below).
  std::vector<std::pair<const SchemaObject*, std::string>> renamed_then_changed;  // (U, SQL)
  if (!gone_tables.empty() && !new_tables.empty()) {
    absl::StatusOr<std::map<std::string, std::set<std::string>>> carries = CarriedCaptures(db);
    if (!carries.ok()) return carries.status();
    PairOneToOne(
        gone_tables, new_tables,
        [&](const SchemaObject* gone, const SchemaObject* o) {
          auto it = carries->find(o->name);
          return it != carries->end() && it->second.count(gone->name) > 0;
        },
        [&](const SchemaObject* gone, const SchemaObject* o) {
          const std::optional<std::string> name = TableNameToken(o->sql);
          std::optional<std::string> renamed_sql;
          if (name.has_value()) renamed_sql = WithTableName(gone->sql, *name);
          if (!renamed_sql.has_value() || !DiffColumns(*renamed_sql, o->sql).has_value()) {
            return false;
          }
          renamed_table(*gone, *o, &*renamed_sql);
          renamed_then_changed.emplace_back(o, *renamed_sql);
          return true;
        });
  }
  // Which of the tables gone that the pairs above left a new one may be, renamed (ALTER TABLE
  // RENAME rewrites only the name; its columns changed since, say). The rename updates the
  // table's row of sqlite_master in place: the table keeps that row's rowid (and its root page).
  // A table created takes a new row after every other (SQLite hands out the largest rowid plus
  // one), so a new table on another row than the one a gone table had was created, not renamed
  // from it: DROP TABLE t; CREATE TABLE u in one look is a drop and a create. (The root page
  // cannot tell: a table created takes a free page first, often the very one a table dropped
  // just before freed.) The row may be the gone one's when that one was the last row (no log
  // made after it): then, as when the baseline does not know the row (one of an older version,
  // a CREATE sent and not looked at since), it may be a rename. A VACUUM makes sqlite_master
  // again, its rows in another order: when an object that stays as it was (its name and SQL)
  // stands on another row now, rows tell nothing in this look. Nor do they against a table that
  // carries a gone one's capture, or did (a trace of the move, whatever page it names: a VACUUM
  // moves pages too): SQLite moves capture with a table renamed and in no other way.
  bool rows_moved = false;
  for (const auto& [key, b] : baseline) {
    auto it = here.find(key);
    const int64_t was = rows_known[key];
    if (was <= 0 || it == here.end() || it->second->sql != b.sql ||
        (key.first == "table" && renamed_away.count(key.second) > 0)) {
      continue;
    }
    if (row_here(key) != was) rows_moved = true;
  }
  std::map<std::string, std::set<std::string>> carried_ever;
  if (!gone_tables.empty() && !new_tables.empty()) {
    absl::StatusOr<std::map<std::string, std::set<std::string>>> carries =
        CarriedCaptures(db, /*on_any_page=*/true);
    if (!carries.ok()) return carries.status();
    carried_ever = *std::move(carries);
  }
  auto may_be_renamed = [&](const SchemaObject* gone, const SchemaObject* o) {
    auto it = carried_ever.find(o->name);
    if (it != carried_ever.end() && it->second.count(gone->name) > 0) return true;
    const int64_t was = rows_known[{gone->type, gone->name}];
    return rows_moved || was <= 0 || row_here({o->type, o->name}) == was;
  };
  // A new table may be an old one renamed: a gone one's, as above, or when its columns are
  // those a changed table had (renamed, then made again under the old name, perhaps with more
  // columns). Neither replicates then.
  auto columns = [](const std::string& sql) {
    const size_t open = sql.find('(');
    return open == std::string::npos ? std::string() : sql.substr(open);
  };
  std::map<std::string, std::string> old_columns;  // Of changed tables: columns -> name.
  for (const SchemaObject* o : changed_tables) {
    old_columns[columns(baseline.at({o->type, o->name}).sql)] = o->name;
  }
  std::set<std::string> remade;  // Changed tables a new table may have been renamed from.
  std::vector<const SchemaObject*> renamed;
  for (const SchemaObject* o : new_tables) {
    auto was = old_columns.find(columns(o->sql));
    if (was != old_columns.end()) remade.insert(was->second);
    const bool from_gone = std::any_of(gone_tables.begin(), gone_tables.end(),
                                       [&](const SchemaObject* g) { return may_be_renamed(g, o); });
    if (was != old_columns.end() || from_gone) renamed.push_back(o);
  }
  std::vector<SchemaChange> creates;
  // Columns renamed in this diff, of any table, go to renamed_names too: SQLite rewrote the
  // other objects that name them. Tables renamed with their columns changed come first, as
  // their renames did.
  std::vector<std::pair<const SchemaObject*, std::string>> column_changes = renamed_then_changed;
  for (const SchemaObject* o : changed_tables) {
    column_changes.emplace_back(o, baseline.at({o->type, o->name}).sql);
  }
  for (const std::pair<const SchemaObject*, std::string>& table : column_changes) {
    const SchemaObject* o = table.first;
    const std::string& before = table.second;
    std::optional<ColumnDiff> columns;
    if (!remade.count(o->name)) columns = DiffColumns(before, o->sql);
    if (!columns.has_value() && !remade.count(o->name) && DefinitionsChanged(before, o->sql)) {
      // Made again with other definitions (its rows follow where they differ from their
      // versions: sqlite/change_log.h, captured_before).
      SchemaChange& c = creates.emplace_back();
      c.set_kind(SchemaChange::REDEFINE);
      c.set_type(o->type);
      c.set_name(o->name);
      c.set_sql(o->sql);
      c.set_before_sql(before);
      settled.insert(o->name);
      continue;
    }
    if (!columns.has_value()) {
      diff.keep.push_back(*o);
      diff.not_replicated.push_back(absl::StrCat("ALTER TABLE ", o->name));
      continue;
    }
    auto change = [&](SchemaChange::Kind kind) -> SchemaChange& {
      SchemaChange& c = creates.emplace_back();
      c.set_kind(kind);
      c.set_type(o->type);
      c.set_name(o->name);
      c.set_sql(o->sql);
      return c;
    };
    for (const auto& [from, to] : columns->renamed) {
      SchemaChange& c = change(SchemaChange::RENAME_COLUMN);
      c.add_columns(from);
      c.add_columns(to);
      renamed_names[absl::AsciiStrToLower(from)] = absl::AsciiStrToLower(to);
    }
    if (!columns->dropped.empty()) {
      SchemaChange& c = change(SchemaChange::DROP_COLUMNS);
      for (const std::string& column : columns->dropped) c.add_columns(column);
    }
    if (!columns->added.empty()) {
      SchemaChange& c = change(SchemaChange::ADD_COLUMNS);
      for (const std::string& column : columns->added) c.add_columns(column);
    }
    settled.insert(o->name);
  }
  for (const SchemaObject* o : new_tables) {
    if (std::find(renamed.begin(), renamed.end(), o) != renamed.end()) {
      diff.keep.push_back(*o);
      diff.not_replicated.push_back(
          absl::StrCat("CREATE TABLE ", o->name, " (another table renamed to it?)"));
      continue;
    }
    creates.push_back(CreateOf(*o));
    settled.insert(o->name);
  }
  // A gone table is dropped, unless a table that appeared in the same diff may be it renamed
  // (neither replicates then, see above).
  std::vector<SchemaChange> table_drops;
  for (const SchemaObject* o : gone_tables) {
    if (std::any_of(new_tables.begin(), new_tables.end(),
                    [&](const SchemaObject* n) { return may_be_renamed(o, n); })) {
      diff.forget.emplace_back(o->type, o->name);
      diff.not_replicated.push_back(absl::StrCat("DROP TABLE ", o->name));
      continue;
    }
    SchemaChange& drop = table_drops.emplace_back();
    drop.set_kind(SchemaChange::DROP);
    drop.set_type(o->type);
    drop.set_name(o->name);
    drop.set_before_sql(o->sql);
  }
  // Then indexes, views and triggers: those of tables that changed go with their table.
  auto replicates = [&](const SchemaObject& o) {
    return o.type == "view" || settled.count(o.tbl_name) > 0;
  };
  for (const SchemaObject& o : *objects) {
    if (o.type == "table") continue;
    auto known = baseline.find({o.type, o.name});
    if (known != baseline.end() && known->second.sql == o.sql) continue;
    // Rewritten by a rename of this diff (of a column or a table): every node's rename rewrites
    // it alike.
    const bool rewritten = known != baseline.end() && !renamed_names.empty() &&
                           SameButRenamed(known->second.sql, o.sql, renamed_names);
    if (rewritten || !replicates(o)) {
      diff.keep.push_back(o);
      continue;
    }
    if (known != baseline.end()) {
      SchemaChange& drop = diff.replicate.emplace_back();
      drop.set_kind(SchemaChange::DROP);
      drop.set_type(o.type);
      drop.set_name(o.name);
    }
    creates.push_back(CreateOf(o));
  }
  for (const auto& [key, o] : baseline) {
    if (o.type == "table" || here.count(key)) continue;
    if (!replicates(o)) {
      diff.forget.push_back(key);
      continue;
    }
    SchemaChange& drop = diff.replicate.emplace_back();
    drop.set_kind(SchemaChange::DROP);
    drop.set_type(o.type);
    drop.set_name(o.name);
  }
  diff.replicate.insert(diff.replicate.end(), table_drops.begin(), table_drops.end());
  diff.replicate.insert(diff.replicate.end(), table_renames.begin(), table_renames.end());
  diff.replicate.insert(diff.replicate.end(), creates.begin(), creates.end());
  // Where objects that stay as they were stand, where they moved (a VACUUM) or are not known
  // yet. Not a table renamed away: the baseline keeps its old page and row until the rename
  // commits, so that every look until then finds it again.
  for (const auto& [key, b] : baseline) {
    auto it = here.find(key);
    if (it == here.end() || it->second->sql != b.sql ||
        (key.first == "table" && renamed_away.count(key.second) > 0)) {
      continue;
    }
    const SchemaDiff::Place now{.rootpage = root_here(key), .schema_rowid = row_here(key)};
    if (now != SchemaDiff::Place{.rootpage = roots_known[key], .schema_rowid = rows_known[key]}) {
      diff.places.emplace_back(b, now);
    }
  }
  return diff;
}

absl::Status KeepInBaseline(sqlite::Database& db, const SchemaDiff& diff) {
  if (diff.keep.empty() && diff.forget.empty() && diff.places.empty()) return absl::OkStatus();
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  for (const SchemaObject& o : diff.keep) {
    absl::StatusOr<std::optional<Value>> was = OwnAtInBaseline(db, o.type, o.name);
    if (!was.ok()) return was.status();
    if (absl::Status s = RecordInBaseline(db, o.type, o.name); !s.ok()) return s;
    // An object new here is its own, never ordered in shard 0: no snapshot's schema drops it
    // (DropsOfSnapshotSchema). One the baseline had stays what it was (another node's drop of
    // it still drops it, whatever this node changed of it).
    absl::Status s = was->has_value() ? SetOwnAtInBaseline(db, o.type, o.name, **was)
                                      : MarkOwnInBaseline(db, o.type, o.name, 0);
    if (!s.ok()) return s;
  }
  for (const auto& [type, name] : diff.forget) {
    if (absl::Status s = ForgetInBaseline(db, type, name); !s.ok()) return s;
  }
  // As the diff saw them, of the object as the baseline holds it (not one changed since).
  for (const auto& [o, place] : diff.places) {
    if (absl::Status s = db.RunKept(
            absl::StrCat("UPDATE ", kBaseline,
                         " SET rootpage = ?3, schema_rowid = ?5 WHERE type = ?1 AND name = "
                         "?2 AND sql = ?4"),
            {Value::Text(o.type), Value::Text(o.name), Value::Integer(place.rootpage),
             Value::Text(o.sql), Value::Integer(place.schema_rowid)});
        !s.ok()) {
      return s;
    }
  }
  return txn->Commit();
}

absl::StatusOr<std::vector<SchemaChange>> BaselineSchema(sqlite::Database& db) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(absl::StrCat(
      "SELECT b.type, b.name, b.sql FROM ", kBaseline,
      " AS b LEFT JOIN sqlite_master AS m ON m.type = b.type AND m.name = b.name"
      " WHERE b.sql IS NOT NULL"
      " ORDER BY CASE b.type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3"
      " END, m.rowid, b.name"));
  if (!rows.ok()) return rows.status();
  std::vector<SchemaChange> out;
  for (const std::vector<Value>& r : *rows) {
    SchemaChange& c = out.emplace_back();
    c.set_kind(SchemaChange::CREATE);
    c.set_type(r[0].bytes());
    c.set_name(r[1].bytes());
    c.set_sql(r[2].bytes());
  }
  return out;
}

absl::StatusOr<SnapshotSchemaDrops> DropsOfSnapshotSchema(
    sqlite::Database& db, const google::protobuf::RepeatedPtrField<SchemaChange>& schema,
    const google::protobuf::RepeatedPtrField<change::v1::TableRename>& renames,
    uint64_t shard0_index) {
  auto lower = [](const std::string& name) { return absl::AsciiStrToLower(name); };
  std::set<std::pair<std::string, std::string>> there;  // (type, name in lower case)
  for (const SchemaChange& c : schema) there.emplace(c.type(), lower(c.name()));
  // Old table names to new ones, as the snapshot's maker recorded its renames.
  std::map<std::string, std::string> renamed;
  for (const change::v1::TableRename& r : renames) renamed[lower(r.from())] = r.to();
  // The objects this node made again or renamed since its baseline: its own change, which goes
  // later (the others' drop, applied here before it, would have left what it makes). Columns
  // changed are not: the drop applied here would have dropped the table with them.
  absl::StatusOr<SchemaDiff> diff = DiffSchema(db);
  if (!diff.ok()) return diff.status();
  std::set<std::string> changed_here;
  for (const SchemaChange& c : diff->replicate) {
    if (c.kind() != SchemaChange::CREATE && c.kind() != SchemaChange::RENAME_TABLE) continue;
    changed_here.insert(lower(c.name()));
    if (!c.new_name().empty()) changed_here.insert(lower(c.new_name()));
  }
  for (const auto& [type, name] : diff->forget) changed_here.insert(lower(name));

  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(absl::StrCat(
      "SELECT type, name, tbl_name, own_at FROM ", kBaseline,
      " WHERE sql IS NOT NULL ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1"
      " WHEN 'view' THEN 2 ELSE 3 END, name"));
  if (!rows.ok()) return rows.status();
  SnapshotSchemaDrops out;
  std::set<std::string> tables_kept;  // Gone from the snapshot, kept here (lower case).
  std::vector<SchemaChange> tables, others;
  for (const std::vector<Value>& r : *rows) {
    const std::string& type = r[0].bytes();
    const std::string& name = r[1].bytes();
    const std::string tbl_name = r[2].is_null() ? name : r[2].bytes();
    if (sqlite::IsReservedName(name) || sqlite::IsReservedName(tbl_name) || !KnownType(type))
      continue;
    if (there.count({type, lower(name)}) > 0) continue;
    const std::string what = absl::StrCat(type, " ", name);
    auto keep = [&](std::string why) {
      out.kept.push_back(absl::StrCat(what, ": ", why));
      if (type == "table") tables_kept.insert(lower(name));
    };
    if (!r[3].is_null() && r[3].integer() == kOwnAtFoundAtStart) {
      // Found here when schema changes began to replicate: maybe this node's alone (founders
      // may start with other tables), its rows nowhere else. A table is never dropped for
      // missing from a snapshot then (its rows would go with it); what holds no rows may go.
      if (type == "table") {
        keep(
            "found here when schema changes began to replicate, maybe this node's alone: if the "
            "others dropped it, drop it here by hand");
        continue;
      }
    } else if (!r[3].is_null() && r[3].integer() == 0) {
      keep("this node's own, which does not replicate");
      continue;
    }
    if (!r[3].is_null() && r[3].integer() > 0 &&
        static_cast<uint64_t>(r[3].integer()) > shard0_index) {
      keep(absl::StrCat("this node's own change, ordered after the snapshot (shard-0 index ",
                        r[3].integer(), ")"));
      continue;
    }
    if (changed_here.count(lower(name)) > 0) {
      keep("made again or renamed here since (this node's own schema change, which goes later)");
      continue;
    }
    if (type != "table" && tables_kept.count(lower(tbl_name)) > 0) {
      keep(absl::StrCat("its table ", tbl_name, " stays"));
      continue;
    }
    if (type == "table") {
      // A table the snapshot's maker renamed (a chain of renames followed to its end).
      std::string to = name;
      for (size_t hops = 0; hops <= renamed.size(); ++hops) {
        auto it = renamed.find(lower(to));
        if (it == renamed.end()) break;
        to = it->second;
      }
      if (lower(to) != lower(name) && there.count({"table", lower(to)}) > 0) {
        keep(absl::StrCat("renamed to ", to,
                          " by the others, which a snapshot does not do here: rename it here"));
        continue;
      }
    }
    SchemaChange& drop = (type == "table" ? tables : others).emplace_back();
    drop.set_kind(SchemaChange::DROP);
    drop.set_type(type);
    drop.set_name(name);
  }
  // Triggers, views and indexes first (each dropped as itself, not with its table), then tables.
  std::stable_sort(others.begin(), others.end(), [](const SchemaChange& a, const SchemaChange& b) {
    auto rank = [](const std::string& t) { return t == "trigger" ? 0 : t == "view" ? 1 : 2; };
    return rank(a.type()) < rank(b.type());
  });
  out.drops = std::move(others);
  for (SchemaChange& t : tables) out.drops.push_back(std::move(t));
  return out;
}

absl::StatusOr<DroppedSince> DroppedSinceSnapshot(
    sqlite::Database& db, const google::protobuf::RepeatedPtrField<SchemaChange>& schema,
    uint64_t schema_epoch) {
  DroppedSince out;
  std::vector<SchemaChange> applied_tables, proposed_tables;
  for (const SchemaChange& c : schema) {
    if (c.kind() != SchemaChange::CREATE || !KnownType(c.type()) ||
        sqlite::IsReservedName(c.name()))
      continue;
    const std::string type = Value::Text(c.type()).DebugString();
    const std::string name = Value::Text(c.name()).DebugString();
    absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(absl::StrCat(
        "SELECT (SELECT count(*) FROM sqlite_master WHERE type = ", type, " AND name = ", name,
        " COLLATE NOCASE), (SELECT count(*) FROM ", kBaseline, " WHERE type = ", type,
        " AND name = ", name, " COLLATE NOCASE), (SELECT shard0_index FROM ",
        sqlite::QuoteIdentifier(kSchemaDropsTable), " WHERE type = ", type,
        " AND name = ", Value::Text(absl::AsciiStrToLower(c.name())).DebugString(), ")"));
    if (!rows.ok()) return rows.status();
    const std::vector<Value>& r = rows->front();
    if (r[0].integer() > 0) continue;  // Here: made so as it is.
    const bool not_proposed = r[1].integer() > 0;
    if (!not_proposed &&
        (r[2].is_null() || static_cast<uint64_t>(r[2].integer()) <= schema_epoch)) {
      continue;
    }
    std::vector<SchemaChange>& into = c.type() == "table"
                                          ? (not_proposed ? proposed_tables : applied_tables)
                                          : (not_proposed ? out.not_proposed : out.applied);
    SchemaChange& drop = into.emplace_back();
    drop.set_kind(SchemaChange::DROP);
    drop.set_type(c.type());
    drop.set_name(c.name());
  }
  for (SchemaChange& t : applied_tables) out.applied.push_back(std::move(t));
  for (SchemaChange& t : proposed_tables) out.not_proposed.push_back(std::move(t));
  return out;
}

absl::Status DropAsHere(sqlite::Database& db, const SchemaChange& drop) {
  if (!KnownType(drop.type()) || sqlite::IsReservedName(drop.name())) {
    return absl::InvalidArgumentError(absl::StrCat("not a user object: ", drop.name()));
  }
  return db.Exec(absl::StrCat("DROP ", Upper(drop.type()), " IF EXISTS ",
                              sqlite::QuoteIdentifier(drop.name())));
}

std::string DescribeSchemaChange(const SchemaChange& c) {
  switch (c.kind()) {
    case SchemaChange::CREATE:
      return absl::StrCat(c.type(), " ", c.name());
    case SchemaChange::DROP:
      return absl::StrCat("drop of ", c.type(), " ", c.name());
    case SchemaChange::ADD_COLUMNS:
      return absl::StrCat(c.name(), ": column(s) added: ", absl::StrJoin(c.columns(), ", "));
    case SchemaChange::RENAME_COLUMN:
      return absl::StrCat(c.name(), ": column renamed: ", absl::StrJoin(c.columns(), " to "));
    case SchemaChange::DROP_COLUMNS:
      return absl::StrCat(c.name(), ": column(s) dropped: ", absl::StrJoin(c.columns(), ", "));
    case SchemaChange::REDEFINE:
      return absl::StrCat("table ", c.name(), " made again");
    case SchemaChange::RENAME_TABLE:
      return absl::StrCat("table ", c.name(), " renamed to ", c.new_name());
    default:
      return absl::StrCat("change of kind ", c.kind(), " of ", c.type(), " ", c.name());
  }
}

absl::StatusOr<SchemaApplied> ApplySchemaChange(sqlite::Database& db, const SchemaChange& c,
                                                bool own, uint64_t shard0_index) {
  const std::string& type = c.type();
  const std::string& name = c.name();
  if (!KnownType(type)) return Refused(absl::StrCat("unknown object type '", type, "'"));
  if (name.empty() || sqlite::IsReservedName(name)) {
    return Refused(absl::StrCat("'", name, "' is not the name of a user object"));
  }
  if (own) {
    // This node made it: what it holds is as new or newer (it may have changed or dropped the
    // object since, even before the change came back). Only an object it lacks altogether (its
    // file made anew, the log applied again) is made; renames and drops are remembered.
    if (c.kind() == SchemaChange::RENAME_COLUMN && c.columns_size() == 2) {
      const std::string to = UnquotedName(c.columns(1));
      // Another node's rename of the column to another name came first, and this node took it
      // (ApplyRenameColumn): this one lost, here as everywhere.
      absl::StatusOr<std::vector<std::string>> now = ColumnsHere(db, name);
      if (!now.ok()) return now.status();
      absl::StatusOr<std::optional<std::string>> winner =
          ColumnRenameLostTo(db, name, *now, c.columns(0), to);
      if (!winner.ok()) return winner.status();
      if (winner->has_value()) return RenameColumnLost(db, name, c, **winner);
      // A column another node dropped first in shard 0 (which dropped it here under its new
      // name): the rename made nothing anywhere else, and the column it made is gone.
      absl::StatusOr<bool> dropped =
          ColumnDroppedHere(db, name, c.columns(0), /*applied_only=*/true);
      if (!dropped.ok()) return dropped.status();
      absl::StatusOr<std::vector<std::string>> columns = ColumnsHere(db, name);
      if (!columns.ok()) return columns.status();
      const bool gone = *dropped && std::find(columns->begin(), columns->end(),
                                              absl::AsciiStrToLower(to)) == columns->end();
      absl::Status s = gone ? RecordColumnGone(db, name, to, std::nullopt)
                            : RecordColumnGone(db, name, c.columns(0), to);
      if (!s.ok()) return s;
    }
    if (c.kind() == SchemaChange::DROP_COLUMNS) {
      for (const std::string& column : c.columns()) {
        if (absl::Status s = RecordColumnGone(db, name, column, std::nullopt); !s.ok()) return s;
      }
    }
    if (c.kind() == SchemaChange::RENAME_TABLE && !c.new_name().empty()) {
      // Another node's rename of the table to another name came first, and this node took it
      // (ApplyRenameTable): this one lost, here as everywhere.
      absl::StatusOr<std::optional<std::string>> winner = RenameLostTo(db, c, shard0_index);
      if (!winner.ok()) return winner.status();
      if (winner->has_value()) {
        absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(
            absl::StrCat("SELECT 1 FROM ", kBaseline, " WHERE type = 'table' AND name IN (",
                         Value::Text(c.name()).DebugString(), ", ",
                         Value::Text(c.new_name()).DebugString(), ") COLLATE NOCASE"));
        if (!known.ok()) return known.status();
        if (known->empty()) return RenameLost(db, c, shard0_index, **winner);
      }
      // Renamed here by this node itself: where the table's rows route, and what its old name
      // means in batches read before (table_renames.h). What marmot keeps by the old name
      // follows the table here too, at this point of shard 0's order as on every other node:
      // until now every entry that named the old name meant the renamed table (the rename was
      // pending, or not made yet), and from now on only entries read before it do (a table
      // made again under the old name is another table). Not when another node's same rename
      // away came first and was taken here already (RenameTakenAlready): the old name is the
      // new table's since then.
      absl::StatusOr<bool> taken = RenameTakenAlready(db, c.new_name());
      if (!taken.ok()) return taken.status();
      if (!*taken) {
        if (absl::Status s = RenameTableState(db, name, c.new_name()); !s.ok()) return s;
        if (absl::Status s = RecordTableRenamed(db, name, c.new_name(), shard0_index); !s.ok()) {
          return s;
        }
      }
    }
    if (c.kind() == SchemaChange::DROP) {
      if (absl::Status s = RecordDropped(db, type, name, shard0_index); !s.ok()) return s;
    }
    if (c.kind() == SchemaChange::DROP && type == "table") {
      // Gone here still (not made again since): what marmot kept of it goes too.
      absl::StatusOr<bool> here = Exists(db, type, name);
      if (!here.ok()) return here.status();
      if (!*here) {
        if (absl::Status s = ForgetDroppedTable(db, name); !s.ok()) return s;
      }
    }
    if (c.kind() != SchemaChange::CREATE)
      return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
    absl::StatusOr<std::vector<std::vector<Value>>> exists = db.QueryRows(
        absl::StrCat("SELECT 1 FROM sqlite_master WHERE name = ", Value::Text(name).DebugString(),
                     " COLLATE NOCASE"));
    if (!exists.ok()) return exists.status();
    if (!exists->empty()) {
      if (type == "table" && shard0_index > 0) {
        if (absl::Status s = RecordTableCreated(db, name, /*made=*/false); !s.ok()) return s;
      }
      return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
    }
  }
  std::optional<sqlite::Transaction> savepoint;
  {
    absl::StatusOr<sqlite::Transaction> begun = sqlite::Transaction::Begin(db);
    if (!begun.ok()) return begun.status();
    savepoint.emplace(*std::move(begun));
  }
  absl::StatusOr<SchemaApplied> applied;
  switch (c.kind()) {
    case SchemaChange::CREATE:
      applied = ApplyCreate(db, c, type, name);
      break;
    case SchemaChange::DROP:
      applied = ApplyDrop(db, type, name);
      break;
    case SchemaChange::ADD_COLUMNS:
      applied = ApplyAddColumns(db, c);
      break;
    case SchemaChange::RENAME_COLUMN:
      applied = ApplyRenameColumn(db, c);
      break;
    case SchemaChange::DROP_COLUMNS:
      applied = ApplyDropColumns(db, c);
      break;
    case SchemaChange::REDEFINE:
      applied = ApplyRedefine(db, c);
      break;
    case SchemaChange::RENAME_TABLE:
      applied = ApplyRenameTable(db, c, shard0_index);
      break;
    default:
      return Refused(absl::StrCat("unknown kind of schema change ", c.kind()));
  }
  if (!applied.ok()) return applied;
  if (own && (applied->outcome == SchemaApplied::kConflict ||
              applied->outcome == SchemaApplied::kRefused)) {
    savepoint.reset();  // Rolls back.
    return SchemaApplied{.outcome = SchemaApplied::kAlreadySo};
  }
  // A refusal leaves nothing behind: the savepoint rolls back.
  if (applied->outcome == SchemaApplied::kRefused) return applied;
  if (absl::Status s = savepoint->Commit(); !s.ok()) return s;
  // A drop, for the snapshots taken before it (DroppedSinceSnapshot).
  if (c.kind() == SchemaChange::DROP && applied->outcome != SchemaApplied::kConflict) {
    if (absl::Status s = RecordDropped(db, type, name, shard0_index); !s.ok()) return s;
  }
  // Where the table's rows route, alike on every node whatever the outcome here (table_renames.h;
  // a snapshot's schema brings its routes with it).
  if (c.kind() == SchemaChange::CREATE && type == "table" && shard0_index > 0) {
    if (absl::Status s = RecordTableCreated(db, name, applied->outcome == SchemaApplied::kApplied);
        !s.ok()) {
      return s;
    }
  }
  return applied;
}

absl::Status RecordSentInBaseline(sqlite::Database& db, const std::vector<SchemaChange>& sent,
                                  uint64_t shard0_index) {
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  for (const SchemaChange& c : sent) {
    absl::Status s;
    bool lost = false;  // To another node's change that came first: the baseline holds that.
    // A table's columns changed: whose the table is stays as it was (RecordTableInBaseline
    // writes the row anew).
    std::optional<Value> table_own_at;
    if (c.kind() == SchemaChange::RENAME_COLUMN || c.kind() == SchemaChange::ADD_COLUMNS ||
        c.kind() == SchemaChange::DROP_COLUMNS || c.kind() == SchemaChange::REDEFINE) {
      absl::StatusOr<std::optional<Value>> was = OwnAtInBaseline(db, "table", c.name());
      if (!was.ok()) return was.status();
      table_own_at = *std::move(was);
    }
    switch (c.kind()) {
      case SchemaChange::CREATE:
        // The table of an index or trigger is the one it has here (it names it in its SQL).
        s = db.RunKept(
            absl::StrCat("INSERT OR REPLACE INTO ", kBaseline,
                         " (type, name, tbl_name, sql) VALUES (?1, ?2, coalesce((SELECT tbl_name"
                         " FROM sqlite_master WHERE type = ?1 AND name = ?2), ?2), ?3)"),
            {Value::Text(c.type()), Value::Text(c.name()), Value::Text(c.sql())});
        // Its route is decided where shard 0 applies it (RecordTableCreated): another node's
        // CREATE of the table spelled in another case may come first there.
        break;
      case SchemaChange::DROP:
        s = ForgetInBaseline(db, c.type(), c.name());
        if (s.ok() && c.type() == "table") s = ForgetTableRoute(db, c.name());
        if (s.ok()) s = RecordDropped(db, c.type(), c.name(), shard0_index);
        break;
      case SchemaChange::RENAME_TABLE: {
        // Lost to another node's rename that came first (ApplyRenameTable took that one here):
        // the baseline holds the table under the winner's name already.
        absl::StatusOr<bool> lost_at = RenameLostAt(db, c.new_name(), shard0_index);
        if (!lost_at.ok()) return lost_at.status();
        lost = *lost_at;
        if (lost) break;
        absl::StatusOr<bool> taken = RenameTakenAlready(db, c.new_name());
        s = taken.status();
        if (s.ok()) s = ForgetInBaseline(db, "table", c.name());
        if (s.ok()) s = RecordTableInBaseline(db, c.new_name(), c.sql(), false);
        if (s.ok() && !*taken) s = RecordTableRenamed(db, c.name(), c.new_name(), shard0_index);
        break;
      }
      case SchemaChange::RENAME_COLUMN:
        if (c.columns_size() == 2) {
          // Lost to another node's rename of the column that came first (RenameColumnLost): the
          // baseline holds the table with the winner's column already.
          const std::string to = UnquotedName(c.columns(1));
          absl::StatusOr<std::optional<std::string>> went = ColumnWentTo(db, c.name(), to);
          if (!went.ok()) return went.status();
          absl::StatusOr<std::vector<std::string>> now = ColumnsHere(db, c.name());
          if (!now.ok()) return now.status();
          lost = went->has_value() && !(*went)->empty() &&
                 std::find(now->begin(), now->end(), absl::AsciiStrToLower(to)) == now->end();
          if (lost) break;
        }
        s = RecordTableInBaseline(db, c.name(), c.sql(), /*only_with_more_columns=*/false);
        break;
      case SchemaChange::ADD_COLUMNS:
      case SchemaChange::DROP_COLUMNS:
      case SchemaChange::REDEFINE:
        s = RecordTableInBaseline(db, c.name(), c.sql(), /*only_with_more_columns=*/false);
        break;
      default:
        break;
    }
    if (!s.ok()) return s;
    // What it made (or a table it renamed, which the others' rename finds) is this node's own
    // until shard 0 orders it here: a snapshot of shard 0 taken before that index does not drop
    // it (DropsOfSnapshotSchema). A table whose columns it changed stays whose it was: another
    // node's drop of it before that drops it, as the drop applied here would.
    if (lost) continue;
    if (c.kind() == SchemaChange::CREATE) {
      s = MarkOwnInBaseline(db, c.type(), c.name(), shard0_index);
    } else if (c.kind() == SchemaChange::RENAME_TABLE) {
      s = MarkOwnInBaseline(db, "table", c.new_name(), shard0_index);
    } else if (table_own_at.has_value()) {
      s = SetOwnAtInBaseline(db, "table", c.name(), *table_own_at);
    }
    if (!s.ok()) return s;
  }
  return txn->Commit();
}

}  // namespace marmot::replicator
