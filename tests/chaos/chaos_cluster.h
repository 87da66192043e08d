// ChaosCluster: N real `marmot` processes on loopback whose links all cross a LinkProxy, so a
// chaos run can crash (SIGKILL), pause (SIGSTOP), restart and partition them.
//
// For every pair i < j, node i (the dialer, see raft/host/grpc_transport.h) is given the
// address of proxy(i, j) for node j in its -bootstrap; node j lists node i's real address,
// which it never dials. The databases and the applications writing to them are not touched by
// faults: an application keeps committing while its marmot is down or paused.
#ifndef MARMOT_TESTS_CHAOS_CHAOS_CLUSTER_H_
#define MARMOT_TESTS_CHAOS_CHAOS_CLUSTER_H_

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/chaos/link_proxy.h"
#include "tests/testing/subprocess.h"

namespace marmot::chaos {

struct ChaosClusterOptions {
  std::string marmot_binary;
  // Folder for databases, raft folders and logs (created if absent).
  std::string dir;
  int nodes = 3;
  int shards = 4;
  int64_t snapshot_entries = 0;  // marmot's -snapshot-entries; 0: its default
  // SQL run on every database before marmot first starts.
  std::string schema;
  // tests/chaos/libchaos_disk.so, preloaded into every marmot for disk faults; empty: none.
  std::string disk_shim;
};

class ChaosCluster {
 public:
  explicit ChaosCluster(ChaosClusterOptions options);
  // Kills every node still running (after SIGCONT).
  ~ChaosCluster();

  // Creates the databases with the schema, starts every node and waits until each replicates.
  // False (with the logs in dir) when a node did not start within `timeout`.
  bool Start(std::chrono::milliseconds timeout);

  void StartNode(int id);
  void KillNode(int id);  // SIGKILL and reap: a crash.
  // SIGTERM, as an operator or Kubernetes stops a node; waits up to `grace` for it to end
  // (then SIGKILL). Returns its exit code, or nullopt when it had to be killed.
  std::optional<int> StopNode(int id, std::chrono::milliseconds grace);
  void PauseNode(int id);   // SIGSTOP
  void ResumeNode(int id);  // SIGCONT
  bool IsRunning(int id) const { return procs_[id - 1] != nullptr; }
  bool IsPaused(int id) const { return paused_[id - 1]; }
  // Nodes whose process ended without being killed by us (a crash or a refusal to run), with
  // their exit codes; they count as stopped from then on.
  std::vector<std::pair<int, int>> ReapExited();
  // Whether node `id` has logged that it replicates since it was last started.
  bool IsReplicating(int id) const;

  // Sets the link between nodes a and b (either order). For kStallForward / kStallBackward,
  // "forward" is from a to b.
  void SetLink(int a, int b, LinkMode mode);
  // Disk faults through the shim: every sync of node `id` sleeps `ms` (slow disk), or fails with
  // ENOSPC (full disk); ClearDisk ends either. Requires disk_shim.
  void SlowDisk(int id, int ms);
  void FullDisk(int id);
  void ClearDisk(int id);
  bool has_disk_shim() const { return !options_.disk_shim.empty(); }
  bool IsDiskFull(int id) const { return disk_full_[id - 1]; }

  // Every link back to kPass, every disk healthy, every paused node resumed, every stopped node
  // started.
  void HealAll();

  int nodes() const { return options_.nodes; }
  std::string db_path(int id) const;
  std::string log_path(int id) const;  // stderr of the current process of node `id`
  // Lines holding `text` in the logs of every process of every node so far.
  int CountLogLines(const std::string& text) const;
  const std::string& dir() const { return options_.dir; }

 private:
  ChaosClusterOptions options_;
  std::vector<int> ports_, pane_ports_;
  std::map<std::pair<int, int>, std::unique_ptr<LinkProxy>> proxies_;
  std::vector<std::unique_ptr<testing::Subprocess>> procs_;
  std::vector<bool> paused_;
  std::vector<bool> disk_full_;
  std::vector<int> starts_;
};

}  // namespace marmot::chaos

#endif  // MARMOT_TESTS_CHAOS_CHAOS_CLUSTER_H_
