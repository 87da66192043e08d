#include "replicator/replicator_metrics.h"

#include <string>

namespace marmot::replicator {
namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  // 100 µs to about 13 s, doubling.
  static const auto* buckets = [] {
    auto* b = new prometheus::Histogram::BucketBoundaries();
    for (double s = 0.0001; s < 15; s *= 2) b->push_back(s);
    return b;
  }();
  return *buckets;
}

prometheus::Counter& NewCounter(prometheus::Registry& r, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram& NewHistogram(prometheus::Registry& r, const std::string& name,
                                    const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, LatencyBuckets());
}

// BuildCounter().Register returns the existing family when called again with the same name.
prometheus::Family<prometheus::Counter>& SnapshotsSent(prometheus::Registry& r) {
  return prometheus::BuildCounter()
      .Name("marmot_snapshots_sent_total")
      .Help("Shard snapshots this node sent to a follower, by outcome")
      .Register(r);
}

}  // namespace

ReplicatorMetrics::ReplicatorMetrics(int shards)
    : changes_captured(NewCounter(*registry_, "marmot_changes_captured_total",
                                  "Change-log rows this node read for shipping")),
      changes_committed(NewCounter(*registry_, "marmot_changes_committed_total",
                                   "Changes of this node whose Raft entry committed")),
      proposals_failed(NewCounter(*registry_, "marmot_proposals_failed_total",
                                  "Proposals dropped or timed out (they are retried)")),
      commit_seconds(NewHistogram(*registry_, "marmot_commit_duration_seconds",
                                  "Time from proposing a batch to its commit")),
      apply_seconds(NewHistogram(*registry_, "marmot_apply_duration_seconds",
                                 "Time to apply one committed entry to SQLite")),
      entries_applied(NewCounter(*registry_, "marmot_entries_applied_total",
                                 "Raft entries applied to SQLite on this node")),
      dead_letters(NewCounter(*registry_, "marmot_dead_letters_total",
                              "Changes that could not be applied on this node since start")),
      schema_changes_applied(NewCounter(*registry_, "marmot_schema_changes_applied_total",
                                        "Replicated schema changes applied (or already so) here")),
      schema_conflicts(NewCounter(*registry_, "marmot_schema_conflicts_total",
                                  "Replicated schema changes whose object exists here with "
                                  "another definition (kept as it is here)")),
      schema_changes_refused(NewCounter(*registry_, "marmot_schema_changes_refused_total",
                                        "Replicated schema changes refused here (see the log)")),
      schema_changes_not_replicated(
          NewCounter(*registry_, "marmot_schema_changes_not_replicated_total",
                     "Schema changes made here that do not replicate (see the log; make them "
                     "on every node)")),
      conflicts(NewCounter(*registry_, "marmot_conflicts_total",
                           "Changes kept in __marmot__conflicts since start: made without seeing "
                           "the version their row had, they lost to it")),
      snapshots_created(NewCounter(*registry_, "marmot_snapshots_created_total",
                                   "Shard snapshots this node made")),
      snapshots_installed(NewCounter(*registry_, "marmot_snapshots_installed_total",
                                     "Shard snapshots this node received and installed")),
      fsync_seconds(NewHistogram(*registry_, "marmot_raft_fsync_duration_seconds",
                                 "Synced writes of the Raft log (every shard of one loop round)")),
      snapshots_sent_ok(SnapshotsSent(*registry_).Add({{"result", "ok"}})),
      snapshots_sent_failed(SnapshotsSent(*registry_).Add({{"result", "failed"}})),
      wal_checkpoints(
          NewCounter(*registry_, "marmot_wal_checkpoints_total",
                     "WAL checkpoints marmot ran for the application (-checkpoint-pages)")),
      wal_frames_behind(prometheus::BuildGauge()
                            .Name("marmot_wal_frames_behind")
                            .Help("WAL frames not yet copied into the database file after marmot's "
                                  "last checkpoint; grows while a read transaction stays open")
                            .Register(*registry_)
                            .Add({})),
      apply_paused_seconds(prometheus::BuildGauge()
                               .Name("marmot_apply_paused_seconds")
                               .Help("Seconds the apply has waited for the SQLite database to "
                                     "take writes again (a full disk, an I/O error); 0 while it "
                                     "applies")
                               .Register(*registry_)
                               .Add({})),
      peer_unreachable(prometheus::BuildCounter()
                           .Name("marmot_peer_unreachable_total")
                           .Help("Times the Raft transport lost its stream to a peer")
                           .Register(*registry_)),
      raft_refused(
          prometheus::BuildCounter()
              .Name("marmot_raft_refused_total")
              .Help("Node-to-node calls and messages refused: call (no valid cluster key "
                    "proof, a certificate of another node), shards (another shard count), "
                    "cluster (another cluster id), duplicate (a second process with a live "
                    "node's id), message (claimed another sender), sender (not allowed to "
                    "send it to that shard)")
              .Register(*registry_)),
      divergent_shards(prometheus::BuildGauge()
                           .Name("marmot_divergent_shards")
                           .Help("Shards whose rows differed between nodes when this node last "
                                 "verified them (Verify, -verify-every)")
                           .Register(*registry_)
                           .Add({})),
      schema_waiting_shards(
          prometheus::BuildGauge()
              .Name("marmot_shards_waiting_for_schema")
              .Help("Shards whose next entry waits here for shard 0 to apply the schema change "
                    "its rows were read after (GetStatus: waiting)")
              .Register(*registry_)
              .Add({})),
      schema_waits_given_up(
          NewCounter(*registry_, "marmot_schema_waits_given_up_total",
                     "Waits for a schema change that gave up after 30 s and applied the rows "
                     "anyway (what the schema here could not take went to the dead letters)")),
      tables_waiting_for_route(
          prometheus::BuildGauge()
              .Name("marmot_tables_waiting_for_route")
              .Help("Tables this node created whose rows wait for shard 0 to apply the CREATE "
                    "here, where the table's route is decided (not bounded: a shard 0 halted "
                    "here holds them)")
              .Register(*registry_)
              .Add({})) {
  auto& family = prometheus::BuildCounter()
                     .Name("marmot_shard_leader_changes_total")
                     .Help("Leader changes seen per shard")
                     .Register(*registry_);
  for (int s = 0; s < shards; ++s)
    leader_changes.push_back(&family.Add({{"shard", std::to_string(s)}}));
}

}  // namespace marmot::replicator
