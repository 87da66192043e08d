// TestNode: a minimal Raft host for tests and the simulator.
//
// It owns what survives a crash (a MemoryLogStorage and a tiny state machine that records
// what it applied) and a RawNode that does not. HandleReady() does what a real host does,
// in the safe order: persist the snapshot, entries and hard state, apply committed entries
// (conf changes too), then hand back the messages to send and Advance(). Crash() throws away
// the RawNode together with anything it had not yet handed over in a Ready.
#ifndef MARMOT_RAFT_TESTING_TEST_NODE_H_
#define MARMOT_RAFT_TESTING_TEST_NODE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/raft.pb.h"
#include "raft/raw_node.h"
#include "raft/storage.h"

namespace marmot::raft::testing {

// The state machine: an ordered record of applied entries plus a hash chain over them, so
// that two replicas can compare their whole history in O(1).
struct StateMachine {
  uint64_t applied = 0;
  uint64_t hash = 0;
  v1::ConfState conf_state;
  // Payloads of applied non-empty normal entries, in order.
  std::vector<std::string> payloads;

  std::string Encode() const;
  static bool Decode(const std::string& data, StateMachine* out);
  void ApplyNormal(const v1::Entry& e);
};

// Folds an entry into the hash chain.
uint64_t ChainHash(uint64_t prev, uint64_t index, uint64_t term, const std::string& data);

class TestNode {
 public:
  // Observers of what the host does, for invariant checks. All optional.
  struct Hooks {
    std::function<void(uint64_t node, const v1::Entry& e, const StateMachine& after)> on_apply;
    std::function<void(uint64_t node, const v1::Snapshot& s, const StateMachine& after)>
        on_install_snapshot;
    std::function<void(uint64_t node, const std::vector<v1::Entry>& persisted)> on_persist;
  };

  TestNode(uint64_t id, MemoryLogStorage storage, Config base, Hooks hooks = {});

  uint64_t id() const { return id_; }
  bool alive() const { return raw_ != nullptr; }
  RawNode& raw() { return *raw_; }
  const Raft& raft() const { return raw_->raft(); }
  MemoryLogStorage& storage() { return storage_; }
  const StateMachine& sm() const { return sm_; }
  // Read states received so far (survive crashes: they are the client's).
  std::vector<ReadState>& read_states() { return read_states_; }

  // Processes one Ready if there is one; appends messages to send to *out. Returns whether a
  // Ready was handled.
  bool HandleReady(std::vector<v1::Message>* out);
  // Loses everything not yet handled.
  void Crash();
  // Starts a fresh RawNode on the persisted state, with a new seed for its timers.
  void Restart(uint64_t seed);
  // Snapshots the state machine at its applied index and compacts the log, keeping
  // `keep_entries` entries before it (so slightly lagging followers still get entries).
  void SnapshotAndCompact(uint64_t keep_entries);

 private:
  uint64_t id_;
  Config base_;
  Hooks hooks_;
  MemoryLogStorage storage_;
  StateMachine sm_;
  std::vector<ReadState> read_states_;
  std::unique_ptr<RawNode> raw_;
};

}  // namespace marmot::raft::testing

#endif  // MARMOT_RAFT_TESTING_TEST_NODE_H_
