// NodeControl over a running Replicator: what the control pane reports about this node.
#ifndef MARMOT_PANE_REPLICATOR_CONTROL_H_
#define MARMOT_PANE_REPLICATOR_CONTROL_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "pane/node_control.h"
#include "replicator/replicator.h"
#include "sqlite/database.h"

namespace marmot::pane {

class ReplicatorControl : public NodeControl {
 public:
  // `replicator` must outlive this object. AddNode waits up to `add_node_timeout` for the
  // new node's promotion to voter.
  static absl::StatusOr<std::unique_ptr<ReplicatorControl>> Create(
      replicator::Replicator* replicator, std::string version,
      absl::Duration add_node_timeout = absl::Seconds(60));

  absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() override;
  absl::StatusOr<admin::v1::ListDeadLettersResponse> ListDeadLetters(int limit) override;
  // Every shard has a leader, and this node applied within kReadyLag entries of what it knows is
  // committed, or was caught up within the last kReadyGrace: under steady writes the applied
  // index trails the commit index by an entry or two at any instant, which is healthy.
  bool Ready() override;
  static constexpr uint64_t kReadyLag = 64;
  static constexpr absl::Duration kReadyGrace = absl::Seconds(5);
  absl::StatusOr<admin::v1::ListNodesResponse> ListNodes() override;
  // Adds the node to every shard as a learner, then waits until it is promoted to voter
  // everywhere (see AddNodeToEveryShard in pane/cluster_membership.h).
  absl::Status AddNode(uint64_t node_id, const std::string& address) override;
  // Removes a voter or a learner from every shard; refuses (FAILED_PRECONDITION) to remove
  // the last voter, or a voter while a shard has no leader.
  absl::Status RemoveNode(uint64_t node_id) override;
  absl::Status TransferLeader(uint32_t shard, uint64_t node_id) override;
  absl::StatusOr<admin::v1::BalanceLeadersResponse> BalanceLeaders() override;
  absl::Status TriggerSnapshot(int shard) override;
  absl::Status Backup(const std::function<bool(const admin::v1::BackupChunk&)>& write) override;
  // On this node's dead letters, through the replicator's applier (serialized with applying).
  absl::StatusOr<admin::v1::RetryDeadLettersResponse> RetryDeadLetters(
      const std::vector<int64_t>& ids) override;
  // Through the replicator's ShardVerifier; see there.
  absl::StatusOr<admin::v1::VerifyResponse> Verify(const std::vector<int>& shards,
                                                   absl::Duration timeout) override;
  absl::StatusOr<admin::v1::RepairResponse> Repair(int shard, absl::Duration timeout) override;
  // Reads this node's `__marmot__conflicts` (replicator/conflict_store.h), the losing rows
  // decoded from the changes kept there. A page ends early, before the conflict whose kept
  // change would take it past kListBytes (the first one is always in it).
  absl::StatusOr<admin::v1::ListConflictsResponse> ListConflicts(int limit,
                                                                 const std::string& table,
                                                                 int64_t before_id) override;
  // Finds the named conflicts here, then proposes their identities to their shards (a
  // ChangeBatch with resolved_conflicts, up to kResolvedPerEntry per entry), and waits until
  // this node's database no longer holds them (at most kResolveWait after the last entry
  // applied here: DEADLINE_EXCEEDED then). A proposal that fails answers its error; the entries
  // proposed before it stay resolved, and calling again resolves the rest.
  absl::StatusOr<admin::v1::ResolveConflictResponse> ResolveConflict(
      const admin::v1::ResolveConflictRequest& request) override;
  static constexpr int kResolvedPerEntry = 1000;
  static constexpr size_t kListBytes = 2 << 20;
  static constexpr absl::Duration kResolveWait = absl::Seconds(10);

 private:
  ReplicatorControl(replicator::Replicator* replicator, sqlite::Database db, std::string version,
                    absl::Duration add_node_timeout)
      : replicator_(replicator),
        db_(std::move(db)),
        version_(std::move(version)),
        add_node_timeout_(add_node_timeout) {}

  replicator::Replicator* replicator_;
  std::mutex mu_;        // Guards db_ (pane calls run on several threads).
  sqlite::Database db_;  // Read-only, for backlog, dead letters and conflicts.
  std::string version_;
  absl::Duration add_node_timeout_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::mutex ready_mu_;
  // Per shard, when Ready() last saw it applied up to its commit index.
  std::vector<absl::Time> caught_up_at_ ABSL_GUARDED_BY(ready_mu_);
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_REPLICATOR_CONTROL_H_
