// The decider's rules as tables: given the facts and the view's answers, the action it takes and
// the questions it asked on the way (an expensive question asked without need would cost a read
// per change or per entry).
#include "replicator/apply_decider.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace marmot::replicator {
namespace {

// The questions a fake view was asked, in order, a letter each; once told, every question fails
// as the database would.
class Questions {
 public:
  const std::string& asked() const { return asked_; }
  void FailQuestions() { fail_ = true; }

 protected:
  template <typename T>
  absl::StatusOr<T> Ask(char question, T answer) {
    asked_.push_back(question);
    if (fail_) return absl::UnavailableError("database is locked");
    return answer;
  }

 private:
  std::string asked_;
  bool fail_ = false;
};

// Answers from fixed values and records which questions were asked, in order: 'N'
// (NewerLocalChangeOfRow), 'P' (LocalChangeNotYetApplied: a pending one), 'B'
// (BlockingDeadLetter), 'H' (RowAlreadyHolds), 'U' (MadeWithoutSeeingItsRow: `unseen`). Both
// local-change questions answer `later` (a pending local change writes every column); `some`
// makes 'P' answer that it carries only some, `other_row` that it changes a row the upsert
// would replace.
class FakeView final : public ApplyView, public Questions {
 public:
  FakeView(bool later, std::optional<int64_t> blocker, bool holds, bool some = false)
      : later_(later), blocker_(blocker), holds_(holds), some_(some) {}
  bool unseen = false;
  bool other_row = false;
  absl::StatusOr<bool> MadeWithoutSeeingItsRow() override { return Ask('U', unseen); }
  absl::StatusOr<bool> NewerLocalChangeOfRow() override { return Ask('N', later_); }
  absl::StatusOr<LocalOverwrite> LocalChangeNotYetApplied() override {
    return Ask('P', other_row ? LocalOverwrite::kOtherRow
                    : later_  ? LocalOverwrite::kAll
                    : some_   ? LocalOverwrite::kSome
                              : LocalOverwrite::kNothing);
  }
  absl::StatusOr<std::optional<int64_t>> BlockingDeadLetter() override {
    return Ask('B', blocker_);
  }
  absl::StatusOr<bool> RowAlreadyHolds() override { return Ask('H', holds_); }

 private:
  bool later_;
  std::optional<int64_t> blocker_;
  bool holds_;
  bool some_;
};

const absl::Status kTableDiffers = absl::FailedPreconditionError("table t differs on this node");

std::string ActionName(ApplyAction a) {
  switch (a) {
    case ApplyAction::kSkipDuplicate:
      return "duplicate";
    case ApplyAction::kSkipSuperseded:
      return "superseded";
    case ApplyAction::kNothingToWrite:
      return "nothing";
    case ApplyAction::kQueueBehind:
      return "queue";
    case ApplyAction::kDeadLetter:
      return "dead letter";
    case ApplyAction::kWrite:
      return "write";
    case ApplyAction::kWriteUncarried:
      return "write uncarried";
    case ApplyAction::kKeepAsConflict:
      return "conflict";
    case ApplyAction::kHold:
      return "hold";
    case ApplyAction::kKeepDisplaced:
      return "displaced";
  }
  return "?";
}

struct BatchRow {
  const char* scenario;
  // Facts.
  bool own;
  int64_t change_id, last_applied;
  bool plan_ok, local_log;
  // The view's answers.
  bool later;
  std::optional<int64_t> blocker;
  bool holds;
  // Expected.
  ApplyAction action;
  const char* asked;
};

constexpr auto kDup = ApplyAction::kSkipDuplicate;
constexpr auto kSuperseded = ApplyAction::kSkipSuperseded;
constexpr auto kNothing = ApplyAction::kNothingToWrite;
constexpr auto kQueue = ApplyAction::kQueueBehind;
constexpr auto kDead = ApplyAction::kDeadLetter;
constexpr auto kWrite = ApplyAction::kWrite;
constexpr std::optional<int64_t> kNone = std::nullopt;

const BatchRow kBatchRules[] = {
    // scenario                                   own  id last  plan  log   later  blk   holds
    {"re-proposal, own", true, 5, 5, true, true, true, 7, true, kDup, ""},
    {"re-proposal, other node", false, 4, 5, false, false, true, 7, true, kDup, ""},
    {"own, table gone here", true, 6, 5, false, false, true, 7, false, kNothing, ""},
    {"own, a newer local change of the row", true, 6, 5, true, true, true, 7, true, kSuperseded,
     "N"},
    {"other, a local change not yet applied", false, 6, 5, true, true, true, 7, false,
     ApplyAction::kHold, "P"},
    {"other, row behind a dead letter", false, 6, 5, true, true, false, 7, false, kQueue, "PB"},
    {"other, table differs, behind a dead letter", false, 6, 5, false, false, true, 7, false,
     kQueue, "B"},
    {"other, table differs here", false, 6, 5, false, false, true, kNone, false, kDead, "B"},
    {"other, nothing in the way", false, 6, 5, true, true, false, kNone, true, kWrite, "PB"},
    {"other, the row holds it already", false, 6, 5, true, true, false, kNone, true, kWrite, "PB"},
    {"own, row behind a dead letter", true, 6, 5, true, true, false, 7, true, kQueue, "NB"},
    {"own, the row holds it already", true, 6, 5, true, true, false, kNone, true, kNothing, "NBH"},
    {"own, the row changed since", true, 6, 5, true, true, false, kNone, false, kWrite, "NBH"},
    {"own, table without a local log", true, 6, 5, true, false, false, kNone, true, kWrite, "NB"},
    {"own, change id below the dedupe state", true, 2, 5, true, true, false, kNone, false, kDup,
     ""},
};

TEST(ApplyDeciderTest, BatchChangeRules) {
  for (const BatchRow& row : kBatchRules) {
    SCOPED_TRACE(row.scenario);
    FakeView view(row.later, row.blocker, row.holds);
    absl::StatusOr<ApplyDecision> d =
        DecideBatchChange({.own = row.own,
                           .change_id = row.change_id,
                           .last_applied = row.last_applied,
                           .plan = row.plan_ok ? absl::OkStatus() : kTableDiffers,
                           .local_log = row.local_log},
                          view);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(ActionName(d->action), ActionName(row.action));
    EXPECT_EQ(view.asked(), row.asked);
    if (row.action == kQueue) {
      EXPECT_EQ(d->blocker, *row.blocker);
    }
    if (row.action == kDead) {
      EXPECT_EQ(d->error, kTableDiffers);
    }
  }
}

struct DeadLetterRow {
  const char* scenario;
  // Facts.
  bool undecodable, readable, snapshot_rows, own, plan_ok;
  // The view's answers.
  bool later;
  std::optional<int64_t> blocker;
  // Expected.
  ApplyAction action;
  const char* asked;
};

const absl::Status kUnreadable = absl::FailedPreconditionError("does not hold one change");

const DeadLetterRow kDeadLetterRules[] = {
    // scenario                                undec  read   rows   own    plan   later  blocker
    {"behind an earlier one of the row", false, true, false, true, true, true, 3, kQueue, "B"},
    {"unreadable, behind snapshot rows", false, false, false, false, true, false, 3, kQueue, "B"},
    {"unreadable", false, false, false, false, true, false, kNone, kDead, "B"},
    {"undecodable entry: kept untried", true, false, false, false, true, false, kNone, kDead, ""},
    {"undecodable entry: nothing holds it", true, false, false, false, true, true, 3, kDead, ""},
    {"snapshot rows", false, true, true, false, true, true, kNone, kWrite, "B"},
    {"snapshot rows behind earlier ones", false, true, true, false, true, false, 2, kQueue, "B"},
    {"own, newer local change, table differs", false, true, false, true, false, true, kNone,
     kSuperseded, "BN"},
    {"own, table differs", false, true, false, true, false, false, kNone, kDead, "BN"},
    {"own, nothing newer", false, true, false, true, true, false, kNone, kWrite, "BN"},
    {"other, table differs", false, true, false, false, false, true, kNone, kDead, "B"},
    {"other, a local change not yet applied", false, true, false, false, true, true, kNone,
     kSuperseded, "BP"},
    {"other, nothing in the way", false, true, false, false, true, false, kNone, kWrite, "BP"},
};

TEST(ApplyDeciderTest, DeadLetterRules) {
  for (const DeadLetterRow& row : kDeadLetterRules) {
    SCOPED_TRACE(row.scenario);
    // A dead letter is never asked whether its row holds it: the answer would say write.
    FakeView view(row.later, row.blocker, /*holds=*/true);
    absl::StatusOr<ApplyDecision> d =
        DecideDeadLetter({.undecodable = row.undecodable,
                          .readable = row.readable ? absl::OkStatus() : kUnreadable,
                          .snapshot_rows = row.snapshot_rows,
                          .own = row.own,
                          .plan = row.plan_ok ? absl::OkStatus() : kTableDiffers},
                         view);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(ActionName(d->action), ActionName(row.action));
    EXPECT_EQ(view.asked(), row.asked);
    if (row.action == kQueue) {
      EXPECT_EQ(d->blocker, *row.blocker);
    }
    if (row.action == kDead) {
      EXPECT_EQ(d->error, row.readable ? kTableDiffers : kUnreadable);
    }
  }
}

TEST(ApplyDeciderTest, APendingLocalChangeCarryingSomeColumnsLeavesTheOthersToWrite) {
  const BatchChange other{.change_id = 6, .last_applied = 5, .local_log = true};
  {
    FakeView view(/*later=*/false, std::nullopt, /*holds=*/true, /*some=*/true);
    absl::StatusOr<ApplyDecision> d = DecideBatchChange(other, view);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(ActionName(d->action), "write uncarried");
    EXPECT_EQ(view.asked(), "PB");
  }
  {
    // Per-row order still comes first: behind a dead letter of the row, it waits whole.
    FakeView view(false, 3, true, true);
    absl::StatusOr<ApplyDecision> d = DecideBatchChange(other, view);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(ActionName(d->action), "queue");
    EXPECT_EQ(d->blocker, 3);
  }
  {
    // The table differs here: a dead letter, whatever the local change carries.
    FakeView view(false, std::nullopt, true, true);
    BatchChange differs = other;
    differs.plan = kTableDiffers;
    absl::StatusOr<ApplyDecision> d = DecideBatchChange(differs, view);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(ActionName(d->action), "dead letter");
    EXPECT_EQ(view.asked(), "B");
  }
  {
    FakeView view(false, std::nullopt, true, true);
    absl::StatusOr<ApplyDecision> d = DecideDeadLetter({}, view);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(ActionName(d->action), "write uncarried");
    EXPECT_EQ(view.asked(), "BP");
  }
}

TEST(ApplyDeciderTest, AChangeMadeWithoutSeeingItsRowsVersionIsKeptAsAConflictFirst) {
  // Asked first, whatever else holds: every node decides the same, whatever its table, its
  // local changes or its dead letters.
  for (bool own : {false, true}) {
    for (bool plan_ok : {false, true}) {
      SCOPED_TRACE(absl::StrCat("own ", own, ", plan ", plan_ok));
      FakeView view(/*later=*/true, /*blocker=*/3, /*holds=*/true);
      view.unseen = true;
      absl::StatusOr<ApplyDecision> d =
          DecideBatchChange({.own = own,
                             .change_id = 6,
                             .last_applied = 5,
                             .plan = plan_ok ? absl::OkStatus() : kTableDiffers,
                             .local_log = true,
                             .names_prev = true},
                            view);
      ASSERT_TRUE(d.ok());
      EXPECT_EQ(ActionName(d->action), "conflict");
      EXPECT_EQ(view.asked(), "U");
    }
  }
  {
    // A re-proposal is skipped before: it was decided once.
    FakeView view(false, std::nullopt, true);
    view.unseen = true;
    absl::StatusOr<ApplyDecision> d = DecideBatchChange(
        {.change_id = 5, .last_applied = 5, .local_log = true, .names_prev = true}, view);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(ActionName(d->action), "duplicate");
    EXPECT_EQ(view.asked(), "");
  }
  {
    // Seen: the rules go on as before.
    FakeView view(false, std::nullopt, true);
    absl::StatusOr<ApplyDecision> d = DecideBatchChange(
        {.change_id = 6, .last_applied = 5, .local_log = true, .names_prev = true}, view);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(ActionName(d->action), "write");
    EXPECT_EQ(view.asked(), "UPB");
  }
  {
    // Naming no version (an older origin, a rekey, a copied row): never asked.
    FakeView view(false, std::nullopt, true);
    view.unseen = true;
    absl::StatusOr<ApplyDecision> d =
        DecideBatchChange({.change_id = 6, .last_applied = 5, .local_log = true}, view);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(ActionName(d->action), "write");
    EXPECT_EQ(view.asked(), "PB");
  }
}

TEST(ApplyDeciderTest, AChangeALocalChangeOfAnotherRowWillReplaceIsKeptAsDisplaced) {
  FakeView view(false, std::nullopt, true);
  view.other_row = true;
  absl::StatusOr<ApplyDecision> d =
      DecideBatchChange({.change_id = 6, .last_applied = 5, .local_log = true}, view);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(ActionName(d->action), "displaced");
  EXPECT_FALSE(WritesNothing(d->action));
  FakeView retried(false, std::nullopt, true);
  retried.other_row = true;
  d = DecideDeadLetter({}, retried);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(ActionName(d->action), "displaced");
}

TEST(ApplyDeciderTest, AFailedQuestionFailsTheDecision) {
  FakeView batch_view(false, std::nullopt, true);
  batch_view.FailQuestions();
  absl::StatusOr<ApplyDecision> d = DecideBatchChange(
      {.own = true, .change_id = 2, .last_applied = 1, .local_log = true}, batch_view);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(batch_view.asked(), "N");

  FakeView dead_letter_view(false, std::nullopt, true);
  dead_letter_view.FailQuestions();
  d = DecideDeadLetter({}, dead_letter_view);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(dead_letter_view.asked(), "B");
}

// Entries.

std::string EntryName(EntryAction a) {
  switch (a) {
    case EntryAction::kSkipStale:
      return "stale";
    case EntryAction::kApply:
      return "apply";
    case EntryAction::kNeedsTransaction:
      return "needs transaction";
  }
  return "?";
}

struct EntryRow {
  const char* scenario;
  uint64_t index, applied_index;
  EntryAction action;
};

const EntryRow kEntryRules[] = {
    {"the next entry", 6, 5, EntryAction::kApply},
    {"an entry past a gap", 9, 5, EntryAction::kApply},
    {"the first entry of a shard", 1, 0, EntryAction::kApply},
    {"the entry applied last, again", 5, 5, EntryAction::kSkipStale},
    {"an older entry", 4, 5, EntryAction::kSkipStale},
    {"index 0 of a fresh shard", 0, 0, EntryAction::kSkipStale},
};

TEST(ApplyDeciderTest, EntryRules) {
  for (const EntryRow& row : kEntryRules) {
    SCOPED_TRACE(row.scenario);
    EXPECT_EQ(EntryName(DecideEntry(row.index, row.applied_index)), EntryName(row.action));
  }
}

// Records the questions asked: 'D' (DeadLettersExist), 'A' (AppliedIndex).
class FakeEntryView final : public UnwrittenEntryView, public Questions {
 public:
  FakeEntryView(bool dead_letters, uint64_t applied)
      : dead_letters_(dead_letters), applied_(applied) {}
  absl::StatusOr<bool> DeadLettersExist() override { return Ask('D', dead_letters_); }
  absl::StatusOr<uint64_t> AppliedIndex() override { return Ask('A', applied_); }

 private:
  bool dead_letters_;
  uint64_t applied_;
};

struct UnwrittenEntryRow {
  const char* scenario;
  // Facts.
  bool own_origin, transaction_open;
  uint64_t index;
  // The view's answers.
  bool dead_letters;
  uint64_t applied;
  // Expected.
  EntryAction action;
  const char* asked;
};

constexpr auto kStale = EntryAction::kSkipStale;
constexpr auto kApply = EntryAction::kApply;
constexpr auto kNeedsTxn = EntryAction::kNeedsTransaction;

const UnwrittenEntryRow kUnwrittenEntryRules[] = {
    // scenario                               own    txn    index dead   applied
    {"another node's entry", false, false, 6, false, 5, kNeedsTxn, ""},
    {"another node's stale entry", false, false, 5, false, 5, kNeedsTxn, ""},
    {"own, inside an open transaction", true, true, 6, false, 5, kNeedsTxn, ""},
    {"own, while dead letters exist", true, false, 6, true, 5, kNeedsTxn, "D"},
    {"own, stale, while dead letters exist", true, false, 5, true, 5, kNeedsTxn, "D"},
    {"own, stale", true, false, 5, false, 5, kStale, "DA"},
    {"own, the next entry", true, false, 6, false, 5, kApply, "DA"},
};

TEST(ApplyDeciderTest, UnwrittenEntryRules) {
  for (const UnwrittenEntryRow& row : kUnwrittenEntryRules) {
    SCOPED_TRACE(row.scenario);
    FakeEntryView view(row.dead_letters, row.applied);
    absl::StatusOr<EntryAction> a = DecideUnwrittenEntry({.index = row.index,
                                                          .own_origin = row.own_origin,
                                                          .transaction_open = row.transaction_open},
                                                         view);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(EntryName(*a), EntryName(row.action));
    EXPECT_EQ(view.asked(), row.asked);
  }
  FakeEntryView failing(false, 5);
  failing.FailQuestions();
  absl::StatusOr<EntryAction> a = DecideUnwrittenEntry({.index = 6, .own_origin = true}, failing);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(failing.asked(), "D");
}

TEST(ApplyDeciderTest, UnwrittenTableRules) {
  struct Row {
    const char* scenario;
    bool plan_ok, other_unique;
    bool may;
  };
  const Row rows[] = {
      {"a table as the changes know it", true, false, true},
      {"a table with another UNIQUE constraint", true, true, false},
      {"a table that differs or is gone here", false, false, false},
      {"both", false, true, false},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.scenario);
    EXPECT_EQ(TableMayGoUnwritten({.plan = row.plan_ok ? absl::OkStatus() : kTableDiffers,
                                   .other_unique_constraints = row.other_unique}),
              row.may);
  }
}

TEST(ApplyDeciderTest, OnlySkipsAndOwnRowsThatHoldTheirChangeWriteNothing) {
  EXPECT_TRUE(WritesNothing(kDup));
  EXPECT_TRUE(WritesNothing(kSuperseded));
  EXPECT_TRUE(WritesNothing(kNothing));
  EXPECT_FALSE(WritesNothing(kQueue));  // A dead letter is written.
  EXPECT_FALSE(WritesNothing(kDead));
  EXPECT_FALSE(WritesNothing(kWrite));
}

// Snapshot rows.

TEST(ApplyDeciderTest, SnapshotRowsKeptForOwnChangesTheSnapshotDoesNotHold) {
  struct Row {
    const char* scenario;
    bool local_node;
    int64_t own_held;
    std::optional<int64_t> above;
  };
  const Row rows[] = {
      {"no local node: every row is replaced", false, 7, std::nullopt},
      {"no local node, nothing held", false, 0, std::nullopt},
      {"the snapshot holds none of this node's changes", true, 0, 0},
      {"the snapshot holds this node's changes up to 7", true, 7, 7},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.scenario);
    EXPECT_EQ(KeepRowsWithOwnChangesAbove({.local_node = row.local_node, .own_held = row.own_held}),
              row.above);
  }
}

}  // namespace
}  // namespace marmot::replicator
