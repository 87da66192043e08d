#include "replicator/applied_state.h"

namespace marmot::replicator {

using sqlite::Statement;
using sqlite::Value;

absl::StatusOr<uint64_t> AppliedState::AppliedIndex(int shard) {
  absl::StatusOr<Statement*> stmt =
      db_.Kept("SELECT applied_index FROM \"__marmot__shard_state\" WHERE shard = ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = (*stmt)->Bind(1, Value::Integer(shard)); !s.ok()) return s;
  absl::StatusOr<bool> row = (*stmt)->Step();
  if (!row.ok()) return row.status();
  const uint64_t applied = *row ? static_cast<uint64_t>((*stmt)->Column(0).integer()) : 0;
  (*stmt)->Reset();
  return deferred_.AppliedIndex(shard, applied);
}

absl::Status AppliedState::SetAppliedIndex(int shard, uint64_t index) {
  return db_.RunKept(
      "INSERT OR REPLACE INTO \"__marmot__shard_state\" (shard, applied_index) VALUES (?, ?)",
      {Value::Integer(shard), Value::Integer(static_cast<int64_t>(index))});
}

absl::StatusOr<int64_t> AppliedState::LastChange(int shard, uint64_t origin,
                                                 const std::string& table) {
  absl::StatusOr<Statement*> stmt = db_.Kept(
      "SELECT change_id FROM \"__marmot__applied\" WHERE shard = ? AND origin = ? AND tbl = ?");
  if (!stmt.ok()) return stmt.status();
  const std::vector<Value> key = {Value::Integer(shard),
                                  Value::Integer(static_cast<int64_t>(origin)), Value::Text(table)};
  if (absl::Status s = (*stmt)->BindAll(key); !s.ok()) return s;
  absl::StatusOr<bool> row = (*stmt)->Step();
  if (!row.ok()) {
    (*stmt)->Reset();
    return row.status();
  }
  const int64_t stored = *row ? (*stmt)->Column(0).integer() : 0;
  (*stmt)->Reset();
  return deferred_.LastChange(shard, origin, table, stored);
}

absl::Status AppliedState::SetLastChange(int shard, uint64_t origin, const std::string& table,
                                         int64_t change_id) {
  return db_.RunKept(
      "INSERT OR REPLACE INTO \"__marmot__applied\" (shard, origin, tbl, change_id) "
      "VALUES (?, ?, ?, ?)",
      {Value::Integer(shard), Value::Integer(static_cast<int64_t>(origin)), Value::Text(table),
       Value::Integer(change_id)});
}

absl::Status AppliedState::ReplaceLastChanges(
    int shard, const std::vector<change::v1::ShardSnapshot::Applied>& applied) {
  if (absl::Status s =
          db_.RunKept("DELETE FROM \"__marmot__applied\" WHERE shard = ?", {Value::Integer(shard)});
      !s.ok()) {
    return s;
  }
  for (const change::v1::ShardSnapshot::Applied& a : applied) {
    absl::Status s = db_.RunKept(
        "INSERT INTO \"__marmot__applied\" (shard, origin, tbl, change_id) VALUES (?, ?, ?, ?)",
        {Value::Integer(shard), Value::Integer(static_cast<int64_t>(a.origin_node())),
         Value::Text(a.table()), Value::Integer(a.change_id())});
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace marmot::replicator
