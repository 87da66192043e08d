#include "raft/host/term_runs.h"

#include <algorithm>

#include "glog/logging.h"

namespace marmot::raft::host {

void TermRuns::Add(uint64_t index, uint64_t term) {
  if (runs_.empty()) {
    runs_.push_back({index, term});
    begin_ = index;
    end_ = index + 1;
    return;
  }
  CHECK_EQ(index, end_) << "term runs must grow one index at a time";
  if (runs_.back().term != term) runs_.push_back({index, term});
  end_ = index + 1;
}

void TermRuns::TruncateFrom(uint64_t first) {
  if (runs_.empty() || first >= end_) return;
  if (first <= begin_) {
    Clear();
    return;
  }
  while (runs_.back().first >= first) runs_.pop_back();
  end_ = first;
}

void TermRuns::DropThrough(uint64_t index) {
  if (runs_.empty() || index < begin_) return;
  if (index + 1 >= end_) {
    Clear();
    return;
  }
  while (runs_.size() > 1 && runs_[1].first <= index + 1) runs_.pop_front();
  runs_.front().first = index + 1;
  begin_ = index + 1;
}

void TermRuns::Clear() {
  runs_.clear();
  begin_ = end_ = 0;
}

std::optional<uint64_t> TermRuns::Term(uint64_t index) const {
  if (runs_.empty() || index < begin_ || index >= end_) return std::nullopt;
  // The last run starting at or before `index`.
  auto it = std::upper_bound(runs_.begin(), runs_.end(), index,
                             [](uint64_t i, const Run& r) { return i < r.first; });
  return std::prev(it)->term;
}

}  // namespace marmot::raft::host
