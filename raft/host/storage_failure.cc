#include "raft/host/storage_failure.h"

#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft::host {

std::string StorageFailureMessage(uint64_t node_id, const std::string& raft_path,
                                  absl::string_view what, const absl::Status& cause) {
  if (absl::IsResourceExhausted(cause)) {
    return absl::StrCat("[node ", node_id, "] raft ", what,
                        " failed: No space left on device (the disk of raft folder ", raft_path,
                        " is full); exiting; nothing acknowledged is lost, restart after freeing "
                        "space (",
                        cause.message(), ")");
  }
  return absl::StrCat("[node ", node_id, "] raft ", what, " failed: ", cause.ToString(),
                      "; exiting; nothing acknowledged is lost, restart once the disk of raft "
                      "folder ",
                      raft_path, " works again");
}

void ExitOnStorageFailure(uint64_t node_id, const std::string& raft_path, absl::string_view what,
                          const absl::Status& cause) {
  // One line per process: a write that fails in the Raft loop and the flush that fails in a
  // RocksDB thread at the same moment would otherwise report the same disk twice. The second
  // caller waits for the first to end the process.
  static std::atomic<bool> exiting{false};
  if (exiting.exchange(true)) {
    for (;;) pause();
  }
  LOG(ERROR) << StorageFailureMessage(node_id, raft_path, what, cause);
  google::FlushLogFiles(google::GLOG_INFO);
  _exit(kStorageFailureExitCode);
}

}  // namespace marmot::raft::host
