// The Raft state machine of one shard: committed ChangeBatch entries applied to the local
// SQLite database through the node's ChangeApplier.
//
// Entries must apply exactly once, in order, so a database failure (busy past the timeout, disk
// full) is retried until it succeeds rather than skipped; only entries that can never apply go
// to the dead letters. On shutdown a retry loop gives up: the durable applied index is older
// than the host believes, so the entry is applied again at the next start (Open() reports the
// durable index).
#ifndef MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_
#define MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_

#include <atomic>
#include <memory>
#include <mutex>

#include "raft/host/state_machine.h"
#include "replicator/change_applier.h"
#include "replicator/replicator_metrics.h"

namespace marmot::replicator {

// The node's applier, shared by the state machines of every shard (SQLite has one writer; the
// mutex makes that explicit instead of leaving it to busy waits).
struct SharedApplier {
  std::mutex mu;
  std::unique_ptr<ChangeApplier> applier;
  std::atomic<bool> stopping{false};
  ReplicatorMetrics* metrics = nullptr;  // Optional.
};

class ShardStateMachine : public raft::host::StateMachine {
 public:
  ShardStateMachine(int shard, std::shared_ptr<SharedApplier> shared)
      : shard_(shard), shared_(std::move(shared)) {}

  uint64_t Open() override;
  void Apply(const std::vector<raft::host::AppliedEntry>& entries) override;
  absl::StatusOr<std::string> SaveSnapshot() override;
  absl::Status RecoverFromSnapshot(uint64_t index, const std::string& data) override;

 private:
  // Runs `step` until it succeeds or the node stops; false when it gave up.
  bool RetryUntilDone(const char* what, uint64_t index, const std::function<absl::Status()>& step);

  const int shard_;
  std::shared_ptr<SharedApplier> shared_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_
