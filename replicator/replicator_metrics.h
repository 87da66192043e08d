// Counters and histograms of one node's replication, exported in Prometheus text by the control
// pane (which adds the gauges it reads at scrape time: leaders, indexes, backlog).
#ifndef MARMOT_REPLICATOR_REPLICATOR_METRICS_H_
#define MARMOT_REPLICATOR_REPLICATOR_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

namespace marmot::replicator {

class ReplicatorMetrics {
  // Declared first: the references below point into families this registry owns.
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();

 public:
  explicit ReplicatorMetrics(int shards);

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  prometheus::Counter& changes_captured;   // Change-log rows read for shipping.
  prometheus::Counter& changes_committed;  // Of this node, whose entry committed.
  prometheus::Counter& proposals_failed;   // Dropped or timed out; retried.
  prometheus::Histogram& commit_seconds;   // Propose to commit, per batch.
  prometheus::Histogram& apply_seconds;    // One entry applied to SQLite.
  prometheus::Counter& entries_applied;
  prometheus::Counter& dead_letters;  // Changes that could not apply, since start.
  // Schema changes of other nodes (or this one) applied, in conflict with an object here, or
  // refused (replicator/schema_changes.h).
  prometheus::Counter& schema_changes_applied;
  prometheus::Counter& schema_conflicts;
  prometheus::Counter& schema_changes_refused;
  prometheus::Counter& schema_changes_not_replicated;
  // Changes kept as conflicts (replicator/conflict_store.h), since start.
  prometheus::Counter& conflicts;
  prometheus::Counter& snapshots_created;
  prometheus::Counter& snapshots_installed;
  prometheus::Histogram& fsync_seconds;  // Synced Raft log writes (all shards of one loop).
  prometheus::Counter& snapshots_sent_ok;
  prometheus::Counter& snapshots_sent_failed;
  prometheus::Counter& wal_checkpoints;  // Run by marmot (WalCheckpointer).
  prometheus::Gauge& wal_frames_behind;  // WAL frames not yet in the database file.
  // Seconds the apply has waited for the database to take writes again (a full disk, an I/O
  // error; DatabaseWriter::apply_paused), 0 while it applies.
  prometheus::Gauge& apply_paused_seconds;
  // Per shard, seen by sampling the host.
  std::vector<prometheus::Counter*> leader_changes;
  // Times the transport lost a peer, per peer id.
  prometheus::Family<prometheus::Counter>& peer_unreachable;
  // Calls and messages from the network refused, by `what`: call, shards, cluster, duplicate,
  // message, sender (README, "Security").
  prometheus::Family<prometheus::Counter>& raft_refused;
  // Shards found divergent by the last verification of each that this node ran.
  prometheus::Gauge& divergent_shards;
  // Shards whose next entry waits for this node's shard 0 to apply the schema change its rows
  // were read after (replicator/schema_epochs.h), and waits that gave up after kEpochWaitBound.
  prometheus::Gauge& schema_waiting_shards;
  prometheus::Counter& schema_waits_given_up;
  // Tables this node created whose rows wait for shard 0 to apply the CREATE here, where their
  // route is decided (ChangeShipper, "Routes of new tables"); not bounded in time.
  prometheus::Gauge& tables_waiting_for_route;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_REPLICATOR_METRICS_H_
