#include "raft/host/snapshot_receipt.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "raft/host/snapshot_file.h"

namespace marmot::raft::host {

uint64_t PayloadChecksum(uint64_t h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 1099511628211ull;
  }
  return h;
}

absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) {
  struct statvfs st;
  if (::statvfs(dir.c_str(), &st) != 0) {
    return absl::InternalError(absl::StrCat("statvfs ", dir, ": ", strerror(errno)));
  }
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

SnapshotReceipts::SnapshotReceipts(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SnapshotReceipts::Receipt>> SnapshotReceipts::Begin(
    uint64_t shard, uint64_t from, uint64_t index, uint64_t total, uint64_t checksum) {
  std::lock_guard<std::mutex> l(mu_);
  if (open_.count(shard)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a snapshot of shard ", shard, " is being received already"));
  }
  absl::StatusOr<uint64_t> free =
      options_.free_bytes ? options_.free_bytes(options_.dir) : FreeDiskBytes(options_.dir);
  if (!free.ok()) return free.status();
  uint64_t pending = 0;
  for (const auto& [s, bytes] : open_) pending += bytes;
  const uint64_t needed = total + pending + options_.reserve_bytes;
  if (needed < total || needed > *free) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no room for a snapshot of ", total, " bytes: ", *free, " bytes free in ",
                     options_.dir, ", ", pending, " promised to snapshots being received, ",
                     options_.reserve_bytes, " kept free"));
  }
  // A random part: a name of an earlier run may still name the shard's recorded snapshot.
  const std::string name =
      absl::StrCat("recv-", shard, "-", index, "-", from, "-",
                   absl::Hex(absl::Uniform<uint64_t>(absl::BitGen())), ".snap");
  const std::string tmp = absl::StrCat(options_.dir, "/", name, ".tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("create ", tmp, ": ", strerror(errno)));
  open_[shard] = total;
  return std::unique_ptr<Receipt>(new Receipt(this, shard, total, checksum, name, fd));
}

void SnapshotReceipts::Release(uint64_t shard) {
  std::lock_guard<std::mutex> l(mu_);
  open_.erase(shard);
}

SnapshotReceipts::Receipt::Receipt(SnapshotReceipts* owner, uint64_t shard, uint64_t total,
                                   uint64_t checksum, std::string name, int fd)
    : owner_(owner),
      shard_(shard),
      total_(total),
      checksum_(checksum),
      name_(std::move(name)),
      fd_(fd) {}

SnapshotReceipts::Receipt::~Receipt() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(absl::StrCat(owner_->options_.dir, "/", name_, ".tmp").c_str());
  owner_->Release(shard_);
}

absl::Status SnapshotReceipts::Receipt::Fail(absl::Status s) {
  failed_ = s;
  return s;
}

absl::Status SnapshotReceipts::Receipt::Add(uint64_t offset, absl::string_view data) {
  if (!failed_.ok()) return failed_;
  if (offset != received_) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("chunk at ", offset, " where ", received_, " was expected")));
  }
  if (data.size() > owner_->options_.max_chunk_bytes) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "a chunk of ", data.size(), " bytes (at most ", owner_->options_.max_chunk_bytes, ")")));
  }
  if (data.size() > total_ - received_) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("chunks go past the announced ", total_, " bytes")));
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = absl::StrCat("write ", name_, ": ", strerror(errno));
      return Fail(errno == ENOSPC || errno == EDQUOT ? absl::ResourceExhaustedError(why)
                                                     : absl::InternalError(why));
    }
    done += static_cast<size_t>(n);
  }
  sum_ = PayloadChecksum(sum_, data.data(), data.size());
  received_ += data.size();
  return absl::OkStatus();
}

absl::StatusOr<std::string> SnapshotReceipts::Receipt::Finish() {
  if (!failed_.ok()) return failed_;
  if (received_ != total_) {
    return Fail(absl::DataLossError(absl::StrCat("got ", received_, " of ", total_, " bytes")));
  }
  if (sum_ != checksum_) return Fail(absl::DataLossError("checksum mismatch"));
  const std::string& dir = owner_->options_.dir;
  const std::string tmp = absl::StrCat(dir, "/", name_, ".tmp");
  if (::fsync(fd_) != 0) {
    return Fail(absl::InternalError(absl::StrCat("fsync ", tmp, ": ", strerror(errno))));
  }
  ::close(fd_);
  fd_ = -1;
  if (owner_->options_.check) {
    absl::StatusOr<std::unique_ptr<FileSnapshotSource>> payload = FileSnapshotSource::Open(tmp);
    if (!payload.ok()) return Fail(payload.status());
    if (absl::Status s = owner_->options_.check(shard_, **payload); !s.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("the payload is not a snapshot of shard ", shard_, ": ", s.message())));
    }
  }
  const std::string path = absl::StrCat(dir, "/", name_);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Fail(absl::InternalError(absl::StrCat("rename ", tmp, ": ", strerror(errno))));
  }
  finished_ = true;
  if (absl::Status s = SyncDirectory(dir); !s.ok()) {
    ::unlink(path.c_str());
    return Fail(s);
  }
  return name_;
}

}  // namespace marmot::raft::host
