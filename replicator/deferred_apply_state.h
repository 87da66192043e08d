// DeferredApplyState: what applied entries did to the applier's own bookkeeping (the shard's
// applied index, the dedupe state per shard, origin and table) while no write transaction was
// open to record it.
//
// An entry of this node's own changes whose rows all still hold what the changes wrote (or that
// a newer local change supersedes) writes no row. Taking the database's write lock only to
// advance two counters would make the application's writer wait on the origin node, where most
// entries are of that kind under a write flood. ChangeApplier::ApplyWithoutWriting keeps those
// counters here instead; the next write transaction of the applier's connection writes them
// (Write), and reads until then take the larger of the table's value and the value here.
//
// Why losing them in a crash is safe: the durable applied index is then older, and the entries
// after it are applied again from the Raft log. Those entries wrote no row, and their rows'
// change-log rows are still in the logs, because the shipper marks rows done (deletes them) only
// in a transaction that writes this state first (DatabaseWriter::WriteWithDeferred). Applied
// again, each change is found superseded by a newer local change or its row is read and found
// to hold it: nothing is written twice, and the application never sees an older row. Snapshots
// are taken after Write, so a snapshot never lacks them.
#ifndef MARMOT_REPLICATOR_DEFERRED_APPLY_STATE_H_
#define MARMOT_REPLICATOR_DEFERRED_APPLY_STATE_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "sqlite/database.h"

namespace marmot::replicator {

class DeferredApplyState {
 public:
  // `shard` reached `index`; its changes from `origin` to `table` are deduplicated up to
  // `change_id` (0: none recorded).
  void SetAppliedIndex(int shard, uint64_t index);
  void SetLastChange(int shard, uint64_t origin, const std::string& table, int64_t change_id);

  // The larger of `stored` (the table's value) and the value kept here.
  uint64_t AppliedIndex(int shard, uint64_t stored) const;
  int64_t LastChange(int shard, uint64_t origin, const std::string& table, int64_t stored) const;

  // Drops what is kept of `shard` (a snapshot replaced its state).
  void Forget(int shard);

  // Writes everything kept into the state tables through `db`, inside the caller's transaction,
  // never lowering a stored value. Kept until Committed().
  absl::Status Write(sqlite::Database& db) const;
  // The transaction Write() wrote into committed.
  void Committed();

  bool empty() const { return applied_.empty() && last_change_.empty(); }

 private:
  std::map<int, uint64_t> applied_;
  std::map<std::tuple<int, uint64_t, std::string>, int64_t> last_change_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DEFERRED_APPLY_STATE_H_
