#include "raft/host/rocks_log_store.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "raft/errors.h"
#include "raft/host/snapshot_file.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/write_buffer_manager.h"

namespace marmot::raft::host {

namespace fs = std::filesystem;

namespace {

constexpr char kFormat[] = "marmot-raft-log-1";
// Keys of the "default" family.
constexpr char kFormatKey[] = "format";
constexpr char kNodeIdKey[] = "node_id";
constexpr char kShardsKey[] = "shards";
constexpr char kInitializedKey[] = "initialized";
// The cluster this node belongs to (cluster_identity.h), absent until known.
constexpr char kClusterIdKey[] = "cluster_id";
constexpr char kMetaPrefix[] = "meta/";
// Reserved keys of a shard's family (0x00 ...), entry keys are 0x01 + big-endian index.
const std::string kHardStateKey("\x00hs", 3);
const std::string kSnapshotKey("\x00snap", 5);
const std::string kCompactedKey(
    "\x00"
    "compacted",
    10);
constexpr char kEntryPrefix = '\x01';

std::string EntryKey(uint64_t index) {
  std::string k(9, '\0');
  k[0] = kEntryPrefix;
  for (int i = 0; i < 8; ++i) k[1 + i] = static_cast<char>((index >> (56 - 8 * i)) & 0xff);
  return k;
}

bool DecodeEntryKey(const rocksdb::Slice& k, uint64_t* index) {
  if (k.size() != 9 || k[0] != kEntryPrefix) return false;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(k[1 + i]);
  *index = v;
  return true;
}

// An Entry's index and term from its serialized bytes without copying its data (Entry in
// proto/raft.proto: term = 1, index = 2; absent fields are 0). False if the bytes do not parse.
bool DecodeEntryHead(const rocksdb::Slice& v, uint64_t* index, uint64_t* term) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(v.data()),
                                            static_cast<int>(v.size()));
  *index = *term = 0;
  while (uint32_t tag = in.ReadTag()) {
    const int field = google::protobuf::internal::WireFormatLite::GetTagFieldNumber(tag);
    const auto wire = google::protobuf::internal::WireFormatLite::GetTagWireType(tag);
    if ((field == 1 || field == 2) &&
        wire == google::protobuf::internal::WireFormatLite::WIRETYPE_VARINT) {
      if (!in.ReadVarint64(field == 1 ? term : index)) return false;
    } else if (!google::protobuf::internal::WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}

std::string EncodeU64Pair(uint64_t a, uint64_t b) {
  std::string s = EntryKey(a).substr(1);
  s += EntryKey(b).substr(1);
  return s;
}

bool DecodeU64Pair(const std::string& s, uint64_t* a, uint64_t* b) {
  if (s.size() != 16) return false;
  std::string ka = std::string(1, kEntryPrefix) + s.substr(0, 8);
  std::string kb = std::string(1, kEntryPrefix) + s.substr(8, 8);
  return DecodeEntryKey(ka, a) && DecodeEntryKey(kb, b);
}

// Snapshot record: 4-byte length of the serialized metadata, the metadata, the file name.
std::string EncodeSnapshotRecord(const v1::SnapshotMetadata& meta, const std::string& file) {
  std::string m = meta.SerializeAsString();
  std::string s(4, '\0');
  uint32_t n = m.size();
  memcpy(s.data(), &n, 4);
  return s + m + file;
}

bool DecodeSnapshotRecord(const std::string& s, v1::SnapshotMetadata* meta, std::string* file) {
  if (s.size() < 4) return false;
  uint32_t n;
  memcpy(&n, s.data(), 4);
  if (4 + static_cast<size_t>(n) > s.size()) return false;
  if (!meta->ParseFromString(s.substr(4, n))) return false;
  *file = s.substr(4 + n);
  return true;
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) return absl::DataLossError(absl::StrCat(what, ": ", s.ToString()));
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(absl::StrCat(what, ": ", s.ToString()));
  return absl::InternalError(absl::StrCat(what, ": ", s.ToString()));
}

// A failed system call on a file of the store.
absl::Status FromErrno(int err, absl::string_view what, const std::string& path) {
  std::string m = absl::StrCat(what, " ", path, ": ", strerror(err));
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(std::move(m));
  return absl::InternalError(std::move(m));
}

std::string ShardFamily(int s) { return absl::StrCat("shard-", s); }

// RocksDB's own diagnostics (warnings and errors only) go to glog, not to a LOG file in the
// database folder. The folder is the raft disk: when that disk is full, RocksDB's file logger
// fails, and the Debian build (assertions on) aborts on the next line it logs after a failed
// write, inside DB::Open or in a background thread, before the store can report the cause.
class GlogRocksLogger : public rocksdb::Logger {
 public:
  explicit GlogRocksLogger(std::string dir)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), dir_(std::move(dir)) {}

  // The options dump RocksDB writes at every open.
  void LogHeader(const char*, va_list) override {}
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char buf[1024];
    vsnprintf(buf, sizeof(buf), format, ap);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      LOG(ERROR) << "raft store " << dir_ << ": rocksdb: " << buf;
    } else {
      LOG(WARNING) << "raft store " << dir_ << ": rocksdb: " << buf;
    }
  }

 private:
  const std::string dir_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// ShardLog

absl::StatusOr<PersistedState> ShardLog::InitialState() const {
  PersistedState ps;
  ps.hard_state = hard_state_;
  ps.conf_state = snap_meta_.conf_state();
  ps.conf_index = snap_meta_.index();
  return ps;
}

absl::StatusOr<std::vector<Entry>> ShardLog::Entries(uint64_t lo, uint64_t hi,
                                                     uint64_t max_bytes) const {
  if (lo <= compacted_index_) return CompactedError();
  if (hi > last_index_ + 1) return UnavailableError();
  std::vector<Entry> out;
  if (lo >= hi) return out;
  uint64_t bytes = 0;
  const uint64_t cache_first = cache_.empty() ? last_index_ + 1 : cache_.front().index();
  auto add = [&](Entry e) {
    bytes += EntrySize(e);
    if (!out.empty() && bytes > max_bytes) return false;
    out.push_back(std::move(e));
    return true;
  };
  uint64_t i = lo;
  if (i < cache_first) {
    // Cold path: a follower far behind. One iterator over the range.
    std::unique_ptr<rocksdb::Iterator> it(store_->db_->NewIterator(rocksdb::ReadOptions(), cf_));
    for (it->Seek(EntryKey(i)); i < hi && i < cache_first; it->Next(), ++i) {
      uint64_t idx;
      if (!it->Valid() || !DecodeEntryKey(it->key(), &idx) || idx != i) {
        if (!it->status().ok()) return FromRocks(it->status(), "read log");
        return absl::DataLossError(absl::StrCat("shard ", shard_, ": entry ", i, " missing"));
      }
      Entry e;
      if (!e.ParseFromArray(it->value().data(), it->value().size())) {
        return absl::DataLossError(absl::StrCat("shard ", shard_, ": entry ", i, " is corrupt"));
      }
      if (!add(std::move(e))) return out;
    }
  }
  for (; i < hi; ++i) {
    if (!add(cache_[i - cache_first])) break;
  }
  return out;
}

absl::StatusOr<uint64_t> ShardLog::Term(uint64_t i) const {
  if (i == compacted_index_) return compacted_term_;
  if (i < compacted_index_) return CompactedError();
  if (i > last_index_) return UnavailableError();
  std::optional<uint64_t> term = terms_.Term(i);
  if (!term) return absl::DataLossError(absl::StrCat("shard ", shard_, ": no term for entry ", i));
  return *term;
}

absl::StatusOr<v1::Snapshot> ShardLog::Snapshot() const {
  v1::Snapshot snap;
  *snap.mutable_metadata() = snap_meta_;
  snap.set_data(snap_file_);
  return snap;
}

uint64_t RocksLogStore::ShardCacheBytes() const {
  return std::max<uint64_t>(
      256 << 10, options_.cache_bytes / static_cast<uint64_t>(std::max(1, options_.shards)));
}

void ShardLog::TrimCache() {
  const auto& o = store_->options_;
  const uint64_t budget = store_->ShardCacheBytes();
  while (!cache_.empty() && (cache_.size() > o.cache_entries || cache_bytes_ > budget)) {
    cache_bytes_ -= EntrySize(cache_.front());
    cache_.pop_front();
  }
}

absl::Status ShardLog::Append(std::vector<Entry> entries) {
  // Skip what is already compacted (committed, so it cannot conflict).
  size_t skip = 0;
  while (skip < entries.size() && entries[skip].index() <= compacted_index_) ++skip;
  if (skip == entries.size()) return absl::OkStatus();
  const uint64_t first = entries[skip].index();
  if (first > last_index_ + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", shard_, ": append at ", first, " leaves a gap after ", last_index_));
  }
  for (size_t k = skip + 1; k < entries.size(); ++k) {
    if (entries[k].index() != entries[k - 1].index() + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard ", shard_, ": entries not consecutive"));
    }
  }
  auto& batch = store_->batch_;
  if (first <= last_index_) {
    // A new leader overwrote our uncommitted tail.
    batch.DeleteRange(cf_, EntryKey(first), EntryKey(last_index_ + 1));
    terms_.TruncateFrom(first);
    while (!cache_.empty() && cache_.back().index() >= first) {
      cache_bytes_ -= EntrySize(cache_.back());
      cache_.pop_back();
    }
  }
  if (!cache_.empty() && cache_.back().index() + 1 != first) {
    cache_.clear();
    cache_bytes_ = 0;
  }
  for (size_t k = skip; k < entries.size(); ++k) {
    batch.Put(cf_, EntryKey(entries[k].index()), entries[k].SerializeAsString());
    terms_.Add(entries[k].index(), entries[k].term());
  }
  last_index_ = entries.back().index();
  for (size_t k = skip; k < entries.size(); ++k) {
    cache_bytes_ += EntrySize(entries[k]);
    cache_.push_back(std::move(entries[k]));
  }
  TrimCache();
  return absl::OkStatus();
}

void ShardLog::SetHardState(const HardState& hs) {
  hard_state_ = hs;
  store_->batch_.Put(cf_, kHardStateKey, hs.SerializeAsString());
}

absl::Status ShardLog::ApplySnapshot(const v1::Snapshot& snapshot) {
  const auto& meta = snapshot.metadata();
  if (meta.index() <= snap_meta_.index()) return SnapshotOutOfDateError();
  const std::string& file = snapshot.data();
  if (!file.empty() &&
      (!IsSnapshotFileName(file) || !fs::exists(store_->SnapshotDir() + "/" + file))) {
    return absl::InvalidArgumentError(absl::StrCat("shard ", shard_, ": snapshot at ", meta.index(),
                                                   " names no payload file (", file, ")"));
  }
  auto& batch = store_->batch_;
  batch.DeleteRange(cf_, EntryKey(0), EntryKey(UINT64_MAX));
  batch.Put(cf_, kSnapshotKey, EncodeSnapshotRecord(meta, file));
  batch.Put(cf_, kCompactedKey, EncodeU64Pair(meta.index(), meta.term()));
  if (!snap_file_.empty() && snap_file_ != file) store_->obsolete_files_.push_back(snap_file_);
  snap_meta_ = meta;
  snap_file_ = file;
  compacted_index_ = meta.index();
  compacted_term_ = meta.term();
  last_index_ = meta.index();
  terms_.Clear();
  cache_.clear();
  cache_bytes_ = 0;
  return absl::OkStatus();
}

absl::Status ShardLog::SetLocalSnapshot(const v1::SnapshotMetadata& meta, const std::string& file) {
  if (meta.index() <= snap_meta_.index()) return SnapshotOutOfDateError();
  if (meta.index() > last_index_) {
    return absl::InvalidArgumentError(absl::StrCat("shard ", shard_, ": snapshot at ", meta.index(),
                                                   " is past the log's end ", last_index_));
  }
  store_->batch_.Put(cf_, kSnapshotKey, EncodeSnapshotRecord(meta, file));
  if (!snap_file_.empty() && snap_file_ != file) store_->obsolete_files_.push_back(snap_file_);
  snap_meta_ = meta;
  snap_file_ = file;
  return absl::OkStatus();
}

absl::Status ShardLog::Compact(uint64_t index) {
  if (index <= compacted_index_) return CompactedError();
  if (index > snap_meta_.index()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shard ", shard_, ": compaction to ", index, " past the snapshot at ", snap_meta_.index()));
  }
  auto term = Term(index);
  if (!term.ok()) return term.status();
  auto& batch = store_->batch_;
  batch.DeleteRange(cf_, EntryKey(compacted_index_ + 1), EntryKey(index + 1));
  batch.Put(cf_, kCompactedKey, EncodeU64Pair(index, *term));
  compacted_index_ = index;
  compacted_term_ = *term;
  terms_.DropThrough(index);
  while (!cache_.empty() && cache_.front().index() <= index) {
    cache_bytes_ -= EntrySize(cache_.front());
    cache_.pop_front();
  }
  return absl::OkStatus();
}

absl::Status ShardLog::Load() {
  auto* db = store_->db_.get();
  std::string v;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf_, kHardStateKey, &v);
  if (s.ok()) {
    if (!hard_state_.ParseFromString(v)) {
      return absl::DataLossError(absl::StrCat("shard ", shard_, ": hard state is corrupt"));
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read hard state");
  }
  s = db->Get(rocksdb::ReadOptions(), cf_, kSnapshotKey, &v);
  if (s.ok()) {
    if (!DecodeSnapshotRecord(v, &snap_meta_, &snap_file_)) {
      return absl::DataLossError(absl::StrCat("shard ", shard_, ": snapshot metadata is corrupt"));
    }
    if (!snap_file_.empty() && !fs::exists(store_->SnapshotDir() + "/" + snap_file_)) {
      return absl::DataLossError(
          absl::StrCat("shard ", shard_, ": snapshot file ", snap_file_, " is missing"));
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read snapshot metadata");
  }
  s = db->Get(rocksdb::ReadOptions(), cf_, kCompactedKey, &v);
  if (s.ok()) {
    if (!DecodeU64Pair(v, &compacted_index_, &compacted_term_)) {
      return absl::DataLossError(absl::StrCat("shard ", shard_, ": compaction marker is corrupt"));
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read compaction marker");
  }
  if (compacted_index_ > snap_meta_.index()) {
    return absl::DataLossError(absl::StrCat("shard ", shard_, ": log compacted to ",
                                            compacted_index_, " past its snapshot at ",
                                            snap_meta_.index()));
  }
  // The log must be exactly (compacted_index_, last]: no hole, nothing below.
  last_index_ = compacted_index_;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf_));
  it->Seek(EntryKey(0));
  if (it->Valid()) {
    uint64_t first = 0;
    if (!DecodeEntryKey(it->key(), &first) || first != compacted_index_ + 1) {
      return absl::DataLossError(absl::StrCat("shard ", shard_, ": log starts at ", first, " (key ",
                                              it->key().ToString(true), ")", ", expected ",
                                              compacted_index_ + 1));
    }
    it->SeekForPrev(EntryKey(UINT64_MAX));
    uint64_t last;
    if (!it->Valid() || !DecodeEntryKey(it->key(), &last) || last < first) {
      return absl::DataLossError(absl::StrCat("shard ", shard_, ": cannot find the log's end"));
    }
    last_index_ = last;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan log");
  // Every entry's term, from each entry's first bytes (its rows are skipped, not copied).
  uint64_t i = compacted_index_ + 1;
  for (it->Seek(EntryKey(i)); it->Valid() && i <= last_index_; it->Next(), ++i) {
    uint64_t idx, index, term;
    if (!DecodeEntryKey(it->key(), &idx) || idx != i ||
        !DecodeEntryHead(it->value(), &index, &term) || index != i) {
      return absl::DataLossError(
          absl::StrCat("shard ", shard_, ": entry ", i, " is missing or corrupt"));
    }
    terms_.Add(i, term);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan log");
  if (i <= last_index_) {
    return absl::DataLossError(absl::StrCat("shard ", shard_, ": entry ", i, " missing"));
  }
  if (hard_state_.commit() > last_index_) {
    return absl::DataLossError(absl::StrCat("shard ", shard_, ": commit index ",
                                            hard_state_.commit(), " is past the log's end ",
                                            last_index_, " (entries lost)"));
  }
  // Warm the cache with the tail (and check the log is contiguous there), a few entries at a
  // time from the end, within the cache's budget: a log of large entries is never read whole
  // into memory at a start.
  const uint64_t n =
      std::min<uint64_t>(last_index_ - compacted_index_, store_->options_.cache_entries);
  const uint64_t budget = store_->ShardCacheBytes();
  uint64_t hi = last_index_ + 1;
  const uint64_t lowest = last_index_ + 1 - n;
  while (hi > lowest && cache_bytes_ < budget) {
    const uint64_t lo = std::max<uint64_t>(lowest, hi >= 64 ? hi - 64 : 0);
    auto part = Entries(std::max<uint64_t>(lo, 1), hi, UINT64_MAX);
    if (!part.ok()) return part.status();
    for (auto it = part->rbegin(); it != part->rend(); ++it) {
      cache_bytes_ += EntrySize(*it);
      cache_.push_front(std::move(*it));
    }
    hi = lo;
  }
  TrimCache();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// RocksLogStore

// Tells the store's owner when RocksDB enters its read-only error state. Armed only once Open
// succeeded: errors while opening are what Open returns.
class RocksLogStore::ErrorListener : public rocksdb::EventListener {
 public:
  explicit ErrorListener(std::string dir) : dir_(std::move(dir)) {}

  void Arm(std::function<void(const absl::Status&)> callback) {
    std::lock_guard<std::mutex> l(mu_);
    callback_ = std::move(callback);
  }

  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) override {
    if (error == nullptr || error->ok()) return;
    const char* what = "write";
    switch (reason) {
      case rocksdb::BackgroundErrorReason::kFlush:
      case rocksdb::BackgroundErrorReason::kFlushNoWAL:
        what = "flush";
        break;
      case rocksdb::BackgroundErrorReason::kCompaction:
        what = "compaction";
        break;
      case rocksdb::BackgroundErrorReason::kManifestWrite:
      case rocksdb::BackgroundErrorReason::kManifestWriteNoWAL:
        what = "manifest write";
        break;
      default:
        break;
    }
    absl::Status s = FromRocks(*error, absl::StrCat("raft store ", dir_, ": rocksdb ", what));
    std::function<void(const absl::Status&)> callback;
    {
      std::lock_guard<std::mutex> l(mu_);
      callback = callback_;
    }
    if (callback) {
      callback(s);
    } else {
      LOG(ERROR) << s;
    }
  }

 private:
  const std::string dir_;
  std::mutex mu_;
  std::function<void(const absl::Status&)> callback_;
};

absl::StatusOr<std::unique_ptr<RocksLogStore>> RocksLogStore::Open(const std::string& dir,
                                                                   const Options& options) {
  if (options.node_id == 0 || options.shards <= 0) {
    return absl::InvalidArgumentError("raft store: node id and shard count must be positive");
  }
  std::unique_ptr<RocksLogStore> store(new RocksLogStore());
  store->dir_ = dir;
  store->options_ = options;
  std::error_code ec;
  const bool exists = fs::exists(dir, ec) && !fs::is_empty(dir, ec);
  const std::string db_dir = dir + "/db";
  if (exists && !fs::exists(db_dir + "/CURRENT")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "raft path ", dir, " is not empty but holds no raft store (no ", db_dir,
        "/CURRENT); refusing to use it. Point -raft-path at an empty or a marmot raft folder."));
  }
  std::vector<std::string> wanted = {rocksdb::kDefaultColumnFamilyName};
  for (int s = 0; s < options.shards; ++s) wanted.push_back(ShardFamily(s));
  if (exists) {
    std::vector<std::string> found;
    auto rs = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), db_dir, &found);
    if (!rs.ok()) {
      return absl::DataLossError(absl::StrCat("raft store ", dir, " is unreadable (", rs.ToString(),
                                              "); refusing to start, nothing was changed"));
    }
    if (std::set<std::string>(found.begin(), found.end()) !=
        std::set<std::string>(wanted.begin(), wanted.end())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "raft store ", dir, " holds ", found.size() - 1, " shards but this node runs with ",
          options.shards,
          " shards; refusing to start (use the original -shards or a new -raft-path)"));
    }
  }
  // The database folder too: RocksDB logs an error when it is missing, even when creating it.
  for (const std::string& d : {db_dir, store->SnapshotDir()}) {
    fs::create_directories(d, ec);
    if (ec) return FromErrno(ec.value(), "create", d);
  }

  rocksdb::DBOptions dbo;
  dbo.create_if_missing = !exists;
  dbo.create_missing_column_families = !exists;
  dbo.error_if_exists = !exists;
  dbo.paranoid_checks = true;
  dbo.max_total_wal_size = options.max_total_wal_size;
  dbo.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_manager_bytes);
  dbo.max_background_jobs = 2;
  dbo.keep_log_file_num = 2;
  dbo.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  dbo.info_log = std::make_shared<GlogRocksLogger>(dir);
  // Only an incomplete record at the end of the log is dropped at open; any other damage fails
  // the open (DataLossError below). Safe because an incomplete record was never acknowledged:
  // a Commit returns OK only after its whole record was written (and fsynced when the host
  // acknowledges anything from it), and after a failed write nothing more is written (the
  // host exits, RocksDB refuses writes), so the torn record is the last one of the last log.
  // This is the state a disk that filled up in the middle of a write leaves, and a crash in the
  // middle of one. RocksDB's default, point-in-time recovery, would also stop silently at a
  // corrupt record in the middle of the log and drop everything after it, fsynced or not. The
  // price: a crash that leaves garbage (not a clean cut) in unsynced writes is refused too.
  dbo.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  store->listener_ = std::make_shared<ErrorListener>(dir);
  dbo.listeners.push_back(store->listener_);
  rocksdb::ColumnFamilyOptions cfo;
  cfo.write_buffer_size = 4 << 20;
  cfo.max_write_buffer_number = 2;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : wanted) descs.emplace_back(n, cfo);
  rocksdb::DB* raw = nullptr;
  auto rs = rocksdb::DB::Open(dbo, db_dir, descs, &store->handles_, &raw);
  if (rs.IsNoSpace()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("raft store ", dir, " cannot be opened: the raft folder's disk is full (",
                     rs.ToString(), "); nothing was changed, start again after freeing space"));
  }
  if (rs.IsIOError() && rs.ToString().find("lock") != std::string::npos) {
    // RocksDB's LOCK file: another process (or another store of this one) has the folder open.
    return absl::FailedPreconditionError(
        absl::StrCat("raft store ", dir,
                     " is in use by another process (a marmot with the same -node-id and "
                     "-raft-path?); stop it first (",
                     rs.ToString(), ")"));
  }
  if (!rs.ok()) {
    return absl::DataLossError(absl::StrCat("raft store ", dir, " cannot be opened (",
                                            rs.ToString(),
                                            "); refusing to start, nothing was changed"));
  }
  store->db_.reset(raw);
  auto* def = store->handles_[0];
  if (!exists) {
    rocksdb::WriteBatch b;
    b.Put(def, kFormatKey, kFormat);
    b.Put(def, kNodeIdKey, std::to_string(options.node_id));
    b.Put(def, kShardsKey, std::to_string(options.shards));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    auto ws = FromRocks(store->db_->Write(wo, &b),
                        absl::StrCat("raft store ", dir, ": write its identity"));
    if (!ws.ok()) return ws;
  } else {
    std::string format, node, shards;
    auto r = raw->Get(rocksdb::ReadOptions(), def, kFormatKey, &format);
    if (!r.ok() || format != kFormat) {
      return absl::FailedPreconditionError(
          absl::StrCat("raft store ", dir, " has no or an unknown format marker ('", format,
                       "'); refusing to start, nothing was changed"));
    }
    raw->Get(rocksdb::ReadOptions(), def, kNodeIdKey, &node);
    raw->Get(rocksdb::ReadOptions(), def, kShardsKey, &shards);
    if (node != std::to_string(options.node_id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("raft store ", dir, " belongs to node ", node, ", not node ",
                       options.node_id, "; refusing to start (wrong -raft-path or -node-id)"));
    }
    if (shards != std::to_string(options.shards)) {
      return absl::FailedPreconditionError(absl::StrCat("raft store ", dir, " was created with ",
                                                        shards, " shards, not ", options.shards));
    }
  }
  if (exists) {
    auto cs = raw->Get(rocksdb::ReadOptions(), def, kClusterIdKey, &store->cluster_id_);
    if (!cs.ok() && !cs.IsNotFound()) {
      return FromRocks(cs, absl::StrCat("raft store ", dir, ": read the cluster id"));
    }
  }
  std::string init;
  auto gs = raw->Get(rocksdb::ReadOptions(), def, kInitializedKey, &init);
  store->fresh_ = gs.IsNotFound();
  for (int s = 0; s < options.shards; ++s) {
    store->shards_.emplace_back(new ShardLog(store.get(), s, store->handles_[s + 1]));
    auto ls = store->shards_.back()->Load();
    if (!ls.ok()) {
      return absl::DataLossError(absl::StrCat("raft store ", dir, ": ", ls.message(),
                                              "; refusing to start, nothing was changed"));
    }
  }
  if (store->fresh_) store->batch_.Put(def, kInitializedKey, "1");
  store->listener_->Arm(options.on_background_error);
  // Snapshot files no shard refers to are leftovers of a crash or a stop between writing a
  // file and recording it (or of a half-received snapshot): remove them.
  std::set<std::string> live;
  for (const auto& sh : store->shards_) live.insert(sh->snapshot_file());
  for (const auto& f : fs::directory_iterator(store->SnapshotDir(), ec)) {
    const std::string name = f.path().filename().string();
    if (!live.count(name)) {
      LOG(INFO) << "raft store " << dir << ": removing unreferenced snapshot file " << name;
      fs::remove(f.path(), ec);
    }
  }
  return store;
}

absl::StatusOr<uint64_t> RocksLogStore::ReadNodeId(const std::string& dir) {
  const std::string db_dir = dir + "/db";
  std::error_code ec;
  if (!fs::exists(db_dir + "/CURRENT", ec)) {
    return absl::NotFoundError(absl::StrCat("no raft store in ", dir));
  }
  rocksdb::DBOptions dbo;
  dbo.info_log = std::make_shared<GlogRocksLogger>(dir);  // RocksDB writes no LOG file then.
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  descs.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  // Read-only: takes no lock, writes nothing, opens only the default column family.
  const rocksdb::Status rs = rocksdb::DB::OpenForReadOnly(dbo, db_dir, descs, &handles, &raw);
  if (!rs.ok()) {
    return absl::DataLossError(
        absl::StrCat("raft store ", dir, " is unreadable (", rs.ToString(), ")"));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string format, node;
  const rocksdb::Status fs_ = db->Get(rocksdb::ReadOptions(), handles[0], kFormatKey, &format);
  const rocksdb::Status ns = db->Get(rocksdb::ReadOptions(), handles[0], kNodeIdKey, &node);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  uint64_t id = 0;
  if (!fs_.ok() || format != kFormat || !ns.ok() || !absl::SimpleAtoi(node, &id) || id == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft store ", dir, " has no or an unknown format marker or node id ('",
                     format, "', '", node, "')"));
  }
  return id;
}

RocksLogStore::~RocksLogStore() {
  if (db_ == nullptr) return;
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  auto s = db_->Close();
  if (!s.ok()) LOG(WARNING) << "raft store " << dir_ << ": close: " << s.ToString();
}

void RocksLogStore::Bootstrap(uint64_t shard, const ConfState& conf_state) {
  v1::Snapshot snap;
  auto* m = snap.mutable_metadata();
  m->set_index(1);
  m->set_term(1);
  *m->mutable_conf_state() = conf_state;
  CHECK(shards_.at(shard)->ApplySnapshot(snap).ok());
}

void RocksLogStore::PutMeta(const std::string& key, const std::string& value) {
  batch_.Put(handles_[0], kMetaPrefix + key, value);
}

absl::Status RocksLogStore::SetClusterId(const std::string& id) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Put(wo, handles_[0], kClusterIdKey, id),
                   absl::StrCat("raft store ", dir_, ": write the cluster id"));
}

std::map<std::string, std::string> RocksLogStore::ReadMetaWithPrefix(
    const std::string& prefix) const {
  std::map<std::string, std::string> out;
  const std::string p = kMetaPrefix + prefix;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[0]));
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    out[it->key().ToString().substr(strlen(kMetaPrefix))] = it->value().ToString();
  }
  return out;
}

absl::Status RocksLogStore::Commit(bool sync) {
  if (batch_.Count() == 0) return absl::OkStatus();
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  auto s = FromRocks(db_->Write(wo, &batch_), "commit raft write batch");
  if (!s.ok()) return s;
  batch_.Clear();
  // A snapshot file goes only once the record that replaced it is on disk: after a power loss an
  // unsynced write may be undone, and the older record would name a file that is gone (the node
  // would refuse to start). Until a synced commit they wait; a file no record names is removed
  // at the next Open.
  if (!sync) return absl::OkStatus();
  for (const auto& f : obsolete_files_) {
    std::error_code ec;
    fs::remove(SnapshotDir() + "/" + f, ec);
  }
  obsolete_files_.clear();
  return absl::OkStatus();
}

}  // namespace marmot::raft::host
