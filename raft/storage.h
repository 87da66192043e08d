// LogStorage: the durable Raft log and snapshot the core reads from.
//
// The core never writes storage. The host persists what a Ready hands it (entries, hard state,
// snapshot) and only then calls RawNode::Advance, so everything LogStorage returns is durable.
// The production implementation is RocksDB-backed (one column family per shard);
// MemoryLogStorage below is the reference used by tests, the simulator and the benchmark.
//
// Index conventions: the log is entries [FirstIndex(), LastIndex()]; the entry at FirstIndex()-1
// is covered by the latest snapshot, whose term Term(FirstIndex()-1) still answers. An empty log
// has LastIndex() == FirstIndex() - 1.
#ifndef MARMOT_RAFT_STORAGE_H_
#define MARMOT_RAFT_STORAGE_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/raft.pb.h"

namespace marmot::raft {

using v1::ConfState;
using v1::Entry;
using v1::HardState;

struct PersistedState {
  HardState hard_state;
  // Membership as of log index `conf_index` (the latest snapshot's index). Conf change entries
  // after that index are replayed from the log on top of it, so the log must not be compacted
  // past conf_index (the core CHECKs FirstIndex() <= conf_index + 1).
  ConfState conf_state;
  uint64_t conf_index = 0;
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The persisted hard state and the membership as of the latest snapshot (and its index).
  virtual absl::StatusOr<PersistedState> InitialState() const = 0;

  // Entries [lo, hi), stopping once their total EntrySize() exceeds max_bytes but always
  // returning at least one entry when lo < hi. Errors: CompactedError() if lo < FirstIndex(),
  // UnavailableError() if hi > LastIndex() + 1.
  virtual absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                                     uint64_t max_bytes) const = 0;

  // Term of entry i, for i in [FirstIndex()-1, LastIndex()]. Errors: CompactedError() below,
  // UnavailableError() above.
  virtual absl::StatusOr<uint64_t> Term(uint64_t i) const = 0;

  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;

  // The most recent snapshot. SnapshotTemporarilyUnavailableError() if the host is still
  // preparing one; the core then retries on a later attempt to contact the follower.
  virtual absl::StatusOr<v1::Snapshot> Snapshot() const = 0;
};

// Bytes an entry counts for in size limits (message size, in-flight bytes, uncommitted bytes,
// entries per Ready). The payload plus a fixed overhead, so that empty entries still count.
inline uint64_t EntrySize(const Entry& e) { return e.data().size() + 16; }

// Keeps the log in memory. Not thread-safe: a group is driven by one thread.
class MemoryLogStorage : public LogStorage {
 public:
  // An empty log at index 0 with no members: a node about to join an existing group.
  MemoryLogStorage();
  // A node of a new group: the log starts with a bootstrap snapshot at index 1, term 1, holding
  // `conf_state` and `data` (the initial state machine). Every founding member must be created
  // with the same arguments. Nodes added later receive this or a newer snapshot from a leader.
  static MemoryLogStorage Bootstrap(const ConfState& conf_state, std::string data = "");

  absl::StatusOr<PersistedState> InitialState() const override;
  absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const override;
  absl::StatusOr<uint64_t> Term(uint64_t i) const override;
  uint64_t FirstIndex() const override;
  uint64_t LastIndex() const override;
  absl::StatusOr<v1::Snapshot> Snapshot() const override;

  // Appends entries, replacing any existing suffix that conflicts (a new leader overwrote it).
  // Entries at or below the snapshot are skipped. Error if they would leave a gap after
  // LastIndex(), or are not consecutive.
  absl::Status Append(const std::vector<Entry>& entries);
  // Same, taking ownership (no copy of the payloads).
  absl::Status Append(std::vector<Entry>&& entries);

  // Replaces the whole log by `snapshot`. SnapshotOutOfDateError() if it is not newer.
  absl::Status ApplySnapshot(const v1::Snapshot& snapshot);

  // Makes a snapshot of the state machine as of applied index `i` (<= LastIndex()), with the
  // membership at that index. Does not compact. SnapshotOutOfDateError() if i is not newer than
  // the held snapshot.
  absl::StatusOr<v1::Snapshot> CreateSnapshot(uint64_t i, const ConfState& conf_state,
                                              std::string data);

  // Discards entries up to and including `compact_index`, which must be at most LastIndex()
  // and should be covered by a snapshot (the host's job). CompactedError() if already compacted.
  absl::Status Compact(uint64_t compact_index);

  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }

  // Test hook: makes Snapshot() answer SnapshotTemporarilyUnavailableError().
  void set_snapshot_unavailable(bool v) { snapshot_unavailable_ = v; }

 private:
  uint64_t offset() const { return entries_.front().index(); }

  HardState hard_state_;
  v1::Snapshot snapshot_;
  // entries_[0] is a dummy carrying the index and term of the snapshot; entries_[k] has index
  // offset() + k.
  std::deque<Entry> entries_;
  bool snapshot_unavailable_ = false;
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_STORAGE_H_
