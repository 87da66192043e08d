// DatabaseLock: at most one marmot process works on a database file at a time.
//
// Two marmot processes on one file (a second node started with the same -db-path, or
// `marmot -cleanup` while a node runs) would each read and delete the change logs and keep
// state about the file that the other invalidates: cleanup dropped a running node's tables,
// after which every apply failed forever. A running marmot therefore holds an exclusive
// flock() on `<db-path>-marmot.lock` (symbolic links of the path resolved; a hard link is
// another path and is not caught) for its whole life; the kernel releases it when the
// process ends, however it ends, so a crash leaves no stale lock. The file holds the pid of the
// holder, for the error message of the one refused. It stays beside the database.
#ifndef MARMOT_REPLICATOR_DATABASE_LOCK_H_
#define MARMOT_REPLICATOR_DATABASE_LOCK_H_

#include <string>

#include "absl/status/statusor.h"

namespace marmot::replicator {

class DatabaseLock {
 public:
  // Takes the lock of `db_path`. FAILED_PRECONDITION, naming the holder's pid, when another
  // process holds it; other errors when the lock file cannot be made.
  static absl::StatusOr<DatabaseLock> Acquire(const std::string& db_path);

  DatabaseLock(DatabaseLock&& other) noexcept;
  DatabaseLock& operator=(DatabaseLock&&) = delete;
  DatabaseLock(const DatabaseLock&) = delete;
  ~DatabaseLock();  // Releases it.

  static std::string LockPath(const std::string& db_path) { return db_path + "-marmot.lock"; }

 private:
  explicit DatabaseLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DATABASE_LOCK_H_
