// Tries dead letters again, the same way whether an operator retries this node's own
// (ChangeApplier::RetryDeadLetters) or a snapshot being installed carries those of the node
// that made it (ChangeApplier::InstallSnapshot, "Snapshots" in change_applier.h): the decider
// rules on each (DecideDeadLetter, per-row order included), then a change is written as a
// batch would write it, or snapshot rows replace their table's rows in the shard.
// Every call runs inside the caller's write transaction on the applier's connection, after
// the dead letters were synced and the plans checked against the schema.
#ifndef MARMOT_REPLICATOR_DEAD_LETTER_RETRIER_H_
#define MARMOT_REPLICATOR_DEAD_LETTER_RETRIER_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "replicator/apply_decider.h"
#include "replicator/change_view.h"
#include "replicator/dead_letter_index.h"
#include "replicator/local_change_index.h"
#include "replicator/shard_snapshotter.h"
#include "replicator/snapshot_stream.h"
#include "replicator/table_plans.h"
#include "sqlite/value.h"

namespace marmot::replicator {

struct RetryResult {
  int64_t applied = 0;        // Applied now (or superseded by a pending local change), deleted.
  int64_t still_failing = 0;  // Kept: failed again, or queued behind an earlier one of the row.
};

class DeadLetterRetrier {
 public:
  // Everything outlives the retrier.
  DeadLetterRetrier(const ApplierState& state, TablePlans& plans, LocalChangeIndex& local_changes,
                    ShardSnapshotter& snapshotter)
      : state_(state), plans_(plans), local_changes_(local_changes), snapshotter_(snapshotter) {}

  // Retries the dead letters `ids` (every one when empty), in id order (see
  // ChangeApplier::RetryDeadLetters). NotFound, and nothing done, when an id does not exist.
  // Other errors are the database's (the caller rolls back).
  absl::StatusOr<RetryResult> Retry(const std::vector<int64_t>& ids);

  // Applies the dead letters `in` reads next (a snapshot of `shard`, past its tables), in their
  // order, or records them here; counts them in `result`. Errors: the database's,
  // SnapshotUnreadable, ResourceExhausted when one does not fit.
  absl::Status ApplyCarried(int shard, ShardSnapshotReader& in, InstallResult& result);

 private:
  // Tries the dead letter indexed as `entry`, with `origin` and `change` as stored, behind dead
  // letters with an id below `before`; an undecodable one is kept with `undecodable` as its
  // error. Writes it when the decider says so, without touching the dead-letter table. The
  // decision carried out: kWrite (written), kSkipSuperseded, kQueueBehind, or kDeadLetter with
  // the error it met now (a failed write's included). Errors only the database's.
  absl::StatusOr<ApplyDecision> Try(const DeadLetterIndex::Entry& entry,
                                    const sqlite::Value& origin, const sqlite::Value& change,
                                    const absl::Status& undecodable,
                                    int64_t before = std::numeric_limits<int64_t>::max());

  const ApplierState& state_;
  TablePlans& plans_;
  LocalChangeIndex& local_changes_;
  ShardSnapshotter& snapshotter_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DEAD_LETTER_RETRIER_H_
