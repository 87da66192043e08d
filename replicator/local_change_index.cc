#include "replicator/local_change_index.h"

#include <algorithm>
#include <vector>

#include "replicator/shard_router.h"
#include "sqlite/change_log.h"

namespace marmot::replicator {

bool LocalChangeIndex::TableRows::IsInteger(const std::vector<sqlite::Value>& key) {
  return key.size() == 1 && key[0].storage_class() == sqlite::StorageClass::kInteger;
}

const LocalChangeIndex::TableRows::RowState* LocalChangeIndex::TableRows::Find(
    const std::vector<sqlite::Value>& key) const {
  if (IsInteger(key)) {
    auto it = by_integer_.find(key[0].integer());
    return it == by_integer_.end() ? nullptr : &it->second;
  }
  auto it = by_encoding_.find(EncodeRowIdentity("", key));
  return it == by_encoding_.end() ? nullptr : &it->second;
}

LocalChangeIndex::TableRows::RowState* LocalChangeIndex::TableRows::Find(
    const std::vector<sqlite::Value>& key) {
  return const_cast<RowState*>(static_cast<const TableRows*>(this)->Find(key));
}

void LocalChangeIndex::TableRows::Saw(const std::vector<sqlite::Value>& key, int64_t id,
                                      bool rewritten) {
  RowState& row =
      IsInteger(key) ? by_integer_[key[0].integer()] : by_encoding_[EncodeRowIdentity("", key)];
  if (id > row.newest) row = RowState{id, rewritten};
}

int64_t LocalChangeIndex::TableRows::Newest(const std::vector<sqlite::Value>& key) const {
  const RowState* row = Find(key);
  return row == nullptr ? 0 : row->newest;
}

bool LocalChangeIndex::TableRows::Holds(const std::vector<sqlite::Value>& key, int64_t id) const {
  const RowState* row = Find(key);
  return row != nullptr && row->newest == id && !row->rewritten;
}

void LocalChangeIndex::TableRows::Rewritten(const std::vector<sqlite::Value>& key) {
  if (size() == 0) return;
  if (RowState* row = Find(key); row != nullptr) row->rewritten = true;
}

void LocalChangeIndex::TableRows::Processed(const std::vector<sqlite::Value>& key, int64_t id) {
  // Once every row read is processed, clear() gives the table's memory back (absl keeps it after
  // the last erase): a -seed's backlog held ~26 MiB for 0.5 M rows long after it was shipped.
  if (IsInteger(key)) {
    auto it = by_integer_.find(key[0].integer());
    if (it != by_integer_.end() && it->second.newest <= id) {
      by_integer_.erase(it);
      if (by_integer_.empty()) by_integer_.clear();
    }
    return;
  }
  auto it = by_encoding_.find(EncodeRowIdentity("", key));
  if (it != by_encoding_.end() && it->second.newest <= id) {
    by_encoding_.erase(it);
    if (by_encoding_.empty()) by_encoding_.clear();
  }
}

absl::StatusOr<LocalChangeIndex::TableRows*> LocalChangeIndex::CatchUp(sqlite::Database& db,
                                                                       const std::string& table) {
  auto it = tables_.find(table);
  const bool first = it == tables_.end();
  if (first) {
    absl::StatusOr<sqlite::TableSchema> schema = sqlite::ReadTableSchema(db, table);
    if (!schema.ok()) {
      Clear();
      return schema.status();
    }
    it = tables_.emplace(table, TableRows()).first;
    it->second.schema_ = *std::move(schema);
  }
  TableRows& rows = it->second;
  auto saw = [&](const sqlite::ChangeRecord& r) {
    if (!r.key.empty()) rows.Saw(r.key, r.id, first);
    if (!r.old_key.empty()) rows.Saw(r.old_key, r.id, first);
    rows.read_up_to_ = r.id;
  };
  absl::Status s = sqlite::ForEachChangeKey(db, rows.schema_, rows.read_up_to_, saw);
  if (!s.ok()) {
    Clear();
    return s;
  }
  return &rows;
}

void LocalChangeIndex::CatchUpKnown(sqlite::Database& db) {
  std::vector<std::string> known;
  for (const auto& [table, rows] : tables_) known.push_back(table);
  for (const std::string& table : known) {
    // A failure cleared the index; the next CatchUp inside a transaction starts it again.
    if (!CatchUp(db, table).ok()) return;
  }
}

const LocalChangeIndex::TableRows* LocalChangeIndex::Find(const std::string& table) const {
  auto it = tables_.find(table);
  return it == tables_.end() ? nullptr : &it->second;
}

void LocalChangeIndex::Clear() { tables_.clear(); }

}  // namespace marmot::replicator
