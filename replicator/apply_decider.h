// The rules that decide what the applier does with a replicated entry and each of its changes,
// apart from SQLite.
//
// Every path that applies a change (a committed batch, the no-write path for this node's own
// changes, the retry of a dead letter, a dead letter a snapshot carries) asks the same
// questions in the same order: applied before? superseded by a local change that comes later?
// held back by a dead letter? does the row hold it already? The answers to the cheap questions
// are facts the caller fills in; the others (which read the local change index or the
// database) come from a view, asked only when a rule needs them, in rule order, so the decider
// costs no more than a chain of checks would. The decider itself reads and writes nothing:
// ChangeApplier and its parts carry its decisions out. The reasons behind each rule are in
// change_applier.h (dedupe, per-row order of dead letters, set_local_node, snapshots).
#ifndef MARMOT_REPLICATOR_APPLY_DECIDER_H_
#define MARMOT_REPLICATOR_APPLY_DECIDER_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace marmot::replicator {

// ---- Entries ----

// What to do with a Raft entry as a whole.
enum class EntryAction {
  kSkipStale,         // At or below the shard's applied index: applied before, nothing to do.
  kApply,             // Apply it (its changes are decided one by one).
  kNeedsTransaction,  // The no-write path cannot take it: Apply it in a write transaction.
};

// An entry at Raft `index` of a shard whose applied index is `applied_index`.
EntryAction DecideEntry(uint64_t index, uint64_t applied_index);

// The questions of the no-write path whose answers cost a read; asked only when a rule needs
// them. An error is the database's: the decision fails with it.
class UnwrittenEntryView {
 public:
  virtual ~UnwrittenEntryView() = default;
  // Whether this node holds any dead letter (they may hold the entry's rows back).
  virtual absl::StatusOr<bool> DeadLettersExist() = 0;
  // The shard's applied index, deferred entries included.
  virtual absl::StatusOr<uint64_t> AppliedIndex() = 0;
};

// An entry offered to the no-write path (ChangeApplier::ApplyWithoutWriting).
struct UnwrittenEntry {
  uint64_t index = 0;
  bool own_origin = false;        // Its changes were captured by this node (a known local node).
  bool transaction_open = false;  // A transaction is open on the applier's connection.
};

// In rule order:
//   1. not own_origin                                -> kNeedsTransaction (another node's
//                                                       changes write)
//   2. transaction_open                              -> kNeedsTransaction (written there like
//                                                       any other; deferring would add state
//                                                       after the transaction wrote its own)
//   3. DeadLettersExist()                            -> kNeedsTransaction (Apply decides what
//                                                       they hold back)
//   4. index <= AppliedIndex()                       -> kSkipStale
//   5.                                               -> kApply
absl::StatusOr<EntryAction> DecideUnwrittenEntry(const UnwrittenEntry& entry,
                                                 UnwrittenEntryView& view);

// A table of an entry on the no-write path.
struct UnwrittenTable {
  absl::Status plan;                      // Not OK: the table is missing or differs here.
  bool other_unique_constraints = false;  // Its upserts may delete rows of other keys.
};

// Whether the no-write path can go on with the table's changes (its local change log must then
// be read; one that cannot be read needs the transaction too). A table that differs here holds
// dead letters or own changes of a gone table, and one with another UNIQUE constraint may lose
// rows the local change index does not see: both need the transaction.
bool TableMayGoUnwritten(const UnwrittenTable& table);

// ---- Changes ----

// What to do with one change.
enum class ApplyAction {
  kSkipDuplicate,   // Applied before (at or below the dedupe state): a re-proposal.
  kSkipSuperseded,  // A local change of its row comes later in the shard's order.
  kNothingToWrite,  // An own change whose row already holds it (or whose table is gone here).
  kQueueBehind,     // Dead letter `blocker` of its row (or snapshot rows of its table) waits.
  kDeadLetter,      // It cannot apply here: `error` says why.
  kWrite,           // Write it.
  // Write only the columns that later local changes of its row do not carry (ApplyView); they
  // lose to it when they apply (they were made without seeing it), so it is also held
  // (row_versions.h) and written whole then.
  kWriteUncarried,
  // It was made without seeing the version its row has in the shard, another node's change
  // (row_versions.h): it loses, and is kept as a conflict (conflict_store.h).
  kKeepAsConflict,
  // Another node's change that wins in the shard while this node's changes of its row, not
  // applied there yet, were made without seeing it: they will lose to it, and until then the row
  // keeps what this node's application wrote. It is held (row_versions.h) and written when the
  // last of them lost.
  kHold,
  // Another node's change whose upsert would replace, through another UNIQUE index, a row of
  // another key that this node's change not applied in the shard yet holds (LocalOverwrite::
  // kOtherRow): that change comes later in the shard and replaces it on every node
  // (displaced_rows.h), so it is kept as a conflict here now; the row keeps what this node's
  // application wrote.
  kKeepDisplaced,
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

// Whether `action` is done without a write and without a dead letter: a duplicate, a
// superseded change, or an own change its row holds.
bool WritesNothing(ApplyAction action);

// What this node's changes of a row, not applied in its shard yet, will write over another
// node's change of the row: they come after it in the shard, on every node.
enum class LocalOverwrite {
  kNothing,  // There is none (or none that hides it: it is written whole).
  kAll,      // They write every column of its row.
  // They write a row its upsert would replace by another UNIQUE index: they replace it on every
  // node when they apply (kKeepDisplaced).
  kOtherRow,
  kSome,  // They carry only some of its columns (read before the others existed here): the
          // others end with its values on every node, so it writes those here.
};

// The questions about one change whose answers cost a read. Each is asked at most once per
// decision, and only when a rule needs it. An error is the database's: the decision fails.
class ApplyView {
 public:
  virtual ~ApplyView() = default;
  // For an own change: whether the local change log holds a newer change (a larger change id)
  // of the row it leaves. False when the table's local change log is not known.
  virtual absl::StatusOr<bool> NewerLocalChangeOfRow() = 0;
  // For another node's change: what the local changes not applied in its shard yet (above this
  // node's newest change of the table applied there) of a row it touches will write over it,
  // directly or through a row its upsert would replace by another UNIQUE index (kAll).
  // kNothing when there is no local node or the table's local change log is not known or empty.
  virtual absl::StatusOr<LocalOverwrite> LocalChangeNotYetApplied() = 0;
  // The dead letter the change must stay behind, or nullopt.
  virtual absl::StatusOr<std::optional<int64_t>> BlockingDeadLetter() = 0;
  // Whether every row the change writes already holds exactly what it writes.
  virtual absl::StatusOr<bool> RowAlreadyHolds() = 0;
  // For a change that names the version of its row it was made after (Change.prev): whether
  // its row's version in the shard here is another node's change than that one (it was made
  // concurrently, without seeing it). A version of the change's own origin never is, nor one
  // that carried fewer columns than the change (read before its origin had the others).
  virtual absl::StatusOr<bool> MadeWithoutSeeingItsRow() = 0;
};

// A change of a committed batch (also the no-write path, which needs no write for kWrite).
struct BatchChange {
  bool own = false;  // Captured by this node.
  int64_t change_id = 0;
  int64_t last_applied = 0;  // The dedupe state of its origin and table in its shard.
  absl::Status plan;         // Not OK: its table is missing or differs here.
  bool local_log = false;    // Its table's local change log is indexed (LocalChangeIndex).
  bool names_prev = false;   // It names the version of its row it was made after.
};

// In rule order:
//   1. change_id <= last_applied                     -> kSkipDuplicate
//   2. names_prev, MadeWithoutSeeingItsRow()         -> kKeepAsConflict (whatever its table is
//                                                       here: every node decides the same)
//   3. own, plan not OK                              -> kNothingToWrite (the row is what this
//                                                       node's application left)
//   4. plan OK, own, NewerLocalChangeOfRow()         -> kSkipSuperseded
//      plan OK, not own, LocalChangeNotYetApplied()
//                        kAll                        -> kHold
//                        kOtherRow                   -> kKeepDisplaced
//   5. BlockingDeadLetter()                          -> kQueueBehind
//   6. plan not OK                                   -> kDeadLetter (plan)
//   7. own, local_log, RowAlreadyHolds()             -> kNothingToWrite
//   8. LocalChangeNotYetApplied() was kSome          -> kWriteUncarried
//   9.                                               -> kWrite
absl::StatusOr<ApplyDecision> DecideBatchChange(const BatchChange& change, ApplyView& view);

// A dead letter tried again: retried by an operator, or carried by a snapshot being installed.
// Dedupe does not apply (a dead letter counted as applied when it was recorded).
struct DeadLetterChange {
  bool undecodable = false;    // A Raft entry kept as it came (no table): nothing to try.
  absl::Status readable;       // Not OK: what it holds cannot be read (undecodable included).
  bool snapshot_rows = false;  // Snapshot rows of a table, not a change.
  bool own = false;            // A change captured by this node.
  absl::Status plan;           // A change's: not OK when its table is missing or differs here.
};

// In rule order:
//   1. undecodable                                   -> kDeadLetter (readable): it holds back
//                                                       no row and no row holds it back
//   2. BlockingDeadLetter()                          -> kQueueBehind
//   3. not readable                                  -> kDeadLetter (readable)
//   4. snapshot rows                                 -> kWrite (they replace the table's rows)
//   5. own, NewerLocalChangeOfRow()                  -> kSkipSuperseded (even when its table
//                                                       changed here since: that newer change
//                                                       is what the row ends with)
//   6. plan not OK                                   -> kDeadLetter (plan)
//   7. not own, LocalChangeNotYetApplied() kAll      -> kSkipSuperseded
//                                          kOtherRow -> kKeepDisplaced
//                                          kSome     -> kWriteUncarried
//   8.                                               -> kWrite
absl::StatusOr<ApplyDecision> DecideDeadLetter(const DeadLetterChange& change, ApplyView& view);

// ---- Snapshot rows ----

// A table of a shard whose rows a snapshot being installed replaces.
struct SnapshotTable {
  bool local_node = false;  // This node knows its id (it has own changes).
  // The newest change of this node to the table that the snapshot's dedupe state counts, 0 if
  // none: the snapshot's rows hold every own change up to it (a shard applies one origin's
  // changes of a table in change-id order).
  int64_t own_held = 0;
};

// The change id above which a change of this node still in its local change log keeps its row
// as it is here, or nullopt when no row is kept. Such a change comes later in the shard's
// order than the snapshot and will apply here as an own change its row holds: replacing the
// row would show the application an older version of a row it wrote.
std::optional<int64_t> KeepRowsWithOwnChangesAbove(const SnapshotTable& table);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_APPLY_DECIDER_H_
