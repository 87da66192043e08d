// The rules that decide what the applier does with one replicated change, apart from SQLite.
//
// Every path that applies a change (a committed batch, the no-write path for this node's own
// changes, the retry of a dead letter, a dead letter a snapshot carries) asks the same
// questions in the same order: applied before? superseded by a local change that comes later?
// held back by a dead letter? does the row hold it already? The answers to the cheap questions
// are facts the caller fills in; the others (which read the local change index or the
// database) come from an ApplyView, asked only when a rule needs them, in rule order, so the
// decider costs no more than the chain it replaces. The decider itself reads and writes
// nothing: ChangeApplier carries its decision out. The reasons behind each rule are in
// change_applier.h (dedupe, per-row order of dead letters, set_local_node).
#ifndef MARMOT_REPLICATOR_APPLY_DECIDER_H_
#define MARMOT_REPLICATOR_APPLY_DECIDER_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace marmot::replicator {

// What to do with one change.
enum class ApplyAction {
  kSkipDuplicate,   // Applied before (at or below the dedupe state): a re-proposal.
  kSkipSuperseded,  // A local change of its row comes later in the shard's order.
  kNothingToWrite,  // An own change whose row already holds it (or whose table is gone here).
  kQueueBehind,     // Dead letter `blocker` of its row (or snapshot rows of its table) waits.
  kDeadLetter,      // It cannot apply here: `error` says why.
  kWrite,           // Write it.
};

struct ApplyDecision {
  ApplyAction action = ApplyAction::kWrite;
  int64_t blocker = 0;  // kQueueBehind only.
  absl::Status error;   // kDeadLetter only.

  static ApplyDecision Act(ApplyAction action) { return {.action = action}; }
  static ApplyDecision QueueBehind(int64_t id) {
    return {.action = ApplyAction::kQueueBehind, .blocker = id};
  }
  static ApplyDecision DeadLetter(absl::Status error) {
    return {.action = ApplyAction::kDeadLetter, .error = std::move(error)};
  }
};

// The questions whose answers cost a read. Each is asked at most once per decision, and only
// when a rule needs it. An error is the database's: the decision fails with it.
class ApplyView {
 public:
  virtual ~ApplyView() = default;
  // Whether the local change log holds a change of a row the change touches that comes later
  // in the shard's order (see ChangeApplier::set_local_node): for an own change, a newer one of
  // its row; for another node's change, one not applied in its shard yet. False when the
  // table's local change log is not known (not captured here, or no local node).
  virtual absl::StatusOr<bool> LaterLocalChange() = 0;
  // The dead letter the change must stay behind, or nullopt.
  virtual absl::StatusOr<std::optional<int64_t>> BlockingDeadLetter() = 0;
  // Whether every row the change writes already holds exactly what it writes.
  virtual absl::StatusOr<bool> RowAlreadyHolds() = 0;
};

// A change of a committed batch (also the no-write path, which needs no write for kWrite).
struct BatchChange {
  bool own = false;             // Captured by this node.
  int64_t change_id = 0;
  int64_t last_applied = 0;     // The dedupe state of its origin and table in its shard.
  absl::Status plan;            // Not OK: its table is missing or differs here.
  bool local_log = false;       // Its table's local change log is indexed (LocalChangeIndex).
};

// In rule order:
//   1. change_id <= last_applied                     -> kSkipDuplicate
//   2. own, plan not OK                              -> kNothingToWrite (the row is what this
//                                                       node's application left)
//   3. plan OK, LaterLocalChange()                   -> kSkipSuperseded
//   4. BlockingDeadLetter()                          -> kQueueBehind
//   5. plan not OK                                   -> kDeadLetter (plan)
//   6. own, local_log, RowAlreadyHolds()             -> kNothingToWrite
//   7.                                               -> kWrite
absl::StatusOr<ApplyDecision> DecideBatchChange(const BatchChange& change, ApplyView& view);

// A dead letter tried again: retried by an operator, or carried by a snapshot being installed.
// Dedupe does not apply (a dead letter counted as applied when it was recorded).
struct DeadLetterChange {
  absl::Status readable;        // Not OK: what it holds cannot be read (or is undecodable).
  bool snapshot_rows = false;   // Snapshot rows of a table, not a change.
  bool own = false;             // A change captured by this node.
  absl::Status plan;            // A change's: not OK when its table is missing or differs here.
};

// In rule order:
//   1. BlockingDeadLetter()                          -> kQueueBehind
//   2. not readable                                  -> kDeadLetter (readable)
//   3. snapshot rows                                 -> kWrite (they replace the table's rows)
//   4. own, LaterLocalChange()                       -> kSkipSuperseded
//   5. plan not OK                                   -> kDeadLetter (plan)
//   6. not own, LaterLocalChange()                   -> kSkipSuperseded
//   7.                                               -> kWrite
absl::StatusOr<ApplyDecision> DecideDeadLetter(const DeadLetterChange& change, ApplyView& view);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_APPLY_DECIDER_H_
