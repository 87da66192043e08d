#include "replicator/database_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace marmot::replicator {

absl::StatusOr<DatabaseLock> DatabaseLock::Acquire(const std::string& db_path) {
  // The file's own path, symbolic links resolved (as SQLite resolves them for its -wal and -shm
  // files): `-cleanup` through a link must meet the running node's lock.
  std::error_code error;
  const std::filesystem::path resolved = std::filesystem::weakly_canonical(db_path, error);
  const std::string path = LockPath(error ? db_path : resolved.string());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    if (error != EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("cannot lock ", path, ": ", std::strerror(error)));
    }
    int64_t pid = 0;
    const bool known =
        n > 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buf, n)), &pid);
    return absl::FailedPreconditionError(
        absl::StrCat("another marmot process", known ? absl::StrCat(" (pid ", pid, ")") : "",
                     " works on ", db_path, " (it holds ", path, "); stop it first"));
  }
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // Only the message of a refused process would lack the pid; the lock itself holds.
  }
  return DatabaseLock(fd);
}

DatabaseLock::DatabaseLock(DatabaseLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DatabaseLock::~DatabaseLock() {
  if (fd_ >= 0) ::close(fd_);  // Closing the last descriptor releases the flock.
}

}  // namespace marmot::replicator
