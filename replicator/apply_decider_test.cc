// The decider's rules as tables: given the facts and the view's answers, the action it takes and
// the questions it asked on the way (an expensive question asked without need would cost a read
// per change).
#include "replicator/apply_decider.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace marmot::replicator {
namespace {

// Answers from fixed values and records which questions were asked, in order: 'L'
// (LaterLocalChange), 'B' (BlockingDeadLetter), 'H' (RowAlreadyHolds).
class FakeView final : public ApplyView {
 public:
  FakeView(bool later, std::optional<int64_t> blocker, bool holds)
      : later_(later), blocker_(blocker), holds_(holds) {}
  absl::StatusOr<bool> LaterLocalChange() override { return Ask('L', later_); }
  absl::StatusOr<std::optional<int64_t>> BlockingDeadLetter() override {
    return Ask('B', blocker_);
  }
  absl::StatusOr<bool> RowAlreadyHolds() override { return Ask('H', holds_); }
  const std::string& asked() const { return asked_; }
  // From now on every question fails as the database would.
  void FailQuestions() { fail_ = true; }

 private:
  template <typename T>
  absl::StatusOr<T> Ask(char question, T answer) {
    asked_.push_back(question);
    if (fail_) return absl::UnavailableError("database is locked");
    return answer;
  }

  bool later_;
  std::optional<int64_t> blocker_;
  bool holds_;
  std::string asked_;
  bool fail_ = false;
};

const absl::Status kTableDiffers = absl::FailedPreconditionError("table t differs on this node");

std::string ActionName(ApplyAction a) {
  switch (a) {
    case ApplyAction::kSkipDuplicate: return "duplicate";
    case ApplyAction::kSkipSuperseded: return "superseded";
    case ApplyAction::kNothingToWrite: return "nothing";
    case ApplyAction::kQueueBehind: return "queue";
    case ApplyAction::kDeadLetter: return "dead letter";
    case ApplyAction::kWrite: return "write";
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
    {"re-proposal, own",                          true,  5, 5, true,  true,  true,  7,    true,
     kDup, ""},
    {"re-proposal, other node",                   false, 4, 5, false, false, true,  7,    true,
     kDup, ""},
    {"own, table gone here",                      true,  6, 5, false, false, true,  7,    false,
     kNothing, ""},
    {"own, a newer local change of the row",      true,  6, 5, true,  true,  true,  7,    true,
     kSuperseded, "L"},
    {"other, a local change not yet applied",     false, 6, 5, true,  true,  true,  7,    false,
     kSuperseded, "L"},
    {"other, row behind a dead letter",           false, 6, 5, true,  true,  false, 7,    false,
     kQueue, "LB"},
    {"other, table differs, behind a dead letter", false, 6, 5, false, false, true, 7,    false,
     kQueue, "B"},
    {"other, table differs here",                 false, 6, 5, false, false, true,  kNone, false,
     kDead, "B"},
    {"other, nothing in the way",                 false, 6, 5, true,  true,  false, kNone, true,
     kWrite, "LB"},
    {"own, row behind a dead letter",             true,  6, 5, true,  true,  false, 7,    true,
     kQueue, "LB"},
    {"own, the row holds it already",             true,  6, 5, true,  true,  false, kNone, true,
     kNothing, "LBH"},
    {"own, the row changed since",                true,  6, 5, true,  true,  false, kNone, false,
     kWrite, "LBH"},
    {"own, table without a local log",            true,  6, 5, true,  false, false, kNone, true,
     kWrite, "LB"},
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
  bool readable, snapshot_rows, own, plan_ok;
  // The view's answers.
  bool later;
  std::optional<int64_t> blocker;
  // Expected.
  ApplyAction action;
  const char* asked;
};

const absl::Status kUnreadable = absl::FailedPreconditionError("does not hold one change");

const DeadLetterRow kDeadLetterRules[] = {
    // scenario                                  read   rows   own    plan   later  blocker
    {"behind an earlier one of the row",         true,  false, true,  true,  true,  3,
     kQueue, "B"},
    {"unreadable, behind snapshot rows",         false, false, false, true,  false, 3,
     kQueue, "B"},
    {"unreadable",                               false, false, false, true,  false, kNone,
     kDead, "B"},
    {"snapshot rows",                            true,  true,  false, true,  true,  kNone,
     kWrite, "B"},
    {"own, newer local change, table differs",   true,  false, true,  false, true,  kNone,
     kSuperseded, "BL"},
    {"own, table differs",                       true,  false, true,  false, false, kNone,
     kDead, "BL"},
    {"own, nothing newer",                       true,  false, true,  true,  false, kNone,
     kWrite, "BL"},
    {"other, table differs",                     true,  false, false, false, true,  kNone,
     kDead, "B"},
    {"other, a local change not yet applied",    true,  false, false, true,  true,  kNone,
     kSuperseded, "BL"},
    {"other, nothing in the way",                true,  false, false, true,  false, kNone,
     kWrite, "BL"},
};

TEST(ApplyDeciderTest, DeadLetterRules) {
  for (const DeadLetterRow& row : kDeadLetterRules) {
    SCOPED_TRACE(row.scenario);
    // A dead letter is never asked whether its row holds it: the answer would say write.
    FakeView view(row.later, row.blocker, /*holds=*/true);
    absl::StatusOr<ApplyDecision> d =
        DecideDeadLetter({.readable = row.readable ? absl::OkStatus() : kUnreadable,
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

TEST(ApplyDeciderTest, AFailedQuestionFailsTheDecision) {
  FakeView batch_view(false, std::nullopt, true);
  batch_view.FailQuestions();
  absl::StatusOr<ApplyDecision> d = DecideBatchChange(
      {.own = true, .change_id = 2, .last_applied = 1, .local_log = true}, batch_view);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(batch_view.asked(), "L");

  FakeView dead_letter_view(false, std::nullopt, true);
  dead_letter_view.FailQuestions();
  d = DecideDeadLetter({}, dead_letter_view);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(dead_letter_view.asked(), "B");
}

}  // namespace
}  // namespace marmot::replicator
