// Raft: the protocol state machine of one group (shard) on one node.
//
// Pure and single-threaded: inputs are Step(message) and Tick(); outputs accumulate as
// messages to send (msgs_), the unstable log, read states and changes of term/vote/commit,
// which RawNode packages into a Ready. No clocks, threads, files or sockets: time is Tick(),
// randomness is a generator seeded from Config, durability is the host's job.
//
// Built in: leader election with randomized timeouts, pre-vote and check-quorum (on by
// default, together), log replication with per-follower flow control, commit by counting only
// current-term entries, snapshots, learners, single-server membership changes, leadership
// transfer and ReadIndex.
#ifndef MARMOT_RAFT_RAFT_H_
#define MARMOT_RAFT_RAFT_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "proto/raft.pb.h"
#include "raft/log.h"
#include "raft/membership.h"
#include "raft/read_only.h"
#include "raft/storage.h"
#include "raft/tracker.h"

namespace marmot::raft {

using v1::ConfChange;
using v1::Message;
using v1::MessageType;

inline constexpr uint64_t kNone = 0;

enum class StateType { kFollower, kCandidate, kLeader, kPreCandidate };
const char* StateName(StateType s);

struct Config {
  // This node's id; never 0.
  uint64_t id = 0;
  // The group this core belongs to; stamped on every outgoing message.
  uint64_t shard = 0;
  // Ticks without hearing from a leader before a follower campaigns. The actual timeout is
  // randomized in [election_tick, 2 * election_tick) to make split votes unlikely.
  int election_tick = 10;
  // Ticks between a leader's heartbeats. Must be < election_tick.
  int heartbeat_tick = 1;
  // Heartbeats go out when this core's tick count is a multiple of heartbeat_tick, instead of
  // heartbeat_tick ticks after the last one. A host that ticks all its groups together then
  // sends the heartbeats of every group it leads in the same tick, as one transport batch per
  // peer, instead of spreading them over every tick (what costs an idle cluster CPU). Safe: a
  // new leader's first heartbeat comes at most heartbeat_tick ticks after its election, which
  // it announced with an append at once.
  bool align_heartbeats = false;
  // Durable log; owned by the host, must outlive the core.
  const LogStorage* storage = nullptr;
  // The index the host's state machine has applied (after a restart). Committed entries are
  // handed out from applied + 1 on.
  uint64_t applied = 0;
  // Limits, in EntrySize() bytes: per MsgApp, per Ready's committed entries, and for the
  // leader's uncommitted tail (0 = unlimited).
  uint64_t max_size_per_msg = 1 << 20;
  uint64_t max_committed_size_per_ready = 16 << 20;
  uint64_t max_uncommitted_entries_size = 0;
  // In-flight window per follower in replicate state: messages, and bytes (0 = unlimited).
  int max_inflight_msgs = 256;
  uint64_t max_inflight_bytes = 0;
  // A leader steps down when it has not heard from a quorum for an election timeout, and
  // followers that heard from a leader recently refuse to vote for anyone else. Paired with
  // pre_vote, this keeps a partitioned node from disrupting a healthy leader when it returns.
  bool check_quorum = true;
  // Candidates first ask whether they could win (without raising their term).
  bool pre_vote = true;
  // Followers drop proposals instead of forwarding them to the leader.
  bool disable_proposal_forwarding = false;
  // Seed of the generator behind randomized election timeouts.
  uint64_t random_seed = 0;

  absl::Status Validate() const;
};

// What an application learns from a ReadIndex: once it has applied up to `index`, a read
// reflects every write committed before the request.
struct ReadState {
  uint64_t index = 0;
  std::string request_ctx;
};

// Volatile state worth reporting (not persisted).
struct SoftState {
  uint64_t lead = kNone;
  StateType state = StateType::kFollower;
  bool operator==(const SoftState& o) const { return lead == o.lead && state == o.state; }
};

class Raft {
 public:
  // Loads hard state and membership from storage. CHECK-fails on an invalid config or
  // inconsistent storage (RawNode::Create validates first and returns errors instead).
  explicit Raft(const Config& config);

  // Feeds one message (local or from a peer). Returns a ProposalDroppedError() for proposals,
  // reads and transfers that cannot proceed; peer messages are never errors (stale or bogus
  // ones are ignored or answered as the protocol says).
  absl::Status Step(Message m);
  // Advances logical time by one tick.
  void Tick();
  // The host applies a committed ENTRY_CONF_CHANGE: returns the membership as of that entry
  // (to store with the state machine and its snapshots). The change took effect in the core
  // when the entry was appended; a leader that applies its own removal steps down here.
  v1::ConfState ApplyConfChange(const ConfChange& cc);

  // Called by RawNode once the host persisted/applied what it was handed.
  void AppliedTo(uint64_t index, uint64_t applied_bytes);
  void StableTo(uint64_t index, uint64_t term) { log_.StableTo(index, term); }
  void StableSnapTo(uint64_t index) { log_.StableSnapTo(index); }

  SoftState soft_state() const { return {lead_, state_}; }
  v1::HardState hard_state() const;
  std::vector<Message>& msgs() { return msgs_; }
  const std::vector<Message>& msgs() const { return msgs_; }
  std::vector<ReadState>& read_states() { return read_states_; }
  const std::vector<ReadState>& read_states() const { return read_states_; }
  const RaftLog& log() const { return log_; }
  RaftLog& mutable_log() { return log_; }
  const ProgressTracker& tracker() const { return trk_; }
  uint64_t id() const { return id_; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t lead() const { return lead_; }
  StateType state() const { return state_; }
  uint64_t lead_transferee() const { return lead_transferee_; }
  bool is_learner() const { return is_learner_; }
  uint64_t uncommitted_size() const { return uncommitted_size_; }
  // Leader only: whether member `id` has caught up, so that promoting it (from learner) does
  // not make commits wait for a node far behind: it acknowledged the log up to at least
  // commit - max_lag, the leader streams entries to it (replicate state: not probing, no
  // snapshot on the way) and it answered since the last check-quorum round. False on a
  // follower, for this node and for non-members.
  bool IsCaughtUp(uint64_t id, uint64_t max_lag) const;
  // Leader only: a conf change is in the log but not applied yet, so the next proposed one
  // would be dropped (one change at a time).
  bool ConfChangePending() const { return pending_conf_index_ > log_.applied(); }
  // One line with the state, for logs and failing invariant checks.
  std::string DebugString() const;

  // Test hooks.
  int randomized_election_timeout() const { return randomized_election_timeout_; }
  void set_randomized_election_timeout(int t) { randomized_election_timeout_ = t; }
  void BecomeFollowerForTest(uint64_t term, uint64_t lead) { BecomeFollower(term, lead); }

 private:
  enum class CampaignType { kPreElection, kElection, kTransfer };

  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomeCandidate();
  void BecomePreCandidate();
  void BecomeLeader();
  void Reset(uint64_t term);
  void ResetRandomizedElectionTimeout();
  bool PastElectionTimeout() const { return election_elapsed_ >= randomized_election_timeout_; }
  bool Promotable() const;
  // Membership follows the latest conf change entry in the log (see membership.h).
  void TrackConfChanges(uint64_t from_index, const std::vector<v1::Entry>& es);
  void RecomputeConfig();

  void Hup(CampaignType t);
  void Campaign(CampaignType t);
  VoteResult Poll(uint64_t id, MessageType t, bool granted);

  absl::Status StepLeader(Message& m);
  absl::Status StepCandidate(Message& m);
  absl::Status StepFollower(Message& m);
  absl::Status HandleReadIndexAsLeader(Message& m);

  void HandleAppendEntries(Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  bool Restore(const v1::Snapshot& s);

  void Send(Message m);
  bool MaybeSendAppend(uint64_t to, bool send_if_empty);
  void SendAppend(uint64_t to) { MaybeSendAppend(to, true); }
  void SendHeartbeat(uint64_t to, const std::string& ctx);
  void SendTimeoutNow(uint64_t to);
  void BcastAppend();
  void BcastHeartbeat();
  void BcastHeartbeatWithCtx(const std::string& ctx);

  bool AppendEntry(std::vector<v1::Entry> es);
  bool MaybeCommit();
  bool CommittedEntryInCurrentTerm() const;
  void ReleasePendingReadIndexMessages();
  void ResponseToReadIndexReq(const Message& req, uint64_t read_index);
  bool IncreaseUncommittedSize(const std::vector<v1::Entry>& es);
  void AbortLeaderTransfer() { lead_transferee_ = kNone; }

  void TickElection();
  void TickHeartbeat();

  uint64_t id_;
  uint64_t shard_;
  uint64_t term_ = 0;
  uint64_t vote_ = kNone;
  RaftLog log_;
  ProgressTracker trk_;
  StateType state_ = StateType::kFollower;
  bool is_learner_ = false;
  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  uint64_t lead_ = kNone;
  uint64_t lead_transferee_ = kNone;
  // Index of the last conf change this leader proposed (or of its first own entry): no new
  // conf change until it is applied. Waiting for the first own-term entry closes the hole in
  // single-server changes where a new leader's change races an uncommitted one of a previous
  // leader (Ongaro, raft-dev, 2015).
  uint64_t pending_conf_index_ = 0;
  // Membership as of log index base_conf_index_ (a snapshot), the conf change entries in the
  // log after it, and the membership as of the applied index (what ApplyConfChange reports).
  v1::ConfState base_conf_;
  uint64_t base_conf_index_ = 0;
  std::map<uint64_t, v1::ConfChange> log_conf_changes_;
  v1::ConfState applied_conf_;
  uint64_t uncommitted_size_ = 0;
  ReadOnly read_only_;
  std::vector<Message> pending_read_index_messages_;
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  uint64_t ticks_ = 0;  // every Tick() since creation
  bool check_quorum_;
  bool pre_vote_;
  bool disable_proposal_forwarding_;
  int heartbeat_timeout_;
  bool align_heartbeats_;
  int election_timeout_;
  int randomized_election_timeout_ = 0;
  uint64_t max_msg_size_;
  uint64_t max_uncommitted_size_;
  std::mt19937_64 rand_;
};

// Local message types never cross the network and carry term 0.
bool IsLocalMsg(MessageType t);
// Responses to a message this node sent.
bool IsResponseMsg(MessageType t);
MessageType VoteRespMsgType(MessageType t);

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_RAFT_H_
