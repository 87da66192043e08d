// Change capture: per-table change logs filled by triggers, and the reader of those logs.
//
// For every user table T marmot keeps a table `__marmot__T_change_log` and four AFTER triggers
// on T that append one row per changed row, holding its key and the operation, not its values:
//
//   "__marmot__id"        INTEGER PRIMARY KEY   change id, increasing within the table's log
//   "__marmot__op"        TEXT                  'I' insert, 'U' update that keeps the key,
//                                               'K' update that changes the key, 'D' delete
//   "__marmot__state"     INTEGER               0 = pending; later states belong to the replicator
//   "new.<key column>"    one per key column    the NEW key for I, U and K; NULL for D
//   "old.<key column>"    one per key column    the OLD key for K and D; NULL for I and U
//   "__marmot__rowid", "__marmot__old_rowid"    instead, for tables keyed by rowid (no primary key)
//
// The values are read from T when the change is read (ReadChanges): the row as it is then, in T's
// columns as they are then. So capture never lags the schema the application writes with (a
// column added or renamed in the same transaction as a write, or while marmot was stopped, is
// read as T has it), the triggers name only key columns (so ALTER TABLE DROP COLUMN works), and
// a change read after later changes of its row carries the newer row, which those later changes
// carry again: the row converges to what the application last wrote. (A log that has
// "new.<column>" columns keeps them; they are neither written nor read.)
//
// A key that SQLite lets be NULL (a declared key of a rowid table, not INTEGER PRIMARY KEY, not
// NOT NULL) is refused by the insert and update triggers: a NULL key names no one row.
//
// Two more triggers guard the log against connections that run triggers (applications, the
// sqlite3 shell): `__marmot__T_log_guard` refuses DELETE (emptied by hand, a log would hand out
// ids the other nodes have already applied from this node, and they would skip the new changes
// as duplicates), `__marmot__T_log_edit_guard` refuses UPDATE (an edited row would replicate the
// edit, or with its state changed, nothing). marmot deletes and marks log rows on connections
// with triggers disabled.
//
// Value columns are declared without a type, so they have no affinity and keep every value's
// storage class exactly. Change ids are rowids: SQLite hands out max(id)+1, so whoever prunes a
// log must keep its newest row, or ids could repeat. (AUTOINCREMENT would avoid that but creates
// `sqlite_sequence`, which can never be dropped again, and cleanup promises to leave
// `sqlite_master` as it found it.)
//
// Installing is idempotent: a missing log or trigger is created, a trigger whose SQL no longer
// matches the plan is replaced, a table renamed (ALTER TABLE T RENAME TO U: SQLite moves
// marmot's triggers along, which still log into T's log) takes T's log, with its pending rows,
// and its rows' versions along when U has no log yet (no row is copied), a trigger named like
// marmot's that is not this table's capture (left by a table renamed to this name) is dropped, a
// log gains the columns it lacks (and loses
// "__marmot__at", a capture time that logs of older versions had). Triggers
// and log rows written by the installer are committed in one IMMEDIATE transaction, so no write
// by another connection slips between "trigger exists" and "existing rows copied".
#ifndef MARMOT_SQLITE_CHANGE_LOG_H_
#define MARMOT_SQLITE_CHANGE_LOG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sqlite/database.h"
#include "sqlite/schema.h"
#include "sqlite/value.h"

namespace marmot::sqlite {

enum class ChangeOp : char { kInsert = 'I', kUpdate = 'U', kRekey = 'K', kDelete = 'D' };

// `__marmot__<table>_change_log`.
std::string ChangeLogTableName(const std::string& table);

struct CaptureOptions {
  // For a table that had none of its capture triggers (new, or dropped and made again, which
  // drops its triggers but keeps its log), also copy the keys of its existing rows into the log
  // as inserts, in the same transaction that creates the triggers: rows written while the
  // triggers were missing would otherwise never replicate. Rows whose key holds NULL are not
  // copied.
  bool backfill_new_tables = false;
  // Afterwards every log hands out change ids above this one: a log whose newest id is lower
  // (a new log, one made again after `marmot -cleanup`, one of a database restored from a
  // backup) gets a row with this id, marked done, which is never read as a change and stays
  // until newer rows exist (a log's newest row is kept). 0: nothing is added. Change ids must
  // never fall back under ids the other nodes have already applied from this node: they would
  // take the new changes for duplicates and skip them.
  int64_t log_ids_above = 0;
  // Tables that had capture at the install before this one. Such a table found without its
  // triggers, its log there, was made again since (SQLite's create-copy-drop-rename, which
  // migration tools use, or a DROP and a CREATE of its name) within one look, and replicates
  // as made again, the other nodes keeping their rows: with backfill_new_tables, only its rows
  // that differ from what their versions left (`__marmot__versions.digest`) are copied, and
  // the rows whose versions left one that is gone now are deleted (for a key of one column).
  std::set<std::string> captured_before;
};

struct CaptureReport {
  std::vector<std::string> installed;  // Tables that got capture for the first time.
  std::vector<std::string> updated;    // Tables whose triggers or log were brought up to date.
  std::vector<std::string> unchanged;
  std::vector<std::string> keyed_by_rowid;   // Captured, but identified by an unstable rowid.
  std::vector<std::string> skipped_virtual;  // Not captured.
  int64_t backfilled_rows = 0;
};

// Switches the database to WAL and installs or refreshes capture on every user table.
absl::StatusOr<CaptureReport> InstallCapture(Database& db, const CaptureOptions& options = {});

// Where capture moved with a table renamed (ALTER TABLE T RENAME TO U: SQLite moves marmot's
// triggers with the table, and in no other way; the next install gives T's log to U): a row
// per name U had before on its page, `tbl` U's name, `was` that earlier name (T, and the names
// T had taken capture from on the same page), `rootpage` U's page then. So a table that took
// another's capture is known for that table renamed after the install too, even when its
// columns changed in the same look (replicator/schema_changes.h tells such a rename from a
// drop and a create by it); a table renamed before it ever had capture leaves none. Made by the
// first such move; a row goes when its table is gone at an install, or a table of its name gets
// capture of its own (another table).
inline constexpr char kMovedCaptureTable[] = "__marmot__moved_capture";

// Removes every object whose name starts with `__marmot__` (triggers, logs, and any other marmot
// table), in one transaction. Afterwards sqlite_master holds exactly what it held before capture
// was installed.
absl::Status RemoveCapture(Database& db);

// `__marmot__versions`: per row (table, key as RowVersionKeySql makes it), the change its shard
// applied last on this node (origin node, change id, the Raft index of its entry, how many
// columns it carried), `shard`, `held`: not NULL when this
// node's row does not hold that change yet, because changes of this node not yet applied in the
// shard come later and will lose to it (replicator/row_versions.h), and `digest`: the RowDigest
// (row_digest.h) of the row that change leaves on the nodes that wrote it, kNoRowDigest for none,
// NULL when not known. Capture reads it; the
// applier writes it. Created by InstallCapture (EnsureRowVersions).
//
// `key` has no declared type, so no affinity: it holds an INTEGER or a TEXT exactly as written,
// and the two never compare equal (SQLite orders every INTEGER before every TEXT). A key of one
// INTEGER value is stored as that integer, so rows of ascending keys append to the table's
// b-tree rather than landing all over it as their texts would (1, 10, 100, 2, ...); every other
// key is text. Compare `key` only with expressions that have no affinity either (a bound
// parameter, RowVersionKeySql's CASE): against a column of INTEGER affinity, the text '1.0'
// would be taken for 1. The text of a key (RowVersions::KeyOf, the `key` of conflicts) is
// CAST(key AS TEXT), which is exact: no other key's text is an integer's digits.
inline constexpr char kRowVersionsTable[] = "__marmot__versions";
inline constexpr char kRowVersionsHeldIndex[] = "__marmot__versions_held";
inline constexpr char kCreateRowVersions[] =
    "CREATE TABLE IF NOT EXISTS \"__marmot__versions\" (tbl TEXT NOT NULL, key NOT NULL, "
    "shard INTEGER NOT NULL, raft_index INTEGER NOT NULL, origin INTEGER NOT NULL, "
    "change_id INTEGER NOT NULL, held BLOB, columns INTEGER NOT NULL DEFAULT 0, digest INTEGER, "
    "PRIMARY KEY (tbl, key)) WITHOUT ROWID;"
    // The held versions of a table (RowVersions::Held), few at any time.
    "CREATE INDEX IF NOT EXISTS \"__marmot__versions_held\" ON \"__marmot__versions\" (tbl) "
    "WHERE held IS NOT NULL";
// The SQL expression of a row's key in kRowVersionsTable from the SQL expressions of its key
// values in key order (the rowid for a table keyed by it). A key of one value that is an
// INTEGER: that integer. Any other: text, each value as quote() writes it, joined by commas; a
// TEXT holding a NUL, which quote() would end there, as T and its bytes as quote() writes a BLOB
// (TX'610062'). Exact for every storage class: the text of an INTEGER key ("1") is never the
// text of another key, which is what a stored INTEGER stands for in C++ (RowVersions::KeyOf).
std::string RowVersionKeySql(const std::vector<std::string>& values);

// Creates kRowVersionsTable, or rewrites one of the earlier layout (`key TEXT`: every key as
// text, an INTEGER key as its digits) in this one, in one transaction (a SAVEPOINT inside the
// caller's); a table without `digest` gets it (NULL: not known). InstallCapture calls it, in the
// transaction that brings the triggers up to date with RowVersionKeySql.
absl::Status EnsureRowVersions(Database& db);

// The version of its row a change was made after (read by the capture trigger).
struct RowVersionSeen {
  // The node whose change the row held; 0: the row had no version (never written through
  // marmot, or gone before it kept versions); -1: this node's own write, not yet applied in the
  // shard, which a change of another node applied there since comes before.
  int64_t origin = 0;
  int64_t change_id = 0;
};

// One captured change of one row.
struct ChangeRecord {
  int64_t id = 0;
  ChangeOp op = ChangeOp::kInsert;
  int64_t at_ms = 0;       // When it was read from the log (wall-clock ms since the Unix epoch).
  std::vector<Value> row;  // The row as read, one value per column of the table (I, U, K).
  std::vector<Value> key;  // The NEW key in key order, or {rowid} (I, U, K; D read from a K).
  std::vector<Value> old_key;  // The OLD key (K, D).
  // Set by ReadChanges when the trigger recorded it (never for a rekey).
  std::optional<RowVersionSeen> prev;
};

// Reads up to `limit` pending changes of `table` with id > `after_id`, in id order, each with its
// row as `table` holds it now, in the columns of `table` (which must be the table's schema as the
// reading transaction sees it). A change whose row no longer exists reads as a delete of its key
// (for a rekey: of its old key, with `key` holding the new key, which is gone too), since a later
// change of the log removed it, or SQLite did without a trigger (a REPLACE conflict).
absl::StatusOr<std::vector<ChangeRecord>> ReadChanges(Database& db, const TableSchema& table,
                                                      int64_t after_id, int limit);

// As ReadChanges, with only id, op, key and old_key filled in (row and at_ms left empty): for
// readers that need the identities of changed rows, not their values.
absl::StatusOr<std::vector<ChangeRecord>> ReadChangeKeys(Database& db, const TableSchema& table,
                                                         int64_t after_id, int limit);

// Calls `visit` with every pending change of `table` with id > `after_id`, in id order, as
// ReadChangeKeys gives them, reading in chunks so that a long log is never in memory at once.
// On an error the changes of the chunks before it were visited.
absl::Status ForEachChangeKey(Database& db, const TableSchema& table, int64_t after_id,
                              const std::function<void(const ChangeRecord&)>& visit);

}  // namespace marmot::sqlite

#endif  // MARMOT_SQLITE_CHANGE_LOG_H_
