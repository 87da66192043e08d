// Test support: a cluster of real `marmot` processes on loopback, each beside its own SQLite
// file, for end-to-end and fault tests.
#ifndef MARMOT_TESTS_TESTING_LOCAL_CLUSTER_H_
#define MARMOT_TESTS_TESTING_LOCAL_CLUSTER_H_

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/subprocess.h"

namespace marmot::testing {

struct ClusterOptions {
  int nodes = 3;
  int shards = 4;
  // SQL run with the sqlite3 shell on every node's database before marmot starts.
  std::string schema;
  std::vector<std::string> extra_flags;
  // Per node id: SQL run with the sqlite3 shell on that node's database after the schema,
  // before marmot starts (rows that existed before replication).
  std::map<int, std::string> rows_before;
};

class LocalCluster {
 public:
  // Picks free loopback ports and a folder under TEST_TMPDIR; starts nothing yet.
  explicit LocalCluster(ClusterOptions options);
  ~LocalCluster();

  // Creates the databases (with the schema), starts every node and waits until each has put
  // capture on its tables (writes made before that are not replicated), except the nodes in
  // `refused`, which are expected to refuse to start (see WaitForExit).
  void Start(const std::set<int>& refused = {});
  // Waits up to `timeout` for node `id`'s process to end by itself; returns its exit code, or
  // nullopt if it still runs. Once it ended, its log stays readable and it can be started again.
  std::optional<int> WaitForExit(int id, std::chrono::milliseconds timeout);
  // Waits until node `id` logged that it replicates; false after `timeout`.
  bool WaitUntilReplicating(int id, std::chrono::milliseconds timeout) const;
  // Waits until node `id`'s `/readyz` answers 200 (every shard has a leader and this node has
  // applied what was committed when it looked); false after `timeout`.
  bool WaitUntilReady(int id, std::chrono::milliseconds timeout) const;
  // Starts node `id` (1-based) with the flags it always has, then its node flags.
  void StartNode(int id);
  // Flags for node `id` alone from its next start on, after the cluster's (so they win).
  void SetNodeFlags(int id, std::vector<std::string> flags) { node_flags_[id] = std::move(flags); }
  // Creates one more node (database with the schema, no rows; or an empty file without
  // `with_schema`) and starts it with -join; it serves nothing until the cluster adds it.
  // Returns its id.
  int StartJoiningNode(bool with_schema = true);
  // SIGTERM and wait; returns the exit code.
  int StopNode(int id);
  // SIGKILL, as a crash.
  void KillNode(int id);
  bool IsRunning(int id) const { return procs_[id - 1] != nullptr; }

  std::string db_path(int id) const;
  std::string raft_path(int id) const;   // The node's -raft-path.
  std::string raft_store(int id) const;  // Its Raft store inside: <raft-path>/node-<id>.
  std::string log(int id) const;         // What the node wrote to stderr so far.
  int nodes() const { return static_cast<int>(procs_.size()); }
  // The control pane's one port: gRPC and REST.
  int pane_port(int id) const { return pane_ports_[id - 1]; }

  // Runs `sql` on node `id`'s database with the sqlite3 shell; returns its output.
  std::string Sql(int id, const std::string& sql) const;
  // host:port of node `id`'s -bind.
  std::string address(int id) const;

  // Waits until `query` prints the same on every node's database; returns whether it did.
  bool WaitForSame(const std::string& query, std::chrono::milliseconds timeout) const;
  // Waits until `query` prints `expected` on every node's database; returns whether it did.
  bool WaitForEverywhere(const std::string& query, const std::string& expected,
                         std::chrono::milliseconds timeout) const;
  // What `query` prints on each node ("node N:" before each), for failure messages.
  std::string OnEveryNode(const std::string& query) const;

 private:
  ClusterOptions options_;
  std::string dir_;
  std::vector<int> ports_, pane_ports_;
  std::vector<std::unique_ptr<Subprocess>> procs_;
  std::vector<bool> joining_;
  std::map<int, std::vector<std::string>> node_flags_;
  std::map<int, std::string> exited_logs_;  // The logs of nodes that ended by themselves.
};

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_LOCAL_CLUSTER_H_
