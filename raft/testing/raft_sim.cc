// raft_sim: runs the deterministic Raft simulator for as many seeds as asked.
//
//   bazel run -c opt //raft/testing:raft_sim -- --seeds 10000
//   bazel run -c opt //raft/testing:raft_sim -- --seed 1234 --events 5000   # replay one seed
//
// Prints every failing seed with its violated invariant and trace tail, and a summary line.
#include <chrono>
#include <cstdio>

#include "gflags/gflags.h"
#include "raft/testing/simulator.h"

DEFINE_uint64(seed, 0, "run only this seed (replay)");
DEFINE_uint64(first_seed, 1, "first seed when running many");
DEFINE_uint64(seeds, 1000, "how many seeds to run");
DEFINE_int32(events, 3000, "events of the chaos phase per seed");
DEFINE_int32(nodes, 0, "initial group size (0: 3 or 5, chosen by the seed)");
DEFINE_int32(trace, 60, "trace lines to keep (printed on failure, or always with --seed)");
DEFINE_bool(verbose_seeds, false, "print a line per seed");

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  using marmot::raft::testing::RunSimulation;
  using marmot::raft::testing::SimOptions;
  const uint64_t first = FLAGS_seed != 0 ? FLAGS_seed : FLAGS_first_seed;
  const uint64_t count = FLAGS_seed != 0 ? 1 : FLAGS_seeds;
  const auto start = std::chrono::steady_clock::now();
  uint64_t commits = 0, failed = 0, events = 0, snaps = 0, ccs = 0, crashes = 0, reads = 0;
  for (uint64_t s = first; s < first + count; ++s) {
    SimOptions o;
    o.seed = s;
    o.events = FLAGS_events;
    o.nodes = FLAGS_nodes;
    o.trace_tail = FLAGS_trace;
    o.keep_trace = count == 1;
    if (FLAGS_verbose_seeds || count == 1) printf("seed %llu\n", (unsigned long long)s);
    auto r = RunSimulation(o);
    events += r.events;
    snaps += r.snapshots_installed;
    ccs += r.conf_changes;
    crashes += r.crashes;
    reads += r.reads_served;
    commits += r.committed;
    if (count == 1) {
      if (r.ok) printf("%s", r.trace.c_str());
      printf("proposals accepted %llu dropped %llu, leaderless ticks %llu\n",
             (unsigned long long)r.proposals_accepted, (unsigned long long)r.proposals_dropped,
             (unsigned long long)r.leaderless_ticks);
      printf("seed %llu: %s, events %llu, ticks %llu, max term %llu, commit %llu, messages %llu\n",
             (unsigned long long)s, r.ok ? "ok" : "FAILED", (unsigned long long)r.events,
             (unsigned long long)r.ticks, (unsigned long long)r.max_term,
             (unsigned long long)r.committed, (unsigned long long)r.messages);
    }
    if (!r.ok) {
      ++failed;
      printf("FAILED %s\n", r.failure.c_str());
    }
    fflush(stdout);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf(
      "raft_sim: seeds %llu..%llu (%llu seeds x %d events): %llu failed, %llu events, "
      "%llu crashes, %llu snapshots installed, %llu conf changes, %llu reads, avg commit %.0f, "
      "%.1fs\n",
      (unsigned long long)first, (unsigned long long)(first + count - 1), (unsigned long long)count,
      FLAGS_events, (unsigned long long)failed, (unsigned long long)events,
      (unsigned long long)crashes, (unsigned long long)snaps, (unsigned long long)ccs,
      (unsigned long long)reads, double(commits) / count, secs);
  return failed == 0 ? 0 : 1;
}
