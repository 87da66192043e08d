// The short chaos run of CI: three marmot processes, writers on every node, about a minute of
// kills, pauses, partitions, slow disks and a long outage from a fixed seed, then every property
// checked (see checker.h). Nodes snapshot every 50 entries, so the node of the outage falls
// behind the others' compacted logs and must catch up by installing snapshots while the
// application keeps writing on it.
// The long run is `tools/dev chaos --minutes N --seed S`; TESTING.md explains both.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "tests/chaos/chaos_run.h"
#include "tests/testing/paths.h"
#include "tests/testing/sanitizers.h"

namespace marmot::chaos {
namespace {

TEST(ChaosTest, ThreeNodesSurviveKillsPausesPartitionsAndAnOutageAndAgree) {
  ChaosRunOptions options;
  options.marmot_binary = testing::MarmotBinary();
  options.dir = testing::NewTestDir("chaos");
  options.disk_shim =
      std::string(std::getenv("TEST_SRCDIR")) + "/marmot/tests/chaos/libchaos_disk.so";
  // MARMOT_CHAOS_SEED replays another schedule through the same test.
  const char* seed = std::getenv("MARMOT_CHAOS_SEED");
  options.seed = seed != nullptr ? std::strtoull(seed, nullptr, 10) : 20261126;
  options.fault_seconds = 50;
  options.settle_seconds = 45 * testing::kSanitizerSlowdown;
  options.snapshot_entries = 50;
  options.faults.outage = true;
  ChaosRunResult result = RunChaos(options);
  std::cout << result.summary;
  EXPECT_TRUE(result.started);
  EXPECT_GE(result.faults_injected, 5);
  EXPECT_GT(result.committed_writes, 1000);
  EXPECT_GE(result.snapshot_installs, 1);  // The outage made a node catch up by snapshots.
  for (const Verdict& v : result.report.verdicts)
    EXPECT_TRUE(v.pass) << v.property << ": " << v.detail;
}

}  // namespace
}  // namespace marmot::chaos
