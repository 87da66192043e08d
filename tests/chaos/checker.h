// Checker: reads every node's database once the cluster has settled and judges the run.
//
// Properties, each with a verdict:
//   convergence      every replicated table (owned, hot) holds the same rows, values and
//                    storage classes on every node (ordered per-table digests; a row diff
//                    when they differ).
//   no lost write    every `owned` row a writer's last committed change left (value and BLOB
//                    bytes) is on every node exactly. A writer alone changes its rows, so its
//                    last local commit is the last change of that row in its shard's order:
//                    anything else on a node is a lost (or reordered) write.
//   no resurrection  no `owned` row that its writer deleted or moved away (key change), and
//                    no row no writer ever wrote, is on any node.
//   hot rows valid   each `hot` row on a node holds a value some writer committed for that id
//                    (concurrent writers: any winner is fine, made-up values are not); an
//                    absent row had a committed delete.
//   no dead letters  `__marmot__dead_letters` is empty on every node (the schema is the same
//                    everywhere, so nothing should fail to apply).
#ifndef MARMOT_TESTS_CHAOS_CHECKER_H_
#define MARMOT_TESTS_CHAOS_CHECKER_H_

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tests/chaos/workload.h"

namespace marmot::chaos {

// One node's replicated tables, read in one read transaction.
struct NodeState {
  bool ok = false;  // false when the database could not be read
  std::string error;
  std::map<std::pair<int, int64_t>, OwnedRow> owned;
  std::map<int64_t, std::string> hot;  // id -> v|who|n, each value quoted with its type
  // table -> ordered digest of every row (values with their storage class)
  std::map<std::string, uint64_t> digests;
  // table -> key -> row, as SQL literals (for diffs)
  std::map<std::string, std::map<std::string, std::string>> rows;
  int64_t dead_letters = 0;
  std::string quick_check;  // what PRAGMA quick_check said: "ok" for an intact file
};

NodeState ReadNode(const std::string& db_path);

struct Verdict {
  std::string property;
  bool pass = false;
  std::string detail;
};

struct CheckReport {
  std::vector<Verdict> verdicts;
  bool all_pass() const;
  std::string ToString() const;
};

// Polls ReadNode on every database until they agree for `stable_polls` consecutive polls (one
// a second) and the owned table matches `model`, or `timeout` passes. Returns the last states.
std::vector<NodeState> WaitForSettle(const std::vector<std::string>& db_paths,
                                     const std::map<std::pair<int, int64_t>, OwnedRow>& model,
                                     std::chrono::milliseconds timeout, int stable_polls);

CheckReport Check(const std::vector<NodeState>& nodes,
                  const std::map<std::pair<int, int64_t>, OwnedRow>& model,
                  const std::vector<WriteRecord>& history);

}  // namespace marmot::chaos

#endif  // MARMOT_TESTS_CHAOS_CHECKER_H_
