#include "replicator/apply_decider.h"

namespace marmot::replicator {

EntryAction DecideEntry(uint64_t index, uint64_t applied_index) {
  return index <= applied_index ? EntryAction::kSkipStale : EntryAction::kApply;
}

absl::StatusOr<EntryAction> DecideUnwrittenEntry(const UnwrittenEntry& entry,
                                                 UnwrittenEntryView& view) {
  if (!entry.own_origin || entry.transaction_open) return EntryAction::kNeedsTransaction;
  absl::StatusOr<bool> dead_letters = view.DeadLettersExist();
  if (!dead_letters.ok()) return dead_letters.status();
  if (*dead_letters) return EntryAction::kNeedsTransaction;
  absl::StatusOr<uint64_t> applied = view.AppliedIndex();
  if (!applied.ok()) return applied.status();
  return DecideEntry(entry.index, *applied);
}

bool TableMayGoUnwritten(const UnwrittenTable& table) {
  return table.plan.ok() && !table.other_unique_constraints;
}

bool WritesNothing(ApplyAction action) {
  switch (action) {
    case ApplyAction::kSkipDuplicate:
    case ApplyAction::kSkipSuperseded:
    case ApplyAction::kNothingToWrite:
      return true;
    case ApplyAction::kQueueBehind:
    case ApplyAction::kDeadLetter:
    case ApplyAction::kWrite:
    case ApplyAction::kWriteUncarried:
    case ApplyAction::kKeepAsConflict:
    case ApplyAction::kHold:
    case ApplyAction::kKeepDisplaced:
      return false;
  }
  return false;
}

namespace {

// What local changes that come later in the shard's order write over the change: for an own
// change, a newer one of its row writes everything; for another node's, those not yet applied
// in the shard.
absl::StatusOr<LocalOverwrite> LaterLocalChange(bool own, ApplyView& view) {
  if (!own) return view.LocalChangeNotYetApplied();
  absl::StatusOr<bool> newer = view.NewerLocalChangeOfRow();
  if (!newer.ok()) return newer.status();
  return *newer ? LocalOverwrite::kAll : LocalOverwrite::kNothing;
}

ApplyDecision Write(LocalOverwrite later) {
  return ApplyDecision::Act(later == LocalOverwrite::kSome ? ApplyAction::kWriteUncarried
                                                           : ApplyAction::kWrite);
}

}  // namespace

absl::StatusOr<ApplyDecision> DecideBatchChange(const BatchChange& change, ApplyView& view) {
  if (change.change_id <= change.last_applied) {
    return ApplyDecision::Act(ApplyAction::kSkipDuplicate);
  }
  if (change.names_prev) {
    absl::StatusOr<bool> unseen = view.MadeWithoutSeeingItsRow();
    if (!unseen.ok()) return unseen.status();
    if (*unseen) return ApplyDecision::Act(ApplyAction::kKeepAsConflict);
  }
  // An own change of a table this node no longer has, or whose columns changed since it was
  // read: nothing here can be newer than what the application left in its row.
  if (change.own && !change.plan.ok()) return ApplyDecision::Act(ApplyAction::kNothingToWrite);
  LocalOverwrite later = LocalOverwrite::kNothing;
  if (change.plan.ok()) {
    absl::StatusOr<LocalOverwrite> overwrite = LaterLocalChange(change.own, view);
    if (!overwrite.ok()) return overwrite.status();
    if (*overwrite == LocalOverwrite::kAll) {
      return ApplyDecision::Act(change.own ? ApplyAction::kSkipSuperseded : ApplyAction::kHold);
    }
    if (*overwrite == LocalOverwrite::kOtherRow) {
      return ApplyDecision::Act(ApplyAction::kKeepDisplaced);
    }
    later = *overwrite;
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
  return Write(later);
}

absl::StatusOr<ApplyDecision> DecideDeadLetter(const DeadLetterChange& change, ApplyView& view) {
  // An entry kept as it came names no row: it is kept again with its error, untried.
  if (change.undecodable) return ApplyDecision::DeadLetter(change.readable);
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
    absl::StatusOr<bool> later = view.NewerLocalChangeOfRow();
    if (!later.ok()) return later.status();
    if (*later) return ApplyDecision::Act(ApplyAction::kSkipSuperseded);
  }
  if (!change.plan.ok()) return ApplyDecision::DeadLetter(change.plan);
  if (!change.own) {
    absl::StatusOr<LocalOverwrite> later = view.LocalChangeNotYetApplied();
    if (!later.ok()) return later.status();
    if (*later == LocalOverwrite::kAll) return ApplyDecision::Act(ApplyAction::kSkipSuperseded);
    if (*later == LocalOverwrite::kOtherRow) {
      return ApplyDecision::Act(ApplyAction::kKeepDisplaced);
    }
    return Write(*later);
  }
  return ApplyDecision::Act(ApplyAction::kWrite);
}

std::optional<int64_t> KeepRowsWithOwnChangesAbove(const SnapshotTable& table) {
  if (!table.local_node) return std::nullopt;
  return table.own_held;
}

}  // namespace marmot::replicator
