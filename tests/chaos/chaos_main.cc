// The long chaos run: `tools/dev chaos --minutes N --seed S` (or bazel run //tests/chaos:chaos).
// Prints the seed, the faults, the counts and a verdict per property; exits 0 only if all pass.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "tests/chaos/chaos_run.h"

DEFINE_string(marmot, "", "path of the marmot binary");
DEFINE_string(dir, "", "folder for the run's files (default: a new folder under /tmp)");
DEFINE_uint64(seed, 0, "seed of the fault schedule and the workload (0: from the clock)");
DEFINE_double(minutes, 20, "minutes of faults");
DEFINE_int32(nodes, 3, "marmot processes");
DEFINE_int32(shards, 4, "shards");
DEFINE_int64(snapshot_entries, 0,
             "marmot's -snapshot-entries (0: its default); small values make "
             "nodes that were down install snapshots");
DEFINE_int32(writers_per_node, 2, "writer threads per node");
DEFINE_int32(pause_ms, 20, "mean pause between a writer's transactions");
DEFINE_int32(settle_seconds, 180, "time the cluster gets to agree after the faults stop");
DEFINE_bool(
    partial_rekey, false,
    "key changes update the key alone (the workload of the fixed own-change bug, see TESTING.md)");
DEFINE_string(disk_shim, "", "libchaos_disk.so for disk faults (empty: no disk faults)");
DEFINE_bool(slow_disk, true, "inject slow disks (needs --disk_shim)");
DEFINE_bool(disk_full, false, "inject full disks: syncs fail with ENOSPC (needs --disk_shim)");
DEFINE_bool(kill, true, "inject kill -9 (one node or all)");
DEFINE_bool(stop, true, "inject SIGTERM stops (a drain, then a restart)");
DEFINE_bool(pause, true, "inject SIGSTOP/SIGCONT");
DEFINE_bool(partition, true, "inject partitions (isolate a node, one-way links)");
DEFINE_bool(outage, false,
            "inject outages: one node down for 20-40 s (with a small --snapshot_entries it "
            "catches up by snapshots)");

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  if (FLAGS_marmot.empty()) {
    std::cerr << "--marmot is required\n";
    return 2;
  }
  marmot::chaos::ChaosRunOptions options;
  options.marmot_binary = FLAGS_marmot;
  options.seed = FLAGS_seed != 0
                     ? FLAGS_seed
                     : static_cast<uint64_t>(
                           std::chrono::system_clock::now().time_since_epoch().count() % 1000000);
  options.dir = !FLAGS_dir.empty() ? FLAGS_dir : absl::StrCat("/tmp/marmot-chaos-", options.seed);
  options.nodes = FLAGS_nodes;
  options.shards = FLAGS_shards;
  options.snapshot_entries = FLAGS_snapshot_entries;
  options.fault_seconds = static_cast<int>(FLAGS_minutes * 60);
  options.settle_seconds = FLAGS_settle_seconds;
  options.workload.writers_per_node = FLAGS_writers_per_node;
  options.workload.pause_ms = FLAGS_pause_ms;
  options.workload.partial_rekey = FLAGS_partial_rekey;
  options.disk_shim = FLAGS_disk_shim;
  options.faults.slow_disk = FLAGS_slow_disk;
  options.faults.disk_full = FLAGS_disk_full;
  options.faults.kill = FLAGS_kill;
  options.faults.stop = FLAGS_stop;
  options.faults.pause = FLAGS_pause;
  options.faults.partition = FLAGS_partition;
  options.faults.outage = FLAGS_outage;
  marmot::chaos::ChaosRunResult result = marmot::chaos::RunChaos(options);
  std::cout << result.summary << std::flush;
  return result.pass() ? 0 : 1;
}
