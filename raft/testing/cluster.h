// Cluster: a synchronous, in-process group of TestNodes for scenario tests.
//
// Messages go into one FIFO queue; Settle() handles Readys and delivers messages until the
// cluster is quiet, so a test reads as "given this state, when X happens, then Y". Faults are
// explicit: cut links (one-way or both), isolate a node, drop messages of a type, crash and
// restart. Nothing is random except the election timeouts, seeded per node.
#ifndef MARMOT_RAFT_TESTING_CLUSTER_H_
#define MARMOT_RAFT_TESTING_CLUSTER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "proto/raft.pb.h"
#include "raft/raw_node.h"
#include "raft/testing/test_node.h"

namespace marmot::raft::testing {

class Cluster {
 public:
  // Nodes 1..n, all voters of a freshly bootstrapped group.
  explicit Cluster(int n, Config base = DefaultConfig());

  static Config DefaultConfig();
  static v1::ConfState Voters(std::initializer_list<uint64_t> ids);

  // Adds node `id` with the given storage (e.g. a hand-made log). Not started if empty.
  TestNode& AddNode(uint64_t id, MemoryLogStorage storage);
  // Adds an empty node (to join the group via a conf change).
  TestNode& AddEmptyNode(uint64_t id) { return AddNode(id, MemoryLogStorage()); }

  TestNode& node(uint64_t id) { return *nodes_.at(id); }
  RawNode& raw(uint64_t id) { return nodes_.at(id)->raw(); }
  const Raft& raft(uint64_t id) { return nodes_.at(id)->raft(); }
  std::vector<uint64_t> ids() const;

  // Handles Readys and delivers messages until nothing moves (bounded; CHECKs on livelock).
  void Settle();
  // Ticks node `id` `n` times, settling after each tick.
  void Tick(uint64_t id, int n = 1);
  // Ticks every live node `n` times, settling after each round.
  void TickAll(int n = 1);
  // Lets an election timeout pass on `id` without it campaigning, so its check-quorum lease
  // (the time it refuses votes after hearing from a leader) runs out.
  void ExpireLease(uint64_t id);
  // Makes `id` campaign (skipping its timeout) and settles.
  void Campaign(uint64_t id);
  // Elects `id` and checks it won.
  void ElectLeader(uint64_t id);
  absl::Status Propose(uint64_t id, std::string data);
  absl::Status ProposeConfChange(uint64_t id, v1::ConfChangeType type, uint64_t node);

  // The live node that believes it is leader at the highest term, or 0.
  uint64_t Leader();

  // Network faults.
  void Cut(uint64_t a, uint64_t b);  // both directions
  void CutOneWay(uint64_t from, uint64_t to);
  void Isolate(uint64_t id);
  void Heal();  // restores every link and stops type drops
  void DropType(v1::MessageType t) { dropped_types_.insert(t); }
  // Sees every message before delivery; return false to drop it.
  void SetFilter(std::function<bool(const v1::Message&)> f) { filter_ = std::move(f); }

  // Lower-level control.
  void Deliver(v1::Message m);  // steps one message now (no settling)
  void DeliverQueued();         // delivers what is queued (no Ready handling)
  bool HandleReadys();          // handles one Ready per live node
  std::deque<v1::Message>& queue() { return queue_; }
  void Crash(uint64_t id) { nodes_.at(id)->Crash(); }
  void Restart(uint64_t id);

  // What node `id` applied (non-empty normal payloads).
  const std::vector<std::string>& Applied(uint64_t id) { return nodes_.at(id)->sm().payloads; }
  // Read states each node received, in order.
  std::vector<ReadState>& read_states(uint64_t id) { return nodes_.at(id)->read_states(); }

 private:
  bool Blocked(const v1::Message& m) const;

  Config base_;
  std::map<uint64_t, std::unique_ptr<TestNode>> nodes_;
  std::deque<v1::Message> queue_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  std::set<v1::MessageType> dropped_types_;
  std::function<bool(const v1::Message&)> filter_;
  uint64_t restarts_ = 0;
};

// Formats a message for failure output.
std::string Describe(const v1::Message& m);

}  // namespace marmot::raft::testing

#endif  // MARMOT_RAFT_TESTING_CLUSTER_H_
