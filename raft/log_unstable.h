// UnstableLog: entries and a snapshot the core has accepted but the host has not yet persisted.
//
// It sits on top of LogStorage: its entries start at `offset`, right after the last stable
// entry they extend (or after the unstable snapshot). A crash loses all of it, which is why
// nothing here may be acknowledged to a peer until the host persisted it and called Advance.
#ifndef MARMOT_RAFT_LOG_UNSTABLE_H_
#define MARMOT_RAFT_LOG_UNSTABLE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "proto/raft.pb.h"

namespace marmot::raft {

class UnstableLog {
 public:
  explicit UnstableLog(uint64_t offset = 0) : offset_(offset) {}

  // Index of the first entry it may know: only if it holds a snapshot.
  std::optional<uint64_t> MaybeFirstIndex() const;
  // Last index it holds, if it holds any entry or a snapshot.
  std::optional<uint64_t> MaybeLastIndex() const;
  // Term of entry i if it holds it (or i is its snapshot's index).
  std::optional<uint64_t> MaybeTerm(uint64_t i) const;

  // The host persisted entries up to (i, t): forget them. Ignored if the entry at i was since
  // replaced (a different term) or is not held: a later Ready persists the newer entries.
  void StableTo(uint64_t i, uint64_t t);
  // The host persisted the snapshot at index i.
  void StableSnapTo(uint64_t i);
  // Replaces everything by a snapshot received from the leader.
  void Restore(const v1::Snapshot& s);
  // Appends `entries`, truncating any held suffix from their first index on.
  void TruncateAndAppend(std::vector<v1::Entry> entries);
  // Entries [lo, hi); both must lie within the held entries.
  void Slice(uint64_t lo, uint64_t hi, std::vector<v1::Entry>* out) const;

  const std::vector<v1::Entry>& entries() const { return entries_; }
  const std::optional<v1::Snapshot>& snapshot() const { return snapshot_; }
  uint64_t offset() const { return offset_; }

 private:
  std::optional<v1::Snapshot> snapshot_;
  std::vector<v1::Entry> entries_;
  // Index of entries_[0].
  uint64_t offset_;
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_LOG_UNSTABLE_H_
