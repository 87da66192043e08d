#include "replicator/local_change_index.h"

#include <algorithm>
#include <vector>

#include "replicator/shard_router.h"
#include "sqlite/change_log.h"

namespace marmot::replicator {

absl::Status LocalChangeIndex::CatchUp(sqlite::Database& db, const std::string& table) {
  auto it = tables_.find(table);
  if (it == tables_.end()) {
    absl::StatusOr<sqlite::TableSchema> schema = sqlite::ReadTableSchema(db, table);
    if (!schema.ok()) return schema.status();
    it = tables_.emplace(table, TableState{*std::move(schema), 0}).first;
  }
  TableState& state = it->second;
  constexpr int kChunk = 10000;
  for (;;) {
    absl::StatusOr<std::vector<sqlite::ChangeRecord>> records =
        sqlite::ReadChangeKeys(db, state.schema, state.read_up_to, kChunk);
    if (!records.ok()) return records.status();
    for (const sqlite::ChangeRecord& r : *records) {
      for (const std::vector<sqlite::Value>* key : {&r.key, &r.old_key}) {
        if (key->empty()) continue;
        int64_t& n = newest_[EncodeRowIdentity(table, *key)];
        n = std::max(n, r.id);
      }
      state.read_up_to = r.id;
    }
    if (records->size() < static_cast<size_t>(kChunk)) return absl::OkStatus();
  }
}

int64_t LocalChangeIndex::Newest(const std::string& row) const {
  auto it = newest_.find(row);
  return it == newest_.end() ? 0 : it->second;
}

void LocalChangeIndex::Processed(const std::string& row, int64_t id) {
  auto it = newest_.find(row);
  if (it != newest_.end() && it->second <= id) newest_.erase(it);
}

void LocalChangeIndex::Clear() {
  tables_.clear();
  newest_.clear();
}

}  // namespace marmot::replicator
