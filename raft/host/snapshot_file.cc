#include "raft/host/snapshot_file.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace marmot::raft::host {

namespace {

constexpr size_t kWriteBufferBytes = 1 << 20;

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
    const std::string& path, Env* env) {
  absl::StatusOr<std::unique_ptr<RandomAccessFile>> file = env->NewRandomAccessFile(path);
  if (!file.ok()) return file.status();
  return std::unique_ptr<FileSnapshotSource>(new FileSnapshotSource(*std::move(file), path));
}

absl::Status FileSnapshotSource::ReadAt(uint64_t offset, size_t n, std::string* out) const {
  if (offset > size() || n > size() - offset) {
    return absl::OutOfRangeError(
        absl::StrCat("reading ", n, " bytes at ", offset, " of ", path_, " (", size(), " bytes)"));
  }
  return file_->Read(offset, n, out);
}

absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> SnapshotFileWriter::Create(
    const std::string& path, Env* env) {
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      env->NewWritableFile(path + ".tmp", {.exclusive = false, .permissions = 0600});
  if (!file.ok()) return file.status();
  return std::unique_ptr<SnapshotFileWriter>(new SnapshotFileWriter(env, *std::move(file), path));
}

SnapshotFileWriter::~SnapshotFileWriter() {
  file_.reset();
  if (!finished_) env_->RemoveFile(path_ + ".tmp").IgnoreError();
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
  if (bytes.empty()) return absl::OkStatus();
  if (absl::Status s = file_->Append(bytes); !s.ok()) failed_ = s;
  return failed_;
}

absl::Status SnapshotFileWriter::Finish() {
  if (!failed_.ok()) return failed_;
  if (absl::Status s = Flush(); !s.ok()) return s;
  if (absl::Status s = file_->Sync(); !s.ok()) return failed_ = s;
  absl::Status closed = file_->Close();
  file_.reset();
  if (!closed.ok()) return failed_ = closed;
  if (absl::Status s = env_->RenameFile(path_ + ".tmp", path_); !s.ok()) return failed_ = s;
  finished_ = true;
  return env_->SyncFolder(std::filesystem::path(path_).parent_path().string());
}

}  // namespace marmot::raft::host
