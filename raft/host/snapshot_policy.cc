#include "raft/host/snapshot_policy.h"

namespace marmot::raft::host {

SnapshotPolicy::SnapshotPolicy(const SnapshotPolicyOptions& options, uint64_t last_snapshot)
    : options_(options), last_snapshot_(last_snapshot) {}

void SnapshotPolicy::EntryApplied(uint64_t index, uint64_t bytes) {
  bytes_since_snapshot_ += bytes;
  recent_.emplace_back(index, bytes);
  if (recent_.size() > options_.compaction_overhead) recent_.pop_front();
}

void SnapshotPolicy::PackItemApplied(uint64_t bytes) {
  bytes_since_snapshot_ += bytes;
  // Nothing is kept with compaction_overhead 0.
  if (!recent_.empty()) recent_.back().second += bytes;
}

void SnapshotPolicy::SnapshotInstalled(uint64_t index) {
  last_snapshot_ = index;
  bytes_since_snapshot_ = 0;
}

bool SnapshotPolicy::Due(uint64_t applied, absl::Time now) const {
  const uint64_t every = options_.snapshot_entries;
  const uint64_t max_bytes = options_.snapshot_bytes;
  const bool due = (every > 0 && applied >= last_snapshot_ + every) ||
                   (max_bytes > 0 && bytes_since_snapshot_ >= max_bytes);
  return due && now >= no_snapshot_before_;
}

uint64_t SnapshotPolicy::SnapshotTaken(uint64_t index) {
  last_snapshot_ = index;
  bytes_since_snapshot_ = 0;
  // compaction_overhead entries, fewer when they are large.
  uint64_t keep = 0, bytes = 0;
  for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) {
    bytes += it->second;
    if (bytes > options_.compaction_overhead_bytes) break;
    ++keep;
  }
  if (recent_.size() < options_.compaction_overhead &&
      bytes <= options_.compaction_overhead_bytes) {
    keep = options_.compaction_overhead;  // entries from before this run: sizes unknown
  }
  return keep;
}

}  // namespace marmot::raft::host
