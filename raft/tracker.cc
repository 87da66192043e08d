#include "raft/tracker.h"

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft {

void ProgressTracker::Reset(const v1::ConfState& cs, uint64_t next_index) {
  voters_ = MajorityConfig();
  learners_.clear();
  progress_.clear();
  votes_.clear();
  for (uint64_t id : cs.voters()) AddVoter(id, next_index);
  for (uint64_t id : cs.learners()) AddLearner(id, next_index);
  learners_to_promote_ = {cs.learners_to_promote().begin(), cs.learners_to_promote().end()};
  conf_version_ = cs.version();
}

void ProgressTracker::SetConfig(const v1::ConfState& cs, uint64_t next_index) {
  std::set<uint64_t> keep(cs.voters().begin(), cs.voters().end());
  keep.insert(cs.learners().begin(), cs.learners().end());
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (!keep.count(it->first)) {
      votes_.erase(it->first);
      it = progress_.erase(it);
    } else {
      ++it;
    }
  }
  voters_ = MajorityConfig();
  learners_.clear();
  for (uint64_t id : cs.voters()) AddVoter(id, next_index);
  for (uint64_t id : cs.learners()) {
    auto it = progress_.find(id);
    if (it != progress_.end()) {
      it->second.is_learner = true;
      learners_.insert(id);
    } else {
      AddLearner(id, next_index);
    }
  }
  learners_to_promote_ = {cs.learners_to_promote().begin(), cs.learners_to_promote().end()};
  conf_version_ = cs.version();
}

void ProgressTracker::AddVoter(uint64_t id, uint64_t next_index) {
  auto it = progress_.find(id);
  if (it != progress_.end()) {
    // Promotion keeps the learner's replication state: it already has most of the log.
    it->second.is_learner = false;
    learners_.erase(id);
    voters_.mutable_voters().insert(id);
    return;
  }
  auto [pit, ok] = progress_.emplace(
      id, Progress(std::max<uint64_t>(next_index, 1), max_inflight_, max_inflight_bytes_, false));
  // A new member counts as active, else check-quorum could count it against the leader before
  // it ever had a chance to answer.
  pit->second.recent_active = true;
  voters_.mutable_voters().insert(id);
}

void ProgressTracker::AddLearner(uint64_t id, uint64_t next_index) {
  if (progress_.count(id)) return;  // already a learner; demoting a voter is not supported
  auto [pit, ok] = progress_.emplace(
      id, Progress(std::max<uint64_t>(next_index, 1), max_inflight_, max_inflight_bytes_, true));
  pit->second.recent_active = true;
  learners_.insert(id);
}

uint64_t ProgressTracker::Committed() const {
  return voters_.CommittedIndex([this](uint64_t id) -> std::optional<uint64_t> {
    auto it = progress_.find(id);
    if (it == progress_.end()) return std::nullopt;
    return it->second.match;
  });
}

bool ProgressTracker::QuorumActive() const {
  std::map<uint64_t, bool> active;
  for (const auto& [id, pr] : progress_) {
    if (!pr.is_learner) active[id] = pr.recent_active;
  }
  return voters_.Vote(active) == VoteResult::kWon;
}

void ProgressTracker::RecordVote(uint64_t id, bool granted) { votes_.emplace(id, granted); }

VoteResult ProgressTracker::TallyVotes(size_t* granted, size_t* rejected) const {
  *granted = 0;
  *rejected = 0;
  for (const auto& [id, pr] : progress_) {
    if (pr.is_learner) continue;
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    if (it->second) {
      ++*granted;
    } else {
      ++*rejected;
    }
  }
  return voters_.Vote(votes_);
}

v1::ConfState ProgressTracker::ConfState() const {
  v1::ConfState cs;
  for (uint64_t id : voters_.voters()) cs.add_voters(id);
  for (uint64_t id : learners_) cs.add_learners(id);
  for (uint64_t id : learners_to_promote_) cs.add_learners_to_promote(id);
  cs.set_version(conf_version_);
  return cs;
}

Progress* ProgressTracker::Get(uint64_t id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::Get(uint64_t id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

std::string ProgressTracker::DebugString() const {
  std::string s = absl::StrCat("voters=", voters_.DebugString());
  for (const auto& [id, pr] : progress_) absl::StrAppend(&s, " ", id, ":{", pr.DebugString(), "}");
  return s;
}

}  // namespace marmot::raft
