#include "raft/host/snapshot_receipt.h"

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "raft/host/snapshot_file.h"

namespace marmot::raft::host {

namespace {

// A file operation's failure as a receipt reports it: ResourceExhausted when the disk is full
// (the sender may try again later), Internal for anything else.
absl::Status DiskError(const absl::Status& s) {
  return absl::IsResourceExhausted(s) ? s : absl::InternalError(s.message());
}

}  // namespace

uint64_t PayloadChecksum(uint64_t h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 1099511628211ull;
  }
  return h;
}

SnapshotReceipts::SnapshotReceipts(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SnapshotReceipts::Receipt>> SnapshotReceipts::Begin(
    uint64_t shard, uint64_t from, uint64_t index, uint64_t total, uint64_t checksum) {
  std::lock_guard<std::mutex> l(mu_);
  if (open_.count(shard)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a snapshot of shard ", shard, " is being received already"));
  }
  absl::StatusOr<uint64_t> free = options_.env->FreeDiskBytes(options_.dir);
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
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      options_.env->NewWritableFile(tmp, {.exclusive = true, .permissions = 0600});
  if (!file.ok()) return DiskError(file.status());
  open_[shard] = total;
  return std::unique_ptr<Receipt>(
      new Receipt(this, shard, total, checksum, name, *std::move(file)));
}

void SnapshotReceipts::Release(uint64_t shard) {
  std::lock_guard<std::mutex> l(mu_);
  open_.erase(shard);
}

SnapshotReceipts::Receipt::Receipt(SnapshotReceipts* owner, uint64_t shard, uint64_t total,
                                   uint64_t checksum, std::string name,
                                   std::unique_ptr<WritableFile> file)
    : owner_(owner),
      shard_(shard),
      total_(total),
      checksum_(checksum),
      name_(std::move(name)),
      file_(std::move(file)) {}

SnapshotReceipts::Receipt::~Receipt() {
  file_.reset();
  if (!finished_) {
    owner_->options_.env->RemoveFile(absl::StrCat(owner_->options_.dir, "/", name_, ".tmp"))
        .IgnoreError();
  }
  owner_->Release(shard_);
}

absl::Status SnapshotReceipts::Receipt::Fail(absl::Status s) {
  failed_ = s;
  return s;
}

absl::Status SnapshotReceipts::Receipt::Add(uint64_t offset, absl::string_view data) {
  if (!failed_.ok()) return failed_;
  if (file_ == nullptr) return absl::FailedPreconditionError("the receipt is finished");
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
  if (absl::Status s = file_->Append(data); !s.ok()) return Fail(DiskError(s));
  sum_ = PayloadChecksum(sum_, data.data(), data.size());
  received_ += data.size();
  return absl::OkStatus();
}

absl::StatusOr<std::string> SnapshotReceipts::Receipt::Finish() {
  if (!failed_.ok()) return failed_;
  if (file_ == nullptr) return absl::FailedPreconditionError("the receipt is finished");
  if (received_ != total_) {
    return Fail(absl::DataLossError(absl::StrCat("got ", received_, " of ", total_, " bytes")));
  }
  if (sum_ != checksum_) return Fail(absl::DataLossError("checksum mismatch"));
  const std::string& dir = owner_->options_.dir;
  Env* env = owner_->options_.env;
  const std::string tmp = absl::StrCat(dir, "/", name_, ".tmp");
  if (absl::Status s = file_->Sync(); !s.ok()) return Fail(DiskError(s));
  absl::Status closed = file_->Close();
  file_.reset();
  if (!closed.ok()) return Fail(DiskError(closed));
  if (owner_->options_.check) {
    absl::StatusOr<std::unique_ptr<FileSnapshotSource>> payload =
        FileSnapshotSource::Open(tmp, env);
    if (!payload.ok()) return Fail(payload.status());
    if (absl::Status s = owner_->options_.check(shard_, **payload); !s.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("the payload is not a snapshot of shard ", shard_, ": ", s.message())));
    }
  }
  const std::string path = absl::StrCat(dir, "/", name_);
  if (absl::Status s = env->RenameFile(tmp, path); !s.ok()) return Fail(DiskError(s));
  finished_ = true;
  if (absl::Status s = env->SyncFolder(dir); !s.ok()) {
    env->RemoveFile(path).IgnoreError();
    return Fail(DiskError(s));
  }
  return name_;
}

}  // namespace marmot::raft::host
