// The host's side of snapshot payload files in the snapshots folder (snapshot_file.h): writing
// a shard's state machine into one (which the host then records in the log store), and opening
// the one a recorded snapshot names.
#ifndef MARMOT_RAFT_HOST_SNAPSHOT_PAYLOADS_H_
#define MARMOT_RAFT_HOST_SNAPSHOT_PAYLOADS_H_

#include <cstdint>
#include <memory>
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

// The payload the recorded snapshot file `file` in `dir` holds, open for reading; an empty
// payload for "" (a snapshot without one, the bootstrap's). DataLossError when it cannot be
// opened: the log store names a file that must be there.
absl::StatusOr<std::shared_ptr<SnapshotSource>> OpenRecordedPayload(const std::string& dir,
                                                                    const std::string& file);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SNAPSHOT_PAYLOADS_H_
