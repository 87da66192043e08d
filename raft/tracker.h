// ProgressTracker: the leader's (and candidate's) view of the group: the membership, each
// member's Progress, and the votes of the current election.
#ifndef MARMOT_RAFT_TRACKER_H_
#define MARMOT_RAFT_TRACKER_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "proto/raft.pb.h"
#include "raft/progress.h"
#include "raft/quorum.h"

namespace marmot::raft {

class ProgressTracker {
 public:
  ProgressTracker(size_t max_inflight, uint64_t max_inflight_bytes)
      : max_inflight_(max_inflight), max_inflight_bytes_(max_inflight_bytes) {}

  // Replaces the membership; every member gets a fresh Progress with next = next_index.
  // (The learners to promote are copied from `cs` by Reset and SetConfig alike.)
  void Reset(const v1::ConfState& cs, uint64_t next_index);
  // Switches to membership `cs`, keeping the Progress of members that stay (a promoted
  // learner keeps its replication state); new members start at next_index.
  void SetConfig(const v1::ConfState& cs, uint64_t next_index);
  // Membership changes (single server). Adding an existing learner as voter promotes it.
  void AddVoter(uint64_t id, uint64_t next_index);
  void AddLearner(uint64_t id, uint64_t next_index);

  // Largest index acknowledged by a majority of voters.
  uint64_t Committed() const;
  // Whether a majority of voters was recently active (self counts: it is the caller).
  bool QuorumActive() const;
  void ResetVotes() { votes_.clear(); }
  // Records id's vote if it has not voted yet.
  void RecordVote(uint64_t id, bool granted);
  // Counts (granted, rejected) and the outcome.
  VoteResult TallyVotes(size_t* granted, size_t* rejected) const;
  bool IsSingleton() const { return voters_.size() == 1; }

  v1::ConfState ConfState() const;
  // ConfState.version of the current membership.
  uint64_t conf_version() const { return conf_version_; }
  Progress* Get(uint64_t id);
  const Progress* Get(uint64_t id) const;
  std::map<uint64_t, Progress>& progress() { return progress_; }
  const std::map<uint64_t, Progress>& progress() const { return progress_; }
  const MajorityConfig& voters() const { return voters_; }
  const std::set<uint64_t>& learners() const { return learners_; }
  // Learners that the leader promotes once they caught up (ConfState.learners_to_promote).
  const std::set<uint64_t>& learners_to_promote() const { return learners_to_promote_; }
  std::string DebugString() const;

 private:
  size_t max_inflight_;
  uint64_t max_inflight_bytes_;
  MajorityConfig voters_;
  std::set<uint64_t> learners_;
  std::set<uint64_t> learners_to_promote_;
  uint64_t conf_version_ = 0;
  // Ordered by id: iteration order decides message order, which must be deterministic.
  std::map<uint64_t, Progress> progress_;
  std::map<uint64_t, bool> votes_;
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_TRACKER_H_
