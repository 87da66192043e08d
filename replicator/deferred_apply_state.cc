#include "replicator/deferred_apply_state.h"

#include <algorithm>

namespace marmot::replicator {

using sqlite::Value;

void DeferredApplyState::SetAppliedIndex(int shard, uint64_t index) {
  uint64_t& kept = applied_[shard];
  kept = std::max(kept, index);
}

void DeferredApplyState::SetLastChange(int shard, uint64_t origin, const std::string& table,
                                       int64_t change_id) {
  int64_t& kept = last_change_[{shard, origin, table}];
  kept = std::max(kept, change_id);
}

uint64_t DeferredApplyState::AppliedIndex(int shard, uint64_t stored) const {
  auto it = applied_.find(shard);
  return it == applied_.end() ? stored : std::max(stored, it->second);
}

int64_t DeferredApplyState::LastChange(int shard, uint64_t origin, const std::string& table,
                                       int64_t stored) const {
  if (last_change_.empty()) return stored;
  auto it = last_change_.find({shard, origin, table});
  return it == last_change_.end() ? stored : std::max(stored, it->second);
}

void DeferredApplyState::Forget(int shard) {
  applied_.erase(shard);
  for (auto it = last_change_.begin(); it != last_change_.end();) {
    it = std::get<0>(it->first) == shard ? last_change_.erase(it) : std::next(it);
  }
}

absl::Status DeferredApplyState::Write(sqlite::Database& db) const {
  // max(): a transaction of the applier may have stored a newer value meanwhile (one that did not
  // write this state first, e.g. a dead-letter retry); it must stay.
  for (const auto& [shard, index] : applied_) {
    absl::Status s = db.RunKept(
        "INSERT INTO \"__marmot__shard_state\" (shard, applied_index) VALUES (?, ?) "
        "ON CONFLICT (shard) DO UPDATE SET applied_index = max(applied_index, "
        "excluded.applied_index)",
        {Value::Integer(shard), Value::Integer(static_cast<int64_t>(index))});
    if (!s.ok()) return s;
  }
  for (const auto& [key, change_id] : last_change_) {
    const auto& [shard, origin, table] = key;
    absl::Status s = db.RunKept(
        "INSERT INTO \"__marmot__applied\" (shard, origin, tbl, change_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (shard, origin, tbl) DO UPDATE SET change_id = max(change_id, "
        "excluded.change_id)",
        {Value::Integer(shard), Value::Integer(static_cast<int64_t>(origin)), Value::Text(table),
         Value::Integer(change_id)});
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void DeferredApplyState::Committed() {
  applied_.clear();
  last_change_.clear();
}

}  // namespace marmot::replicator
