// Where a node keeps its Raft store: `<raft-path>/node-<id>`, so that several nodes on one
// machine can share one -raft-path (the default /tmp/raft is such a folder), as the original
// Marmot did.
//
// Older versions kept the store directly in -raft-path (its db/ and snapshots/ folders there).
// Such a store is still this node's store when it names this node: it is used where it lies,
// never moved or copied, so an upgrade cannot lose it halfway through a move. A store of
// another node found there is left alone.
#ifndef MARMOT_REPLICATOR_RAFT_STORE_FOLDER_H_
#define MARMOT_REPLICATOR_RAFT_STORE_FOLDER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace marmot::replicator {

// The folder of node `node_id`'s Raft store under `raft_path`: `raft_path` itself when it holds
// this node's store in the older layout, else `raft_path/node-<node_id>` (which may not exist
// yet). Changes nothing on disk. Fails with FailedPreconditionError when both hold a store
// (which one is current cannot be told), or when `raft_path` holds a store of the older layout
// that cannot be read (so that a damaged store is never silently replaced by a new one).
absl::StatusOr<std::string> RaftStoreFolder(const std::string& raft_path, uint64_t node_id);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_RAFT_STORE_FOLDER_H_
