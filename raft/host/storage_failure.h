// What a process does when its raft folder stops taking writes (a full disk, an I/O error).
//
// The host stages every shard's Ready in memory, then makes it durable with one write
// (RocksLogStore::Commit). Once that write fails, the in-memory log is ahead of the disk and the
// Raft core already counts on it; RocksDB takes no more writes either. The host cannot go on,
// and it must not look healthy while it cannot persist a vote or an entry, so it ends the
// process with one line naming the cause and an exit code of its own (not the 134 of an abort:
// nothing is broken, a supervisor may restart it).
//
// Stopping loses nothing acknowledged: a proposal is acknowledged only after the write holding
// it returned OK with an fsync, and the torn record a failed write leaves at the end of the log
// is dropped at the next open (RocksLogStore::Open). Once space is freed, a restart catches up.
#ifndef MARMOT_RAFT_HOST_STORAGE_FAILURE_H_
#define MARMOT_RAFT_HOST_STORAGE_FAILURE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace marmot::raft::host {

// EX_IOERR of sysexits.h.
inline constexpr int kStorageFailureExitCode = 74;

// The line ExitOnStorageFailure logs, e.g. "[node 1] raft log write failed: No space left on
// device (the disk of raft folder /var/raft is full); exiting; nothing acknowledged is lost,
// restart after freeing space (<cause>)". `what` names the failed operation ("log write",
// "snapshot write").
// The disk is taken as full when `cause` is ResourceExhausted (RocksLogStore's code for it).
std::string StorageFailureMessage(uint64_t node_id, const std::string& raft_path,
                                  absl::string_view what, const absl::Status& cause);

// Logs StorageFailureMessage as an ERROR (glog copies it to stderr), flushes the logs and ends
// the process at once with kStorageFailureExitCode, running no destructors: other threads still
// use the store, and everything that must survive is on disk already. Thread-safe; when several
// threads fail at once, one logs and exits, the others wait for it.
[[noreturn]] void ExitOnStorageFailure(uint64_t node_id, const std::string& raft_path,
                                       absl::string_view what, const absl::Status& cause);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_STORAGE_FAILURE_H_
