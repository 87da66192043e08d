#include "sqlite/change_log.h"

#include <glog/logging.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sqlite/row_digest.h"

namespace marmot::sqlite {
namespace {

constexpr char kId[] = "__marmot__id";
constexpr char kOp[] = "__marmot__op";
// Logs made before the capture time was dropped from the triggers have this column; installing
// drops it (see InstallTable).
constexpr char kOldAt[] = "__marmot__at";
constexpr char kState[] = "__marmot__state";
constexpr char kPrevOrigin[] = "__marmot__prev_origin";
constexpr char kPrevId[] = "__marmot__prev_id";
constexpr char kRowid[] = "__marmot__rowid";
constexpr char kOldRowid[] = "__marmot__old_rowid";

std::string Q(absl::string_view name) { return QuoteIdentifier(name); }

// `s` as a SQL string literal.
std::string Literal(absl::string_view s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "''"}}), "'");
}

// No quote in it: it goes into a SQL string literal as it is.
constexpr char kLogGuardMessage[] =
    "marmot deletes change-log rows itself once they are replicated; deleted by hand, the new "
    "changes of this node would look already applied to the other nodes and be skipped. To stop "
    "replicating: stop marmot, then run marmot -cleanup";
constexpr char kLogEditGuardMessage[] =
    "change-log rows are the changes marmot replicates; edited by hand, the other nodes would "
    "receive the edit, or nothing, instead of what was written. To stop replicating: stop marmot, "
    "then run marmot -cleanup";
// The log's key columns are named by key position, not by the key columns' names: a key column
// renamed while changes of it wait in the log keeps its values there.
std::string NewKeyColumn(size_t i) { return absl::StrCat("__marmot__key", i + 1); }
std::string OldKeyColumn(size_t i) { return absl::StrCat("__marmot__old_key", i + 1); }
// Logs of older versions named them "new.<column>" and "old.<column>" (and had a "new." column
// for every column of the table).
std::string LegacyNewColumn(const std::string& column) { return "new." + column; }
std::string LegacyOldColumn(const std::string& column) { return "old." + column; }

// No quote in it either. A NULL in a key that SQLite lets be NULL (a declared key of a rowid
// table that is not an INTEGER PRIMARY KEY) identifies no row: several rows may hold it, and
// other nodes could not tell them apart.
constexpr char kNullKeyMessage[] =
    "marmot replicates rows by their primary key, and this row has a NULL in it (SQLite allows "
    "that in a key that is not INTEGER PRIMARY KEY unless it is declared NOT NULL). Give the row "
    "a key, or declare the key columns NOT NULL";

// Whether SQLite lets the key column `c` of `t` hold NULL. An INTEGER PRIMARY KEY is the rowid:
// a NULL written to it becomes a new rowid.
bool KeyMayBeNull(const TableSchema& t, const ColumnInfo& c) {
  return !t.without_rowid && !c.not_null && !t.key_is_rowid;
}

// Everything the log of one table and its triggers are made of, derived from the table's schema.
//
// The log holds keys and operations only; the row's values are read from the table when the
// change is read (ReadChanges). So capture cannot lag the table's columns: a column added,
// renamed or dropped a moment before a write (in the same transaction, or while marmot was
// stopped) is read as the table has it, and the triggers name no column but the key, which
// SQLite keeps up to date through RENAME COLUMN and never lets DROP COLUMN remove.
struct CapturePlan {
  std::string log_table;
  std::vector<std::string> log_columns;  // Key columns of the log, after the meta columns.
  std::string create_log;
  // Trigger name -> CREATE TRIGGER statement, exactly as sqlite_master will store it. The
  // capture triggers on the table come first (kCaptureTriggers of them), then the log's guards.
  std::vector<std::pair<std::string, std::string>> triggers;
  std::string backfill;
  // For a table made again within one look (CaptureOptions::captured_before): the rows that
  // differ from what their versions left (or have none)...
  std::string backfill_changed;
  // ...and deletes of the rows whose versions left one that is gone now. Only for a key of one
  // column (or the rowid), whose versions store an INTEGER key as that integer; empty otherwise.
  std::string backfill_gone;
};
constexpr size_t kCaptureTriggers = 4;

CapturePlan PlanCapture(const TableSchema& t) {
  CapturePlan plan;
  plan.log_table = ChangeLogTableName(t.name);
  const std::string table = Q(t.name);
  const std::string log = Q(plan.log_table);

  // The identity key: declared key columns, or the rowid.
  std::vector<std::string> new_cols, old_cols, new_vals, old_vals, key_same, null_key;
  if (t.keyed_by_rowid()) {
    new_cols.push_back(Q(kRowid));
    new_vals.push_back("NEW.rowid");
    old_cols.push_back(Q(kOldRowid));
    old_vals.push_back("OLD.rowid");
    key_same.push_back("OLD.rowid IS NEW.rowid");
    plan.log_columns.push_back(kRowid);
    plan.log_columns.push_back(kOldRowid);
  } else {
    for (size_t i = 0; i < t.primary_key.size(); ++i) {
      new_cols.push_back(Q(NewKeyColumn(i)));
      new_vals.push_back("NEW." + Q(t.primary_key[i]));
      plan.log_columns.push_back(NewKeyColumn(i));
    }
    for (size_t i = 0; i < t.primary_key.size(); ++i) {
      const std::string& k = t.primary_key[i];
      old_cols.push_back(Q(OldKeyColumn(i)));
      old_vals.push_back("OLD." + Q(k));
      key_same.push_back(absl::StrCat("OLD.", Q(k), " IS NEW.", Q(k)));
      plan.log_columns.push_back(OldKeyColumn(i));
    }
    for (const ColumnInfo& c : t.columns) {
      if (c.pk_position > 0 && KeyMayBeNull(t, c))
        null_key.push_back(absl::StrCat("NEW.", Q(c.name), " IS NULL"));
    }
  }

  std::vector<std::string> column_defs;
  for (const std::string& c : plan.log_columns) column_defs.push_back(Q(c));
  plan.create_log =
      absl::StrCat("CREATE TABLE ", log, " (", Q(kId), " INTEGER PRIMARY KEY, ", Q(kOp),
                   " TEXT NOT NULL, ", Q(kState), " INTEGER NOT NULL DEFAULT 0, ", Q(kPrevOrigin),
                   ", ", Q(kPrevId), ", ", absl::StrJoin(column_defs, ", "), ")");

  // Refuses a row whose key holds NULL, before it is logged (the statement is undone).
  const std::string refuse_null_key =
      null_key.empty() ? ""
                       : absl::StrCat("SELECT RAISE(ABORT, '", kNullKeyMessage, "') WHERE ",
                                      absl::StrJoin(null_key, " OR "), "; ");
  // The version of the row the write saw (RowVersionKeySql): recorded with the change, so that
  // the shards can tell a change made after seeing another from one made without seeing it.
  // `key_vals` is the key the version is looked up by (empty: none recorded).
  auto trigger = [&](const std::string& suffix, const std::string& event, const std::string& when,
                     char op, const std::vector<std::string>& cols,
                     const std::vector<std::string>& vals, const std::vector<std::string>& key_vals,
                     const std::string& guard) {
    std::string name = absl::StrCat(kMarmotPrefix, t.name, "_", suffix);
    std::string insert;
    if (key_vals.empty()) {
      insert =
          absl::StrCat("INSERT INTO ", log, " (", Q(kOp), ", ", absl::StrJoin(cols, ", "),
                       ") VALUES ('", std::string(1, op), "', ", absl::StrJoin(vals, ", "), ");");
    } else {
      insert = absl::StrCat(
          "INSERT INTO ", log, " (", Q(kOp), ", ", Q(kPrevOrigin), ", ", Q(kPrevId), ", ",
          absl::StrJoin(cols, ", "), ") SELECT '", std::string(1, op), "', coalesce(v.o, 0), v.c, ",
          absl::StrJoin(vals, ", "),
          " FROM (SELECT 1) LEFT JOIN (SELECT CASE WHEN held IS NULL THEN origin ELSE -1 END AS o, "
          "change_id AS c FROM ",
          Q(kRowVersionsTable), " WHERE tbl = ", Literal(t.name),
          " AND key = ", RowVersionKeySql(key_vals), ") AS v;");
    }
    std::string sql =
        absl::StrCat("CREATE TRIGGER ", Q(name), " AFTER ", event, " ON ", table,
                     when.empty() ? "" : " WHEN ", when, " BEGIN ", guard, insert, " END");
    plan.triggers.emplace_back(std::move(name), std::move(sql));
  };
  std::vector<std::string> rekey_cols = new_cols, rekey_vals = new_vals;
  rekey_cols.insert(rekey_cols.end(), old_cols.begin(), old_cols.end());
  rekey_vals.insert(rekey_vals.end(), old_vals.begin(), old_vals.end());
  const std::string same_key = absl::StrJoin(key_same, " AND ");

  trigger("insert", "INSERT", "", 'I', new_cols, new_vals, new_vals, refuse_null_key);
  trigger("update", "UPDATE", same_key, 'U', new_cols, new_vals, old_vals, refuse_null_key);
  // A rekey records no version: its two keys may live in two shards.
  trigger("rekey", "UPDATE", absl::StrCat("NOT (", same_key, ")"), 'K', rekey_cols, rekey_vals, {},
          refuse_null_key);
  trigger("delete", "DELETE", "", 'D', old_cols, old_vals, old_vals, "");
  auto guard = [&](const std::string& suffix, const std::string& event, const char* message) {
    std::string name = absl::StrCat(kMarmotPrefix, t.name, "_", suffix);
    std::string sql = absl::StrCat("CREATE TRIGGER ", Q(name), " BEFORE ", event, " ON ", log,
                                   " BEGIN SELECT RAISE(ABORT, '", message, "'); END");
    plan.triggers.emplace_back(std::move(name), std::move(sql));
  };
  guard("log_guard", "DELETE", kLogGuardMessage);
  guard("log_edit_guard", "UPDATE", kLogEditGuardMessage);

  // The table's rows under an alias of marmot's: a key column may be named like a column of
  // the versions table.
  const std::string row = Q(absl::StrCat(kMarmotPrefix, "row"));
  std::vector<std::string> select_vals;
  if (t.keyed_by_rowid()) {
    select_vals.push_back(row + ".rowid");
  } else {
    for (const std::string& k : t.primary_key) select_vals.push_back(absl::StrCat(row, ".", Q(k)));
  }
  // Rows whose key holds NULL cannot be told apart on other nodes: not copied (see above).
  std::vector<std::string> not_null;
  for (const std::string& v : select_vals) not_null.push_back(v + " IS NOT NULL");
  // Each copied row records the version its row has here, as a trigger would: written while
  // capture was off, it was written over that version at best. A table made again (SQLite's
  // create-copy-drop-rename, which migration tools use) keeps its rows' versions under its
  // name, so its copy applies over them on every node rather than conflicting with each; a
  // row with no version records none (origin 0), and over a version of another node it is kept
  // as a conflict rather than applied (a spurious conflict at worst, never a write lost unseen).
  const std::string prev =
      "CASE WHEN v.tbl IS NULL THEN 0 WHEN v.held IS NULL THEN v.origin ELSE -1 END, v.change_id";
  const std::string copy = absl::StrCat(
      "INSERT INTO ", log, " (", Q(kOp), ", ", Q(kPrevOrigin), ", ", Q(kPrevId), ", ",
      absl::StrJoin(new_cols, ", "), ") SELECT 'I', ", prev, ", ", absl::StrJoin(select_vals, ", "),
      " FROM ", table, " AS ", row, " LEFT JOIN ", Q(kRowVersionsTable),
      " AS v ON v.tbl = ", Literal(t.name), " AND v.key = ", RowVersionKeySql(select_vals),
      " WHERE ", absl::StrJoin(not_null, " AND "));
  plan.backfill = copy;
  // A table made again within one look holds its rows as they were, but for what the statements
  // that made it changed (a value computed in its copy) and what the application wrote before
  // marmot looked: only the rows that differ from what their versions left on every node are
  // copied, and the rows gone since are deleted. The others stand as they are everywhere (the
  // other nodes make the table again from their own rows), and a write another node makes to
  // one meanwhile applies over its version here too.
  std::vector<std::string> digest_args;
  for (const ColumnInfo& c : t.columns) {
    digest_args.push_back(Literal(c.name));
    digest_args.push_back(absl::StrCat(row, ".", Q(c.name)));
  }
  plan.backfill_changed =
      absl::StrCat(copy, " AND (v.digest IS NULL OR v.digest IS NOT marmot_row_digest(",
                   absl::StrJoin(digest_args, ", "), "))");
  if (select_vals.size() == 1) {
    plan.backfill_gone = absl::StrCat(
        "INSERT INTO ", log, " (", Q(kOp), ", ", Q(kPrevOrigin), ", ", Q(kPrevId), ", ",
        old_cols[0], ") SELECT 'D', CASE WHEN v.held IS NULL THEN v.origin ELSE -1 END, ",
        "v.change_id, v.key FROM ", Q(kRowVersionsTable), " AS v WHERE v.tbl = ", Literal(t.name),
        " AND typeof(v.key) = 'integer' AND v.digest IS NOT NULL AND v.digest != ", kNoRowDigest,
        " AND NOT EXISTS (SELECT 1 FROM ", table, " AS ", row, " WHERE ", select_vals[0],
        " = v.key)");
  }
  return plan;
}

absl::StatusOr<std::set<std::string>> ColumnsOf(Database& db, const std::string& table) {
  absl::StatusOr<Statement> stmt = db.Prepare("SELECT name FROM pragma_table_info(?1, 'main')");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, Value::Text(table)); !s.ok()) return s;
  std::set<std::string> names;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return names;
    names.insert(stmt->Column(0).bytes());
  }
}

// The SQL of trigger `name` as stored in sqlite_master, or NULL.
absl::StatusOr<Value> StoredTriggerSql(Database& db, const std::string& name) {
  absl::StatusOr<Statement> stmt =
      db.Prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, Value::Text(name)); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  return *row ? stmt->Column(0) : Value::Null();
}

// Triggers named like marmot's on `table` that its plan does not have: left by a table that was
// renamed to this name (they would still log into the old name's log), or by an older marmot.
absl::StatusOr<std::vector<std::string>> StaleTriggers(Database& db, const CapturePlan& plan,
                                                       const std::string& table) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND "
      "substr(name, 1, 10) = '__marmot__' ORDER BY name");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->Bind(1, Value::Text(table)); !s.ok()) return s;
  std::vector<std::string> stale;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return stale;
    const std::string name = stmt->Column(0).bytes();
    bool planned = false;
    for (const auto& [planned_name, sql] : plan.triggers) planned = planned || planned_name == name;
    if (!planned) stale.push_back(name);
  }
}

// A table renamed (ALTER TABLE T RENAME TO U) keeps marmot's capture triggers, which SQLite
// moves with it and which still log into T's log. When U has no log of its own, T's log becomes
// U's, with its pending rows (keys only: their values are read from U when shipped) and the
// rows' versions, instead of capture made anew with every row of U copied: whether or not the
// rename replicates, every change made before it and not shipped yet ships, named U. Whether
// it moved the log.
absl::StatusOr<bool> MoveRenamedLog(Database& db, const TableSchema& t, const CapturePlan& plan) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND "
      "substr(name, 1, 10) = '__marmot__' AND substr(name, -7) = '_insert' AND name != ?2");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll({Value::Text(t.name), Value::Text(plan.triggers[0].first)});
      !s.ok()) {
    return s;
  }
  std::vector<std::string> candidates;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    const std::string name = stmt->Column(0).bytes();
    candidates.push_back(name.substr(10, name.size() - 10 - 7));
  }
  for (const std::string& old_name : candidates) {
    absl::StatusOr<Value> found = db.QueryValue(absl::StrCat(
        "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ",
        Literal(ChangeLogTableName(old_name)),
        ") * 10 + (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ",
        Literal(old_name), " COLLATE NOCASE)"));
    if (!found.ok()) return found.status();
    // Its log is there. A table of its name may be there too, made again after the rename (in
    // the same transaction, or before marmot looked): that one is another table, and the log
    // is the renamed one's, which its triggers wrote.
    if (found->integer() / 10 != 1) continue;
    if (absl::Status s = db.Exec(absl::StrCat("ALTER TABLE ", Q(ChangeLogTableName(old_name)),
                                              " RENAME TO ", Q(plan.log_table)));
        !s.ok()) {
      return s;
    }
    absl::Status s = db.Exec(absl::StrCat(
        "DELETE FROM ", Q(kRowVersionsTable), " WHERE tbl = ", Literal(t.name), "; UPDATE ",
        Q(kRowVersionsTable), " SET tbl = ", Literal(t.name), " WHERE tbl = ", Literal(old_name)));
    if (!s.ok()) return s;
    // The trace of the move (kMovedCaptureTable): `t` on its page was `old_name`, and every name
    // `old_name` had on that page before. A row left by an earlier table of `t`'s name (one
    // that had a log) is not this one's.
    s = db.Exec(absl::StrCat(
        "CREATE TABLE IF NOT EXISTS ", Q(kMovedCaptureTable),
        " (tbl TEXT NOT NULL, was TEXT NOT NULL, rootpage INTEGER NOT NULL, PRIMARY KEY (tbl, "
        "was)) WITHOUT ROWID; DELETE FROM ",
        Q(kMovedCaptureTable), " WHERE tbl = ", Literal(t.name), "; INSERT OR REPLACE INTO ",
        Q(kMovedCaptureTable), " (tbl, was, rootpage) SELECT ", Literal(t.name),
        ", was, rootpage FROM ", Q(kMovedCaptureTable), " WHERE tbl = ", Literal(old_name),
        " AND rootpage = (SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ",
        Literal(t.name), "); DELETE FROM ", Q(kMovedCaptureTable),
        " WHERE tbl = ", Literal(old_name), "; INSERT OR REPLACE INTO ", Q(kMovedCaptureTable),
        " (tbl, was, rootpage) SELECT ", Literal(t.name), ", ", Literal(old_name),
        ", rootpage FROM sqlite_master WHERE type = 'table' AND name = ", Literal(t.name)));
    if (!s.ok()) return s;
    LOG(INFO) << "capture of " << Q(old_name) << " moved to " << Q(t.name)
              << " (renamed): its change log and the versions of its rows";
    return true;
  }
  return false;
}

enum class Outcome { kInstalled, kUpdated, kUnchanged };

// Moves the log of a table renamed to `t` (MoveRenamedLog) when `t` has none; whether it did.
absl::StatusOr<bool> TakeRenamedLog(Database& db, const TableSchema& t) {
  CapturePlan plan = PlanCapture(t);
  absl::StatusOr<std::set<std::string>> existing = ColumnsOf(db, plan.log_table);
  if (!existing.ok()) return existing.status();
  if (!existing->empty()) return false;
  return MoveRenamedLog(db, t, plan);
}

// `moved`: `t` took the log of the table renamed to it (TakeRenamedLog).
absl::StatusOr<Outcome> InstallTable(Database& db, const TableSchema& t,
                                     const CaptureOptions& options, bool moved,
                                     int64_t* backfilled) {
  CapturePlan plan = PlanCapture(t);
  absl::StatusOr<std::set<std::string>> existing = ColumnsOf(db, plan.log_table);
  if (!existing.ok()) return existing.status();
  // Rows written while the capture triggers were missing (the table is new, or was dropped and
  // made again, which drops its triggers but not its log or the log's guards) were not logged.
  // Triggers of its names on another table are not its (that table was renamed from this name
  // and this one made again: it had none).
  size_t capture_triggers_found = 0;
  for (size_t i = 0; i < kCaptureTriggers; ++i) {
    absl::StatusOr<Value> on = db.QueryValue(
        absl::StrCat("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = ",
                     Literal(plan.triggers[i].first), " AND tbl_name = ", Literal(t.name)));
    if (!on.ok()) return on.status();
    capture_triggers_found += on->integer() > 0 ? 1 : 0;
  }
  bool changed = false;
  for (const std::string& table : {t.name, plan.log_table}) {
    absl::StatusOr<std::vector<std::string>> stale = StaleTriggers(db, plan, table);
    if (!stale.ok()) return stale.status();
    for (const std::string& name : *stale) {
      LOG(INFO) << "dropping trigger " << Q(name) << " on " << Q(table)
                << ": it is not marmot's capture of this table";
      if (absl::Status s = db.Exec(absl::StrCat("DROP TRIGGER ", Q(name))); !s.ok()) return s;
      changed = true;
    }
  }
  if (existing->count(kOldAt) > 0) {
    // A log of an older marmot, whose triggers stamped every change with julianday('now'): a
    // measurable share of every application insert, for a time nothing read. SQLite drops a
    // column only when no trigger names it: the triggers go first and are made again below.
    for (const auto& [name, sql] : plan.triggers) {
      if (absl::Status s = db.Exec(absl::StrCat("DROP TRIGGER IF EXISTS ", Q(name))); !s.ok())
        return s;
    }
    absl::Status s =
        db.Exec(absl::StrCat("ALTER TABLE ", Q(plan.log_table), " DROP COLUMN ", Q(kOldAt)));
    if (!s.ok()) return s;
    changed = true;
  }
  if (existing->empty()) {
    if (absl::Status s = db.Exec(plan.create_log); !s.ok()) return s;
    changed = true;
  } else {
    std::vector<std::string> wanted = {kPrevOrigin, kPrevId};
    wanted.insert(wanted.end(), plan.log_columns.begin(), plan.log_columns.end());
    for (const std::string& column : wanted) {
      if (existing->count(column) > 0) continue;
      absl::Status s =
          db.Exec(absl::StrCat("ALTER TABLE ", Q(plan.log_table), " ADD COLUMN ", Q(column)));
      if (!s.ok()) return s;
      changed = true;
    }
    // A log of an older version keeps its pending rows' keys under the key columns' names: they
    // move to the positional columns (past the guard that refuses edits, made again below).
    std::vector<std::string> moves;
    if (!t.keyed_by_rowid() && existing->count(NewKeyColumn(0)) == 0) {
      for (size_t i = 0; i < t.primary_key.size(); ++i) {
        const std::string& k = t.primary_key[i];
        if (existing->count(LegacyNewColumn(k)))
          moves.push_back(absl::StrCat(Q(NewKeyColumn(i)), " = ", Q(LegacyNewColumn(k))));
        if (existing->count(LegacyOldColumn(k)))
          moves.push_back(absl::StrCat(Q(OldKeyColumn(i)), " = ", Q(LegacyOldColumn(k))));
      }
    }
    if (!moves.empty()) {
      absl::Status s = db.Exec(
          absl::StrCat("DROP TRIGGER IF EXISTS ", Q(plan.triggers.back().first), "; UPDATE ",
                       Q(plan.log_table), " SET ", absl::StrJoin(moves, ", ")));
      if (!s.ok()) return s;
    }
  }
  if (options.log_ids_above > 0) {
    // Done (state 1), so never read as a change. Not a change of the capture either.
    absl::Status s = db.Exec(
        absl::StrCat("INSERT INTO ", Q(plan.log_table), " (", Q(kId), ", ", Q(kOp), ", ", Q(kState),
                     ") SELECT ", options.log_ids_above, ", 'I', 1 WHERE (SELECT coalesce(max(",
                     Q(kId), "), 0) FROM ", Q(plan.log_table), ") < ", options.log_ids_above));
    if (!s.ok()) return s;
  }
  for (const auto& [name, sql] : plan.triggers) {
    absl::StatusOr<Value> stored = StoredTriggerSql(db, name);
    if (!stored.ok()) return stored.status();
    if (!stored->is_null() && stored->bytes() == sql) continue;
    if (absl::Status s = db.Exec(absl::StrCat("DROP TRIGGER IF EXISTS ", Q(name))); !s.ok())
      return s;
    if (absl::Status s = db.Exec(sql); !s.ok()) return s;
    changed = true;
  }
  if (moved) return Outcome::kUpdated;
  if (capture_triggers_found == 0 && options.backfill_new_tables) {
    // Its log was there (`existing`): the table had capture, and lost it within one look.
    const bool made_again = !existing->empty() && options.captured_before.count(t.name) > 0;
    if (absl::Status s = db.Exec(made_again ? plan.backfill_changed : plan.backfill); !s.ok()) {
      return s;
    }
    *backfilled += db.Changes();
    if (made_again && !plan.backfill_gone.empty()) {
      if (absl::Status s = db.Exec(plan.backfill_gone); !s.ok()) return s;
      *backfilled += db.Changes();
    }
  }
  if (capture_triggers_found == 0) return Outcome::kInstalled;
  return changed ? Outcome::kUpdated : Outcome::kUnchanged;
}

}  // namespace

std::string RowVersionKeySql(const std::vector<std::string>& values) {
  std::vector<std::string> quoted;
  // quote() ends a TEXT at its first NUL: a TEXT holding one is written as its bytes, as a
  // BLOB literal after a T, which no quote() begins with.
  for (const std::string& v : values) {
    quoted.push_back(absl::StrCat("CASE WHEN typeof(", v, ") = 'text' AND instr(CAST(", v,
                                  " AS BLOB), x'00') > 0 THEN 'T' || quote(CAST(", v,
                                  " AS BLOB)) ELSE quote(", v, ") END"));
  }
  if (values.size() == 1) {
    // The CASE gives the integer without an affinity (`v` may be a column of one).
    return absl::StrCat("CASE WHEN typeof(", values[0], ") = 'integer' THEN ", values[0], " ELSE ",
                        quoted[0], " END");
  }
  return absl::StrJoin(quoted, " || ',' || ");
}

absl::Status EnsureRowVersions(Database& db) {
  // Whether the table there has the earlier layout (its key declared TEXT).
  auto earlier = [&db]() -> absl::StatusOr<bool> {
    absl::StatusOr<Value> type = db.QueryValue(
        "SELECT (SELECT upper(type) FROM pragma_table_info('__marmot__versions', 'main') "
        "WHERE name = 'key')");
    if (!type.ok()) return type.status();
    return !type->is_null() && type->bytes() == "TEXT";
  };
  absl::StatusOr<bool> rewrite = earlier();
  if (!rewrite.ok()) return rewrite.status();
  if (!*rewrite) {
    if (absl::Status s = db.Exec(kCreateRowVersions); !s.ok()) return s;
    absl::StatusOr<std::set<std::string>> columns = ColumnsOf(db, kRowVersionsTable);
    if (!columns.ok()) return columns.status();
    if (columns->count("digest") > 0) return absl::OkStatus();
    return db.Exec(
        absl::StrCat("ALTER TABLE ", Q(kRowVersionsTable), " ADD COLUMN digest INTEGER"));
  }
  absl::StatusOr<Transaction> txn = Transaction::Begin(db, Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  rewrite = earlier();  // Another connection may have rewritten it meanwhile.
  if (!rewrite.ok()) return rewrite.status();
  if (!*rewrite) {
    if (absl::Status s = db.Exec(kCreateRowVersions); !s.ok()) return s;
    return txn->Commit();
  }
  absl::StatusOr<std::set<std::string>> columns = ColumnsOf(db, kRowVersionsTable);
  if (!columns.ok()) return columns.status();
  std::vector<std::string> names, copied;  // Every column it has; the key converted.
  for (const std::string& c : *columns) {
    names.push_back(Q(c));
    // The text of an INTEGER key is its digits, which no other key's text is (quote() writes a
    // REAL with a '.' or as Inf): exactly the texts that CAST to an integer and back unchanged.
    copied.push_back(c == "key" ? "CASE WHEN CAST(CAST(key AS INTEGER) AS TEXT) = key THEN "
                                  "CAST(key AS INTEGER) ELSE key END AS key"
                                : Q(c));
  }
  // Through a copy, not by renaming a new table into place: ALTER TABLE RENAME would check, and
  // rewrite, the capture triggers that name the table. The copy's key has no affinity (an
  // expression's column in CREATE TABLE AS).
  const std::string copy = Q(absl::StrCat(kRowVersionsTable, "_rewritten"));
  if (absl::Status s = db.Exec(absl::StrCat(
          "CREATE TABLE ", copy, " AS SELECT ", absl::StrJoin(copied, ", "), " FROM ",
          Q(kRowVersionsTable), "; DROP TABLE ", Q(kRowVersionsTable), "; ", kCreateRowVersions,
          "; INSERT INTO ", Q(kRowVersionsTable), " (", absl::StrJoin(names, ", "), ") SELECT ",
          absl::StrJoin(names, ", "), " FROM ", copy, " ORDER BY tbl, key; DROP TABLE ", copy));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Value> rows =
      db.QueryValue(absl::StrCat("SELECT count(*) FROM ", Q(kRowVersionsTable)));
  if (!rows.ok()) return rows.status();
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  LOG(INFO) << Q(kRowVersionsTable) << " rewritten in its current layout (a key of one integer "
            << "stored as that integer): " << rows->integer() << " row(s)";
  return absl::OkStatus();
}

std::string ChangeLogTableName(const std::string& table) {
  return absl::StrCat(kMarmotPrefix, table, "_change_log");
}

absl::StatusOr<CaptureReport> InstallCapture(Database& db, const CaptureOptions& options) {
  if (absl::Status s = db.EnsureWal(); !s.ok()) return s;
  absl::StatusOr<Transaction> txn = Transaction::Begin(db, Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  if (absl::Status s = EnsureRowVersions(db); !s.ok()) return s;
  if (absl::Status s = RegisterRowDigest(db); !s.ok()) return s;
  // Read the schema inside the write transaction so that it cannot change under us.
  absl::StatusOr<SchemaListing> listing = ListUserTables(db);
  if (!listing.ok()) return listing.status();
  CaptureReport report;
  report.skipped_virtual = listing->skipped_virtual;
  // Logs of renamed tables move first: a table made again under the old name must not take the
  // log the renamed one's triggers wrote, whichever of the two comes first below.
  std::set<std::string> moved;
  for (const TableSchema& t : listing->tables) {
    absl::StatusOr<bool> took = TakeRenamedLog(db, t);
    if (!took.ok()) {
      return absl::Status(took.status().code(), absl::StrCat("moving the change log to ", Q(t.name),
                                                             ": ", took.status().message()));
    }
    if (*took) moved.insert(t.name);
  }
  for (const TableSchema& t : listing->tables) {
    absl::StatusOr<Outcome> outcome =
        InstallTable(db, t, options, moved.count(t.name) > 0, &report.backfilled_rows);
    if (!outcome.ok()) {
      return absl::Status(outcome.status().code(), absl::StrCat("installing capture on ", Q(t.name),
                                                                ": ", outcome.status().message()));
    }
    switch (*outcome) {
      case Outcome::kInstalled:
        report.installed.push_back(t.name);
        break;
      case Outcome::kUpdated:
        report.updated.push_back(t.name);
        break;
      case Outcome::kUnchanged:
        report.unchanged.push_back(t.name);
        break;
    }
    if (t.keyed_by_rowid()) report.keyed_by_rowid.push_back(t.name);
  }
  std::vector<std::string> names;
  for (const TableSchema& t : listing->tables) names.push_back(Literal(t.name));
  // Traces of moved capture of tables gone, or whose name another table with capture of its
  // own has now.
  absl::StatusOr<Value> moved_kept = db.QueryValue(
      absl::StrCat("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ",
                   Literal(kMovedCaptureTable)));
  if (!moved_kept.ok()) return moved_kept.status();
  if (moved_kept->integer() > 0) {
    std::vector<std::string> fresh;
    for (const std::string& name : report.installed) fresh.push_back(Literal(name));
    if (absl::Status s = db.Exec(absl::StrCat("DELETE FROM ", Q(kMovedCaptureTable),
                                              " WHERE tbl NOT IN (", absl::StrJoin(names, ", "),
                                              ") OR tbl IN (", absl::StrJoin(fresh, ", "), ")"));
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  return report;
}

absl::Status RemoveCapture(Database& db) {
  absl::StatusOr<Transaction> txn = Transaction::Begin(db, Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  // Triggers first (they belong to user tables), then marmot's own tables; indexes of those
  // tables go with them.
  absl::StatusOr<std::vector<std::vector<Value>>> objects = db.QueryRows(
      "SELECT type, name FROM sqlite_master WHERE substr(name, 1, 10) = '__marmot__' "
      "AND type IN ('trigger', 'table', 'view') ORDER BY type = 'table', name");
  if (!objects.ok()) return objects.status();
  for (const std::vector<Value>& object : *objects) {
    std::string type = object[0].bytes() == "trigger" ? "TRIGGER"
                       : object[0].bytes() == "view"  ? "VIEW"
                                                      : "TABLE";
    absl::Status s = db.Exec(absl::StrCat("DROP ", type, " IF EXISTS ", Q(object[1].bytes())));
    if (!s.ok()) return s;
  }
  return txn->Commit();
}

namespace {

// Columns 0 and 1 of a change-log row: its id and operation.
absl::Status ReadIdAndOp(const Statement& stmt, const std::string& log_table, ChangeRecord& r) {
  r.id = stmt.Column(0).integer();
  const Value op = stmt.Column(1);
  if (op.storage_class() != StorageClass::kText || op.bytes().size() != 1 ||
      std::string("IUKD").find(op.bytes()[0]) == std::string::npos) {
    return absl::DataLossError(absl::StrCat("change ", r.id, " of ", Q(log_table),
                                            " has an unknown operation ", op.DebugString()));
  }
  r.op = static_cast<ChangeOp>(op.bytes()[0]);
  return absl::OkStatus();
}

// The row of `key` through `by_key` (the table's columns of the row whose key is ?1...).
absl::Status ReadRowByKey(Statement& by_key, const std::vector<Value>& key,
                          std::vector<Value>& row) {
  by_key.Reset();
  if (absl::Status s = by_key.BindAll(key); !s.ok()) return s;
  absl::StatusOr<bool> has_row = by_key.Step();
  if (!has_row.ok()) return has_row.status();
  if (!*has_row) return absl::InternalError("a row the change log's join found is gone");
  row = by_key.Row();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ChangeRecord>> ReadChanges(Database& db, const TableSchema& t,
                                                      int64_t after_id, int limit) {
  // Each log row with the row it names as the table holds it now (NULLs when it is gone).
  std::vector<std::string> select = {"l." + Q(kId), "l." + Q(kOp)};
  std::vector<std::string> join;
  if (t.keyed_by_rowid()) {
    select.push_back("l." + Q(kRowid));
    select.push_back("l." + Q(kOldRowid));
    select.push_back("t.rowid IS NOT NULL");
    join.push_back("t.rowid = l." + Q(kRowid));
  } else {
    for (size_t i = 0; i < t.primary_key.size(); ++i) select.push_back("l." + Q(NewKeyColumn(i)));
    for (size_t i = 0; i < t.primary_key.size(); ++i) select.push_back("l." + Q(OldKeyColumn(i)));
    // Key columns of a found row are never NULL: the capture triggers refuse such keys, and the
    // join below matches none.
    select.push_back(absl::StrCat("t.", Q(t.primary_key[0]), " IS NOT NULL"));
    for (size_t i = 0; i < t.primary_key.size(); ++i) {
      join.push_back(absl::StrCat("t.", Q(t.primary_key[i]), " = l.", Q(NewKeyColumn(i))));
    }
  }
  // A table of nearly SQLite's most columns (2,000) leaves no room in one result for the log's
  // columns beside its own: its rows are then read by key, one query a row.
  const bool row_apart = select.size() + 2 + t.columns.size() >
                         static_cast<size_t>(sqlite3_limit(db.raw(), SQLITE_LIMIT_COLUMN, -1));
  std::optional<Statement> row_by_key;
  if (row_apart) {
    std::vector<std::string> columns, match;
    for (const ColumnInfo& c : t.columns) columns.push_back(Q(c.name));
    if (t.keyed_by_rowid()) {
      match.push_back("rowid = ?1");
    } else {
      for (size_t i = 0; i < t.primary_key.size(); ++i) {
        match.push_back(absl::StrCat(Q(t.primary_key[i]), " = ?", i + 1));
      }
    }
    absl::StatusOr<Statement> by_key =
        db.Prepare(absl::StrCat("SELECT ", absl::StrJoin(columns, ", "), " FROM ", Q(t.name),
                                " WHERE ", absl::StrJoin(match, " AND ")));
    if (!by_key.ok()) return by_key.status();
    row_by_key = std::move(*by_key);
  } else {
    for (const ColumnInfo& c : t.columns) select.push_back("t." + Q(c.name));
  }
  select.push_back("l." + Q(kPrevOrigin));
  select.push_back("l." + Q(kPrevId));
  absl::StatusOr<Statement> stmt = db.Prepare(
      absl::StrCat("SELECT ", absl::StrJoin(select, ", "), " FROM ", Q(ChangeLogTableName(t.name)),
                   " AS l LEFT JOIN ", Q(t.name), " AS t ON l.", Q(kOp), " <> 'D' AND ",
                   absl::StrJoin(join, " AND "), " WHERE l.", Q(kId), " > ?1 AND l.", Q(kState),
                   " = 0 ORDER BY l.", Q(kId), " LIMIT ?2"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll({Value::Integer(after_id), Value::Integer(limit)}); !s.ok()) {
    return s;
  }
  const size_t ncols = row_apart ? 0 : t.columns.size();
  const size_t key_width = t.keyed_by_rowid() ? 1 : t.primary_key.size();
  const int found_col = static_cast<int>(2 + 2 * key_width);
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  std::vector<ChangeRecord> out;
  while (true) {
    absl::StatusOr<bool> has_row = stmt->Step();
    if (!has_row.ok()) return has_row.status();
    if (!*has_row) return out;
    ChangeRecord r;
    if (absl::Status s = ReadIdAndOp(*stmt, ChangeLogTableName(t.name), r); !s.ok()) return s;
    r.at_ms = now_ms;
    std::vector<Value> new_key, old_key;
    for (size_t i = 0; i < key_width; ++i) {
      new_key.push_back(stmt->Column(2 + static_cast<int>(i)));
      old_key.push_back(stmt->Column(2 + static_cast<int>(key_width + i)));
    }
    bool found = stmt->Column(found_col).integer() != 0;
    // NULL: written by a trigger of an older version, or copied in by a backfill: not known.
    const Value prev_origin = stmt->Column(found_col + 1 + static_cast<int>(ncols));
    if (prev_origin.storage_class() == StorageClass::kInteger && r.op != ChangeOp::kRekey) {
      const Value prev_id = stmt->Column(found_col + 2 + static_cast<int>(ncols));
      r.prev = RowVersionSeen{
          .origin = prev_origin.integer(),
          .change_id = prev_id.storage_class() == StorageClass::kInteger ? prev_id.integer() : 0};
    }
    if (r.op == ChangeOp::kDelete) {
      r.old_key = std::move(old_key);
    } else if (!found) {
      // The row is gone: a later change of this log deleted it or moved it to another key. What
      // this change replicates is that: its row (the old one too, for a rekey) no longer exists.
      // A rekey whose row is gone keeps its new key in `key`: that key is gone too, and the
      // shipper deletes it in its own shard as well.
      if (r.op == ChangeOp::kRekey) {
        r.old_key = std::move(old_key);
        r.key = std::move(new_key);
      } else {
        r.old_key = std::move(new_key);
      }
      r.op = ChangeOp::kDelete;
    } else {
      r.key = std::move(new_key);
      if (r.op == ChangeOp::kRekey) r.old_key = std::move(old_key);
      if (row_apart) {
        // The read transaction the caller holds keeps the row as the join found it.
        if (absl::Status s = ReadRowByKey(*row_by_key, r.key, r.row); !s.ok()) return s;
      } else {
        r.row.reserve(ncols);
        for (size_t i = 0; i < ncols; ++i)
          r.row.push_back(stmt->Column(found_col + 1 + static_cast<int>(i)));
      }
    }
    out.push_back(std::move(r));
  }
}

absl::StatusOr<std::vector<ChangeRecord>> ReadChangeKeys(Database& db, const TableSchema& t,
                                                         int64_t after_id, int limit) {
  std::vector<std::string> select = {Q(kId), Q(kOp)};
  if (t.keyed_by_rowid()) {
    select.push_back(Q(kRowid));
    select.push_back(Q(kOldRowid));
  } else {
    for (size_t i = 0; i < t.primary_key.size(); ++i) select.push_back(Q(NewKeyColumn(i)));
    for (size_t i = 0; i < t.primary_key.size(); ++i) select.push_back(Q(OldKeyColumn(i)));
  }
  // Kept: the local change index calls this for every applied entry, mostly to find nothing.
  absl::StatusOr<Statement*> kept = db.Kept(absl::StrCat(
      "SELECT ", absl::StrJoin(select, ", "), " FROM ", Q(ChangeLogTableName(t.name)), " WHERE ",
      Q(kId), " > ?1 AND ", Q(kState), " = 0 ORDER BY ", Q(kId), " LIMIT ?2"));
  if (!kept.ok()) return kept.status();
  Statement* stmt = *kept;
  if (absl::Status s = stmt->BindAll({Value::Integer(after_id), Value::Integer(limit)}); !s.ok()) {
    return s;
  }
  const size_t width = t.keyed_by_rowid() ? 1 : t.primary_key.size();
  std::vector<ChangeRecord> out;
  while (true) {
    absl::StatusOr<bool> has_row = stmt->Step();
    if (!has_row.ok()) {
      stmt->Reset();
      return has_row.status();
    }
    if (!*has_row) {
      stmt->Reset();
      return out;
    }
    ChangeRecord r;
    if (absl::Status s = ReadIdAndOp(*stmt, ChangeLogTableName(t.name), r); !s.ok()) {
      stmt->Reset();
      return s;
    }
    const bool has_new = r.op != ChangeOp::kDelete;
    const bool has_old = r.op == ChangeOp::kDelete || r.op == ChangeOp::kRekey;
    for (size_t i = 0; i < width; ++i) {
      if (has_new) r.key.push_back(stmt->Column(2 + static_cast<int>(i)));
      if (has_old) r.old_key.push_back(stmt->Column(2 + static_cast<int>(width + i)));
    }
    out.push_back(std::move(r));
  }
}

absl::Status ForEachChangeKey(Database& db, const TableSchema& table, int64_t after_id,
                              const std::function<void(const ChangeRecord&)>& visit) {
  constexpr int kChunk = 10000;
  for (;;) {
    absl::StatusOr<std::vector<ChangeRecord>> records = ReadChangeKeys(db, table, after_id, kChunk);
    if (!records.ok()) return records.status();
    for (const ChangeRecord& r : *records) {
      visit(r);
      after_id = r.id;
    }
    if (records->size() < static_cast<size_t>(kChunk)) return absl::OkStatus();
  }
}

}  // namespace marmot::sqlite
