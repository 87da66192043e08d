// ReadOnly: ReadIndex requests a leader is confirming.
//
// A read at index i is linearizable if, after the request arrived, a quorum still recognised
// this node as leader (so no newer leader can have committed past i). The leader records its
// commit index with the request, sends a heartbeat carrying the request's context, and answers
// once a quorum acknowledged that heartbeat. Requests complete in arrival order: an ack for a
// later request also confirms every earlier one.
#ifndef MARMOT_RAFT_READ_ONLY_H_
#define MARMOT_RAFT_READ_ONLY_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "proto/raft.pb.h"

namespace marmot::raft {

struct ReadIndexStatus {
  v1::Message req;
  uint64_t index = 0;
  std::set<uint64_t> acks;
};

class ReadOnly {
 public:
  // Starts confirming `req` (its context is entries[0].data) at commit index `index`.
  // Duplicate contexts are ignored.
  void AddRequest(uint64_t index, v1::Message req);
  // Records a heartbeat ack from `id` for `ctx`; returns the acks so far (empty if unknown).
  const std::set<uint64_t>* RecvAck(uint64_t id, const std::string& ctx);
  // Removes and returns every request up to and including the one with `ctx`.
  std::vector<ReadIndexStatus> Advance(const std::string& ctx);
  // Context of the newest pending request, or "" (heartbeats carry it).
  std::string LastPendingRequestCtx() const;
  size_t Pending() const { return queue_.size(); }
  void Reset() {
    pending_.clear();
    queue_.clear();
  }

 private:
  std::map<std::string, ReadIndexStatus> pending_;
  std::deque<std::string> queue_;
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_READ_ONLY_H_
