// Runs the deterministic simulator over many seeds; any safety or liveness violation fails
// with the seed (replay it with `bazel run -c opt //raft/testing:raft_sim -- --seed N`) and
// the trace tail.
#include <chrono>

#include "gtest/gtest.h"
#include "raft/testing/simulator.h"

namespace marmot::raft::testing {
namespace {

constexpr int kSeeds = 600;
constexpr int kEvents = 3000;

TEST(SimulatorTest, ManySeedsKeepSafetyAndLiveness) {
  const auto start = std::chrono::steady_clock::now();
  int failures = 0;
  uint64_t events = 0, snapshots = 0, conf_changes = 0, crashes = 0, max_commit = 0;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.events = kEvents;
    SimResult r = RunSimulation(o);
    events += r.events;
    snapshots += r.snapshots_installed;
    conf_changes += r.conf_changes;
    crashes += r.crashes;
    max_commit = std::max(max_commit, r.committed);
    if (!r.ok) {
      ++failures;
      ADD_FAILURE() << r.failure;
      if (failures >= 3) break;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf(
      "simulator: %d seeds x %d events: %d failed, %llu events, %llu crashes, %llu snapshots "
      "installed, %llu conf changes, max commit %llu, %.1fs\n",
      kSeeds, kEvents, failures, (unsigned long long)events, (unsigned long long)crashes,
      (unsigned long long)snapshots, (unsigned long long)conf_changes,
      (unsigned long long)max_commit, secs);
}

// Sanity: the same seed gives the same run.
TEST(SimulatorTest, SameSeedReplaysExactly) {
  SimOptions o;
  o.seed = 42;
  o.events = 1500;
  SimResult a = RunSimulation(o), b = RunSimulation(o);
  EXPECT_EQ(a.messages, b.messages);
  EXPECT_EQ(a.committed, b.committed);
  EXPECT_EQ(a.max_term, b.max_term);
  EXPECT_EQ(a.ticks, b.ticks);
}

}  // namespace
}  // namespace marmot::raft::testing
