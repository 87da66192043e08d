// Env::Default(): the Env of the real operating system.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "raft/host/env.h"

namespace marmot::raft::host {
namespace {

absl::Status FromErrno(int err, absl::string_view what, const std::string& path) {
  std::string m = absl::StrCat(what, " ", path, ": ", strerror(err));
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(std::move(m));
  if (err == ENOENT) return absl::NotFoundError(std::move(m));
  if (err == EEXIST) return absl::AlreadyExistsError(std::move(m));
  return absl::InternalError(std::move(m));
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Append(absl::string_view data) override {
    if (fd_ < 0) return FromErrno(EBADF, "write", path_);
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return FromErrno(errno, "write", path_);
      }
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (fd_ < 0) return FromErrno(EBADF, "fsync", path_);
    return ::fsync(fd_) == 0 ? absl::OkStatus() : FromErrno(errno, "fsync", path_);
  }

  absl::Status Close() override {
    if (fd_ < 0) return FromErrno(EBADF, "close", path_);
    const int closed = ::close(fd_);
    fd_ = -1;
    return closed == 0 ? absl::OkStatus() : FromErrno(errno, "close", path_);
  }

 private:
  int fd_;
  const std::string path_;
};

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(int fd, uint64_t size, std::string path)
      : fd_(fd), size_(size), path_(std::move(path)) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  uint64_t size() const override { return size_; }

  absl::Status Read(uint64_t offset, size_t n, std::string* out) const override {
    out->resize(n);
    size_t done = 0;
    while (done < n) {
      const ssize_t got =
          ::pread(fd_, out->data() + done, n - done, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        return FromErrno(errno, "read", path_);
      }
      if (got == 0) {
        return absl::OutOfRangeError(absl::StrCat(path_, " ended at ", offset + done, " bytes; ", n,
                                                  " were asked at ", offset));
      }
      done += static_cast<size_t>(got);
    }
    return absl::OkStatus();
  }

 private:
  const int fd_;
  const uint64_t size_;
  const std::string path_;
};

class PosixEnv : public Env {
 public:
  absl::Time MonotonicNow() override {
    return absl::UnixEpoch() +
           absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
  }

  absl::Time WallNow() override { return absl::Now(); }

  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }

  bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 absl::Time deadline, absl::FunctionRef<bool()> done) override {
    while (!done()) {
      if (deadline == absl::InfiniteFuture()) {
        cv.wait(lock);
        continue;
      }
      const absl::Duration left = deadline - MonotonicNow();
      if (left <= absl::ZeroDuration()) return false;
      // Bounded: the standard library adds the timeout to its clock's reading, which a
      // duration near the infinite one would overflow.
      cv.wait_for(lock, absl::ToChronoNanoseconds(std::min(left, absl::Hours(24))));
    }
    return true;
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path, const NewFileOptions& options) override {
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (options.exclusive ? O_EXCL : O_TRUNC);
    const int fd = ::open(path.c_str(), flags, static_cast<mode_t>(options.permissions));
    if (fd < 0) return FromErrno(errno, "create", path);
    return std::make_unique<PosixWritableFile>(fd, path);
  }

  absl::StatusOr<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return FromErrno(errno, "open", path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      absl::Status s = FromErrno(errno, "stat", path);
      ::close(fd);
      return s;
    }
    return std::make_unique<PosixRandomAccessFile>(fd, static_cast<uint64_t>(st.st_size), path);
  }

  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) == 0) return absl::OkStatus();
    return FromErrno(errno, "rename", absl::StrCat(from, " to ", to));
  }

  absl::Status RemoveFile(const std::string& path) override {
    return ::unlink(path.c_str()) == 0 ? absl::OkStatus() : FromErrno(errno, "remove", path);
  }

  absl::StatusOr<std::vector<std::string>> ListFolder(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return FromErrno(errno, "list", dir);
    std::vector<std::string> names;
    errno = 0;
    while (const struct dirent* e = ::readdir(d)) {
      const absl::string_view name = e->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return FromErrno(err, "list", dir);
    return names;
  }

  absl::StatusOr<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return FromErrno(errno, "stat", path);
    return static_cast<uint64_t>(st.st_size);
  }

  absl::Status SyncFolder(const std::string& dir) override {
    const std::string d = dir.empty() ? "." : dir;
    const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return FromErrno(errno, "open", d);
    const int synced = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    return synced == 0 ? absl::OkStatus() : FromErrno(err, "fsync", d);
  }

  absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) override {
    struct statvfs st;
    if (::statvfs(dir.c_str(), &st) != 0) return FromErrno(errno, "statvfs", dir);
    return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  }
};

}  // namespace

Env* Env::Default() {
  static Env* const env = new PosixEnv();
  return env;
}

}  // namespace marmot::raft::host
