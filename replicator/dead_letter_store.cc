#include "replicator/dead_letter_store.h"

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "replicator/table_writer.h"

namespace marmot::replicator {

using change::v1::Change;
using change::v1::ShardSnapshot;
using change::v1::TableChanges;
using sqlite::Statement;
using sqlite::Value;

DeadLetterIndex::Entry DeadLetterEntry(int shard, uint64_t raft_index, const Value& origin,
                                       const Value& table, const Value& change,
                                       bool* holds_change) {
  *holds_change = true;
  DeadLetterIndex::Entry entry{.shard = shard, .raft_index = raft_index};
  if (table.storage_class() != sqlite::StorageClass::kText) return entry;  // Undecodable.
  entry.table = table.bytes();
  if (origin.is_null()) {
    entry.whole_table = true;  // Snapshot rows.
    return entry;
  }
  TableChanges t;
  if (change.storage_class() != sqlite::StorageClass::kBlob || !t.ParseFromString(change.bytes())) {
    *holds_change = false;
    return entry;
  }
  // Its rows as this node names them (the change keeps its origin's spelling of the table, or
  // its name before a rename here): a later change of one of them queues behind it.
  if (t.table() != entry.table) t.set_table(entry.table);
  const std::vector<int> key_positions = KeyPositions(t);
  for (const Change& c : t.changes()) {
    for (std::string& r : RowsOf(t, key_positions, c)) entry.rows.push_back(std::move(r));
  }
  return entry;
}

std::vector<Value> StoredDeadLetter(int shard, const ShardSnapshot::DeadLetter& d) {
  const Value index = Value::Integer(static_cast<int64_t>(d.raft_index()));
  switch (d.kind()) {
    case ShardSnapshot::DeadLetter::KIND_CHANGE:
      return {Value::Integer(shard),
              index,
              Value::Integer(static_cast<int64_t>(d.origin_node())),
              Value::Text(d.table()),
              Value::Integer(d.change_id()),
              Value::Text(d.error()),
              Value::Blob(d.change())};
    case ShardSnapshot::DeadLetter::KIND_SNAPSHOT_ROWS:
      return {Value::Integer(shard),  index,         Value::Null(),
              Value::Text(d.table()), Value::Null(), Value::Text(d.error()),
              Value::Blob(d.change())};
    case ShardSnapshot::DeadLetter::KIND_UNDECODABLE:
      return {Value::Integer(shard),  index,         Value::Null(),
              Value::Null(),          Value::Null(), Value::Text(d.error()),
              Value::Blob(d.change())};
    default:
      // Of a later version: kept as it came, like an undecodable entry (it holds back nothing).
      return {Value::Integer(shard),
              index,
              Value::Null(),
              Value::Null(),
              Value::Null(),
              Value::Text(absl::StrCat("dead letter of unknown kind ", d.kind(),
                                       " carried by a snapshot: ", d.error())),
              Value::Blob(d.change())};
  }
}

ShardSnapshot::DeadLetter CarriedDeadLetter(const std::vector<Value>& row) {
  auto as_int = [](const Value& v) -> int64_t {
    return v.storage_class() == sqlite::StorageClass::kInteger ? v.integer() : 0;
  };
  auto as_bytes = [](const Value& v) -> std::string {
    return v.storage_class() == sqlite::StorageClass::kText ||
                   v.storage_class() == sqlite::StorageClass::kBlob
               ? v.bytes()
               : std::string();
  };
  ShardSnapshot::DeadLetter d;
  d.set_raft_index(static_cast<uint64_t>(as_int(row[0])));
  if (row[2].storage_class() != sqlite::StorageClass::kText) {
    d.set_kind(ShardSnapshot::DeadLetter::KIND_UNDECODABLE);
  } else {
    d.set_table(row[2].bytes());
    if (row[1].is_null()) {
      d.set_kind(ShardSnapshot::DeadLetter::KIND_SNAPSHOT_ROWS);
    } else {
      d.set_kind(ShardSnapshot::DeadLetter::KIND_CHANGE);
      d.set_origin_node(static_cast<uint64_t>(as_int(row[1])));
      d.set_change_id(as_int(row[3]));
    }
  }
  d.set_error(as_bytes(row[4]));
  d.set_change(as_bytes(row[5]));
  return d;
}

absl::Status DeadLetterStore::Load(bool fresh) {
  // Until a load succeeds, the index is not to be trusted: the next transaction loads again.
  unsynced_ = true;
  DeadLetterIndex loaded;
  absl::StatusOr<Statement> scan = db_.Prepare(
      "SELECT id, shard, raft_index, origin, tbl, change FROM \"__marmot__dead_letters\"");
  if (!scan.ok()) return scan.status();
  auto as_int = [](const Value& v) -> int64_t {
    return v.storage_class() == sqlite::StorageClass::kInteger ? v.integer() : 0;
  };
  while (true) {
    absl::StatusOr<bool> row = scan->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    const int64_t id = scan->Column(0).integer();
    bool holds_change = true;
    DeadLetterIndex::Entry entry = DeadLetterEntry(
        static_cast<int>(as_int(scan->Column(1))), static_cast<uint64_t>(as_int(scan->Column(2))),
        scan->Column(3), scan->Column(4), scan->Column(5), &holds_change);
    if (!holds_change) {
      LOG(WARNING) << "dead letter " << id << " does not hold a change; it holds back no row";
    }
    loaded.Add(id, std::move(entry));
  }
  index_ = std::move(loaded);
  unsynced_ = !fresh;
  return absl::OkStatus();
}

absl::Status DeadLetterStore::Sync() {
  if (!unsynced_) return absl::OkStatus();
  return Load(/*fresh=*/true);  // Read before this transaction changed anything.
}

absl::Status DeadLetterStore::Insert(const std::vector<Value>& row, DeadLetterIndex::Entry entry) {
  if (static_cast<int64_t>(index_.size()) >= max_) {
    // The index may count some an operator deleted by hand: the table says.
    absl::StatusOr<int64_t> n = Count();
    if (!n.ok()) return n.status();
    if (*n >= max_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no room for another dead letter: this node holds ", *n,
                       ", the most -max-dead-letters allows ",
                       "(fix their cause and retry them, or delete some and call "
                       "RetryDeadLetters: the shard resumes; or raise the limit and restart)"));
    }
  }
  absl::Status s = db_.RunKept(
      "INSERT INTO \"__marmot__dead_letters\" (shard, raft_index, origin, tbl, change_id, error, "
      "change) VALUES (?, ?, ?, ?, ?, ?, ?)",
      row);
  if (!s.ok()) return s;
  unsynced_ = true;
  index_.Add(sqlite3_last_insert_rowid(db_.raw()), std::move(entry));
  return absl::OkStatus();
}

absl::Status DeadLetterStore::InsertChange(int shard, uint64_t index, uint64_t origin,
                                           const TableChanges& t, const Change& c,
                                           const absl::Status& error) {
  // The table's header and this change alone: copying `t` whole would copy all its changes
  // for each one dead-lettered, quadratic in the batch's size.
  TableChanges one;
  one.set_table(t.table());
  *one.mutable_columns() = t.columns();
  *one.mutable_key_columns() = t.key_columns();
  *one.add_changes() = c;
  absl::Status s = Insert({Value::Integer(shard), Value::Integer(static_cast<int64_t>(index)),
                           Value::Integer(static_cast<int64_t>(origin)), Value::Text(t.table()),
                           Value::Integer(c.change_id()), Value::Text(std::string(error.message())),
                           Value::Blob(one.SerializeAsString())},
                          {.shard = shard,
                           .raft_index = index,
                           .table = t.table(),
                           .rows = RowsOf(t, KeyPositions(t), c)});
  if (!s.ok() && !IsDatabaseFailure(s)) {
    return absl::Status(
        s.code(), absl::StrCat("change ", c.change_id(), " of ", sqlite::QuoteIdentifier(t.table()),
                               " from node ", origin, " cannot apply here (", error.message(),
                               ") and ", s.message()));
  }
  return s;
}

absl::Status DeadLetterStore::InsertUndecodable(int shard, uint64_t index,
                                                const std::string& payload,
                                                absl::string_view error) {
  return Insert(
      {Value::Integer(shard), Value::Integer(static_cast<int64_t>(index)), Value::Null(),
       Value::Null(), Value::Null(), Value::Text(std::string(error)), Value::Blob(payload)},
      {.shard = shard, .raft_index = index});
}

absl::Status DeadLetterStore::Delete(int64_t id) {
  absl::Status s =
      db_.RunKept("DELETE FROM \"__marmot__dead_letters\" WHERE id = ?", {Value::Integer(id)});
  if (!s.ok()) return s;
  unsynced_ = true;
  index_.Remove(id);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> DeadLetterStore::DeleteUpTo(int shard, uint64_t raft_index) {
  absl::Status s =
      db_.RunKept("DELETE FROM \"__marmot__dead_letters\" WHERE shard = ? AND raft_index <= ?",
                  {Value::Integer(shard), Value::Integer(static_cast<int64_t>(raft_index))});
  if (!s.ok()) return s;
  const int64_t deleted = db_.Changes();
  for (int64_t id : index_.IdsUpTo(shard, raft_index)) {
    index_.Remove(id);
    unsynced_ = true;
  }
  return deleted;
}

absl::Status DeadLetterStore::SetError(int64_t id, absl::string_view error) {
  return db_.RunKept("UPDATE \"__marmot__dead_letters\" SET error = ? WHERE id = ?",
                     {Value::Text(std::string(error)), Value::Integer(id)});
}

absl::StatusOr<std::optional<std::pair<Value, Value>>> DeadLetterStore::OriginAndChange(
    int64_t id) {
  absl::StatusOr<Statement*> read =
      db_.Kept("SELECT origin, change FROM \"__marmot__dead_letters\" WHERE id = ?");
  if (!read.ok()) return read.status();
  if (absl::Status s = (*read)->Bind(1, Value::Integer(id)); !s.ok()) return s;
  absl::StatusOr<bool> found = (*read)->Step();
  if (!found.ok()) {
    (*read)->Reset();
    return found.status();
  }
  if (!*found) {
    (*read)->Reset();
    LOG(WARNING) << "dead letter " << id << " is gone from the table (deleted by hand?)";
    // The deletion is committed: the index follows the table.
    index_.Remove(id);
    return std::nullopt;
  }
  std::pair<Value, Value> stored((*read)->Column(0), (*read)->Column(1));
  (*read)->Reset();
  return stored;
}

absl::StatusOr<std::optional<int64_t>> DeadLetterStore::Blocker(
    int shard, const std::string& table, const std::vector<std::string>& rows, bool whole_table,
    int64_t before) {
  std::optional<int64_t> blocker = index_.Blocker(shard, table, rows, whole_table, before);
  if (!blocker) return blocker;
  absl::StatusOr<Statement*> exists =
      db_.Kept("SELECT 1 FROM \"__marmot__dead_letters\" WHERE id = ?");
  if (!exists.ok()) return exists.status();
  if (absl::Status s = (*exists)->Bind(1, Value::Integer(*blocker)); !s.ok()) return s;
  absl::StatusOr<bool> found = (*exists)->Step();
  (*exists)->Reset();
  if (!found.ok()) return found.status();
  if (*found) return blocker;
  // Deleted by hand: the index is behind the table. Read it again (inside this transaction, so
  // it may now hold uncommitted rows of it).
  LOG(WARNING) << "dead letter " << *blocker
               << " is gone from the table (deleted by hand?); reading the dead letters again";
  if (absl::Status s = Load(/*fresh=*/false); !s.ok()) return s;
  return index_.Blocker(shard, table, rows, whole_table, before);
}

absl::Status DeadLetterStore::QueuedBehind(int64_t blocker) const {
  const DeadLetterIndex::Entry* first = index_.Find(blocker);
  return absl::FailedPreconditionError(absl::StrCat("queued behind dead letter ", blocker,
                                                    first != nullptr && first->whole_table
                                                        ? " (snapshot rows of the table)"
                                                        : " of the same row"));
}

absl::StatusOr<int64_t> DeadLetterStore::Count() {
  absl::StatusOr<Value> n = db_.QueryKeptValue("SELECT count(*) FROM \"__marmot__dead_letters\"");
  if (!n.ok()) return n.status();
  return n->integer();
}

}  // namespace marmot::replicator
