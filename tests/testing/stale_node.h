// The stale-node scenario of the UNIQUE-value tests (tests/unique_values_test,
// tests/unique_hunt_test): a cluster of three real marmot nodes; node 3 is stopped while node 1
// writes, its application writes its own file meanwhile (often a value node 1 just gave another
// row), and it comes back. Then the checks every such scenario makes of the settled cluster: the
// rows every node ends with, the same conflicts kept on every node, each row written present or
// kept on every node, no dead letters.
#ifndef MARMOT_TESTS_TESTING_STALE_NODE_H_
#define MARMOT_TESTS_TESTING_STALE_NODE_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>

#include "tests/testing/local_cluster.h"

namespace marmot::testing {

struct StaleNodeScenario {
  std::string schema;  // With a table `account (id ...)`.
  int shards = 1;
  std::string start;       // Node 1's writes first, waited for on every node.
  std::string while_down;  // Node 1's writes while node 3 is down, waited for on node 2.
  std::string stale;       // Node 3's application's writes meanwhile, to its own file.
  // What the nodes' rows are compared by.
  std::string rows_query = "SELECT id, email, name FROM account ORDER BY id;";
  // What the nodes' conflicts are compared by (what names a conflict on every node).
  std::string kept_query =
      "SELECT tbl, key, origin, change_id, winner_origin FROM \"__marmot__conflicts\" "
      "ORDER BY tbl, key, origin, change_id;";
};

class StaleNode {
 public:
  explicit StaleNode(StaleNodeScenario s);

  LocalCluster& cluster() { return c_; }
  const StaleNodeScenario& scenario() const { return s_; }

  // Starts the cluster and plays the scenario until node 3 is back and ready; a failure says
  // where it stopped.
  ::testing::AssertionResult Play();

  // Each of `ids` is a row of `account` on every node, or the key of a conflict kept there.
  ::testing::AssertionResult EveryIdAccountedFor(const std::set<int64_t>& ids) const;

  // The checks of a settled scenario: every node ends with `rows` (by rows_query), keeps the
  // same conflicts (by kept_query), accounts for each of `ids`, and has no dead letters.
  void ExpectSettled(const std::string& rows, const std::set<int64_t>& ids) const;

 private:
  const StaleNodeScenario s_;
  LocalCluster c_;
};

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_STALE_NODE_H_
