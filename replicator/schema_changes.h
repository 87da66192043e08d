// Schema changes that replicate: what marmot captures of the schema made by any local process
// (the application, its migration tool, the sqlite3 shell), and how a node applies a schema
// change of another.
//
// Every node keeps a baseline, `__marmot__schema` (type, name, tbl_name, sql, rootpage,
// schema_rowid: where the object stands in the file and in sqlite_master; own_at): the user
// objects its schema held when schema changes began to replicate on it, plus every schema change
// applied since in shard 0's order, plus its own changes that do not replicate.
// `own_at` tells the objects this node made itself that shard 0 has not ordered here yet: NULL
// for an object as shard 0 ordered it (or of an older baseline), the shard-0 index
// of the entry of this node's own CREATE (or table rename) that the baseline took when it
// committed (RecordSentInBaseline; shard 0 may not have applied it here yet), 0 for an object it
// made that does not replicate (KeepInBaseline), kOwnAtFoundAtStart for an object the database
// held when schema changes began to replicate on it (maybe this node's alone: founders may start
// with other tables); a change of an object's columns or definition leaves it as it was. What the
// database holds beyond the baseline is this node's own schema change (DiffSchema):
//   - a table that is not in the baseline -> CREATE, its SQL as sqlite_master holds it;
//   - an index or trigger of a table that is unchanged (or created in the same diff), and any
//     view: new -> CREATE, gone -> DROP, made again with another definition -> DROP and CREATE;
//   - a table whose columns changed and nothing else (table_sql.h, DiffColumns): a column
//     renamed -> RENAME_COLUMN; columns dropped -> DROP_COLUMNS; columns added -> ADD_COLUMNS
//     (their definitions as ALTER TABLE ADD COLUMN wrote them); the indexes, triggers and views
//     SQLite rewrote for a rename are not changes of their own (every node's rename rewrites
//     them);
//   - a table made again with other definitions (a type, a NOT NULL, a CHECK changed: SQLite's
//     create-copy-drop-rename way) -> REDEFINE, its SQL before (as the baseline holds it) and
//     after; its rows follow, since capture copies a table made again whole;
//   - a table that is gone -> DROP (its SQL before in before_sql); its indexes and triggers go
//     with it (also when tables are created in the same look: see below);
//   - a table gone and a new one whose SQL reads the same but for the table's name (ALTER TABLE
//     RENAME rewrites only the name), each the only such match of the other -> RENAME_TABLE
//     (name, new_name, sql after, before_sql); the indexes, triggers and views SQLite rewrote
//     for it are not changes of their own;
//   - a table renamed away and made again under its name in one look (ALTER TABLE T RENAME TO
//     U; CREATE TABLE T ...): T is another table when it stands on another root page than the
//     baseline's (the baseline keeps each table's and index's page; a table keeps it through a
//     rename) and the new table U stands on T's old page and reads as T did but for the name ->
//     RENAME_TABLE T to U, and the T here is new (a CREATE, or the new name of a table gone).
//     Root pages moved otherwise are not taken for that: not when an index or table that stays
//     as it was moved too (a VACUUM lays them all out again), nor, in an auto_vacuum database,
//     when T's page was another object's (a DROP moves the last root page into the dropped
//     one's); the baseline takes the pages then (SchemaDiff::places);
//   - a table gone and a new one that carries its capture, each the only such match of the
//     other, whose columns are the gone one's but for columns renamed, dropped and added (a
//     table renamed and its columns changed in the same look): SQLite moves marmot's capture
//     triggers with a table renamed and in no other way, and capture installed again leaves a
//     trace of the move (sqlite/change_log.h, kMovedCaptureTable) -> RENAME_TABLE (its sql as
//     the table read right after the rename, as every node's rename writes it), then the new
//     table's column changes as above;
//   in that order: drops, then tables renamed, then tables (renamed, dropped and added columns
//   of tables renamed in the same look, then of the others, and tables made again, then tables
//   created), indexes, views and triggers, each in the order they were made.
// Not replicated yet, and taken into the baseline as they are here (every node makes them
// itself; README, "Limitations"): a table whose columns changed in a way its text cannot tell
// (a rename from a drop and an add), and its indexes and triggers. When other tables are gone
// and new ones appear in one diff (a table renamed before it had capture and its columns
// changed in the same look, two tables alike renamed at once), a new table may be a gone one
// renamed unless it stands on another row of sqlite_master than the gone one did (a rename
// keeps the row, a table created takes a new one; not told after a VACUUM, which numbers the
// rows again, nor when the new table carries or carried the gone one's capture); when it may,
// or a new table has the columns a changed table had, none of them replicates, so that the
// other nodes' own rename still finds its name free. A table dropped and another created in one
// look are a DROP and a CREATE.
//
// Applying is "make the object so", compared as the object, not as the statement made: a CREATE
// of an object that exists with the same SQL changes nothing (the origin itself, or every pod
// that ran the same migration), one whose name exists with another definition is a conflict:
// reported, and the local object kept. Names are compared as SQLite compares them, without
// ASCII case: a CREATE of `Item` where this node has `item` (both made at once) is that table,
// which keeps its name here (the baseline holds the origin's SQL as this node names it, and a
// table that reads the same as the baseline but for the case of names is no change); a DROP of
// `ITEM` drops it. A CREATE of a table applied in shard 0 decides where its rows route on every
// node (table_renames.h, RecordTableCreated). A table is the same table with columns added or not
// yet added: ADD_COLUMNS (or the CREATE of a shard snapshot's schema) adds the columns this node's
// table lacks, by name, and changes nothing when it has them already (two nodes that added
// different columns at once both end with both); a column of that name defined otherwise here
// is a conflict. RENAME_COLUMN renames a column the table has (and not the new name yet),
// DROP_COLUMNS drops those it has; either records the column in the column history (a rename
// that conflicts does not), and both are already so where the table is as they make it. Two
// renames of one column to different names (a to b, then a to c in shard 0's order, made at
// once on two nodes) end as the first everywhere: where this node renamed a to c itself and
// that is neither ordered nor applied yet (its baseline against its table says so, and the
// column history does not send a to c), a to b renames c to b; a to c then finds neither a nor
// c and the history sending a to b, a column here: a conflict on every node, its origin's too,
// that records c as a name of b in the column history (changes read before it that carry c
// write b), and that the baseline of its origin does not take when it commits.
// RENAME_TABLE renames the table where it exists under its old name and not under its new one
// (its capture follows, sqlite/change_log.h; the conflicts, dead letters and column history
// marmot keeps by its name too, and on the node that made the rename when it comes back, own),
// is already so where only the new name exists (where this node made the same rename itself
// and its baseline did not take it yet, the table carrying the old one's capture, the baseline
// takes it now as this rename, and what marmot keeps by the old name follows, as on every other
// node: its own rename is no change any more, what else it changed of the table still is), or
// where both do and this node renamed the
// table away itself (the table of the new name reads as the origin's and stands on the page the
// baseline knows the old one on, or on its own page in the baseline with this rename in the
// history: the same migration ran here; only the first such rename in shard 0's order is
// recorded), and a conflict otherwise; two renames of one table to different names (T to U, then
// T to V in shard 0's order, made at once on two nodes) end as the first everywhere: where
// this node renamed T to V itself and that is not ordered yet (T's page in the baseline holds
// V, as T read but for its name), T to U renames V to U, which takes what marmot kept by T and
// V; T to V then finds neither T nor V here and a rename of T before it in the history: a
// conflict on every node, its origin's too, that records V as a name of U for batches read
// before it (RecordRenameLost) and moves what marmot kept by V to U, and that the baseline of
// its origin does not take when it commits; applied or already so, it records the table's route and
// the rename's shard-0 index (table_renames.h), so that its rows stay in their shards and rows
// of batches read before it find it.
// REDEFINE makes the table again where it is as the origin's was (rows copied by column name,
// then its indexes and triggers made again), is already so where it is as the origin's is, and
// is a conflict otherwise; rows here that do not fit the new definition refuse it. A DROP of a
// table drops it with its indexes and triggers, whatever its definition here, and forgets what
// marmot kept of its rows (pending changes, versions; its conflicts and dead letters stay). A
// schema change must name a user object and hold exactly one CREATE statement of that object (a
// hostile one that does anything else is refused and changes nothing). Either outcome records
// the object in the baseline.
//
// Marmot's objects (`__marmot__...`), SQLite's (`sqlite_...`), automatic indexes and the shadow
// tables of virtual tables are never schema changes.
#ifndef MARMOT_REPLICATOR_SCHEMA_CHANGES_H_
#define MARMOT_REPLICATOR_SCHEMA_CHANGES_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/table_sql.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// The column history: every column renamed or dropped by a schema change applied here, so that
// changes read before it still apply after it (TablePlans::AsHere). Columns (tbl, old, new):
// table and old name in lower case, the new name as written, NULL for a dropped column.
inline constexpr char kColumnHistoryTable[] = "__marmot__column_history";

// `own_at` of an object found when schema changes began to replicate here (see above).
inline constexpr int64_t kOwnAtFoundAtStart = -1;

// The objects dropped here by schema changes, for the snapshots taken before them
// (DroppedSinceSnapshot): (type, name in lower case, shard0_index), the shard-0 index of the
// latest drop of that name (another node's applied, or this node's own committed or applied).
inline constexpr char kSchemaDropsTable[] = "__marmot__schema_drops";

struct SchemaObject {
  std::string type;  // table, index, view, trigger
  std::string name;
  std::string tbl_name;  // The table of an index or trigger; a table's or view's own name.
  std::string sql;
  bool operator==(const SchemaObject&) const = default;
};

// The user objects of the main schema, tables first, then indexes, views and triggers, each in
// the order sqlite_master lists them.
absl::StatusOr<std::vector<SchemaObject>> ListUserObjects(sqlite::Database& db);

// Creates the baseline when the database has none, holding the user objects it has now (they
// predate replicated schema changes: nothing proposes them), or nothing without
// `with_existing` (a node that seeds the cluster: its whole schema is then its own change, and
// founders that start from empty files receive it). Inside or outside a transaction.
absl::Status EnsureSchemaBaseline(sqlite::Database& db, bool with_existing = true);

// How the database differs from its baseline (see above).
struct SchemaDiff {
  std::vector<change::v1::SchemaChange> replicate;  // In the order to apply them.
  // This node's changes that do not replicate: objects the baseline takes as they are here,
  // objects (type, name) it forgets, and what they were, for the log ("ALTER TABLE t").
  std::vector<SchemaObject> keep;
  std::vector<std::pair<std::string, std::string>> forget;
  std::vector<std::string> not_replicated;
  // Where an object stands: its root page (a table's or index's; 0 for others) and its rowid in
  // sqlite_master.
  struct Place {
    int64_t rootpage = 0;
    int64_t schema_rowid = 0;
    bool operator==(const Place&) const = default;
  };
  // Objects that stay as they were and stand elsewhere (a VACUUM lays out the file and
  // sqlite_master again), or whose place the baseline does not know yet: the baseline takes
  // where they stand now. No schema change.
  std::vector<std::pair<SchemaObject, Place>> places;
};
absl::StatusOr<SchemaDiff> DiffSchema(sqlite::Database& db);

// Takes `diff`'s changes that do not replicate into the baseline (own_at 0), inside the caller's
// transaction (or its own).
absl::Status KeepInBaseline(sqlite::Database& db, const SchemaDiff& diff);

// The baseline as CREATEs in the order to make them (tables, indexes, views, triggers, each in
// the order this database made them): what a shard snapshot carries.
absl::StatusOr<std::vector<change::v1::SchemaChange>> BaselineSchema(sqlite::Database& db);

// What installing a snapshot of shard 0 taken at `shard0_index` drops here. The snapshot carries
// its maker's baseline as CREATEs (`schema`, BaselineSchema), which the install makes so; an
// object that this node's baseline holds and that the snapshot's no longer has was dropped in
// shard 0's order at or before `shard0_index` (by a DROP, or a table's with it) while this node
// was away: the install drops it as that DROP would have (a table with its rows in every shard,
// and what marmot kept of them). Only a snapshot of shard 0 decides it: shard 0 orders schema
// changes, and the node goes on from its snapshot's index there (the other shards' snapshots
// carry the baseline too, taken at other times). Stay, each listed in `kept` with why:
//   - marmot's and SQLite's objects (any case), and objects without SQL;
//   - objects this node made that shard 0 orders after the snapshot (own_at above
//     `shard0_index`) or never (own_at 0: not replicated);
//   - tables found here when schema changes began to replicate (kOwnAtFoundAtStart): maybe this
//     node's alone, their rows nowhere else (their indexes, triggers and views may go);
//   - objects this node made again or renamed since its baseline, and those it forgot (DiffSchema
//     names them: its own schema change, not proposed yet, goes later in shard 0's order); not
//     a table whose columns or definition it changed: the drop, applied here, would have
//     dropped it whatever its definition;
//   - the indexes and triggers of a table that stays;
//   - a table that the snapshot's renames (`renames`) name as renamed to a table it has: the
//     rename is not made here this way.
// Names compare without case, as SQLite compares them. The drops are in the order to apply
// them (ApplySchemaChange): triggers, views, indexes, then tables. Reads only.
struct SnapshotSchemaDrops {
  std::vector<change::v1::SchemaChange> drops;
  std::vector<std::string> kept;  // "table t: ...", for the log.
};
absl::StatusOr<SnapshotSchemaDrops> DropsOfSnapshotSchema(
    sqlite::Database& db,
    const google::protobuf::RepeatedPtrField<change::v1::SchemaChange>& schema,
    const google::protobuf::RepeatedPtrField<change::v1::TableRename>& renames,
    uint64_t shard0_index);

// What a snapshot whose maker's schema is `schema` (its epoch `schema_epoch`, schema_epochs.h)
// makes here that this node dropped since, and must drop again once the snapshot's rows are in.
// Of the objects of `schema` this node lacks (call it before the schema is made):
//   - `applied`: those whose latest drop here is at a shard-0 index above the epoch
//     (kSchemaDropsTable): a snapshot of another shard may be older than what shard 0 applied
//     here (a shard with few entries keeps an old one), and one of shard 0 older than this
//     node's own committed drop. Dropped again as that change (ApplySchemaChange).
//   - `not_proposed`: those the baseline holds: a local process dropped them, a change of this
//     node's not proposed yet (marmot may have been stopped). Dropped again as it did
//     (DropAsHere), the baseline left as it is, for DiffSchema to find the drop.
// As DROPs, in the order to apply them (tables last; a table's indexes and triggers go with
// it). Reads only.
struct DroppedSince {
  std::vector<change::v1::SchemaChange> applied;
  std::vector<change::v1::SchemaChange> not_proposed;
};
absl::StatusOr<DroppedSince> DroppedSinceSnapshot(
    sqlite::Database& db,
    const google::protobuf::RepeatedPtrField<change::v1::SchemaChange>& schema,
    uint64_t schema_epoch);

// Drops `drop`'s object here as a local process would: the statement alone, the baseline and
// what marmot keeps of it left as they are. Nothing when it does not exist.
absl::Status DropAsHere(sqlite::Database& db, const change::v1::SchemaChange& drop);

struct SchemaApplied {
  enum Outcome { kApplied, kAlreadySo, kConflict, kRefused };
  Outcome outcome = kApplied;
  std::string detail;          // kConflict, kRefused: why, for the log.
  bool table_changed = false;  // A table was created or got columns: its capture is remade.
};

// `c` for the log: "table t", "drop of index i", "t: column renamed: a to b", ...
std::string DescribeSchemaChange(const change::v1::SchemaChange& c);

// Applies `c` on `db` inside the caller's transaction (a savepoint of its own: a refused change
// leaves nothing behind) and records its object in the baseline. A change this node made
// itself (`own`) changes nothing it has (it may have changed or dropped the object since, even
// before the change came back: that goes as its next change): only a CREATE of an object it
// lacks altogether is made (its file made anew, the log applied again), and a rename or drop of
// columns is remembered in the column history. Errors are the database's (busy, I/O): nothing
// is recorded then and the caller retries.
// `shard0_index`: the shard-0 index of the change's entry, which a table renamed records
// (table_renames.h; 0 for the schema of a snapshot, which renames nothing).
absl::StatusOr<SchemaApplied> ApplySchemaChange(sqlite::Database& db,
                                                const change::v1::SchemaChange& c, bool own = false,
                                                uint64_t shard0_index = 0);

// The baseline takes this node's own schema changes, as they were sent, once their entry
// committed: what this node changes next is a change from them, even before they come back
// to it through the log (a table altered while its CREATE was in flight goes as its columns
// added, not as a second CREATE). In a transaction of its own.
// `shard0_index`: the index of their entry (a table renamed records it, table_renames.h; the
// objects they made or changed record it as own_at).
absl::Status RecordSentInBaseline(sqlite::Database& db,
                                  const std::vector<change::v1::SchemaChange>& sent,
                                  uint64_t shard0_index = 0);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SCHEMA_CHANGES_H_
