#include "replicator/raft_store_folder.h"

#include <glog/logging.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "raft/host/rocks_log_store.h"

namespace marmot::replicator {

absl::StatusOr<std::string> RaftStoreFolder(const std::string& raft_path, uint64_t node_id) {
  namespace fs = std::filesystem;
  const std::string own = absl::StrCat(raft_path, "/node-", node_id);
  absl::StatusOr<uint64_t> older = raft::host::RocksLogStore::ReadNodeId(raft_path);
  if (absl::IsNotFound(older.status())) return own;
  if (!older.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "-raft-path ", raft_path, " holds a raft store of an older version that cannot be read (",
        older.status().message(), "); refusing to start, nothing was changed"));
  }
  if (*older != node_id) return own;  // Another node's: not ours to touch.
  std::error_code ec;
  if (fs::exists(own, ec) && !fs::is_empty(own, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "both ", raft_path, " (the layout of older versions) and ", own, " hold files of node ",
        node_id,
        "'s raft store; refusing to start, nothing was changed: move the one that is not "
        "current away"));
  }
  LOG(INFO) << "node " << node_id << ": using its raft store in " << raft_path
            << ", where an older version kept it (new stores go to " << raft_path << "/node-<id>)";
  return raft_path;
}

}  // namespace marmot::replicator
