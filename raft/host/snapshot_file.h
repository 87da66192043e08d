// Snapshot payloads as files of the raft folder's `snapshots/` (rocks_log_store.h): written
// through a SnapshotFileWriter, read through a FileSnapshotSource, never whole in memory. Both
// reach the files through an Env (env.h).
//
// In the host, a v1::Snapshot's `data` is not the payload: it is the name of the payload's file
// in that folder ("" for a bootstrap snapshot, which has none). The name never travels: the
// transport streams the file's bytes and the receiver puts them in a file of its own.
#ifndef MARMOT_RAFT_HOST_SNAPSHOT_FILE_H_
#define MARMOT_RAFT_HOST_SNAPSHOT_FILE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "raft/host/env.h"
#include "raft/host/snapshot_io.h"

namespace marmot::raft::host {

// Whether `name` can name a file of the snapshots folder: not empty, no '/', not "." or "..".
bool IsSnapshotFileName(absl::string_view name);

// An open payload file. The file stays readable through it after it is deleted (a newer
// snapshot made it obsolete), so whoever holds one can finish reading.
class FileSnapshotSource : public SnapshotSource {
 public:
  // NotFound when the file does not exist; Internal for other failures.
  static absl::StatusOr<std::unique_ptr<FileSnapshotSource>> Open(const std::string& path,
                                                                  Env* env = Env::Default());

  uint64_t size() const override { return file_->size(); }
  absl::Status ReadAt(uint64_t offset, size_t n, std::string* out) const override;

 private:
  FileSnapshotSource(std::unique_ptr<RandomAccessFile> file, std::string path)
      : file_(std::move(file)), path_(std::move(path)) {}
  const std::unique_ptr<RandomAccessFile> file_;
  const std::string path_;
};

// Writes a payload to `<path>.tmp` (mode 0600), buffered; Finish() makes it durable as `path`
// (fsync, rename, fsync of the folder). Without a successful Finish() the temporary file is
// removed when the writer goes, so a failed or abandoned payload never takes the final name.
class SnapshotFileWriter : public SnapshotSink {
 public:
  static absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> Create(const std::string& path,
                                                                    Env* env = Env::Default());
  ~SnapshotFileWriter() override;

  // ResourceExhausted when the disk is full; the writer is then unusable.
  absl::Status Write(absl::string_view bytes) override;
  absl::Status Finish();
  // Bytes written so far.
  uint64_t size() const { return size_; }

 private:
  SnapshotFileWriter(Env* env, std::unique_ptr<WritableFile> file, std::string path)
      : env_(env), file_(std::move(file)), path_(std::move(path)) {}
  absl::Status Flush();
  absl::Status WriteAll(absl::string_view bytes);

  Env* const env_;
  std::unique_ptr<WritableFile> file_;  // null once closed
  const std::string path_;
  std::string buffer_;
  uint64_t size_ = 0;
  bool finished_ = false;
  absl::Status failed_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SNAPSHOT_FILE_H_
