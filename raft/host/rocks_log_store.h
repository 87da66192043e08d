// RocksLogStore: the durable Raft logs of every shard of a process, in one RocksDB instance.
//
// Layout: column family "default" holds the store's identity (format, node id, shard count) so
// that a directory written by another node or with another shard count is refused at open, and
// the id of the cluster the node belongs to (cluster_identity.h) once it is known;
// column family "shard-<n>" holds shard n's log. Inside a shard's family, reserved keys start
// with 0x00 (hard state, snapshot metadata) and entry keys are 0x01 followed by the big-endian
// index, so the log sorts by index and truncation and compaction are one DeleteRange each.
//
// Snapshot payloads live in files beside the database (<dir>/snapshots/, written and fsynced
// before their metadata is recorded; snapshot_file.h), the metadata and the file's name in
// RocksDB. A snapshot's `data` is that name, never the payload.
//
// Writes are staged into one WriteBatch shared by all shards (ShardLog::Append, SetHardState,
// ...) and made durable together by Commit(): the host persists every shard's Ready of one loop
// iteration with ONE write and ONE fsync. Staging updates the in-memory view at once; the host
// must Commit() before it lets the core read it again (RawNode::Advance), and a failed Commit
// is fatal (the in-memory view would lie): the host stops the process (storage_failure.h).
//
// A write that fails half-way (the disk filled up in the middle of it) leaves a torn record at
// the end of RocksDB's write-ahead log. Open drops exactly that incomplete last record and
// refuses any other damage (see the recovery mode in Open).
//
// Threading: not thread-safe, except SetClusterId. One thread (the host's Raft loop) stages,
// commits and serves the core's reads.
#ifndef MARMOT_RAFT_HOST_ROCKS_LOG_STORE_H_
#define MARMOT_RAFT_HOST_ROCKS_LOG_STORE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/raft.pb.h"
#include "raft/host/term_runs.h"
#include "raft/storage.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace marmot::raft::host {

class RocksLogStore;

// One shard's log, as the core sees it (LogStorage) plus the host's staging methods.
class ShardLog : public LogStorage {
 public:
  absl::StatusOr<PersistedState> InitialState() const override;
  absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const override;
  absl::StatusOr<uint64_t> Term(uint64_t i) const override;
  uint64_t FirstIndex() const override { return compacted_index_ + 1; }
  uint64_t LastIndex() const override { return last_index_; }
  // The latest snapshot; its data is the name of its payload file ("" when it has none).
  absl::StatusOr<v1::Snapshot> Snapshot() const override;

  // Staging (see the file comment). Append replaces any conflicting suffix; entries at or
  // below the snapshot are skipped; a gap after LastIndex() is an error.
  absl::Status Append(std::vector<Entry> entries);
  void SetHardState(const HardState& hs);
  // Records a snapshot received from a leader, whose data names its payload file, already
  // durable in SnapshotDir() (or is empty: no payload); replaces the whole log.
  // SnapshotOutOfDateError() if not newer than the held one; InvalidArgument when the file is
  // not there.
  absl::Status ApplySnapshot(const v1::Snapshot& snapshot);
  // Records a snapshot the local state machine made (payload already in `file`, fsynced).
  // Does not compact. SnapshotOutOfDateError() if not newer than the held one.
  absl::Status SetLocalSnapshot(const v1::SnapshotMetadata& meta, const std::string& file);
  // Discards entries up to and including `index` (<= the snapshot's index) with a DeleteRange.
  absl::Status Compact(uint64_t index);

  uint64_t shard() const { return shard_; }
  const HardState& hard_state() const { return hard_state_; }
  const v1::SnapshotMetadata& snapshot_metadata() const { return snap_meta_; }
  const std::string& snapshot_file() const { return snap_file_; }

 private:
  friend class RocksLogStore;
  ShardLog(RocksLogStore* store, uint64_t shard, rocksdb::ColumnFamilyHandle* cf)
      : store_(store), shard_(shard), cf_(cf) {}
  absl::Status Load();
  void TrimCache();

  RocksLogStore* store_;
  uint64_t shard_;
  rocksdb::ColumnFamilyHandle* cf_;
  HardState hard_state_;
  v1::SnapshotMetadata snap_meta_;
  std::string snap_file_;  // "" when the snapshot has no payload (bootstrap)
  // The last discarded entry (the log is (compacted_index_, last_index_]); its term still
  // answers Term(). Always <= the snapshot's index.
  uint64_t compacted_index_ = 0;
  uint64_t compacted_term_ = 0;
  uint64_t last_index_ = 0;
  // The most recent entries, contiguous, ending at last_index_ (may be empty): the core's hot
  // reads (Term of recent indexes, entries for followers that keep up) never touch RocksDB.
  std::deque<Entry> cache_;
  uint64_t cache_bytes_ = 0;
  // The term of every entry of the log, so that Term() never reads an entry.
  TermRuns terms_;
};

class RocksLogStore {
 public:
  struct Options {
    uint64_t node_id = 0;
    int shards = 16;
    // Entries kept in memory per shard, and the byte budget of all shards' caches together
    // (each shard gets an equal part, at least 256 KiB): a node's memory does not grow with its
    // shard count (16 shards x 8 MiB each held 128 MiB of a newcomer's catch-up).
    size_t cache_entries = 4096;
    uint64_t cache_bytes = 32 << 20;
    // Shared by every column family's memtables: with 64 MiB they held a quarter of a node's
    // memory while it sent or received a database (issue 22), and entries leave the log soon
    // after they are applied anyway.
    size_t write_buffer_manager_bytes = 32 << 20;
    uint64_t max_total_wal_size = 128 << 20;
    // Called (from a RocksDB thread, or from the one in Commit) when RocksDB puts the database
    // into its read-only error state after a failed write, flush or compaction: from then on
    // every Commit fails. The status is ResourceExhausted when the disk is full. Optional.
    std::function<void(const absl::Status&)> on_background_error;
  };

  // Opens (or creates) the store in `dir`. A directory holding another node's store, a store
  // with another shard count, a damaged store or files that are not a store are refused with
  // FailedPreconditionError / DataLossError explaining what was found; nothing is deleted.
  // A disk too full to open the store (RocksDB writes a few files at open) gives
  // ResourceExhaustedError and changes nothing: opening again after freeing space is fine.
  static absl::StatusOr<std::unique_ptr<RocksLogStore>> Open(const std::string& dir,
                                                             const Options& options);

  // Each shard's part of Options::cache_bytes.
  uint64_t ShardCacheBytes() const;
  // The node a store in `dir` belongs to, read without changing anything (the store may be
  // open in another process). NotFoundError when `dir` holds no store (no db/CURRENT);
  // FailedPreconditionError or DataLossError when it holds one that cannot be read as marmot's.
  static absl::StatusOr<uint64_t> ReadNodeId(const std::string& dir);
  ~RocksLogStore();

  // Whether Open created a new, empty store (the host then bootstraps each shard).
  bool fresh() const { return fresh_; }
  ShardLog* shard(uint64_t s) { return shards_.at(s).get(); }
  int shard_count() const { return static_cast<int>(shards_.size()); }
  const std::string& dir() const { return dir_; }

  // Bootstraps a fresh shard: a snapshot at index 1, term 1 holding `conf_state` and no payload
  // (every founding member does the same, so their logs agree). Staged.
  void Bootstrap(uint64_t shard, const ConfState& conf_state);

  // The cluster id found at Open ("" if none: a new store, or one written before cluster ids).
  const std::string& cluster_id_at_open() const { return cluster_id_; }
  // Writes the cluster id durably (its own synced write, not staged). Thread-safe: the transport
  // calls it from a handshake while the Raft loop commits.
  absl::Status SetClusterId(const std::string& id);

  // Small key/values of the host (peer addresses, ...), staged like everything else.
  void PutMeta(const std::string& key, const std::string& value);
  std::map<std::string, std::string> ReadMetaWithPrefix(const std::string& prefix) const;

  // Makes everything staged durable: one write, one fsync (if `sync`). Files made obsolete by
  // the staged changes (replaced snapshots) are removed after the next commit that syncs. On
  // failure (ResourceExhaustedError: the disk is full; another error: I/O) nothing staged is known
  // to be durable and the store takes no more writes: the caller must stop using it.
  absl::Status Commit(bool sync = true);
  bool HasStaged() const { return batch_.Count() > 0; }

  // Where snapshot payload files go.
  std::string SnapshotDir() const { return dir_ + "/snapshots"; }

 private:
  friend class ShardLog;
  class ErrorListener;
  RocksLogStore() = default;

  std::string dir_;
  Options options_;
  bool fresh_ = false;
  std::string cluster_id_;
  std::shared_ptr<ErrorListener> listener_;  // registered with db_
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // [0] = default
  std::vector<std::unique_ptr<ShardLog>> shards_;
  rocksdb::WriteBatch batch_;
  std::vector<std::string> obsolete_files_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_ROCKS_LOG_STORE_H_
