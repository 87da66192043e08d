// Typed errors of the Raft library.
//
// Every error a caller is expected to handle is an absl::Status whose code identifies it; the
// predicates below are the supported way to test for one (the message text is for humans).
// Broken invariants are not errors: they CHECK-fail with the state that broke them.
#ifndef MARMOT_RAFT_ERRORS_H_
#define MARMOT_RAFT_ERRORS_H_

#include <string_view>

#include "absl/status/status.h"

namespace marmot::raft {

// LogStorage: the requested index is at or below the last snapshot (compacted away).
inline absl::Status CompactedError() {
  return absl::OutOfRangeError("raft: requested index is unavailable due to compaction");
}
inline bool IsCompacted(const absl::Status& s) { return s.code() == absl::StatusCode::kOutOfRange; }

// LogStorage: the requested index is past the last entry.
inline absl::Status UnavailableError() {
  return absl::NotFoundError("raft: requested entry at index is unavailable");
}
inline bool IsEntryUnavailable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kNotFound;
}

// LogStorage::Snapshot: a snapshot is being prepared; the core retries later.
inline absl::Status SnapshotTemporarilyUnavailableError() {
  return absl::UnavailableError("raft: snapshot is temporarily unavailable");
}
inline bool IsSnapshotTemporarilyUnavailable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable;
}

// MemoryLogStorage: the snapshot given is older than the one held.
inline absl::Status SnapshotOutOfDateError() {
  return absl::FailedPreconditionError("raft: requested index is older than the existing snapshot");
}
inline bool IsSnapshotOutOfDate(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition;
}

// Core: a proposal (or read, or transfer) could not be accepted now: no leader known, leader
// transfer in progress, a configuration change pending, uncommitted log too large, or this node
// is not a member. The caller may retry, typically after a leader is known.
inline absl::Status ProposalDroppedError(std::string_view why) {
  return absl::AbortedError(std::string("raft: proposal dropped: ") + std::string(why));
}
inline bool IsProposalDropped(const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted;
}

// Core: a message from a peer this group does not know, for a type that needs a known peer.
inline absl::Status PeerNotFoundError() {
  return absl::NotFoundError("raft: cannot step a response from an unknown peer");
}

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_ERRORS_H_
