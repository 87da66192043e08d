// Simulator: a deterministic, single-threaded chaos run of one Raft group.
//
// N TestNodes share one virtual clock and one seeded network that drops, duplicates, delays,
// reorders and partitions (one-way too). Nodes crash, losing whatever they had not persisted
// through a Ready, and restart; members are added, promoted and removed; leadership is
// transferred; logs are compacted and snapshots sent. Every random choice comes from one
// generator seeded by `seed`, so a seed replays exactly.
//
// After every event it checks the safety properties of Raft:
//   - election safety: at most one leader per term;
//   - log matching: two persisted entries with the same index and term have the same data
//     and the same preceding term (hence identical prefixes);
//   - leader completeness: a new leader's log holds every entry any node has applied;
//   - state machine safety: nodes apply the same entry at each index (compared through a hash
//     chain, so snapshots are covered too), never apply an index twice or go backwards;
//   - ReadIndex: a read index is at least the commit point when the read was requested.
// Then it stops the faults and checks liveness: a leader emerges and proposals commit within
// a bounded number of ticks.
#ifndef MARMOT_RAFT_TESTING_SIMULATOR_H_
#define MARMOT_RAFT_TESTING_SIMULATOR_H_

#include <cstdint>
#include <string>

namespace marmot::raft::testing {

struct SimOptions {
  uint64_t seed = 1;
  // Events of the chaotic phase.
  int events = 2000;
  // Group size at start; 0 picks 3 or 5 from the seed.
  int nodes = 0;
  bool membership_churn = true;
  bool transfer_churn = true;
  bool compaction = true;
  // Ticks allowed to elect a leader and commit every liveness proposal once faults stop.
  int liveness_ticks = 400;
  // How many trace lines to print on failure.
  int trace_tail = 60;
  // Return the trace tail even on success (for replaying one seed).
  bool keep_trace = false;
};

struct SimResult {
  bool ok = true;
  // The violated property and the trace tail, if !ok.
  std::string failure;
  uint64_t events = 0;
  uint64_t ticks = 0;
  uint64_t max_term = 0;
  uint64_t committed = 0;  // highest index applied by any node
  uint64_t crashes = 0;
  uint64_t snapshots_installed = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  uint64_t reads_served = 0;
  uint64_t messages = 0;
  std::string trace;
  uint64_t proposals_accepted = 0;
  uint64_t proposals_dropped = 0;
  uint64_t leaderless_ticks = 0;
};

SimResult RunSimulation(const SimOptions& options);

}  // namespace marmot::raft::testing

#endif  // MARMOT_RAFT_TESTING_SIMULATOR_H_
