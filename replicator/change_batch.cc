#include "replicator/change_batch.h"

#include "replicator/value_codec.h"

namespace marmot::replicator {

change::v1::TableChanges TableHeader(const sqlite::TableSchema& table) {
  change::v1::TableChanges out;
  out.set_table(table.name);
  for (const sqlite::ColumnInfo& c : table.columns) out.add_columns(c.name);
  for (const std::string& k : table.primary_key) out.add_key_columns(k);
  return out;
}

change::v1::Change ToWire(const sqlite::TableSchema& table, const sqlite::ChangeRecord& record) {
  change::v1::Change out;
  out.set_change_id(record.id);
  out.set_at_ms(record.at_ms);
  switch (record.op) {
    case sqlite::ChangeOp::kInsert:
      out.set_op(change::v1::OP_INSERT);
      break;
    case sqlite::ChangeOp::kUpdate:
      out.set_op(change::v1::OP_UPDATE);
      break;
    case sqlite::ChangeOp::kRekey:
      out.set_op(change::v1::OP_REKEY);
      break;
    case sqlite::ChangeOp::kDelete:
      out.set_op(change::v1::OP_DELETE);
      break;
  }
  for (const sqlite::Value& v : record.row) *out.add_row() = ToWire(v);
  if (table.keyed_by_rowid() && !record.key.empty() && record.op != sqlite::ChangeOp::kDelete) {
    *out.mutable_rowid() = ToWire(record.key[0]);
  }
  for (const sqlite::Value& v : record.old_key) *out.add_old_key() = ToWire(v);
  if (record.prev.has_value()) {
    out.mutable_prev()->set_origin(static_cast<uint64_t>(record.prev->origin));
    out.mutable_prev()->set_change_id(record.prev->change_id);
  }
  return out;
}

}  // namespace marmot::replicator
