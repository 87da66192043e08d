// WriteLocalSnapshot: how an apply worker saves a shard's state machine into a snapshot payload
// file of the snapshots folder (snapshot_file.h), which the host then records in the log store.
#ifndef MARMOT_RAFT_HOST_LOCAL_SNAPSHOT_H_
#define MARMOT_RAFT_HOST_LOCAL_SNAPSHOT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "raft/host/state_machine.h"

namespace marmot::raft::host {

// Streams `sm`'s whole state, as of its last applied entry (`index`, of `term`), to a new file
// in `dir`, named for the shard, index and term; `round` as in StateMachine::SaveSnapshot. The
// file takes its name only once whole and fsynced. The file's name, or the error (logged for
// `node` and `shard`): the state machine's from SaveSnapshot, or the file's.
absl::StatusOr<std::string> WriteLocalSnapshot(StateMachine& sm, ApplyRound* round,
                                               const std::string& dir, uint64_t node,
                                               uint64_t shard, uint64_t index, uint64_t term);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_LOCAL_SNAPSHOT_H_
