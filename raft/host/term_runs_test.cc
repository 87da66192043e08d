#include "raft/host/term_runs.h"

#include <gtest/gtest.h>

namespace marmot::raft::host {
namespace {

TermRuns Log(uint64_t first, std::initializer_list<uint64_t> terms) {
  TermRuns runs;
  uint64_t i = first;
  for (uint64_t t : terms) runs.Add(i++, t);
  return runs;
}

TEST(TermRunsTest, AnswersEveryRecordedIndexAndNothingElse) {
  TermRuns runs = Log(5, {1, 1, 2, 2, 2, 5});
  EXPECT_EQ(runs.size(), 3u);
  const std::optional<uint64_t> want[] = {std::nullopt, 1, 1, 2, 2, 2, 5, std::nullopt};
  for (uint64_t i = 4; i <= 11; ++i) EXPECT_EQ(runs.Term(i), want[i - 4]) << "index " << i;
}

TEST(TermRunsTest, ATruncatedTailIsForgottenAndRewritten) {
  TermRuns runs = Log(1, {1, 1, 2, 2, 3});
  runs.TruncateFrom(4);
  EXPECT_EQ(runs.Term(3), 2u);
  EXPECT_EQ(runs.Term(4), std::nullopt);
  runs.Add(4, 4);
  runs.Add(5, 4);
  EXPECT_EQ(runs.Term(4), 4u);
  EXPECT_EQ(runs.Term(5), 4u);
  EXPECT_EQ(runs.size(), 3u);
  runs.TruncateFrom(3);  // at a run's first index: the run goes
  EXPECT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs.Term(2), 1u);
  runs.TruncateFrom(1);
  EXPECT_EQ(runs.Term(1), std::nullopt);
  runs.Add(7, 9);  // empty again: any index may start it
  EXPECT_EQ(runs.Term(7), 9u);
}

TEST(TermRunsTest, CompactionDropsWholeRunsAndCutsTheFirst) {
  TermRuns runs = Log(1, {1, 1, 2, 2, 3, 3});
  runs.DropThrough(3);
  EXPECT_EQ(runs.Term(3), std::nullopt);
  EXPECT_EQ(runs.Term(4), 2u);
  EXPECT_EQ(runs.Term(5), 3u);
  EXPECT_EQ(runs.size(), 2u);
  runs.DropThrough(4);
  EXPECT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs.Term(5), 3u);
  runs.DropThrough(6);
  EXPECT_EQ(runs.Term(6), std::nullopt);
  runs.Add(7, 3);
  EXPECT_EQ(runs.Term(7), 3u);
}

}  // namespace
}  // namespace marmot::raft::host
