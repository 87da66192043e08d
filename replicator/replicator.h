// The replicator: one node of Marmot, end to end.
//
//   application writes ─► triggers ─► change logs ─► ChangeDetector wakes the pump
//   pump: CaptureKeeper (capture on new tables) ─► ChangeShipper (route, batch, propose)
//   NodeHost (multi-Raft) ─► ShardStateMachine per shard ─► DatabaseWriter ─► ChangeApplier
//   (SQLite) on every node; the shipper's marking goes through the DatabaseWriter too
//
// Start() returns once every part runs; Stop() stops taking new changes, lets the host stop
// (every acknowledged entry is durable) and joins everything.
#ifndef MARMOT_REPLICATOR_REPLICATOR_H_
#define MARMOT_REPLICATOR_REPLICATOR_H_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "absl/status/statusor.h"
#include "raft/host/env.h"
#include "raft/host/node_host.h"
#include "replicator/capture_keeper.h"
#include "replicator/change_detector.h"
#include "replicator/change_shipper.h"
#include "replicator/database_lock.h"
#include "replicator/database_writer.h"
#include "replicator/node_config.h"
#include "replicator/paced_retry.h"
#include "replicator/replicator_metrics.h"
#include "replicator/schema_epochs.h"
#include "replicator/shard_state_machine.h"
#include "replicator/shard_verifier.h"
#include "replicator/wal_checkpointer.h"

namespace marmot::replicator {

class Replicator {
 public:
  // `env`: the clock and files of the host, its transport and the shipper; must outlive the
  // replicator.
  static absl::StatusOr<std::unique_ptr<Replicator>> Start(
      const NodeConfig& config, raft::host::Env* env = raft::host::Env::Default());
  ~Replicator();

  // Asks the leader of every shard this node leads to hand it to another voter, and waits up to
  // `timeout` for that to happen (so that stopping does not leave shards leaderless for an
  // election timeout). Returns how many shards this node still leads.
  int HandOffLeadership(std::chrono::milliseconds timeout);

  void Stop();

  // Applies this node's dead letters `ids` (all when empty) again, in bounded steps through the
  // database writer (PacedRetry; see ChangeApplier::RetryDeadLetters); returns the totals once
  // every step is done, Cancelled when the node stops first. Acts on this node only: each node
  // keeps the dead letters of the changes it could not apply. Then resumes the shards halted on
  // this node (ResumeHaltedShards): their cause (no room for another dead letter, a schema that
  // refused a snapshot) may be gone.
  absl::StatusOr<RetryResult> RetryDeadLetters(const std::vector<int64_t>& ids);

  // Change-log rows of `table` with ids up to this are replicated, only not deleted yet
  // (ChangeShipper::CommittedThrough).
  int64_t CommittedThrough(const std::string& table) const {
    return shipper_->CommittedThrough(table);
  }

  // Compares every node's rows of `shards` (all when empty) at the same point of each shard's
  // log; see ShardVerifier::Verify.
  absl::StatusOr<VerifyResult> Verify(const std::vector<int>& shards, absl::Duration timeout) {
    return verifier_->Verify(shards, timeout);
  }
  // Repairs `shard`; see ShardVerifier::Repair.
  absl::StatusOr<RepairResult> Repair(int shard, absl::Duration timeout) {
    return verifier_->Repair(shard, timeout);
  }

  raft::host::NodeHost* host() { return host_.get(); }
  ReplicatorMetrics& metrics() { return *metrics_; }
  const NodeConfig& config() const { return config_; }

 private:
  class HostProposer;
  class MetricsObserver;
  Replicator(NodeConfig config, raft::host::Env* env);
  void PumpLoop();
  // Once the schema changed (a table or column that changes needed may have come), starts a
  // retry of the dead letters of the tables whose definition changed; on the pump thread.
  void RetryDeadLettersAfterSchemaChange();
  // Runs the next step of that retry (the pump runs one per turn once its pause passed, so
  // that shipping goes on meanwhile); once it is done, resumes the halted shards if it applied
  // some or the schema changed while marmot ran.
  void StepSchemaRetry();
  // Asks the host to resume every shard halted on this node (NodeHost::ResumeShard): once each
  // time the cause may have gone, never in a loop; a shard whose cause stays halts again, with
  // the reason it meets then.
  void ResumeHaltedShards(const char* why);

  NodeConfig config_;
  raft::host::Env* const env_;
  std::optional<DatabaseLock> lock_;  // Held from Start to destruction.
  std::unique_ptr<ReplicatorMetrics> metrics_;
  std::unique_ptr<MetricsObserver> observer_;
  std::unique_ptr<CaptureKeeper> keeper_;
  std::unique_ptr<ChangeDetector> detector_;
  std::unique_ptr<WalCheckpointer> checkpointer_;  // null with -checkpoint-pages=0
  int64_t checkpoint_runs_ = 0;                    // Already counted in metrics_.
  // What the shipper read each change with, for the applier; outlives both.
  std::unique_ptr<ShippedColumns> shipped_columns_ = std::make_unique<ShippedColumns>();
  // A schema change found here waits to be proposed: the shipper's, for the applier.
  std::unique_ptr<std::atomic<bool>> own_schema_pending_ = std::make_unique<std::atomic<bool>>();
  // Where this node stands in schema changes and every shard (schema_epochs.h); outlives host_
  // and shipper_.
  std::unique_ptr<SchemaEpochs> epochs_;
  std::shared_ptr<DatabaseWriter> writer_;
  std::unique_ptr<ShardApplyRounds> rounds_;  // of writer_, for host_
  std::unique_ptr<ShardVerifier> verifier_;   // Outlives host_: its state machines use it.
  std::unique_ptr<raft::host::NodeHost> host_;
  std::unique_ptr<HostProposer> proposer_;
  std::unique_ptr<ChangeShipper> shipper_;
  std::thread pump_;
  std::atomic<bool> stopping_{false};
  std::vector<uint64_t> last_leaders_;  // Per shard, for counting leader changes.
  int64_t retried_at_schema_ = -1;      // The schema_version dead letters were last retried at.
  double retried_at_applied_ = -1;      // And the count of schema changes applied here.
  // Then, per table, the SQL of the table and its indexes (dead letters of a table are retried
  // when it changes).
  std::map<std::string, std::string> table_definitions_;
  // The retry after schema changes under way (pump thread), and the tables it covers.
  std::optional<PacedRetry> schema_retry_;
  std::set<std::string> schema_retry_tables_;
  bool schema_changed_while_running_ = false;  // Since the retry began; halted shards resume.
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_REPLICATOR_H_
