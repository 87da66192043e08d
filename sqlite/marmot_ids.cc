#include "sqlite/marmot_ids.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

namespace marmot::ids {
namespace {

std::string SystemError(const std::string& what, const std::string& path) {
  return "marmot_id(): cannot " + what + " " + path + ": " + std::strerror(errno);
}

// Holds flock(LOCK_EX) on `fd` for its lifetime.
class FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) {
    do {
      locked_ = flock(fd_, LOCK_EX) == 0;
    } while (!locked_ && errno == EINTR);
  }
  ~FileLock() {
    if (locked_) flock(fd_, LOCK_UN);
  }
  bool locked() const { return locked_; }

 private:
  const int fd_;
  bool locked_ = false;
};

}  // namespace

std::string CheckNodeId(int64_t node) {
  if (node >= 1 && node <= kMaxNodeId) return "";
  return "marmot_id(): node id " + std::to_string(node) + " is out of range: give this node's " +
         "-node-id, 1 to " + std::to_string(kMaxNodeId) + " (MARMOT_NODE_ID or marmot_id(N))";
}

bool NextTick(int64_t last, int64_t unix_millis, int64_t* tick, std::string* error) {
  if (last < 0 || last >= kTickLimit) {
    *error = "marmot_id(): the last tick " + std::to_string(last) + " is not a tick (damaged " +
             "state file?)";
    return false;
  }
  if (unix_millis < kEpochUnixMillis) {
    *error = "marmot_id(): the clock says " + std::to_string(unix_millis) + " ms since 1970, " +
             "before 2025: set the clock";
    return false;
  }
  const int64_t millis = unix_millis - kEpochUnixMillis;
  const int64_t from_clock =
      millis < (kTickLimit >> kSequenceBits) ? millis << kSequenceBits : kTickLimit;
  const int64_t next = last + 1 > from_clock ? last + 1 : from_clock;
  if (next >= kTickLimit) {
    *error = "marmot_id(): ids ran out (41 bits of milliseconds since 2025 end in 2094)";
    return false;
  }
  *tick = next;
  return true;
}

int64_t ComposeId(int64_t tick, int64_t node) {
  const int64_t millis = tick >> kSequenceBits;
  const int64_t sequence = tick & ((int64_t{1} << kSequenceBits) - 1);
  return (millis << (kNodeBits + kSequenceBits)) | (node << kSequenceBits) | sequence;
}

IdParts SplitId(int64_t id) {
  return IdParts{
      .unix_millis = (id >> (kNodeBits + kSequenceBits)) + kEpochUnixMillis,
      .node = (id >> kSequenceBits) & kMaxNodeId,
      .sequence = id & ((int64_t{1} << kSequenceBits) - 1),
  };
}

TickFile::TickFile(std::string path, int mode) : path_(std::move(path)), mode_(mode) {}

TickFile::~TickFile() {
  if (fd_ >= 0) close(fd_);
}

bool TickFile::Open(std::string* error) {
  if (fd_ >= 0) return true;
  fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode_);
  if (fd_ < 0) {
    *error = SystemError("open", path_);
    return false;
  }
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = "marmot_id(): " + path_ + " is not a regular file";
    close(fd_);
    fd_ = -1;
    return false;
  }
  return true;
}

bool TickFile::Take(int64_t unix_millis, int64_t* tick, std::string* error) {
  if (path_.empty()) {
    if (!NextTick(last_, unix_millis, tick, error)) return false;
    last_ = *tick;
    return true;
  }
  if (!Open(error)) return false;
  FileLock lock(fd_);
  if (!lock.locked()) {
    *error = SystemError("lock", path_);
    return false;
  }
  unsigned char bytes[8] = {};
  const ssize_t got = pread(fd_, bytes, sizeof bytes, 0);
  if (got < 0) {
    *error = SystemError("read", path_);
    return false;
  }
  if (got != 0 && got != sizeof bytes) {
    *error = "marmot_id(): " + path_ + " holds " + std::to_string(got) +
             " bytes, not 8: " + "damaged; remove it (ids then go on from the clock)";
    return false;
  }
  uint64_t stored = 0;
  for (int i = 7; i >= 0; --i) stored = (stored << 8) | bytes[i];
  const int64_t last = static_cast<int64_t>(stored);
  if (!NextTick(last, unix_millis, tick, error)) {
    if (last < 0 || last >= kTickLimit) *error += ": remove " + path_;
    return false;
  }
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(*tick >> (8 * i));
  if (pwrite(fd_, bytes, sizeof bytes, 0) != sizeof bytes) {
    *error = SystemError("write", path_);
    return false;
  }
  return true;
}

}  // namespace marmot::ids
