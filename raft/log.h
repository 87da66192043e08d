// RaftLog: one group's log as the core sees it, stable storage plus the unstable tail.
//
// It tracks two cursors: `committed` (known replicated on a quorum, never moves back) and
// `applied` (handed to the host to apply, never past committed). Everything at or below the
// storage's snapshot is gone; asking for it yields CompactedError() and makes the leader fall
// back to sending a snapshot.
#ifndef MARMOT_RAFT_LOG_H_
#define MARMOT_RAFT_LOG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/raft.pb.h"
#include "raft/log_unstable.h"
#include "raft/storage.h"

namespace marmot::raft {

class RaftLog {
 public:
  // `max_applying_bytes` bounds the committed entries handed out per Ready.
  RaftLog(const LogStorage* storage, uint64_t max_applying_bytes);

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const;
  // Term of entry i; 0 for an index past the end (the protocol treats it as "no entry").
  // CompactedError() if i is below the first available index.
  absl::StatusOr<uint64_t> Term(uint64_t i) const;
  // Term of entry i, or 0 if unknown for any reason.
  uint64_t ZeroTermOnError(uint64_t i) const;
  // Whether the log holds entry i with `term` (false beyond the last index).
  bool MatchTerm(uint64_t i, uint64_t term) const;

  // Follower side of MsgApp: if our log has (index, log_term), appends `entries` after it
  // (replacing a conflicting suffix), commits min(committed, last new index) and returns the
  // last index now known to match the leader. nullopt if our log does not contain (index,
  // log_term).
  // *conflict_index is set to the first index that was (re)written, or 0 if none.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                      std::vector<v1::Entry> entries, uint64_t* conflict_index);
  // Appends entries after whatever they follow; returns the new last index.
  uint64_t Append(std::vector<v1::Entry> entries);
  // Index of the first entry in `entries` that conflicts with ours (same index, different
  // term) or is new; 0 if all are already present.
  uint64_t FindConflict(const std::vector<v1::Entry>& entries) const;
  // The largest index <= `index` whose term is <= `term`, with that term. Used to skip a whole
  // term of mismatching entries per round trip instead of one entry at a time.
  std::pair<uint64_t, uint64_t> FindConflictByTerm(uint64_t index, uint64_t term) const;

  // Entries [i, LastIndex()] up to max_bytes (at least one).
  absl::StatusOr<std::vector<v1::Entry>> Entries(uint64_t i, uint64_t max_bytes) const;
  // Entries [lo, hi) up to max_bytes (at least one).
  absl::StatusOr<std::vector<v1::Entry>> Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;
  std::vector<v1::Entry> AllEntries() const;

  // Raft paper 5.4.1: does a candidate whose last entry is (last_index, term) have a log at
  // least as up to date as ours?
  bool IsUpToDate(uint64_t last_index, uint64_t term) const;

  // Committed entries not yet handed out, bounded by max_applying_bytes.
  std::vector<v1::Entry> NextCommittedEntries() const;
  bool HasNextCommittedEntries() const;
  // The unstable snapshot, if any, or the storage's.
  absl::StatusOr<v1::Snapshot> Snapshot() const;

  // Leader side: commits max_index if the entry there is from `term` (figure 8: a leader only
  // commits by counting replicas of an entry of its own term). Returns whether it advanced.
  bool MaybeCommit(uint64_t max_index, uint64_t term);
  void CommitTo(uint64_t to_commit);
  void AppliedTo(uint64_t i);
  void StableTo(uint64_t i, uint64_t t) { unstable_.StableTo(i, t); }
  void StableSnapTo(uint64_t i) { unstable_.StableSnapTo(i); }
  void Restore(const v1::Snapshot& s);

  const UnstableLog& unstable() const { return unstable_; }
  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  std::string DebugString() const;

 private:
  void MustCheckOutOfBounds(uint64_t lo, uint64_t hi) const;

  const LogStorage* storage_;
  UnstableLog unstable_;
  uint64_t committed_;
  uint64_t applied_;
  uint64_t max_applying_bytes_;
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_LOG_H_
