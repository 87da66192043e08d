#include "replicator/local_change_index.h"

#include <algorithm>
#include <vector>

#include "replicator/shard_router.h"
#include "sqlite/change_log.h"

namespace marmot::replicator {

absl::Status LocalChangeIndex::CatchUp(sqlite::Database& db, const std::string& table) {
  auto it = tables_.find(table);
  const bool first = it == tables_.end();
  if (first) {
    absl::StatusOr<sqlite::TableSchema> schema = sqlite::ReadTableSchema(db, table);
    if (!schema.ok()) {
      Clear();
      return schema.status();
    }
    it = tables_.emplace(table, TableState{*std::move(schema), 0}).first;
  }
  TableState& state = it->second;
  constexpr int kChunk = 10000;
  for (;;) {
    absl::StatusOr<std::vector<sqlite::ChangeRecord>> records =
        sqlite::ReadChangeKeys(db, state.schema, state.read_up_to, kChunk);
    if (!records.ok()) {
      Clear();
      return records.status();
    }
    for (const sqlite::ChangeRecord& r : *records) {
      for (const std::vector<sqlite::Value>* key : {&r.key, &r.old_key}) {
        if (key->empty()) continue;
        RowState& row = rows_[EncodeRowIdentity(table, *key)];
        if (r.id > row.newest) row = RowState{r.id, first};
      }
      state.read_up_to = r.id;
    }
    if (records->size() < static_cast<size_t>(kChunk)) return absl::OkStatus();
  }
}

void LocalChangeIndex::CatchUpKnown(sqlite::Database& db) {
  std::vector<std::string> known;
  for (const auto& [table, state] : tables_) known.push_back(table);
  for (const std::string& table : known) {
    // A failure cleared the index; the next CatchUp inside a transaction starts it again.
    if (!CatchUp(db, table).ok()) return;
  }
}

int64_t LocalChangeIndex::Newest(const std::string& row) const {
  auto it = rows_.find(row);
  return it == rows_.end() ? 0 : it->second.newest;
}

bool LocalChangeIndex::Holds(const std::string& row, int64_t id) const {
  auto it = rows_.find(row);
  return it != rows_.end() && it->second.newest == id && !it->second.rewritten;
}

void LocalChangeIndex::Rewritten(const std::string& row) {
  auto it = rows_.find(row);
  if (it != rows_.end()) it->second.rewritten = true;
}

void LocalChangeIndex::Processed(const std::string& row, int64_t id) {
  auto it = rows_.find(row);
  if (it != rows_.end() && it->second.newest <= id) rows_.erase(it);
}

void LocalChangeIndex::Clear() {
  tables_.clear();
  rows_.clear();
}

}  // namespace marmot::replicator
