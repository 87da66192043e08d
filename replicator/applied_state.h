// What the applier has applied, per shard: the shard's applied Raft index
// (`__marmot__shard_state`) and its dedupe state, the newest change id applied per origin and
// table (`__marmot__applied`; why that is exact is in change_applier.h, "Dedupe"). Reads take
// the larger of the stored value and what DeferredApplyState keeps of entries applied without a
// write transaction. Writes run inside the caller's transaction on the applier's connection.
#ifndef MARMOT_REPLICATOR_APPLIED_STATE_H_
#define MARMOT_REPLICATOR_APPLIED_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/deferred_apply_state.h"
#include "sqlite/database.h"

namespace marmot::replicator {

class AppliedState {
 public:
  // `db` (the applier's connection, which creates the tables) outlives this.
  explicit AppliedState(sqlite::Database& db) : db_(db) {}

  // The shard's applied Raft index, 0 when nothing was applied.
  absl::StatusOr<uint64_t> AppliedIndex(int shard);
  absl::Status SetAppliedIndex(int shard, uint64_t index);

  // The newest change id of `origin` to `table` applied in `shard`; 0 if none.
  absl::StatusOr<int64_t> LastChange(int shard, uint64_t origin, const std::string& table);
  absl::Status SetLastChange(int shard, uint64_t origin, const std::string& table,
                             int64_t change_id);

  // The shard's dedupe state becomes `applied` (a snapshot's).
  absl::Status ReplaceLastChanges(int shard,
                                  const std::vector<change::v1::ShardSnapshot::Applied>& applied);

  // What entries applied without writing left to record (see DeferredApplyState).
  DeferredApplyState& deferred() { return deferred_; }
  const DeferredApplyState& deferred() const { return deferred_; }

 private:
  sqlite::Database& db_;
  DeferredApplyState deferred_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_APPLIED_STATE_H_
