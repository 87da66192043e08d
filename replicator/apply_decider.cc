#include "replicator/apply_decider.h"

namespace marmot::replicator {

absl::StatusOr<ApplyDecision> DecideBatchChange(const BatchChange& change, ApplyView& view) {
  if (change.change_id <= change.last_applied) {
    return ApplyDecision::Act(ApplyAction::kSkipDuplicate);
  }
  // An own change of a table this node no longer has, or whose columns changed since it was
  // read: nothing here can be newer than what the application left in its row.
  if (change.own && !change.plan.ok()) return ApplyDecision::Act(ApplyAction::kNothingToWrite);
  if (change.plan.ok()) {
    absl::StatusOr<bool> later = view.LaterLocalChange();
    if (!later.ok()) return later.status();
    if (*later) return ApplyDecision::Act(ApplyAction::kSkipSuperseded);
  }
  absl::StatusOr<std::optional<int64_t>> blocker = view.BlockingDeadLetter();
  if (!blocker.ok()) return blocker.status();
  if (blocker->has_value()) return ApplyDecision::QueueBehind(**blocker);
  if (!change.plan.ok()) return ApplyDecision::DeadLetter(change.plan);
  if (change.own && change.local_log) {
    // Most own changes come back to a row that still holds exactly what they carry: writing
    // the same values again would only cost the origin a rewrite of every row it ships.
    absl::StatusOr<bool> holds = view.RowAlreadyHolds();
    if (!holds.ok()) return holds.status();
    if (*holds) return ApplyDecision::Act(ApplyAction::kNothingToWrite);
  }
  return ApplyDecision::Act(ApplyAction::kWrite);
}

absl::StatusOr<ApplyDecision> DecideDeadLetter(const DeadLetterChange& change, ApplyView& view) {
  // Per-row order comes first: an earlier dead letter of the row is tried before this one,
  // whatever this one holds.
  absl::StatusOr<std::optional<int64_t>> blocker = view.BlockingDeadLetter();
  if (!blocker.ok()) return blocker.status();
  if (blocker->has_value()) return ApplyDecision::QueueBehind(**blocker);
  if (!change.readable.ok()) return ApplyDecision::DeadLetter(change.readable);
  if (change.snapshot_rows) return ApplyDecision::Act(ApplyAction::kWrite);
  // An own change is skipped for a newer one of its row even when its table changed here since:
  // that newer change is what the row ends with.
  if (change.own) {
    absl::StatusOr<bool> later = view.LaterLocalChange();
    if (!later.ok()) return later.status();
    if (*later) return ApplyDecision::Act(ApplyAction::kSkipSuperseded);
  }
  if (!change.plan.ok()) return ApplyDecision::DeadLetter(change.plan);
  if (!change.own) {
    absl::StatusOr<bool> later = view.LaterLocalChange();
    if (!later.ok()) return later.status();
    if (*later) return ApplyDecision::Act(ApplyAction::kSkipSuperseded);
  }
  return ApplyDecision::Act(ApplyAction::kWrite);
}

}  // namespace marmot::replicator
