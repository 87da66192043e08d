// SnapshotPolicy: when a shard's apply worker snapshots the shard, and how many entries the
// compaction after a snapshot keeps behind it. Bookkeeping only (no I/O, the clock is a
// parameter); one per shard, used on the shard's apply worker.
//
// A snapshot is due after `snapshot_entries` applied entries or `snapshot_bytes` of applied
// payload since the last one (0: no such trigger). After a snapshot failed (the disk is full,
// the state machine refused), automatic ones wait kRetryAfter: a snapshot reads the whole
// shard, so retrying it after every batch would keep the worker busy doing nothing else.
//
// The compaction after a snapshot keeps `compaction_overhead` entries behind it for followers
// slightly behind, fewer when the payload of those entries exceeds `compaction_overhead_bytes`
// (large entries would otherwise keep a long log on disk).
#ifndef MARMOT_RAFT_HOST_SNAPSHOT_POLICY_H_
#define MARMOT_RAFT_HOST_SNAPSHOT_POLICY_H_

#include <cstdint>
#include <deque>
#include <utility>

#include "absl/time/time.h"

namespace marmot::raft::host {

struct SnapshotPolicyOptions {
  uint64_t snapshot_entries = 10000;
  uint64_t snapshot_bytes = 256 << 20;
  uint64_t compaction_overhead = 1000;
  uint64_t compaction_overhead_bytes = 64 << 20;
};

class SnapshotPolicy {
 public:
  static constexpr absl::Duration kRetryAfter = absl::Seconds(10);

  // `last_snapshot`: the index of the snapshot the shard's log starts from.
  SnapshotPolicy(const SnapshotPolicyOptions& options, uint64_t last_snapshot);

  // Entry `index` was applied, with `bytes` of payload.
  void EntryApplied(uint64_t index, uint64_t bytes);
  // One more proposal of the entry applied last (a pack shares one index), with `bytes`.
  void PackItemApplied(uint64_t bytes);
  // The state was replaced by a snapshot taken at `index`.
  void SnapshotInstalled(uint64_t index);

  // Whether a snapshot taken at `applied` would hold anything the last one does not.
  bool HasNew(uint64_t applied) const { return applied > last_snapshot_; }
  // Whether an automatic snapshot at `applied` is due at `now`.
  bool Due(uint64_t applied, absl::Time now) const;
  // A snapshot at `index` was written: the number of entries to keep behind it when compacting.
  uint64_t SnapshotTaken(uint64_t index);
  // A snapshot failed at `now`: no automatic one before kRetryAfter.
  void SnapshotFailed(absl::Time now) { no_snapshot_before_ = now + kRetryAfter; }

 private:
  const SnapshotPolicyOptions options_;
  uint64_t last_snapshot_;
  uint64_t bytes_since_snapshot_ = 0;  // payload applied after last_snapshot_
  absl::Time no_snapshot_before_ = absl::InfinitePast();
  // (index, payload bytes) of the last applied entries, at most compaction_overhead of them:
  // how many a compaction may keep within compaction_overhead_bytes.
  std::deque<std::pair<uint64_t, uint64_t>> recent_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SNAPSHOT_POLICY_H_
