// What the control pane asks of the node it runs in. marmot.cc wires an implementation over the
// replicator and the Raft host; tests may use their own. Every call is answered with a status a
// client can act on: UNAVAILABLE (no leader, draining: retry), FAILED_PRECONDITION (refused in
// the current state), INVALID_ARGUMENT (bad request), NOT_FOUND, UNIMPLEMENTED (not in this
// version; the default of the optional calls below).
#ifndef MARMOT_PANE_NODE_CONTROL_H_
#define MARMOT_PANE_NODE_CONTROL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/admin.pb.h"

namespace marmot::pane {

class NodeControl {
 public:
  virtual ~NodeControl() = default;
  virtual absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() = 0;
  virtual absl::StatusOr<admin::v1::ListDeadLettersResponse> ListDeadLetters(int limit) = 0;
  // Ready = joined every shard and caught up (never "is leader").
  virtual bool Ready() = 0;

  virtual absl::StatusOr<admin::v1::ListNodesResponse> ListNodes() { return NotYet(); }
  virtual absl::Status AddNode(uint64_t node_id, const std::string& address) { return NotYet(); }
  virtual absl::Status RemoveNode(uint64_t node_id) { return NotYet(); }
  virtual absl::Status TransferLeader(uint32_t shard, uint64_t node_id) { return NotYet(); }
  // Spreads shard leaderships evenly over the voters that take them; says how many moved and
  // which voters did not take one offered (down, unreachable or behind).
  virtual absl::StatusOr<admin::v1::BalanceLeadersResponse> BalanceLeaders() { return NotYet(); }
  // Takes a snapshot of `shard` (< 0: every shard) at its applied index; returns once taken.
  virtual absl::Status TriggerSnapshot(int shard) { return NotYet(); }
  // Streams a consistent copy of the database without marmot's objects: `write` receives the
  // chunks in order and returns false to abort.
  virtual absl::Status Backup(const std::function<bool(const admin::v1::BackupChunk&)>& write) {
    return NotYet();
  }
  // Applies this node's dead letters `ids` again (every one when empty), in id order; a dead
  // letter whose row has an earlier one that stays is not applied. NOT_FOUND when an id does
  // not exist (nothing is done then).
  virtual absl::StatusOr<admin::v1::RetryDeadLettersResponse> RetryDeadLetters(
      const std::vector<int64_t>& ids) {
    return NotYet();
  }
  // Compares every node's rows of `shards` (every shard when empty) within `timeout`;
  // INVALID_ARGUMENT for a shard that does not exist.
  virtual absl::StatusOr<admin::v1::VerifyResponse> Verify(const std::vector<int>& shards,
                                                           absl::Duration timeout) {
    return NotYet();
  }
  // Repairs `shard` within `timeout` (see the Repair call in admin.proto).
  virtual absl::StatusOr<admin::v1::RepairResponse> Repair(int shard, absl::Duration timeout) {
    return NotYet();
  }
  // This node's kept conflicts, newest first: at most `limit` (> 0) of `table` (every table's
  // when empty) with ids below `before_id` (0: from the newest).
  virtual absl::StatusOr<admin::v1::ListConflictsResponse> ListConflicts(int limit,
                                                                         const std::string& table,
                                                                         int64_t before_id) {
    return NotYet();
  }
  // Clears the conflicts `request` names on every node (see ResolveConflict in admin.proto); the
  // pane checked its shape. NOT_FOUND, and nothing cleared, when this node keeps one of them not.
  virtual absl::StatusOr<admin::v1::ResolveConflictResponse> ResolveConflict(
      const admin::v1::ResolveConflictRequest& request) {
    return NotYet();
  }

 protected:
  static absl::Status NotYet() {
    return absl::UnimplementedError("not available in this version of marmot yet");
  }
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_NODE_CONTROL_H_
