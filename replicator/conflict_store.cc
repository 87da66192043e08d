#include "replicator/conflict_store.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace marmot::replicator {

namespace {

using sqlite::Value;

std::string OpLetter(change::v1::Op op) {
  switch (op) {
    case change::v1::OP_INSERT:
      return "I";
    case change::v1::OP_UPDATE:
      return "U";
    case change::v1::OP_REKEY:
      return "K";
    case change::v1::OP_DELETE:
      return "D";
    default:
      return "?";
  }
}

}  // namespace

absl::Status ConflictStore::Insert(const LostChange& lost, const change::v1::TableChanges& t,
                                   const change::v1::Change& c) {
  change::v1::TableChanges one;
  one.set_table(t.table());
  *one.mutable_columns() = t.columns();
  *one.mutable_key_columns() = t.key_columns();
  *one.add_changes() = c;
  return db_.RunKept(
      absl::StrCat(
          "INSERT OR IGNORE INTO ", sqlite::QuoteIdentifier(kConflictsTable),
          " (shard, raft_index, tbl, key, origin, change_id, op, change, winner_origin, "
          "winner_change_id, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
      {Value::Integer(lost.shard), Value::Integer(static_cast<int64_t>(lost.raft_index)),
       Value::Text(t.table()), Value::Text(lost.key),
       Value::Integer(static_cast<int64_t>(lost.origin)), Value::Integer(c.change_id()),
       Value::Text(OpLetter(c.op())), Value::Blob(one.SerializeAsString()),
       Value::Integer(static_cast<int64_t>(lost.winner_origin)),
       Value::Integer(lost.winner_change_id), Value::Integer(c.at_ms())});
}

absl::Status ConflictStore::ForEachOfShard(
    int shard, const std::function<absl::Status(change::v1::SnapshotVersions::Conflict)>& visit) {
  absl::StatusOr<sqlite::Statement> stmt = db_.Prepare(
      absl::StrCat("SELECT raft_index, tbl, key, origin, change_id, op, change, winner_origin, "
                   "winner_change_id, at_ms FROM ",
                   sqlite::QuoteIdentifier(kConflictsTable), " WHERE shard = ?1 ORDER BY id"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll({Value::Integer(shard)}); !s.ok()) return s;
  for (;;) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
    change::v1::SnapshotVersions::Conflict c;
    c.set_raft_index(static_cast<uint64_t>(stmt->Column(0).integer()));
    c.set_table(stmt->Column(1).bytes());
    c.set_key(stmt->Column(2).bytes());
    c.set_origin(static_cast<uint64_t>(stmt->Column(3).integer()));
    c.set_change_id(stmt->Column(4).integer());
    c.set_op(stmt->Column(5).bytes());
    c.set_change(stmt->Column(6).bytes());
    c.set_winner_origin(static_cast<uint64_t>(stmt->Column(7).integer()));
    c.set_winner_change_id(stmt->Column(8).integer());
    c.set_at_ms(stmt->Column(9).integer());
    if (absl::Status s = visit(std::move(c)); !s.ok()) return s;
  }
}

absl::Status ConflictStore::DeleteShard(int shard) {
  return db_.RunKept(
      absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(kConflictsTable), " WHERE shard = ?1"),
      {Value::Integer(shard)});
}

absl::Status ConflictStore::InsertCarried(int shard,
                                          const change::v1::SnapshotVersions::Conflict& c) {
  return db_.RunKept(
      absl::StrCat(
          "INSERT OR IGNORE INTO ", sqlite::QuoteIdentifier(kConflictsTable),
          " (shard, raft_index, tbl, key, origin, change_id, op, change, winner_origin, "
          "winner_change_id, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
      {Value::Integer(shard), Value::Integer(static_cast<int64_t>(c.raft_index())),
       Value::Text(c.table()), Value::Text(c.key()),
       Value::Integer(static_cast<int64_t>(c.origin())), Value::Integer(c.change_id()),
       Value::Text(c.op()), Value::Blob(c.change()),
       Value::Integer(static_cast<int64_t>(c.winner_origin())),
       Value::Integer(c.winner_change_id()), Value::Integer(c.at_ms())});
}

absl::StatusOr<int64_t> ConflictStore::Count() {
  absl::StatusOr<Value> n = db_.QueryKeptValue(
      absl::StrCat("SELECT count(*) FROM ", sqlite::QuoteIdentifier(kConflictsTable)));
  if (!n.ok()) return n.status();
  return n->integer();
}

absl::StatusOr<int64_t> ConflictStore::Resolve(
    int shard, const google::protobuf::RepeatedPtrField<change::v1::ConflictId>& resolved) {
  const std::string sql =
      absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(kConflictsTable),
                   " WHERE shard = ?1 AND origin = ?2 AND tbl = ?3 COLLATE NOCASE"
                   " AND change_id = ?4");
  int64_t deleted = 0;
  // The table as the resolving node names it: another node may spell it in another case (one
  // name to SQLite; each node keeps its conflicts under its own name of the table).
  for (const change::v1::ConflictId& id : resolved) {
    // Origins are stored as SQLite integers: one above their range names none.
    if (id.origin_node() > static_cast<uint64_t>(INT64_MAX)) continue;
    absl::Status s = db_.RunKept(
        sql, {Value::Integer(shard), Value::Integer(static_cast<int64_t>(id.origin_node())),
              Value::Text(id.table()), Value::Integer(id.change_id())});
    if (!s.ok()) return s;
    deleted += db_.Changes();
  }
  return deleted;
}

}  // namespace marmot::replicator
