#include "raft/quorum.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_join.h"

namespace marmot::raft {

uint64_t MajorityConfig::CommittedIndex(
    const std::function<std::optional<uint64_t>(uint64_t)>& acked) const {
  const size_t n = voters_.size();
  if (n == 0) return 0;
  // Small groups are the norm: a stack array avoids an allocation per commit check.
  uint64_t stack[8];
  std::vector<uint64_t> heap;
  uint64_t* srt = stack;
  if (n > 8) {
    heap.resize(n);
    srt = heap.data();
  }
  size_t i = 0;
  for (uint64_t id : voters_) srt[i++] = acked(id).value_or(0);
  std::sort(srt, srt + n);
  // Sorted ascending, the entry at n - (n/2 + 1) is acknowledged by n/2 + 1 voters: a majority.
  return srt[n - (n / 2 + 1)];
}

VoteResult MajorityConfig::Vote(const std::map<uint64_t, bool>& votes) const {
  if (voters_.empty()) return VoteResult::kWon;  // vacuous, as for joint configs in the paper
  size_t granted = 0, missing = 0;
  for (uint64_t id : voters_) {
    auto it = votes.find(id);
    if (it == votes.end()) {
      ++missing;
    } else if (it->second) {
      ++granted;
    }
  }
  const size_t q = voters_.size() / 2 + 1;
  if (granted >= q) return VoteResult::kWon;
  if (granted + missing >= q) return VoteResult::kPending;
  return VoteResult::kLost;
}

std::string MajorityConfig::DebugString() const { return "(" + absl::StrJoin(voters_, " ") + ")"; }

}  // namespace marmot::raft
