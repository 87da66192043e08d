#include "replicator/conflict_store.h"

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

absl::StatusOr<int64_t> ConflictStore::Count() {
  absl::StatusOr<Value> n = db_.QueryKeptValue(
      absl::StrCat("SELECT count(*) FROM ", sqlite::QuoteIdentifier(kConflictsTable)));
  if (!n.ok()) return n.status();
  return n->integer();
}

}  // namespace marmot::replicator
