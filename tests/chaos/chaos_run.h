// RunChaos: one whole chaos run — start a cluster, write on every node while faults are
// injected, stop the faults, let the cluster settle, check. Used by the CI test (short) and by
// `tools/dev chaos` (long).
#ifndef MARMOT_TESTS_CHAOS_CHAOS_RUN_H_
#define MARMOT_TESTS_CHAOS_CHAOS_RUN_H_

#include <cstdint>
#include <string>

#include "tests/chaos/checker.h"
#include "tests/chaos/fault_injector.h"
#include "tests/chaos/workload.h"

namespace marmot::chaos {

struct ChaosRunOptions {
  std::string marmot_binary;
  std::string dir;        // databases, raft folders, node logs, history.tsv, events.txt
  std::string disk_shim;  // libchaos_disk.so; empty: no disk faults
  uint64_t seed = 1;
  int nodes = 3;
  int shards = 4;
  int64_t snapshot_entries = 0;  // marmot's -snapshot-entries; 0: its default
  int fault_seconds = 60;
  // After the faults stop, how long the cluster gets to agree.
  int settle_seconds = 60;
  FaultOptions faults;
  WorkloadOptions workload;  // its seed is set from `seed`
};

struct ChaosRunResult {
  bool started = false;
  CheckReport report;
  int64_t committed_writes = 0;
  int64_t failed_transactions = 0;
  int faults_injected = 0;
  int crashes = 0;
  int snapshot_installs = 0;  // shard snapshots the nodes installed (from their logs)
  double settle_seconds = 0;
  std::string summary;  // what to print: seed, faults, counts, verdicts
  bool pass() const { return started && report.all_pass(); }
};

ChaosRunResult RunChaos(const ChaosRunOptions& options);

}  // namespace marmot::chaos

#endif  // MARMOT_TESTS_CHAOS_CHAOS_RUN_H_
