#include "raft/host/snapshot_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace marmot::raft::host {

namespace {

constexpr size_t kWriteBufferBytes = 1 << 20;

absl::Status FromErrno(int err, absl::string_view what, const std::string& path) {
  std::string m = absl::StrCat(what, " ", path, ": ", strerror(err));
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(std::move(m));
  if (err == ENOENT) return absl::NotFoundError(std::move(m));
  return absl::InternalError(std::move(m));
}

}  // namespace

absl::Status StringSnapshotSource::ReadAt(uint64_t offset, size_t n, std::string* out) const {
  if (offset > data_.size() || n > data_.size() - offset) {
    return absl::OutOfRangeError(
        absl::StrCat("reading ", n, " bytes at ", offset, " of a ", data_.size(), "-byte payload"));
  }
  out->assign(data_, offset, n);
  return absl::OkStatus();
}

bool IsSnapshotFileName(absl::string_view name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == absl::string_view::npos && name.find('\0') == absl::string_view::npos;
}

absl::StatusOr<std::unique_ptr<FileSnapshotSource>> FileSnapshotSource::Open(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FromErrno(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = FromErrno(errno, "stat", path);
    ::close(fd);
    return s;
  }
  return std::unique_ptr<FileSnapshotSource>(
      new FileSnapshotSource(fd, static_cast<uint64_t>(st.st_size), path));
}

FileSnapshotSource::~FileSnapshotSource() { ::close(fd_); }

absl::Status FileSnapshotSource::ReadAt(uint64_t offset, size_t n, std::string* out) const {
  if (offset > size_ || n > size_ - offset) {
    return absl::OutOfRangeError(
        absl::StrCat("reading ", n, " bytes at ", offset, " of ", path_, " (", size_, " bytes)"));
  }
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
      return absl::OutOfRangeError(
          absl::StrCat(path_, " ended at ", offset + done, " of ", size_, " bytes"));
    }
    done += static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> SnapshotFileWriter::Create(
    const std::string& path) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return FromErrno(errno, "create", tmp);
  return std::unique_ptr<SnapshotFileWriter>(new SnapshotFileWriter(fd, path));
}

SnapshotFileWriter::~SnapshotFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink((path_ + ".tmp").c_str());
}

absl::Status SnapshotFileWriter::Write(absl::string_view bytes) {
  if (!failed_.ok()) return failed_;
  size_ += bytes.size();
  if (buffer_.size() + bytes.size() < kWriteBufferBytes) {
    buffer_.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  if (absl::Status s = Flush(); !s.ok()) return s;
  if (bytes.size() < kWriteBufferBytes) {
    buffer_.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  return WriteAll(bytes);  // A large piece goes straight to the file, uncopied.
}

absl::Status SnapshotFileWriter::Flush() {
  absl::Status s = WriteAll(buffer_);
  buffer_.clear();
  return s;
}

absl::Status SnapshotFileWriter::WriteAll(absl::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_ = FromErrno(errno, "write", path_ + ".tmp");
      return failed_;
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::Finish() {
  if (!failed_.ok()) return failed_;
  const std::string tmp = path_ + ".tmp";
  if (absl::Status s = Flush(); !s.ok()) return s;
  if (::fsync(fd_) != 0) return failed_ = FromErrno(errno, "fsync", tmp);
  const int closed = ::close(fd_);
  fd_ = -1;
  if (closed != 0) return failed_ = FromErrno(errno, "close", tmp);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return failed_ = FromErrno(errno, "rename", tmp);
  finished_ = true;
  return SyncDirectory(std::filesystem::path(path_).parent_path().string());
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FromErrno(errno, "open", dir);
  const int synced = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return synced == 0 ? absl::OkStatus() : FromErrno(err, "fsync", dir);
}

}  // namespace marmot::raft::host
