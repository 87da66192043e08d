// FaultyVfs: a SQLite VFS for tests that makes writes to chosen files fail, the way a full disk
// or a failing disk makes them fail, without a real full file system.
//
// It wraps the VFS that was the default when it was made (SQLite's "unix") and passes every
// call on to it. While a fault is set, writes, syncs and truncations of the files whose path
// starts with the fault's prefix (a database path covers its -wal and -journal files) return the
// fault's error code (SQLITE_FULL or an SQLITE_IOERR_* code) instead of reaching the disk; reads,
// locks and the shared-memory index (-shm, mapped) still work, as they do on a full disk. A
// connection uses it when opened with its name, or with no VFS name once it is the default.
//
// Registered with SQLite (process-wide) by Install and never unregistered: SQLite keeps pointers
// to a VFS in every connection opened through it, so an instance lives as long as the process.
#ifndef MARMOT_SQLITE_TESTING_FAULTY_VFS_H_
#define MARMOT_SQLITE_TESTING_FAULTY_VFS_H_

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"

namespace marmot::sqlite::testing {

class FaultyVfs {
 public:
  // Registers a VFS named `name` wrapping the current default VFS, the new default when
  // `make_default` (so that code opening databases without a VFS name uses it). Installing the
  // same name twice returns the first instance. Never returns null.
  static FaultyVfs* Install(const std::string& name, bool make_default);

  // From now on writes, syncs and truncations of files whose path starts with `path_prefix`
  // return `code` (SQLITE_FULL, SQLITE_IOERR_WRITE, ...).
  void FailWrites(const std::string& path_prefix, int code = SQLITE_FULL);
  // Ends the fault: every call reaches the disk again.
  void Heal();

  // Writes, syncs and truncations refused since Install.
  int64_t refused() const { return refused_.load(); }
  const std::string& name() const { return name_; }

  // The code a write to `path` returns now: SQLITE_OK, or the fault's code.
  int FaultFor(const char* path) const;
  void CountRefused() { refused_.fetch_add(1); }
  sqlite3_vfs* base() const { return base_; }

 private:
  FaultyVfs(std::string name, sqlite3_vfs* base);

  const std::string name_;
  sqlite3_vfs* const base_;
  sqlite3_vfs vfs_;
  mutable absl::Mutex mu_;
  std::string prefix_ ABSL_GUARDED_BY(mu_);
  int code_ ABSL_GUARDED_BY(mu_) = SQLITE_OK;
  std::atomic<int64_t> refused_{0};
};

}  // namespace marmot::sqlite::testing

#endif  // MARMOT_SQLITE_TESTING_FAULTY_VFS_H_
