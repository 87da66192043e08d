// RawNode: the host-facing API of one Raft group, and the Ready/Advance handshake.
//
// The host drives it in a loop:
//
//   node->Tick();  node->Step(msg);  node->Propose(data);   // inputs, any order
//   if (node->HasReady()) {
//     Ready rd = node->GetReady();
//     1. persist rd.snapshot (if any), rd.entries (truncating any conflicting suffix) and
//        rd.hard_state (if any) -- atomically is best;
//     2. send rd.messages (see below);
//     3. apply rd.committed_entries in order; for ENTRY_CONF_CHANGE call ApplyConfChange;
//        install rd.snapshot into the state machine first if there is one;
//     4. node->Advance();
//   }
//
// Messages: a message answering a peer (votes, append acks) promises state that must be
// durable first, so send rd.messages after step 1. (A leader's own MsgApp/MsgSnap/heartbeats
// may go out in parallel with its write, per the Raft thesis 10.2.1; the simple order above is
// always correct.) For each MsgSnap sent, call ReportSnapshot once the transport knows whether
// it arrived; for an unreachable peer, ReportUnreachable.
//
// Ready/Advance strictly alternate: GetReady() again before Advance() is an error. Nothing is
// lost if the host crashes between them: whatever was not persisted was never acknowledged.
#ifndef MARMOT_RAFT_RAW_NODE_H_
#define MARMOT_RAFT_RAW_NODE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/raft.pb.h"
#include "raft/raft.h"

namespace marmot::raft {

struct Ready {
  // Set when leader or role changed since the last Ready.
  std::optional<SoftState> soft_state;
  // Set when term, vote or commit changed: persist before sending messages.
  std::optional<v1::HardState> hard_state;
  // Answers to ReadIndex requests.
  std::vector<ReadState> read_states;
  // Entries to append to stable storage (possibly replacing a suffix).
  std::vector<v1::Entry> entries;
  // A snapshot from the leader to persist and install in the state machine.
  std::optional<v1::Snapshot> snapshot;
  // Committed entries to apply, in order (already persisted, or in `entries` of this Ready).
  std::vector<v1::Entry> committed_entries;
  // Messages to send once the above is persisted.
  std::vector<v1::Message> messages;
  // Whether the write must be fsynced (term, vote or entries changed).
  bool must_sync = false;
};

enum class SnapshotStatus { kFinish, kFailure };

// A point-in-time view for tests, metrics and the admin pane.
struct NodeStatus {
  uint64_t id = 0;
  v1::HardState hard_state;
  SoftState soft_state;
  uint64_t applied = 0;
  uint64_t lead_transferee = 0;
  // Only on the leader: each member's match index and state.
  std::map<uint64_t, std::pair<uint64_t, ProgressState>> progress;
  v1::ConfState conf_state;
};

class RawNode {
 public:
  // Validates the config and loads state from config.storage.
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& config);

  void Tick() { raft_.Tick(); }
  // Starts an election now (e.g. for a host that wants a quick first leader).
  absl::Status Campaign();
  // Proposes data to be appended to the log. ProposalDroppedError() if there is no leader, a
  // transfer is in progress or the uncommitted tail is full; success does not mean the entry
  // will commit (watch committed entries for it).
  absl::Status Propose(std::string data);
  // Proposes several entries at once: one message, one append, one broadcast. The entries
  // are contiguous in the log. Same errors as Propose; all or nothing.
  absl::Status ProposeBatch(std::vector<std::string> data);
  // Proposes a membership change. Only one may be pending at a time; the leader refuses
  // another (ProposalDroppedError()) until the previous one is applied.
  absl::Status ProposeConfChange(const v1::ConfChange& cc);
  // Applies a committed conf change entry (the host calls it while applying entries).
  v1::ConfState ApplyConfChange(const v1::ConfChange& cc) { return raft_.ApplyConfChange(cc); }
  // Feeds a message from a peer. InvalidArgumentError() for local and unknown message types,
  // and for a message whose term does not fit its type (a proposal, read or leadership transfer
  // carrying a term, any other message none); PeerNotFoundError() for a response from a peer
  // not in the group.
  absl::Status Step(v1::Message m);
  // Asks the leader (which may be this node) to hand leadership to `transferee`.
  absl::Status TransferLeader(uint64_t transferee);
  // Requests a linearizable read; answered through Ready::read_states with `ctx`.
  absl::Status ReadIndex(std::string ctx);
  void ReportUnreachable(uint64_t id);
  void ReportSnapshot(uint64_t id, SnapshotStatus status);

  bool HasReady() const;
  // Collects everything pending. FailedPreconditionError() if the previous Ready was not
  // advanced.
  absl::StatusOr<Ready> GetReady();
  // The host persisted, sent and applied the last Ready.
  absl::Status Advance();

  NodeStatus Status() const;
  const Raft& raft() const { return raft_; }
  Raft& mutable_raft() { return raft_; }

 private:
  explicit RawNode(const Config& config);

  Raft raft_;
  SoftState prev_soft_state_;
  v1::HardState prev_hard_state_;
  bool awaiting_advance_ = false;
  // What the outstanding Ready handed out, to acknowledge on Advance.
  uint64_t ready_last_entry_index_ = 0;
  uint64_t ready_last_entry_term_ = 0;
  uint64_t ready_snapshot_index_ = 0;
  uint64_t ready_last_committed_ = 0;
  uint64_t ready_committed_bytes_ = 0;
};

bool IsEmptyHardState(const v1::HardState& hs);

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_RAW_NODE_H_
