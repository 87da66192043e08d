// RecoverShard: where a shard's state machine stands against the shard's log when the host
// starts, and what the host needs to resume applying from there.
#ifndef MARMOT_RAFT_HOST_SHARD_RECOVERY_H_
#define MARMOT_RAFT_HOST_SHARD_RECOVERY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "proto/raft.pb.h"
#include "raft/host/rocks_log_store.h"
#include "raft/host/state_machine.h"

namespace marmot::raft::host {

struct RecoveredShard {
  // The last entry whose effects the state machine holds, and its term (0 if the log no longer
  // knows it).
  uint64_t applied = 0;
  uint64_t applied_term = 0;
  // The membership as of `applied`.
  v1::ConfState conf;
  // Why the shard starts halted (the log's snapshot could not be installed: the shard then
  // applies nothing until it resumes or the process restarts, as StateMachine::Apply
  // describes); empty: it runs.
  std::string halted;
};

// Opens `sm` (StateMachine::Open) and, when it is behind the start of the shard's log, installs
// the log's snapshot, whose payload file is in `snapshot_dir`. A failed install halts the shard
// (logged); the other shards are unaffected. DataLossError when the recorded payload file
// cannot be opened; FailedPreconditionError when the state machine is ahead of the log (a raft
// folder of another run); the log's error when it cannot be read.
absl::StatusOr<RecoveredShard> RecoverShard(uint64_t node, uint64_t shard, const ShardLog& log,
                                            StateMachine& sm, const std::string& snapshot_dir);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SHARD_RECOVERY_H_
