// The term of every index of one shard's log, held in memory as runs of equal terms.
//
// The Raft core asks the term of an index all the time (every append it takes or sends, every
// vote, every commit). An entry is as large as the rows it carries, so reading one from the
// log store to learn its term can cost a 70 MB read and parse; a node doing that on each
// message stalls every shard's ticks and heartbeats past an election timeout. A log holds few
// terms, so runs answer from memory in O(log runs).
#ifndef MARMOT_RAFT_HOST_TERM_RUNS_H_
#define MARMOT_RAFT_HOST_TERM_RUNS_H_

#include <cstdint>
#include <deque>
#include <optional>

namespace marmot::raft::host {

class TermRuns {
 public:
  // Records that `index` has `term`. `index` must be one past the last recorded index, or
  // any index when nothing is recorded.
  void Add(uint64_t index, uint64_t term);
  // Forgets `first` and every index after it (a new leader overwrote the tail).
  void TruncateFrom(uint64_t first);
  // Forgets every index up to and including `index` (compaction).
  void DropThrough(uint64_t index);
  void Clear();
  // The term of `index`; nullopt when it is not recorded.
  std::optional<uint64_t> Term(uint64_t index) const;
  // How many runs are held (tests).
  size_t size() const { return runs_.size(); }

 private:
  struct Run {
    uint64_t first;  // first index of the run; the run ends where the next begins, or at end_
    uint64_t term;
  };
  std::deque<Run> runs_;
  uint64_t begin_ = 0;  // first recorded index (meaningful when runs_ is not empty)
  uint64_t end_ = 0;    // one past the last recorded index
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_TERM_RUNS_H_
