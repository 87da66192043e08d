// How a state machine writes and reads a snapshot payload: as a stream of bytes, never as one
// string, so that a payload may be larger than memory (and than a protobuf message's 2 GiB).
//
// The host hands a state machine a SnapshotSink to save into (a file being written,
// snapshot_file.h) and a SnapshotSource to recover from (a file already checked and recorded).
// What the bytes mean is the state machine's business; the host only moves and checksums them.
// Tests use the string-backed implementations below.
#ifndef MARMOT_RAFT_HOST_SNAPSHOT_IO_H_
#define MARMOT_RAFT_HOST_SNAPSHOT_IO_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace marmot::raft::host {

// Where a payload being saved goes, in order.
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  // Appends `bytes`. An error (ResourceExhausted: the disk is full) leaves the payload unusable:
  // the host records nothing of it.
  virtual absl::Status Write(absl::string_view bytes) = 0;
};

// A payload to read, at any offset (a reader may go back, e.g. to read a table again).
// Thread-compatible: one reader at a time.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // The payload's size in bytes; 0 for the empty payload of a bootstrap snapshot.
  virtual uint64_t size() const = 0;
  // Replaces `*out` by the `n` bytes at `offset`. OutOfRange when they are not all there;
  // another error when the bytes cannot be read (an I/O error).
  virtual absl::Status ReadAt(uint64_t offset, size_t n, std::string* out) const = 0;
};

// A sink into a string (tests, small payloads).
class StringSnapshotSink : public SnapshotSink {
 public:
  absl::Status Write(absl::string_view bytes) override {
    data_.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  const std::string& data() const { return data_; }
  std::string Take() { return std::move(data_); }

 private:
  std::string data_;
};

// A source over a string it owns.
class StringSnapshotSource : public SnapshotSource {
 public:
  explicit StringSnapshotSource(std::string data = "") : data_(std::move(data)) {}
  uint64_t size() const override { return data_.size(); }
  absl::Status ReadAt(uint64_t offset, size_t n, std::string* out) const override;

 private:
  std::string data_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SNAPSHOT_IO_H_
