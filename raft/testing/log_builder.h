// Helpers to build hand-made logs for scenario tests (paper figures 7 and 8).
#ifndef MARMOT_RAFT_TESTING_LOG_BUILDER_H_
#define MARMOT_RAFT_TESTING_LOG_BUILDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "proto/raft.pb.h"
#include "raft/storage.h"

namespace marmot::raft::testing {

// A bootstrapped storage (snapshot at index 1, term 1, members `cs`) followed by one entry per
// element of `terms` at indexes 2, 3, ..., and hard state term `term` (at least the last term).
inline MemoryLogStorage LogWithTerms(const v1::ConfState& cs, const std::vector<uint64_t>& terms,
                                     uint64_t term = 0) {
  MemoryLogStorage s = MemoryLogStorage::Bootstrap(cs);
  std::vector<v1::Entry> es;
  uint64_t idx = 2, max_term = 1;
  for (uint64_t t : terms) {
    v1::Entry e;
    e.set_index(idx++);
    e.set_term(t);
    e.set_data("t" + std::to_string(t) + "i" + std::to_string(e.index()));
    es.push_back(e);
    max_term = std::max(max_term, t);
  }
  (void)s.Append(es);
  v1::HardState hs;
  hs.set_term(std::max(term, max_term));
  hs.set_commit(1);
  s.SetHardState(hs);
  return s;
}

// (index, term) pairs of a node's whole log, for comparisons.
inline std::vector<std::pair<uint64_t, uint64_t>> LogShape(const MemoryLogStorage& s) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t i = s.FirstIndex(); i <= s.LastIndex(); ++i) out.push_back({i, *s.Term(i)});
  return out;
}

}  // namespace marmot::raft::testing

#endif  // MARMOT_RAFT_TESTING_LOG_BUILDER_H_
