// Tries dead letters again, the same way whether an operator retries this node's own
// (ChangeApplier::RetryDeadLetters) or a snapshot being installed carries those of the node
// that made it (ChangeApplier::InstallSnapshot, "Snapshots" in change_applier.h): the decider
// rules on each (DecideDeadLetter, per-row order included), then a change is written as a
// batch would write it, or snapshot rows replace their table's rows in the shard.
// Every call runs inside the caller's write transaction on the applier's connection, after
// the dead letters were synced and the plans checked against the schema.
//
// An operator's retry goes in steps (DeadLetterRetry), each the caller's transaction of its
// own, so that retrying many dead letters never holds the database's write lock for long.
// Steps keep every promise of one transaction: each step tries its dead letters in id order
// and commits what became of them (applied and deleted, or kept with the error met now)
// together, so a crash between steps leaves every dead letter either applied and gone or kept;
// a dead letter stays behind an earlier one of its row however many steps apart they are (the
// decider reads the table as the earlier steps left it).
#ifndef MARMOT_REPLICATOR_DEAD_LETTER_RETRIER_H_
#define MARMOT_REPLICATOR_DEAD_LETTER_RETRIER_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
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

// A retry of dead letters carried out in steps (ChangeApplier::RetryDeadLetters): what it
// covers, how far it got, and the totals so far. Dead letters are tried in id order. A dead
// letter deleted (by hand, or by another retry) before its turn is passed over, counted
// nowhere.
class DeadLetterRetry {
 public:
  // The dead letters `ids` (the first step fails with NOT_FOUND, nothing done, when one does
  // not exist), or when `ids` is empty every dead letter, as OfTables.
  explicit DeadLetterRetry(std::vector<int64_t> ids);
  // Every dead letter of `tables` (of every table, undecodable entries included, when
  // nullopt): those there when the retry begins, then, as long as a pass over them applied
  // some, those recorded meanwhile (changes of their rows that queued behind them while the
  // retry went on), in further passes.
  static DeadLetterRetry OfTables(std::optional<std::set<std::string>> tables);

  // A step tries at most this many dead letters (at least one); 1,000 by default.
  void set_max_per_step(int64_t n) { max_per_step_ = std::max<int64_t>(1, n); }
  int64_t max_per_step() const { return max_per_step_; }

  // Every selected dead letter was tried.
  bool done() const { return progress_.done; }
  // What became of those tried so far.
  const RetryResult& result() const { return progress_.result; }

 private:
  friend class DeadLetterRetrier;
  friend class ChangeApplier;
  struct Progress {
    bool started = false;
    bool done = false;
    int64_t after = 0;    // Every selected dead letter with an id up to this one was tried.
    int64_t through = 0;  // This pass ends with this id.
    int64_t pass_applied = 0;
    RetryResult result;
  };
  DeadLetterRetry() = default;
  // The next selected id after `after`, up to `through`, among `ids_` or in `index`.
  std::optional<int64_t> Next(const DeadLetterIndex& index, int64_t after, int64_t through) const;

  std::vector<int64_t> ids_;  // Sorted, unique; empty: by table.
  std::optional<std::set<std::string>> tables_;
  int64_t max_per_step_ = 1000;
  Progress progress_;
};

class DeadLetterRetrier {
 public:
  // Everything outlives the retrier.
  DeadLetterRetrier(const ApplierState& state, TablePlans& plans, LocalChangeIndex& local_changes,
                    ShardSnapshotter& snapshotter)
      : state_(state), plans_(plans), local_changes_(local_changes), snapshotter_(snapshotter) {}

  // Carries out the next step of `retry` (see ChangeApplier::RetryDeadLetters): tries the next
  // selected dead letters in id order, while `more` says so (asked after each; at least one is
  // tried) and at most retry.max_per_step(). Returns the retry's progress once this step
  // commits (the caller stores it then). NotFound, and nothing done, at the first step when a
  // selected id does not exist. Other errors are the database's (the caller rolls back).
  absl::StatusOr<DeadLetterRetry::Progress> Step(const DeadLetterRetry& retry,
                                                 absl::FunctionRef<bool()> more);

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
