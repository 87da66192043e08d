// LogPrefix: how a log line about one shard on one node starts, "[shard 3 node 1] ", or with the
// Raft term, "[shard 3 node 1 term 7] ", so that one search follows a shard on a node through
// the core's and the host's lines alike:
//
//   LOG(INFO) << LogPrefix(shard, node_id) << "installed snapshot at " << index;
#ifndef MARMOT_RAFT_LOG_PREFIX_H_
#define MARMOT_RAFT_LOG_PREFIX_H_

#include <cstdint>
#include <optional>
#include <ostream>

namespace marmot::raft {

struct LogPrefix {
  LogPrefix(uint64_t shard, uint64_t node) : shard(shard), node(node) {}
  LogPrefix(uint64_t shard, uint64_t node, uint64_t term) : shard(shard), node(node), term(term) {}

  uint64_t shard;
  uint64_t node;
  std::optional<uint64_t> term;
};

inline std::ostream& operator<<(std::ostream& os, const LogPrefix& p) {
  os << "[shard " << p.shard << " node " << p.node;
  if (p.term.has_value()) os << " term " << *p.term;
  return os << "] ";
}

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_LOG_PREFIX_H_
