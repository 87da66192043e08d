// FaultInjector: a seeded schedule of faults against a ChaosCluster.
//
// Each round waits a gap (0.5–2.5 s), then injects one fault, or two at once one time in four,
// holds them 1–5 s and heals them:
//   kill       SIGKILL one node, restart it after the hold (its Raft folder and database stay)
//   kill-all   SIGKILL every node at once, restart them all
//   stop       SIGTERM one node (as a rolling restart does), which must drain and exit 0 within
//              30 s; restart it after the hold. Another end counts as a bad stop
//   pause      SIGSTOP one node, SIGCONT after the hold
//   isolate    cut every link of one node (both directions)
//   one-way    hold the traffic of one link in one direction
//   slow-disk  every fsync/fdatasync of one node sleeps 20–200 ms (LD_PRELOAD shim)
//   disk-full  every fsync/fdatasync of one node fails with ENOSPC (off by default); a node
//              that exits meanwhile is restarted and counted apart from crashes
//   outage     SIGKILL one node and keep it down for 20-40 s while the rounds go on around it
//              (off by default): long enough for the others to compact their Raft logs past it
//              (with a small -snapshot-entries), so that it catches up by installing snapshots
// The choice of faults, nodes and durations comes from the seed alone; a replay with the same
// seed injects the same sequence (wall-clock timing of the writers still varies). A node whose
// process ends on its own is logged as a crash, counted, and restarted.
#ifndef MARMOT_TESTS_CHAOS_FAULT_INJECTOR_H_
#define MARMOT_TESTS_CHAOS_FAULT_INJECTOR_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/chaos/chaos_cluster.h"

namespace marmot::chaos {

struct FaultOptions {
  bool kill = true;
  bool stop = true;
  bool pause = true;
  bool partition = true;   // isolate and one-way
  bool slow_disk = true;   // needs the cluster's disk shim
  bool disk_full = false;  // needs the cluster's disk shim
  bool outage = false;
  int min_outage_ms = 20000, max_outage_ms = 40000;
  int min_hold_ms = 1000, max_hold_ms = 5000;
  int min_gap_ms = 500, max_gap_ms = 2500;
};

class FaultInjector {
 public:
  FaultInjector(ChaosCluster* cluster, uint64_t seed, FaultOptions options);

  // Injects faults until `duration` passes, then heals everything (HealAll).
  void Run(std::chrono::milliseconds duration);
  // Reaps nodes that ended on their own and restarts them; returns how many.
  int RestartCrashed();

  const std::map<std::string, int>& counts() const { return counts_; }
  const std::vector<std::string>& events() const { return events_; }
  int crashes() const { return crashes_; }
  int disk_full_exits() const { return disk_full_exits_; }
  // SIGTERM stops that did not end in exit code 0 within 30 s, as events say.
  int bad_stops() const { return bad_stops_; }

 private:
  struct Fault {
    std::string kind;
    std::vector<int> nodes;  // kill/pause/isolate: the node(s); one-way: from, to
  };
  bool Inject(Fault* fault, std::vector<bool>* busy);
  // Restarts the node of an outage whose time is up.
  void EndOutageIfDue();
  void Heal(const Fault& fault);
  void Event(const std::string& what);
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  ChaosCluster* cluster_;
  std::mt19937_64 rng_;
  FaultOptions options_;
  std::chrono::steady_clock::time_point start_;
  std::map<std::string, int> counts_;
  std::vector<std::string> events_;
  int crashes_ = 0;
  int outage_node_ = 0;  // 0: none
  std::chrono::steady_clock::time_point outage_until_;
  int disk_full_exits_ = 0;
  int bad_stops_ = 0;
};

}  // namespace marmot::chaos

#endif  // MARMOT_TESTS_CHAOS_FAULT_INJECTOR_H_
