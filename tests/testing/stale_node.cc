#include "tests/testing/stale_node.h"

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace marmot::testing {

using namespace std::chrono_literals;

namespace {

constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";

}  // namespace

StaleNode::StaleNode(StaleNodeScenario s)
    : s_(std::move(s)), c_({.nodes = 3, .shards = s_.shards, .schema = s_.schema}) {}

::testing::AssertionResult StaleNode::Play() {
  c_.Start();
  if (!s_.start.empty()) {
    c_.Sql(1, s_.start);
    if (!c_.WaitForEverywhere(s_.rows_query, c_.Sql(1, s_.rows_query), 30s)) {
      return ::testing::AssertionFailure() << "node 1's first rows did not reach every node\n"
                                           << c_.OnEveryNode(s_.rows_query);
    }
  }
  if (const int code = c_.StopNode(3); code != 0) {
    return ::testing::AssertionFailure() << "node 3 stopped with " << code << "\n" << c_.log(3);
  }
  c_.Sql(1, s_.while_down);
  const std::string after = c_.Sql(1, s_.rows_query);
  if (!WaitFor([&] { return c_.Sql(2, s_.rows_query) == after; }, 30s)) {
    return ::testing::AssertionFailure() << "node 1's writes did not reach node 2\n"
                                         << c_.OnEveryNode(s_.rows_query);
  }
  c_.Sql(3, s_.stale);
  c_.StartNode(3);
  if (!c_.WaitUntilReady(3, 60s)) {
    return ::testing::AssertionFailure() << "node 3 is not ready again\n" << c_.log(3);
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult StaleNode::EveryIdAccountedFor(const std::set<int64_t>& ids) const {
  for (int node = 1; node <= c_.nodes(); ++node) {
    std::set<int64_t> found;
    for (const char* query : {"SELECT id FROM account;",
                              "SELECT key FROM \"__marmot__conflicts\" WHERE tbl = 'account';"}) {
      for (absl::string_view line : absl::StrSplit(c_.Sql(node, query), '\n', absl::SkipEmpty())) {
        int64_t id = 0;
        if (absl::SimpleAtoi(line, &id)) found.insert(id);
      }
    }
    for (int64_t id : ids) {
      if (found.count(id) == 0) {
        return ::testing::AssertionFailure()
               << "node " << node << ": row " << id << " neither present nor kept\n"
               << c_.OnEveryNode(s_.rows_query) << c_.OnEveryNode(s_.kept_query);
      }
    }
  }
  return ::testing::AssertionSuccess();
}

void StaleNode::ExpectSettled(const std::string& rows, const std::set<int64_t>& ids) const {
  EXPECT_TRUE(c_.WaitForEverywhere(s_.rows_query, rows, 30s))
      << c_.OnEveryNode(s_.rows_query) << c_.OnEveryNode(s_.kept_query);
  EXPECT_TRUE(c_.WaitForSame(s_.kept_query, 30s)) << c_.OnEveryNode(s_.kept_query);
  EXPECT_TRUE(EveryIdAccountedFor(ids));
  EXPECT_TRUE(c_.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c_.OnEveryNode(kDeadLetters);
}

}  // namespace marmot::testing
