#include "replicator/dead_letter_index.h"

namespace marmot::replicator {
namespace {

// Removes `id` from the set under `key`, and the set when it becomes empty.
template <typename Map, typename Key>
void Erase(Map& map, const Key& key, int64_t id) {
  auto it = map.find(key);
  if (it == map.end()) return;
  it->second.erase(id);
  if (it->second.empty()) map.erase(it);
}

// The smallest id under `key` if it is below `before`.
template <typename Map, typename Key>
std::optional<int64_t> OldestBelow(const Map& map, const Key& key, int64_t before) {
  auto it = map.find(key);
  if (it == map.end() || it->second.empty() || *it->second.begin() >= before) return std::nullopt;
  return *it->second.begin();
}

void KeepOlder(std::optional<int64_t>& oldest, std::optional<int64_t> candidate) {
  if (candidate && (!oldest || *candidate < *oldest)) oldest = candidate;
}

}  // namespace

void DeadLetterIndex::Add(int64_t id, Entry entry) {
  Remove(id);
  for (const std::string& row : entry.rows) by_row_[row].insert(id);
  if (!entry.table.empty()) {
    TableKey key(entry.shard, entry.table);
    by_table_[key].insert(id);
    if (entry.whole_table) whole_tables_[key].insert(id);
  }
  entries_.emplace(id, std::move(entry));
}

std::optional<int64_t> DeadLetterIndex::NextId(int64_t after) const {
  auto it = entries_.upper_bound(after);
  if (it == entries_.end()) return std::nullopt;
  return it->first;
}

void DeadLetterIndex::Remove(int64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  const Entry& entry = it->second;
  for (const std::string& row : entry.rows) Erase(by_row_, row, id);
  if (!entry.table.empty()) {
    TableKey key(entry.shard, entry.table);
    Erase(by_table_, key, id);
    Erase(whole_tables_, key, id);
  }
  entries_.erase(it);
}

const DeadLetterIndex::Entry* DeadLetterIndex::Find(int64_t id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<int64_t> DeadLetterIndex::Ids() const {
  std::vector<int64_t> ids;
  ids.reserve(entries_.size());
  for (const auto& [id, entry] : entries_) ids.push_back(id);
  return ids;
}

std::vector<int64_t> DeadLetterIndex::IdsUpTo(int shard, uint64_t raft_index) const {
  std::vector<int64_t> ids;
  for (const auto& [id, entry] : entries_) {
    if (entry.shard == shard && entry.raft_index <= raft_index) ids.push_back(id);
  }
  return ids;
}

std::optional<int64_t> DeadLetterIndex::Blocker(int shard, const std::string& table,
                                                const std::vector<std::string>& rows,
                                                bool whole_table, int64_t before) const {
  if (entries_.empty()) return std::nullopt;
  const TableKey key(shard, table);
  std::optional<int64_t> oldest;
  if (whole_table) {
    KeepOlder(oldest, OldestBelow(by_table_, key, before));
  } else {
    KeepOlder(oldest, OldestBelow(whole_tables_, key, before));
    for (const std::string& row : rows) KeepOlder(oldest, OldestBelow(by_row_, row, before));
  }
  return oldest;
}

}  // namespace marmot::replicator
