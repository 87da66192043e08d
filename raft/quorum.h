// Majority quorums: the arithmetic of "more than half of the voters".
//
// Commit and elections both rest on one fact: any two majorities of the same voter set share
// at least one member. Single-server membership changes keep that true across consecutive
// configurations (a majority of N and a majority of N+1 voters always overlap), which is why
// Marmot changes one member at a time and never has two changes in flight.
#ifndef MARMOT_RAFT_QUORUM_H_
#define MARMOT_RAFT_QUORUM_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace marmot::raft {

enum class VoteResult { kPending, kLost, kWon };

class MajorityConfig {
 public:
  MajorityConfig() = default;
  explicit MajorityConfig(std::set<uint64_t> voters) : voters_(std::move(voters)) {}

  // The largest index that a majority of voters has acknowledged, given each voter's
  // acknowledged index (nullopt: unknown, counts as 0). 0 if there are no voters.
  uint64_t CommittedIndex(const std::function<std::optional<uint64_t>(uint64_t)>& acked) const;
  // Won once a majority granted, lost once a majority can no longer grant, else pending.
  // `votes` maps voter id to granted; missing voters have not answered.
  VoteResult Vote(const std::map<uint64_t, bool>& votes) const;

  const std::set<uint64_t>& voters() const { return voters_; }
  std::set<uint64_t>& mutable_voters() { return voters_; }
  bool Contains(uint64_t id) const { return voters_.count(id) > 0; }
  size_t size() const { return voters_.size(); }
  std::string DebugString() const;

 private:
  std::set<uint64_t> voters_;
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_QUORUM_H_
