// Env: the operating system as the host and the replicator use it outside RocksDB and SQLite:
// a clock, waiting, and the files they write themselves (snapshot payloads, small durable
// files). Code that takes an Env instead of calling the system can be run by a test on a clock
// the test moves by hand (env_manual_clock.h) or on a disk that fails when told
// (env_fault_injection.h).
//
// Env::Default() is the real one: POSIX files, the system's clocks. Every Env is thread-safe.
//
// Errors are values: ResourceExhausted when the disk is full (ENOSPC, EDQUOT), NotFound when a
// file or folder does not exist, AlreadyExists when an exclusive create finds a file, Internal
// for any other failure; each message names the operation and the path.
#ifndef MARMOT_RAFT_HOST_ENV_H_
#define MARMOT_RAFT_HOST_ENV_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace marmot::raft::host {

// A file open for writing, appended to in order. One thread at a time.
class WritableFile {
 public:
  WritableFile() = default;
  WritableFile(const WritableFile&) = delete;
  WritableFile& operator=(const WritableFile&) = delete;
  // Closes the file if Close() was not called (errors are lost: call Close() to see them).
  virtual ~WritableFile() = default;

  // Appends all of `data` (unbuffered: it reaches the operating system before this returns).
  // After an error the file's length is unknown: the caller should give it up.
  virtual absl::Status Append(absl::string_view data) = 0;
  // Makes everything appended durable (fsync).
  virtual absl::Status Sync() = 0;
  // Closes the file; calls after it fail. A failed close may have lost written bytes.
  virtual absl::Status Close() = 0;
};

// A file open for reading at any offset. Thread-safe. What was opened stays readable through it
// after the file is removed or replaced under its name (POSIX semantics).
class RandomAccessFile {
 public:
  RandomAccessFile() = default;
  RandomAccessFile(const RandomAccessFile&) = delete;
  RandomAccessFile& operator=(const RandomAccessFile&) = delete;
  virtual ~RandomAccessFile() = default;

  // The file's size when it was opened.
  virtual uint64_t size() const = 0;
  // Replaces `*out` by the `n` bytes at `offset`. OutOfRange when the file ends before them.
  virtual absl::Status Read(uint64_t offset, size_t n, std::string* out) const = 0;
};

// How NewWritableFile creates a file.
struct NewFileOptions {
  // True: an existing file is refused (AlreadyExists). False: it is truncated.
  bool exclusive = false;
  // Permission bits of a file it creates (the umask applies). Owner-only by default: what the
  // host writes is the cluster's data.
  uint32_t permissions = 0600;
};

class Env {
 public:
  Env() = default;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  virtual ~Env() = default;

  // The real operating system. Lives as long as the process; never delete it.
  static Env* Default();

  // --- Clock and waiting.

  // A clock for intervals and deadlines: it never goes back (the real one is CLOCK_MONOTONIC).
  // Its origin is arbitrary: compare its readings with each other, never with the calendar.
  virtual absl::Time MonotonicNow() = 0;
  // The calendar time, for what is shown to people or compared across processes.
  virtual absl::Time WallNow() = 0;
  // Returns after `d` has passed on this Env's clock (at once for d <= 0).
  virtual void SleepFor(absl::Duration d) = 0;
  // Waits on `cv` (whose mutex `lock` holds) until `done()` or until MonotonicNow() reaches
  // `deadline` (InfiniteFuture: no deadline); returns done(). `done` runs with `lock` held; the
  // caller notifies `cv` when what `done` reads changes. Spurious wakeups are absorbed.
  virtual bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                         absl::Time deadline, absl::FunctionRef<bool()> done) = 0;
  // WaitUntil for at most `timeout` from now.
  bool WaitFor(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
               absl::Duration timeout, absl::FunctionRef<bool()> done) {
    return WaitUntil(lock, cv, MonotonicNow() + timeout, done);
  }

  // --- Files.

  // Opens `path` for writing, creating it (see NewFileOptions).
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path, const NewFileOptions& options) = 0;
  virtual absl::StatusOr<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) = 0;
  // Renames `from` to `to` atomically, replacing `to` if it exists (not durable until the
  // folder is synced).
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // The names of the entries of folder `dir` (not paths; no "." or ".."), in no order.
  virtual absl::StatusOr<std::vector<std::string>> ListFolder(const std::string& dir) = 0;
  virtual absl::StatusOr<uint64_t> FileSize(const std::string& path) = 0;
  // Makes the entries of folder `dir` durable (fsync of the folder): a file created, renamed or
  // removed in it survives a power loss only after this.
  virtual absl::Status SyncFolder(const std::string& dir) = 0;
  // Bytes an unprivileged writer can still write to the file system of folder `dir` (statvfs).
  virtual absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) = 0;
};

// Forwards every call to another Env; a test Env overrides only what it changes.
class EnvWrapper : public Env {
 public:
  // `target` must outlive the wrapper.
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  absl::Time MonotonicNow() override { return target_->MonotonicNow(); }
  absl::Time WallNow() override { return target_->WallNow(); }
  void SleepFor(absl::Duration d) override { target_->SleepFor(d); }
  bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 absl::Time deadline, absl::FunctionRef<bool()> done) override {
    return target_->WaitUntil(lock, cv, deadline, done);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path, const NewFileOptions& options) override {
    return target_->NewWritableFile(path, options);
  }
  absl::StatusOr<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) override {
    return target_->NewRandomAccessFile(path);
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  absl::Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  absl::StatusOr<std::vector<std::string>> ListFolder(const std::string& dir) override {
    return target_->ListFolder(dir);
  }
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override {
    return target_->FileSize(path);
  }
  absl::Status SyncFolder(const std::string& dir) override { return target_->SyncFolder(dir); }
  absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) override {
    return target_->FreeDiskBytes(dir);
  }

 private:
  Env* const target_;
};

// Writes `data` to `path` durably: to `<path>.tmp`, fsync, rename over `path`, fsync of the
// folder. `path` holds either its old content or all of `data`, whatever fails or crashes; on
// failure the temporary file is removed (it would only take room on a disk likely full).
absl::Status WriteFileDurably(Env* env, const std::string& path, absl::string_view data,
                              uint32_t permissions = 0600);
// The whole content of `path` (NotFound when there is none).
absl::StatusOr<std::string> ReadWholeFile(Env* env, const std::string& path);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_ENV_H_
