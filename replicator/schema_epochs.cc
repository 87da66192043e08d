#include "replicator/schema_epochs.h"

#include <algorithm>
#include <utility>

namespace marmot::replicator {

absl::StatusOr<std::optional<uint64_t>> LoadSchemaEpoch(sqlite::Database& db) {
  absl::StatusOr<sqlite::Statement*> stmt =
      db.Kept("SELECT shard0_index FROM \"__marmot__schema_epoch\" WHERE id = 1");
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = (*stmt)->Step();
  std::optional<uint64_t> epoch;
  if (row.ok() && *row) epoch = static_cast<uint64_t>((*stmt)->Column(0).integer());
  (*stmt)->Reset();
  if (!row.ok()) return row.status();
  return epoch;
}

absl::Status StoreSchemaEpoch(sqlite::Database& db, uint64_t epoch) {
  return db.RunKept(
      "INSERT INTO \"__marmot__schema_epoch\" (id, shard0_index) VALUES (1, ?) "
      "ON CONFLICT (id) DO UPDATE SET shard0_index = max(shard0_index, excluded.shard0_index)",
      {sqlite::Value::Integer(static_cast<int64_t>(epoch))});
}

SchemaEpochs::SchemaEpochs(int shards)
    : shards_(std::make_unique<Shard[]>(shards)), count_(shards), waits_(shards) {}

void SchemaEpochs::SchemaAt(uint64_t index) {
  uint64_t now = current_.load();
  while (index > now && !current_.compare_exchange_weak(now, index)) {
  }
}

void SchemaEpochs::Applied(int shard, uint64_t index) {
  Shard& s = shards_[shard];
  // Sequentially consistent with WaitFor's store of wake_at and load of applied: either this
  // sees the waiter, or the waiter sees this index.
  s.applied.store(index);
  if (index < s.wake_at.load()) return;
  std::vector<int> woken;
  std::function<void(int)> wake;
  {
    absl::MutexLock l(&mu_);
    if (!wake_) return;  // set_wake wakes them
    for (int w = 0; w < count_; ++w) {
      if (waits_[w].shard == shard && waits_[w].index <= index) {
        waits_[w] = Wait();
        woken.push_back(w);
      }
    }
    RecomputeWakeAt(shard);
    wake = wake_;
  }
  for (int w : woken) wake(w);
}

bool SchemaEpochs::WaitFor(int waiter, int shard, uint64_t index) {
  if (applied(shard) >= index) {
    StopWaiting(waiter);
    return true;
  }
  {
    absl::MutexLock l(&mu_);
    const int before = waits_[waiter].shard;
    waits_[waiter] = Wait{.shard = shard, .index = index};
    if (before >= 0 && before != shard) RecomputeWakeAt(before);
    RecomputeWakeAt(shard);
  }
  if (applied(shard) < index) return false;
  StopWaiting(waiter);  // it got there meanwhile (a wake may come too: it costs a look)
  return true;
}

void SchemaEpochs::StopWaiting(int waiter) {
  absl::MutexLock l(&mu_);
  const int shard = waits_[waiter].shard;
  if (shard < 0) return;
  waits_[waiter] = Wait();
  RecomputeWakeAt(shard);
}

void SchemaEpochs::set_wake(std::function<void(int shard)> wake) {
  std::vector<int> waiting;
  {
    absl::MutexLock l(&mu_);
    wake_ = wake;
    for (int w = 0; w < count_; ++w) {
      if (waits_[w].shard >= 0) waiting.push_back(w);
    }
  }
  for (int w : waiting) wake(w);
}

void SchemaEpochs::RecomputeWakeAt(int shard) {
  uint64_t lowest = UINT64_MAX;
  for (const Wait& w : waits_) {
    if (w.shard == shard) lowest = std::min(lowest, w.index);
  }
  shards_[shard].wake_at.store(lowest);
}

}  // namespace marmot::replicator
