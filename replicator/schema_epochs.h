// SchemaEpochs: where this node stands in shard 0's schema changes and in every shard's log, so
// that a schema change and the row changes around it apply in one order on every node (README,
// "Schema changes"; issue 21).
//
// Schema changes travel in shard 0, rows in the shards their keys hash to, so nothing in Raft
// orders a row batch after the schema change it was read with. The origin stamps every row batch
// with its schema epoch (ChangeBatch.schema_epoch): the shard-0 index of the newest entry with
// schema changes it had applied, or committed itself, when it read the rows (read after its
// rows' read transaction began, so a schema the read saw is never newer than the epoch). A node
// applies a row batch only once its own shard 0 applied that far: the shard waits meanwhile
// (raft::host::ShardWaitStatus, nothing of it applied or skipped) and resumes when shard 0 gets
// there (WaitFor below wakes it), or after kEpochWaitBound, applied then as before this existed
// (a change the schema here cannot take goes to the dead letters and is retried after the next
// schema change).
//
// The other way round (part B): the origin proposes a schema change only once every row batch
// it read before the change committed, and lists in it, per shard, the index of its last row
// batch committed there or what the shard had applied there, whichever is higher
// (ChangeBatch.rows_committed_through: other nodes' rows it had applied count as its own); shard
// 0 applies it only once each listed shard applied that far here, waiting the same way and
// bounded the same. The two waits never wait on each other:
// an entry at or below a listed index committed before the schema change was proposed, so the epoch
// it carries is below the schema change's index.
//
// The invariants: on every node, a row batch applies after every schema change its origin had
// when it read its rows, and before every schema change made by a node that had it (its own
// origin after it committed, any node after applying it).
// One integer compare per batch on the apply side (Applied, WaitFor only when it does not hold).
//
// Thread-safe: the state machines of every shard (apply worker threads) and the shipper (pump
// thread) use it.
#ifndef MARMOT_REPLICATOR_SCHEMA_EPOCHS_H_
#define MARMOT_REPLICATOR_SCHEMA_EPOCHS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// How long a shard waits for another shard of this node before it applies anyway (shard 0
// halted here, or partitioned away from its leader).
inline constexpr absl::Duration kEpochWaitBound = absl::Seconds(30);

// The epoch kept in marmot's state (`__marmot__schema_epoch`, one row; OpenApplierDatabase
// creates it): the newest shard-0 index of a schema change this node applied (in the transaction
// that applied it), committed itself (in the one that took it into the baseline) or installed
// with a snapshot (in the install's). A restart starts current() from it, not from shard 0's
// whole applied index: receivers then wait for the schema change, not for the log.
inline constexpr char kCreateSchemaEpoch[] =
    "CREATE TABLE IF NOT EXISTS \"__marmot__schema_epoch\" ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1), shard0_index INTEGER NOT NULL);";
// The kept epoch; nullopt when none is kept yet (a database of a version before it).
absl::StatusOr<std::optional<uint64_t>> LoadSchemaEpoch(sqlite::Database& db);
// Keeps `epoch` unless a higher one is kept, in the caller's transaction if one is open.
absl::Status StoreSchemaEpoch(sqlite::Database& db, uint64_t epoch);

class SchemaEpochs {
 public:
  explicit SchemaEpochs(int shards);

  // The origin's side. The newest shard-0 index of a schema change this node applied or
  // committed (0: none known): what its row batches read now carry.
  uint64_t current() const { return current_.load(); }
  // An entry of shard 0 at `index` that carries schema changes was applied here, or this node's
  // own committed there, or one a snapshot installed here brought; at Open the kept epoch
  // (LoadSchemaEpoch). Only moves up.
  void SchemaAt(uint64_t index);

  // The number of shards.
  int shards() const { return count_; }
  // The apply side. What `shard` has applied here (in the open round's transaction, or before).
  uint64_t applied(int shard) const { return shards_[shard].applied.load(); }
  // `shard` applied up to `index`: wakes the shards that wait for it to get there. `index` may
  // go down (a shard opened again stands where its durable state does).
  void Applied(int shard, uint64_t index);
  // Whether `shard` applied `index`; when not, `waiter` is registered to be woken (wake below)
  // once it does. A waiter waits for one thing at a time: registering again replaces it.
  bool WaitFor(int waiter, int shard, uint64_t index);
  // `waiter` waits no more (it goes on anyway).
  void StopWaiting(int waiter);
  // What wakes a waiting shard (NodeHost::ResumeShard, which returns at once); set once the host
  // runs. Setting it wakes every shard registered as waiting so far: a wake it missed is not
  // lost. A spurious wake costs a look: the shard waits again.
  void set_wake(std::function<void(int shard)> wake);

 private:
  struct Shard {
    std::atomic<uint64_t> applied{0};
    // The lowest index a waiter waits for this shard to apply; max: none.
    std::atomic<uint64_t> wake_at{UINT64_MAX};
  };
  struct Wait {
    int shard = -1;  // -1: does not wait
    uint64_t index = 0;
  };
  // With mu_ held: wake_at of `shard` again from waits_.
  void RecomputeWakeAt(int shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<uint64_t> current_{0};
  std::unique_ptr<Shard[]> shards_;
  const int count_;
  absl::Mutex mu_;
  std::vector<Wait> waits_ ABSL_GUARDED_BY(mu_);  // per waiting shard
  std::function<void(int)> wake_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SCHEMA_EPOCHS_H_
