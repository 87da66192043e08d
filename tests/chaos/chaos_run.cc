#include "tests/chaos/chaos_run.h"

#include <glog/logging.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tests/chaos/chaos_cluster.h"

namespace marmot::chaos {

ChaosRunResult RunChaos(const ChaosRunOptions& options) {
  ChaosRunResult result;
  ChaosCluster cluster({.marmot_binary = options.marmot_binary,
                        .dir = options.dir,
                        .nodes = options.nodes,
                        .shards = options.shards,
                        .snapshot_entries = options.snapshot_entries,
                        .schema = kSchema,
                        .disk_shim = options.disk_shim});
  std::string header = absl::StrFormat(
      "chaos run: seed %d, %d nodes, %d shards, %d s of faults, %d writers per node, files in %s\n",
      options.seed, options.nodes, options.shards, options.fault_seconds,
      options.workload.writers_per_node, options.dir);
  if (!cluster.Start(std::chrono::seconds(60))) {
    result.summary = header + "  cluster did not start (see node logs)\n";
    return result;
  }
  result.started = true;
  std::vector<std::string> db_paths;
  for (int id = 1; id <= cluster.nodes(); ++id) db_paths.push_back(cluster.db_path(id));

  WorkloadOptions workload_options = options.workload;
  workload_options.seed = options.seed;
  Workload workload(workload_options, db_paths);
  workload.Start();
  FaultInjector injector(&cluster, options.seed, options.faults);
  injector.Run(std::chrono::seconds(options.fault_seconds));
  // A little writing on a healed cluster, then the writers stop and the cluster settles.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  workload.Stop();
  injector.RestartCrashed();
  const auto settle_start = std::chrono::steady_clock::now();
  const auto model = workload.OwnedModel();
  const auto history = workload.History();
  std::vector<NodeState> states =
      WaitForSettle(db_paths, model, std::chrono::seconds(options.settle_seconds), 3);
  result.settle_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - settle_start).count();
  injector.RestartCrashed();  // a node that ended during the settle counts too
  result.crashes = injector.crashes();
  result.snapshot_installs = cluster.CountLogLines("installed a snapshot");
  result.report = Check(states, model, history);
  result.report.verdicts.push_back(
      {"no crash", result.crashes == 0,
       result.crashes == 0
           ? "no node ended unless killed"
           : absl::StrCat(result.crashes, " node exits not caused by the injector (see events)")});
  result.report.verdicts.push_back(
      {"clean stops", injector.bad_stops() == 0,
       injector.bad_stops() == 0
           ? absl::StrCat("every SIGTERM (",
                          injector.counts().count("stop") ? injector.counts().at("stop") : 0,
                          ") ended in a drain and exit code 0 within 30 s")
           : absl::StrCat(injector.bad_stops(), " SIGTERM stops did not (see events)")});
  result.report.verdicts.push_back(
      {"read your writes", workload.stale_reads() == 0,
       absl::StrCat(workload.stale_reads(), " of ", workload.own_reads(),
                    " reads of a writer's own row on its node found an older version than its last "
                    "commit")});
  result.committed_writes = workload.committed();
  result.failed_transactions = workload.failed();
  for (const auto& [kind, n] : injector.counts()) result.faults_injected += n;

  // Keep the history and the fault events beside the databases for post-mortems.
  {
    std::ofstream out(options.dir + "/history.tsv");
    out << "micros\tnode\twriter\ttable\top\tkey\tnew_key\tv\tbody_len\tbody_fnv\n";
    for (const WriteRecord& r : history) {
      out << r.micros << '\t' << r.node << '\t' << r.writer << '\t' << r.table << '\t' << r.op
          << '\t' << r.key << '\t' << r.new_key << '\t' << r.v << '\t' << r.body_len << '\t'
          << r.body_hash << '\n';
    }
    std::ofstream events(options.dir + "/events.txt");
    for (const std::string& e : injector.events()) events << e << '\n';
  }

  std::vector<std::string> counts;
  if (injector.disk_full_exits() > 0) {
    counts.push_back(absl::StrCat("node exits on a full disk ", injector.disk_full_exits()));
  }
  for (const auto& [kind, n] : injector.counts()) counts.push_back(absl::StrCat(kind, " ", n));
  result.summary = absl::StrCat(
      header,
      absl::StrFormat("  faults injected: %d (%s)\n", result.faults_injected,
                      absl::StrJoin(counts, ", ")),
      absl::StrFormat(
          "  writes committed locally: %d (%d transactions failed and were rolled back)\n",
          result.committed_writes, result.failed_transactions),
      absl::StrFormat("  settled in %.1f s; %d shard snapshots installed\n", result.settle_seconds,
                      result.snapshot_installs),
      result.report.ToString(),
      absl::StrFormat("verdict: %s (seed %d; replay: tools/dev chaos --seed %d --minutes M)\n",
                      result.pass() ? "PASS" : "FAIL", options.seed, options.seed));
  return result;
}

}  // namespace marmot::chaos
