// FaultInjectionEnv: an Env over another one (real files in a test's folder, usually) whose
// file operations fail when a test says so: a disk that fills up in the middle of a write, an
// fsync that fails, a rename refused. What a failing disk does to the code under test is then
// tested in a unit test, in-process and on any machine, without a full file system or an
// LD_PRELOAD shim. The clock and every operation not made to fail go to the wrapped Env.
//
// A fault, once it fires, stays until ClearFaults(): a disk that filled up or broke does not
// heal by itself. Files it opened must not outlive it.
#ifndef MARMOT_RAFT_HOST_ENV_FAULT_INJECTION_H_
#define MARMOT_RAFT_HOST_ENV_FAULT_INJECTION_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

#include "absl/status/status.h"
#include "raft/host/env.h"

namespace marmot::raft::host {

class FaultInjectionEnv : public EnvWrapper {
 public:
  // The file operations a test can make fail (and counts).
  enum class Op { kCreate, kAppend, kSync, kClose, kRename, kRemove, kSyncFolder };

  // `target` (Env::Default() if null) must outlive this.
  explicit FaultInjectionEnv(Env* target = nullptr);

  // From now on `op` succeeds `successes` more times, then fails with `error` (which should
  // say what a system error would, e.g. ResourceExhausted for ENOSPC) every time.
  void FailAfter(Op op, int successes, absl::Status error);
  // The disk has `bytes` of room left: an Append past it writes what fits and fails with
  // ResourceExhausted, and FreeDiskBytes answers what is left.
  void SetDiskRoom(uint64_t bytes);
  // Every operation succeeds again and the disk has its real room.
  void ClearFaults();
  // How many times `op` was called (successfully or not) since this Env was made.
  int calls(Op op) const;

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path, const NewFileOptions& options) override;
  absl::Status RenameFile(const std::string& from, const std::string& to) override;
  absl::Status RemoveFile(const std::string& path) override;
  absl::Status SyncFolder(const std::string& dir) override;
  absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) override;

 private:
  class File;
  struct Fault {
    int successes_left = 0;
    absl::Status error;
  };

  // Counts a call of `op`; its injected error, or OK.
  absl::Status Check(Op op);
  // How much of `n` bytes an Append may write before the disk is full (all of them: n).
  uint64_t TakeRoom(uint64_t n);

  mutable std::mutex mu_;
  std::map<Op, Fault> faults_;
  std::map<Op, int> calls_;
  std::optional<uint64_t> room_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_ENV_FAULT_INJECTION_H_
