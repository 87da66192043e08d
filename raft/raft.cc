#include "raft/raft.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/errors.h"
#include "raft/log_prefix.h"

namespace marmot::raft {

namespace {

// Context of a vote request sent because the leader asked us to take over (TimeoutNow): it
// bypasses the leader lease of check-quorum, since the leader itself wants the election.
constexpr char kCampaignTransfer[] = "CampaignTransfer";

#define RLOG(level) VLOG(level) << LogPrefix(shard_, id_, term_)

}  // namespace

const char* StateName(StateType s) {
  switch (s) {
    case StateType::kFollower:
      return "follower";
    case StateType::kCandidate:
      return "candidate";
    case StateType::kLeader:
      return "leader";
    case StateType::kPreCandidate:
      return "pre-candidate";
  }
  return "?";
}

bool IsLocalMsg(MessageType t) {
  switch (t) {
    case v1::MSG_HUP:
    case v1::MSG_BEAT:
    case v1::MSG_UNREACHABLE:
    case v1::MSG_SNAP_STATUS:
    case v1::MSG_CHECK_QUORUM:
      return true;
    default:
      return false;
  }
}

bool IsResponseMsg(MessageType t) {
  switch (t) {
    case v1::MSG_APP_RESP:
    case v1::MSG_VOTE_RESP:
    case v1::MSG_HEARTBEAT_RESP:
    case v1::MSG_UNREACHABLE:
    case v1::MSG_PRE_VOTE_RESP:
      return true;
    default:
      return false;
  }
}

MessageType VoteRespMsgType(MessageType t) {
  switch (t) {
    case v1::MSG_VOTE:
      return v1::MSG_VOTE_RESP;
    case v1::MSG_PRE_VOTE:
      return v1::MSG_PRE_VOTE_RESP;
    default:
      LOG(FATAL) << "not a vote message: " << t;
  }
  return t;
}

absl::Status Config::Validate() const {
  if (id == kNone) return absl::InvalidArgumentError("raft: cannot use none as id");
  if (heartbeat_tick <= 0) return absl::InvalidArgumentError("raft: heartbeat tick must be > 0");
  if (election_tick <= heartbeat_tick) {
    return absl::InvalidArgumentError("raft: election tick must be greater than heartbeat tick");
  }
  if (storage == nullptr) return absl::InvalidArgumentError("raft: storage cannot be null");
  if (max_inflight_msgs <= 0) {
    return absl::InvalidArgumentError("raft: max inflight messages must be > 0");
  }
  if (max_inflight_bytes != 0 && max_inflight_bytes < max_size_per_msg) {
    return absl::InvalidArgumentError("raft: max inflight bytes must be >= max message size");
  }
  if (check_quorum != pre_vote) {
    // Either alone has a known liveness hole: pre-vote without check-quorum lets a leader that
    // lost its quorum linger; check-quorum without pre-vote lets a rejoining node with a
    // higher term depose a healthy leader. Marmot runs them as a pair.
    return absl::InvalidArgumentError("raft: pre_vote and check_quorum must be enabled together");
  }
  return absl::OkStatus();
}

Raft::Raft(const Config& c)
    : id_(c.id),
      shard_(c.shard),
      log_(c.storage, c.max_committed_size_per_ready),
      trk_(c.max_inflight_msgs, c.max_inflight_bytes),
      check_quorum_(c.check_quorum),
      pre_vote_(c.pre_vote),
      disable_proposal_forwarding_(c.disable_proposal_forwarding),
      heartbeat_timeout_(c.heartbeat_tick),
      align_heartbeats_(c.align_heartbeats),
      election_timeout_(c.election_tick),
      max_msg_size_(c.max_size_per_msg),
      max_uncommitted_size_(c.max_uncommitted_entries_size == 0 ? UINT64_MAX
                                                                : c.max_uncommitted_entries_size),
      rand_(c.random_seed ^ (c.id * 0x9E3779B97F4A7C15ull)) {
  if (auto s = c.Validate(); !s.ok()) LOG(FATAL) << s;
  auto st = c.storage->InitialState();
  CHECK(st.ok()) << st.status();
  const v1::HardState& hs = st->hard_state;
  if (hs.term() != 0 || hs.vote() != 0 || hs.commit() != 0) {
    CHECK(hs.commit() <= log_.LastIndex())
        << "hard state commit " << hs.commit() << " is out of range [" << log_.committed() << ", "
        << log_.LastIndex() << "]: was the log lost or truncated?";
    log_.CommitTo(hs.commit());
    term_ = hs.term();
    vote_ = hs.vote();
  }
  if (c.applied > 0) log_.AppliedTo(c.applied);
  // Membership: the snapshot's, then every conf change entry in the log after it.
  // Conf changes between the compaction point and conf_index would be lost for good.
  CHECK(st->conf_index + 1 >= log_.FirstIndex())
      << "storage compacted past its snapshot: conf_index " << st->conf_index << ", first index "
      << log_.FirstIndex();
  base_conf_ = st->conf_state;
  base_conf_index_ = st->conf_index;
  applied_conf_ = base_conf_;
  const uint64_t lo = std::max(base_conf_index_ + 1, log_.FirstIndex());
  if (lo <= log_.LastIndex()) {
    auto ents = log_.Slice(lo, log_.LastIndex() + 1, UINT64_MAX);
    CHECK(ents.ok()) << ents.status();
    for (const auto& e : *ents) {
      if (e.type() != v1::ENTRY_CONF_CHANGE) continue;
      ConfChange cc;
      if (!cc.ParseFromString(e.data())) continue;
      log_conf_changes_[e.index()] = cc;
      if (e.index() <= log_.applied()) applied_conf_ = ApplyConfChangeTo(applied_conf_, cc);
    }
  }
  trk_.Reset(base_conf_, log_.LastIndex() + 1);
  RecomputeConfig();
  BecomeFollower(term_, kNone);
  RLOG(1) << "newRaft peers " << trk_.voters().DebugString() << " commit " << log_.committed()
          << " applied " << log_.applied() << " last " << log_.LastIndex() << " last_term "
          << log_.LastTerm();
}

v1::HardState Raft::hard_state() const {
  v1::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.committed());
  return hs;
}

std::string Raft::DebugString() const {
  return absl::StrCat("node ", id_, " ", StateName(state_), " term=", term_, " vote=", vote_,
                      " lead=", lead_, " first=", log_.FirstIndex(), " last=", log_.LastIndex(),
                      " last_term=", log_.LastTerm(), " ", log_.DebugString(), " ",
                      trk_.DebugString());
}

// ---------------------------------------------------------------------------------------------
// Sending.

void Raft::Send(Message m) {
  if (m.from() == kNone) m.set_from(id_);
  m.set_shard(shard_);
  const MessageType t = m.type();
  if (t == v1::MSG_VOTE || t == v1::MSG_VOTE_RESP || t == v1::MSG_PRE_VOTE ||
      t == v1::MSG_PRE_VOTE_RESP) {
    // Vote messages carry their own term: a pre-vote asks for term+1 without raising ours,
    // and a pre-vote grant echoes the requested term.
    CHECK(m.term() != 0) << "term should be set when sending " << t;
  } else {
    CHECK(m.term() == 0) << "term should not be set when sending " << t << " (was " << m.term()
                         << ")";
    // Proposals and forwarded reads/transfers are not tied to a term: they go to whoever is
    // leader, and a stale one is handled there.
    if (t != v1::MSG_PROP && t != v1::MSG_READ_INDEX && t != v1::MSG_TRANSFER_LEADER) {
      m.set_term(term_);
    }
  }
  msgs_.push_back(std::move(m));
}

bool Raft::MaybeSendAppend(uint64_t to, bool send_if_empty) {
  Progress* pr = trk_.Get(to);
  if (pr == nullptr || pr->IsPaused()) return false;
  Message m;
  m.set_to(to);
  auto term = log_.Term(pr->next - 1);
  absl::StatusOr<std::vector<v1::Entry>> ents = std::vector<v1::Entry>{};
  if (term.ok()) ents = log_.Entries(pr->next, max_msg_size_);
  if (term.ok() && ents.ok() && ents->empty() && !send_if_empty) return false;

  if (!term.ok() || !ents.ok()) {
    // The follower needs entries we compacted: only a snapshot can catch it up.
    if (!pr->recent_active) {
      RLOG(1) << "not sending a snapshot to " << to << ": not recently active";
      return false;
    }
    auto snap = log_.Snapshot();
    if (!snap.ok()) {
      if (IsSnapshotTemporarilyUnavailable(snap.status())) {
        RLOG(1) << "failed to send snapshot to " << to << ": temporarily unavailable";
        return false;
      }
      LOG(FATAL) << "storage failed to provide a snapshot: " << snap.status();
    }
    CHECK(snap->metadata().index() != 0) << "need a non-empty snapshot";
    RLOG(1) << "sending snapshot [index " << snap->metadata().index() << ", term "
            << snap->metadata().term() << "] to " << to << " [" << pr->DebugString() << "]";
    pr->BecomeSnapshot(snap->metadata().index());
    m.set_type(v1::MSG_SNAP);
    *m.mutable_snapshot() = std::move(*snap);
    Send(std::move(m));
    return true;
  }
  m.set_type(v1::MSG_APP);
  m.set_index(pr->next - 1);
  m.set_log_term(*term);
  m.set_commit(log_.committed());
  uint64_t bytes = 0;
  const size_t n = ents->size();
  const uint64_t last = n > 0 ? ents->back().index() : 0;
  for (auto& e : *ents) bytes += EntrySize(e);
  m.mutable_entries()->Reserve(n);
  for (auto& e : *ents) *m.add_entries() = std::move(e);
  pr->SentEntries(n, last, bytes);
  Send(std::move(m));
  return true;
}

void Raft::SendHeartbeat(uint64_t to, const std::string& ctx) {
  // The follower may not have everything we committed: committing beyond what it matched
  // could make it apply entries it does not have or that differ from ours.
  const Progress* pr = trk_.Get(to);
  const uint64_t commit = std::min(pr->match, log_.committed());
  Message m;
  m.set_to(to);
  m.set_type(v1::MSG_HEARTBEAT);
  m.set_commit(commit);
  m.set_context(ctx);
  Send(std::move(m));
}

void Raft::SendTimeoutNow(uint64_t to) {
  Message m;
  m.set_to(to);
  m.set_type(v1::MSG_TIMEOUT_NOW);
  Send(std::move(m));
}

void Raft::BcastAppend() {
  for (const auto& [id, pr] : trk_.progress()) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BcastHeartbeat() { BcastHeartbeatWithCtx(read_only_.LastPendingRequestCtx()); }

void Raft::BcastHeartbeatWithCtx(const std::string& ctx) {
  for (const auto& [id, pr] : trk_.progress()) {
    if (id != id_) SendHeartbeat(id, ctx);
  }
}

// ---------------------------------------------------------------------------------------------
// Log and commit.

bool Raft::AppendEntry(std::vector<v1::Entry> es) {
  uint64_t li = log_.LastIndex();
  for (size_t i = 0; i < es.size(); ++i) {
    es[i].set_term(term_);
    es[i].set_index(li + 1 + i);
  }
  if (!IncreaseUncommittedSize(es)) {
    RLOG(1) << "appending new entries to log would exceed uncommitted entry size limit; "
            << "dropping proposal";
    return false;
  }
  std::vector<v1::Entry> conf;
  for (const auto& e : es) {
    if (e.type() == v1::ENTRY_CONF_CHANGE) conf.push_back(e);
  }
  const uint64_t first_new = es.empty() ? 0 : es.front().index();
  li = log_.Append(std::move(es));
  if (!conf.empty()) TrackConfChanges(first_new, conf);
  // The leader counts its own copy right away. That is safe because the host persists this
  // Ready before stepping any later message, and only a later MsgAppResp can make a
  // majority that includes this copy.
  if (Progress* pr = trk_.Get(id_)) pr->MaybeUpdate(li);
  if (MaybeCommit()) ReleasePendingReadIndexMessages();
  return true;
}

bool Raft::MaybeCommit() { return log_.MaybeCommit(trk_.Committed(), term_); }

bool Raft::CommittedEntryInCurrentTerm() const {
  return log_.ZeroTermOnError(log_.committed()) == term_;
}

bool Raft::IncreaseUncommittedSize(const std::vector<v1::Entry>& es) {
  uint64_t s = 0;
  for (const auto& e : es) s += e.data().size();
  // Always admit one proposal into an empty tail, so a single large entry is not stuck.
  if (uncommitted_size_ > 0 && s > 0 && uncommitted_size_ + s > max_uncommitted_size_) {
    return false;
  }
  uncommitted_size_ += s;
  return true;
}

void Raft::AppliedTo(uint64_t index, uint64_t applied_bytes) {
  log_.AppliedTo(index);
  if (state_ == StateType::kLeader) {
    uncommitted_size_ -= std::min(uncommitted_size_, applied_bytes);
  }
}

// ---------------------------------------------------------------------------------------------
// Role changes.

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      election_timeout_ + static_cast<int>(rand_() % static_cast<uint64_t>(election_timeout_));
}

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  trk_.ResetVotes();
  const uint64_t last = log_.LastIndex();
  trk_.Reset(trk_.ConfState(), last + 1);
  if (Progress* pr = trk_.Get(id_)) pr->match = last;
  pending_conf_index_ = 0;
  uncommitted_size_ = 0;
  read_only_.Reset();
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  lead_ = lead;
  state_ = StateType::kFollower;
  pending_read_index_messages_.clear();
  RLOG(1) << "became follower, leader " << lead;
}

void Raft::BecomeCandidate() {
  CHECK(state_ != StateType::kLeader)
      << "invalid transition [leader -> candidate] " << DebugString();
  Reset(term_ + 1);
  vote_ = id_;
  state_ = StateType::kCandidate;
  RLOG(1) << "became candidate";
}

void Raft::BecomePreCandidate() {
  CHECK(state_ != StateType::kLeader)
      << "invalid transition [leader -> pre-candidate] " << DebugString();
  // A pre-candidate changes neither term nor vote: a pre-vote that fails must leave no trace,
  // else a partitioned node would still inflate its term.
  trk_.ResetVotes();
  lead_ = kNone;
  state_ = StateType::kPreCandidate;
  RLOG(1) << "became pre-candidate";
}

void Raft::BecomeLeader() {
  CHECK(state_ != StateType::kFollower)
      << "invalid transition [follower -> leader] " << DebugString();
  Reset(term_);
  lead_ = id_;
  state_ = StateType::kLeader;
  // We know our own log; followers start in probe state until they answer.
  if (Progress* pr = trk_.Get(id_)) pr->BecomeReplicate();
  // An empty entry of our term: committing it commits every earlier entry (figure 8), and
  // until then we neither serve ReadIndex nor accept a conf change.
  std::vector<v1::Entry> empty(1);
  CHECK(AppendEntry(std::move(empty))) << "empty entry was dropped";
  pending_conf_index_ = log_.LastIndex();
  // The empty entry does not count against the uncommitted size limit.
  uncommitted_size_ = 0;
  VLOG(1) << "[shard " << shard_ << " node " << id_ << " term " << term_ << "] became leader";
}

bool Raft::Promotable() const {
  if (log_.unstable().snapshot().has_value()) return false;
  const Progress* pr = trk_.Get(id_);
  if (pr != nullptr && !pr->is_learner) return true;
  // Not a voter in the latest configuration of our log. If that configuration is not yet
  // committed we may still be needed to commit it (thesis 4.2.2): a leader that appended its
  // own removal and crashed may be the only node holding that entry, and the others cannot
  // win against its longer log. So a voter of the committed configuration may campaign; it
  // counts votes in the latest configuration, which is what keeps elections safe.
  v1::ConfState committed = base_conf_;
  for (const auto& [index, cc] : log_conf_changes_) {
    if (index > log_.committed()) break;
    committed = ApplyConfChangeTo(committed, cc);
  }
  return IsVoter(committed, id_);
}

// ---------------------------------------------------------------------------------------------
// Elections.

void Raft::Hup(CampaignType t) {
  if (state_ == StateType::kLeader) {
    RLOG(2) << "ignoring MsgHup because already leader";
    return;
  }
  if (!Promotable()) {
    RLOG(1) << "is unpromotable and can not campaign";
    return;
  }
  Campaign(t);
}

void Raft::Campaign(CampaignType t) {
  if (!Promotable()) return;
  uint64_t term;
  MessageType vote_msg;
  if (t == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_msg = v1::MSG_PRE_VOTE;
    // Ask for the term we would use, without taking it.
    term = term_ + 1;
  } else {
    BecomeCandidate();
    vote_msg = v1::MSG_VOTE;
    term = term_;
  }
  if (Poll(id_, VoteRespMsgType(vote_msg), true) == VoteResult::kWon) {
    // Single voter: we won already.
    if (t == CampaignType::kPreElection) {
      Campaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (uint64_t id : trk_.voters().voters()) {
    if (id == id_) continue;
    Message m;
    m.set_to(id);
    m.set_term(term);
    m.set_type(vote_msg);
    m.set_index(log_.LastIndex());
    m.set_log_term(log_.LastTerm());
    if (t == CampaignType::kTransfer) m.set_context(kCampaignTransfer);
    Send(std::move(m));
  }
}

VoteResult Raft::Poll(uint64_t id, MessageType t, bool granted) {
  RLOG(2) << (granted ? "received " : "received rejection ") << t << " from " << id;
  trk_.RecordVote(id, granted);
  size_t gr, rj;
  return trk_.TallyVotes(&gr, &rj);
}

// ---------------------------------------------------------------------------------------------
// Step.

absl::Status Raft::Step(Message m) {
  if (m.term() == 0) {
    // Local message (or a proposal/read/transfer, which are termless).
  } else if (m.term() > term_) {
    if (m.type() == v1::MSG_VOTE || m.type() == v1::MSG_PRE_VOTE) {
      const bool force = m.context() == kCampaignTransfer;
      const bool in_lease =
          check_quorum_ && lead_ != kNone && election_elapsed_ < election_timeout_;
      if (!force && in_lease) {
        // We heard from a leader within the election timeout: it is probably alive, and a
        // vote now would let a node that was partitioned away depose it. Ignore without
        // raising our term (check-quorum's leader lease).
        RLOG(1) << "ignored " << m.type() << " from " << m.from() << " at term " << m.term()
                << ": lease is not expired (remaining ticks "
                << election_timeout_ - election_elapsed_ << ")";
        return absl::OkStatus();
      }
    }
    if (m.type() == v1::MSG_PRE_VOTE) {
      // A pre-vote never changes our term.
    } else if (m.type() == v1::MSG_PRE_VOTE_RESP && !m.reject()) {
      // A granted pre-vote echoes the term we will campaign at; the term moves when we win.
    } else {
      RLOG(1) << "received " << m.type() << " with higher term " << m.term() << " from "
              << m.from();
      if (m.type() == v1::MSG_APP || m.type() == v1::MSG_HEARTBEAT || m.type() == v1::MSG_SNAP) {
        BecomeFollower(m.term(), m.from());
      } else {
        BecomeFollower(m.term(), kNone);
      }
    }
  } else if (m.term() < term_) {
    if ((check_quorum_ || pre_vote_) &&
        (m.type() == v1::MSG_HEARTBEAT || m.type() == v1::MSG_APP)) {
      // A stale leader (e.g. back from a partition). With check-quorum or pre-vote we do not
      // raise terms on its behalf, so tell it our term: it steps down on this answer, instead
      // of never learning that it was replaced.
      Message r;
      r.set_to(m.from());
      r.set_type(v1::MSG_APP_RESP);
      Send(std::move(r));
    } else if (m.type() == v1::MSG_PRE_VOTE) {
      // Tell a pre-candidate with an old term the current one, so it catches up instead of
      // pre-voting forever.
      Message r;
      r.set_to(m.from());
      r.set_term(term_);
      r.set_type(v1::MSG_PRE_VOTE_RESP);
      r.set_reject(true);
      Send(std::move(r));
    } else {
      RLOG(2) << "ignored " << m.type() << " with lower term " << m.term() << " from " << m.from();
    }
    return absl::OkStatus();
  }

  switch (m.type()) {
    case v1::MSG_HUP:
      Hup(pre_vote_ ? CampaignType::kPreElection : CampaignType::kElection);
      return absl::OkStatus();
    case v1::MSG_VOTE:
    case v1::MSG_PRE_VOTE: {
      // We can vote if we already voted for this candidate (a duplicate request), or have not
      // voted and know no leader this term, or it is a pre-vote for a future term.
      const bool can_vote = vote_ == m.from() || (vote_ == kNone && lead_ == kNone) ||
                            (m.type() == v1::MSG_PRE_VOTE && m.term() > term_);
      Message r;
      r.set_to(m.from());
      r.set_type(VoteRespMsgType(m.type()));
      // Election restriction (5.4.1): only a candidate whose log is at least as up to date as
      // ours can be elected, so a leader always holds every committed entry.
      if (can_vote && log_.IsUpToDate(m.index(), m.log_term())) {
        RLOG(1) << "cast " << m.type() << " for " << m.from() << " [log " << m.log_term() << "/"
                << m.index() << "]";
        // The grant carries the candidate's term, so a pre-candidate can tell it apart from a
        // stale answer.
        r.set_term(m.term());
        Send(std::move(r));
        if (m.type() == v1::MSG_VOTE) {
          // Only a real vote is binding, and it must reach disk before the answer is sent.
          election_elapsed_ = 0;
          vote_ = m.from();
        }
      } else {
        RLOG(1) << "rejected " << m.type() << " from " << m.from() << " [log " << m.log_term()
                << "/" << m.index() << "]";
        r.set_term(term_);
        r.set_reject(true);
        Send(std::move(r));
      }
      return absl::OkStatus();
    }
    default:
      break;
  }
  switch (state_) {
    case StateType::kLeader:
      return StepLeader(m);
    case StateType::kCandidate:
    case StateType::kPreCandidate:
      return StepCandidate(m);
    case StateType::kFollower:
      return StepFollower(m);
  }
  return absl::OkStatus();
}

absl::Status Raft::HandleReadIndexAsLeader(Message& m) {
  if (trk_.IsSingleton() && trk_.voters().Contains(id_)) {
    // We are the only voter, so nobody else can have been elected: the commit index is
    // current. (A leader that removed itself is not the single voter: found by the simulator,
    // seed 114, where such a leader answered reads while the real single voter led a newer
    // term.)
    ResponseToReadIndexReq(m, log_.committed());
    return absl::OkStatus();
  }
  // Until an entry of our term commits, our commit index may be behind what the previous
  // leader committed (we hold those entries but do not know they are committed), so it is
  // not a safe read index yet. Park the request.
  if (!CommittedEntryInCurrentTerm()) {
    pending_read_index_messages_.push_back(std::move(m));
    return absl::OkStatus();
  }
  const uint64_t index = log_.committed();
  std::string ctx = m.entries(0).data();
  read_only_.AddRequest(index, std::move(m));
  read_only_.RecvAck(id_, ctx);
  BcastHeartbeatWithCtx(ctx);
  return absl::OkStatus();
}

void Raft::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty() || !CommittedEntryInCurrentTerm()) return;
  std::vector<Message> pending;
  pending.swap(pending_read_index_messages_);
  for (auto& m : pending) (void)HandleReadIndexAsLeader(m);
}

void Raft::ResponseToReadIndexReq(const Message& req, uint64_t read_index) {
  if (req.from() == kNone || req.from() == id_) {
    read_states_.push_back({read_index, req.entries(0).data()});
    return;
  }
  Message r;
  r.set_type(v1::MSG_READ_INDEX_RESP);
  r.set_to(req.from());
  r.set_index(read_index);
  *r.mutable_entries() = req.entries();
  Send(std::move(r));
}

absl::Status Raft::StepLeader(Message& m) {
  // Messages that need no progress of the sender.
  switch (m.type()) {
    case v1::MSG_BEAT:
      BcastHeartbeat();
      return absl::OkStatus();
    case v1::MSG_CHECK_QUORUM:
      if (!trk_.QuorumActive()) {
        // A leader that cannot reach a quorum steps down: a newer leader may exist on the
        // other side, and clients should stop talking to us.
        VLOG(1) << "[shard " << shard_ << " node " << id_ << " term " << term_
                << "] stepped down to follower since quorum is not active";
        BecomeFollower(term_, kNone);
      }
      for (auto& [id, pr] : trk_.progress()) {
        if (id != id_) pr.recent_active = false;
      }
      return absl::OkStatus();
    case v1::MSG_PROP: {
      if (m.entries_size() == 0) {
        return absl::InvalidArgumentError("raft: proposal without entries");
      }
      if (trk_.Get(id_) == nullptr) {
        // Removed from the group while leader (we step down when the change applies).
        return ProposalDroppedError("leader is not a member");
      }
      if (lead_transferee_ != kNone) {
        return ProposalDroppedError("leadership transfer in progress");
      }
      for (const auto& e : m.entries()) {
        if (e.type() != v1::ENTRY_CONF_CHANGE) continue;
        if (pending_conf_index_ > log_.applied()) {
          return ProposalDroppedError("a configuration change is pending");
        }
        ConfChange cc;
        if (!cc.ParseFromString(e.data())) {
          return absl::InvalidArgumentError("raft: malformed conf change");
        }
        // The change goes right after the latest membership of our log, so comparing with it
        // is exact. A change decided against an older one is stale: a retried "add learner 4"
        // that arrives after "remove 4" would otherwise bring 4 back (and get it promoted).
        if (cc.has_expected_version() && cc.expected_version() != trk_.conf_version()) {
          return ProposalDroppedError(
              absl::StrCat("membership changed: the change expects version ", cc.expected_version(),
                           ", the latest is ", trk_.conf_version()));
        }
        if (cc.type() == v1::CONF_CHANGE_REMOVE_NODE && trk_.voters().Contains(cc.node_id()) &&
            trk_.voters().size() == 1) {
          return absl::InvalidArgumentError("raft: cannot remove the last voter");
        }
        if (cc.type() == v1::CONF_CHANGE_ADD_LEARNER && trk_.voters().Contains(cc.node_id())) {
          return absl::InvalidArgumentError("raft: demoting a voter to learner is not supported");
        }
        if (m.entries_size() > 1) {
          return absl::InvalidArgumentError("raft: a conf change must be proposed alone");
        }
      }
      std::vector<v1::Entry> es(std::make_move_iterator(m.mutable_entries()->begin()),
                                std::make_move_iterator(m.mutable_entries()->end()));
      const bool is_cc = es.size() == 1 && es[0].type() == v1::ENTRY_CONF_CHANGE;
      if (!AppendEntry(std::move(es))) {
        return ProposalDroppedError("uncommitted log too large");
      }
      if (is_cc) pending_conf_index_ = log_.LastIndex();
      BcastAppend();
      return absl::OkStatus();
    }
    case v1::MSG_READ_INDEX:
      if (m.entries_size() == 0) return absl::InvalidArgumentError("raft: read without context");
      return HandleReadIndexAsLeader(m);
    default:
      break;
  }

  Progress* pr = trk_.Get(m.from());
  if (pr == nullptr) {
    RLOG(1) << "no progress available for " << m.from() << ", ignoring " << m.type();
    return absl::OkStatus();
  }
  switch (m.type()) {
    case v1::MSG_APP_RESP: {
      pr->recent_active = true;
      if (m.reject()) {
        RLOG(2) << "received MsgAppResp(rejected, hint: (index " << m.reject_hint() << ", term "
                << m.log_term() << ")) from " << m.from() << " for index " << m.index();
        uint64_t next_probe = m.reject_hint();
        if (m.log_term() > 0) {
          // The follower's log at reject_hint has term log_term. Any of our entries with a
          // larger term cannot match; skip to the last of ours with term <= log_term.
          next_probe = log_.FindConflictByTerm(m.reject_hint(), m.log_term()).first;
        }
        if (pr->MaybeDecrTo(m.index(), next_probe)) {
          if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
          SendAppend(m.from());
        }
        return absl::OkStatus();
      }
      if (m.index() > log_.LastIndex()) {
        // An ack for entries we never had: bogus or from a confused peer. Acting on it could
        // commit entries that do not exist.
        LOG(WARNING) << "[shard " << shard_ << " node " << id_ << "] ignoring MsgAppResp from "
                     << m.from() << " for index " << m.index() << " beyond last index "
                     << log_.LastIndex();
        return absl::OkStatus();
      }
      const bool old_paused = pr->IsPaused();
      if (pr->MaybeUpdate(m.index())) {
        if (pr->state == ProgressState::kProbe) {
          pr->BecomeReplicate();
        } else if (pr->state == ProgressState::kSnapshot && pr->match + 1 >= log_.FirstIndex()) {
          // Caught up past our compaction point (via the snapshot or otherwise): resume
          // replication from match.
          pr->BecomeProbe();
          pr->BecomeReplicate();
        } else if (pr->state == ProgressState::kReplicate) {
          pr->inflights.FreeLE(m.index());
        }
        if (MaybeCommit()) {
          ReleasePendingReadIndexMessages();
          BcastAppend();
        } else if (old_paused) {
          SendAppend(m.from());
        }
        // Keep the pipe full while the window allows.
        while (MaybeSendAppend(m.from(), false)) {
        }
        if (m.from() == lead_transferee_ && pr->match == log_.LastIndex()) {
          RLOG(1) << "sent MsgTimeoutNow to " << m.from() << " after it caught up";
          SendTimeoutNow(m.from());
        }
      }
      return absl::OkStatus();
    }
    case v1::MSG_HEARTBEAT_RESP: {
      pr->recent_active = true;
      pr->msg_app_flow_paused = false;
      // The follower is alive but the window is still full: some appends were likely lost
      // (their acks would have freed it). Free one slot so the next append goes out; if the
      // follower misses entries it rejects it and we fall back to probing. Without this a
      // window full of lost messages stalls the follower forever (simulator, seed 268).
      if (pr->state == ProgressState::kReplicate && pr->inflights.Full()) {
        pr->inflights.FreeFirstOne();
      }
      if (pr->match < log_.LastIndex() || pr->state == ProgressState::kProbe) {
        SendAppend(m.from());
      }
      if (m.context().empty()) return absl::OkStatus();
      const std::set<uint64_t>* acks = read_only_.RecvAck(m.from(), m.context());
      if (acks == nullptr) return absl::OkStatus();
      std::map<uint64_t, bool> votes;
      for (uint64_t id : *acks) votes[id] = true;
      if (trk_.voters().Vote(votes) != VoteResult::kWon) return absl::OkStatus();
      for (auto& rs : read_only_.Advance(m.context())) ResponseToReadIndexReq(rs.req, rs.index);
      return absl::OkStatus();
    }
    case v1::MSG_SNAP_STATUS:
      if (pr->state != ProgressState::kSnapshot) return absl::OkStatus();
      if (m.reject()) pr->pending_snapshot = 0;
      // Either way, probe next: after a success the follower answers from the snapshot's
      // index; after a failure we find out where it is. Wait for a heartbeat answer first,
      // the follower may still be busy installing.
      pr->BecomeProbe();
      pr->msg_app_flow_paused = true;
      return absl::OkStatus();
    case v1::MSG_UNREACHABLE:
      // Optimistic streaming to an unreachable peer would only lose messages; probe instead.
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      return absl::OkStatus();
    case v1::MSG_TRANSFER_LEADER: {
      if (pr->is_learner) {
        return ProposalDroppedError("cannot transfer leadership to a learner");
      }
      const uint64_t transferee = m.from();
      if (lead_transferee_ != kNone) {
        if (lead_transferee_ == transferee) return absl::OkStatus();
        AbortLeaderTransfer();
      }
      if (transferee == id_) return absl::OkStatus();
      // Transfer must finish within an election timeout, else it is aborted (TickHeartbeat)
      // and proposals flow again.
      election_elapsed_ = 0;
      lead_transferee_ = transferee;
      if (pr->match == log_.LastIndex()) {
        SendTimeoutNow(transferee);
      } else {
        SendAppend(transferee);
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status Raft::StepCandidate(Message& m) {
  const MessageType my_resp =
      state_ == StateType::kPreCandidate ? v1::MSG_PRE_VOTE_RESP : v1::MSG_VOTE_RESP;
  switch (m.type()) {
    case v1::MSG_PROP:
      return ProposalDroppedError("no leader");
    case v1::MSG_APP:
      // A leader of our term (or newer) exists: it won the election we are running.
      BecomeFollower(m.term(), m.from());
      HandleAppendEntries(m);
      return absl::OkStatus();
    case v1::MSG_HEARTBEAT:
      BecomeFollower(m.term(), m.from());
      HandleHeartbeat(m);
      return absl::OkStatus();
    case v1::MSG_SNAP:
      BecomeFollower(m.term(), m.from());
      HandleSnapshot(m);
      return absl::OkStatus();
    case v1::MSG_TIMEOUT_NOW:
      return absl::OkStatus();
    case v1::MSG_READ_INDEX:
    case v1::MSG_TRANSFER_LEADER:
      return ProposalDroppedError("no leader");
    default:
      break;
  }
  if (m.type() == my_resp) {
    // A stale answer (e.g. a pre-vote answer arriving after the real election started) has a
    // different type and is ignored above.
    switch (Poll(m.from(), m.type(), !m.reject())) {
      case VoteResult::kWon:
        if (state_ == StateType::kPreCandidate) {
          Campaign(CampaignType::kElection);
        } else {
          BecomeLeader();
          BcastAppend();
        }
        break;
      case VoteResult::kLost:
        // Stay at this term: a pre-candidate's term was never raised.
        BecomeFollower(term_, kNone);
        break;
      case VoteResult::kPending:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status Raft::StepFollower(Message& m) {
  switch (m.type()) {
    case v1::MSG_PROP:
      if (lead_ == kNone) return ProposalDroppedError("no leader");
      if (disable_proposal_forwarding_) return ProposalDroppedError("forwarding disabled");
      m.set_to(lead_);
      Send(std::move(m));
      return absl::OkStatus();
    case v1::MSG_APP:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleAppendEntries(m);
      return absl::OkStatus();
    case v1::MSG_HEARTBEAT:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleHeartbeat(m);
      return absl::OkStatus();
    case v1::MSG_SNAP:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleSnapshot(m);
      return absl::OkStatus();
    case v1::MSG_TRANSFER_LEADER:
      if (lead_ == kNone) return ProposalDroppedError("no leader to transfer from");
      m.set_to(lead_);
      Send(std::move(m));
      return absl::OkStatus();
    case v1::MSG_TIMEOUT_NOW:
      // The leader asked us to take over; our log is as long as its. Skip pre-vote: the
      // leader is stepping aside, so the lease check would only get in the way.
      RLOG(1) << "received MsgTimeoutNow from " << m.from() << ", starting election";
      Hup(CampaignType::kTransfer);
      return absl::OkStatus();
    case v1::MSG_READ_INDEX:
      if (lead_ == kNone) return ProposalDroppedError("no leader for read index");
      m.set_to(lead_);
      Send(std::move(m));
      return absl::OkStatus();
    case v1::MSG_READ_INDEX_RESP:
      if (m.entries_size() != 1) {
        LOG(WARNING) << "[shard " << shard_ << " node " << id_
                     << "] invalid format of MsgReadIndexResp from " << m.from();
        return absl::OkStatus();
      }
      read_states_.push_back({m.index(), m.entries(0).data()});
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

void Raft::HandleAppendEntries(Message& m) {
  Message r;
  r.set_to(m.from());
  r.set_type(v1::MSG_APP_RESP);
  // Bad input: entries must directly follow m.index(), with terms between the previous entry's
  // and the message's (never 0). A malformed batch is dropped rather than trusted (appending it
  // would corrupt the log).
  for (int i = 0; i < m.entries_size(); ++i) {
    if (m.entries(i).index() != m.index() + 1 + i || m.entries(i).term() > m.term() ||
        m.entries(i).term() < m.log_term() || m.entries(i).term() == 0) {
      LOG(WARNING) << "[shard " << shard_ << " node " << id_ << "] dropping malformed MsgApp from "
                   << m.from() << " (entry " << i << " is " << m.entries(i).term() << "/"
                   << m.entries(i).index() << " after " << m.log_term() << "/" << m.index() << ")";
      return;
    }
  }
  if (m.index() < log_.committed()) {
    // Everything up to our commit index already matches the leader (it is committed), so
    // answer with that: the leader moves next forward instead of resending.
    r.set_index(log_.committed());
    Send(std::move(r));
    return;
  }
  std::vector<v1::Entry> conf;
  for (const auto& e : m.entries()) {
    if (e.type() == v1::ENTRY_CONF_CHANGE) conf.push_back(e);
  }
  std::vector<v1::Entry> ents(std::make_move_iterator(m.mutable_entries()->begin()),
                              std::make_move_iterator(m.mutable_entries()->end()));
  uint64_t conflict = 0;
  if (auto last_new =
          log_.MaybeAppend(m.index(), m.log_term(), m.commit(), std::move(ents), &conflict)) {
    // Whatever was written from `conflict` on replaced our suffix: membership follows it.
    if (conflict != 0) {
      std::vector<v1::Entry> written;
      for (auto& e : conf) {
        if (e.index() >= conflict) written.push_back(std::move(e));
      }
      TrackConfChanges(conflict, written);
    }
    r.set_index(*last_new);
    Send(std::move(r));
    return;
  }
  // Our log does not contain (index, log_term). Hint where it might match: the last index at
  // or below m.index() whose term is <= log_term. Entries between there and m.index() have
  // terms larger than log_term, so they cannot match the leader's entry at m.index().
  const uint64_t hint_index = std::min(m.index(), log_.LastIndex());
  auto [hi, ht] = log_.FindConflictByTerm(hint_index, m.log_term());
  RLOG(2) << "rejected MsgApp [log " << m.log_term() << "/" << m.index() << "] from " << m.from()
          << ", hint " << ht << "/" << hi;
  r.set_index(m.index());
  r.set_reject(true);
  r.set_reject_hint(hi);
  r.set_log_term(ht);
  Send(std::move(r));
}

void Raft::HandleHeartbeat(const Message& m) {
  // The leader never sends a commit beyond what it knows we match, so this is safe; an
  // out-of-range value is bad input and not acted on.
  if (m.commit() <= log_.LastIndex()) {
    log_.CommitTo(m.commit());
  } else {
    LOG(WARNING) << "[shard " << shard_ << " node " << id_ << "] heartbeat commit " << m.commit()
                 << " beyond last index " << log_.LastIndex() << " from " << m.from();
  }
  Message r;
  r.set_to(m.from());
  r.set_type(v1::MSG_HEARTBEAT_RESP);
  r.set_context(m.context());
  Send(std::move(r));
}

void Raft::HandleSnapshot(const Message& m) {
  const auto& md = m.snapshot().metadata();
  if (md.index() == 0 || md.term() == 0) {
    // Every snapshot a leader sends has both (the bootstrap one is at index 1, term 1).
    LOG(WARNING) << "[shard " << shard_ << " node " << id_ << "] dropping a malformed MsgSnap from "
                 << m.from() << " (snapshot at " << md.term() << "/" << md.index() << ")";
    return;
  }
  Message r;
  r.set_to(m.from());
  r.set_type(v1::MSG_APP_RESP);
  if (Restore(m.snapshot())) {
    RLOG(1) << "restored snapshot [index " << m.snapshot().metadata().index() << ", term "
            << m.snapshot().metadata().term() << "]";
    r.set_index(log_.LastIndex());
  } else {
    r.set_index(log_.committed());
  }
  Send(std::move(r));
}

bool Raft::Restore(const v1::Snapshot& s) {
  const auto& md = s.metadata();
  if (md.index() <= log_.committed()) return false;
  if (state_ != StateType::kFollower) {
    // Only a follower installs snapshots; Step made us one before we got here.
    LOG(WARNING) << "[shard " << shard_ << " node " << id_ << "] attempted to restore snapshot as "
                 << StateName(state_);
    return false;
  }
  // A snapshot whose membership does not include us is still accepted: a node added to the
  // group may be caught up from a snapshot taken before its addition (the bootstrap snapshot,
  // say), and learns of its membership by applying the entries that follow. Until then it is
  // not promotable, so it cannot campaign on the strength of an old configuration.
  if (log_.MatchTerm(md.index(), md.term())) {
    // We already have the snapshot's last entry: just learn that it is committed.
    log_.CommitTo(md.index());
    return false;
  }
  log_.Restore(s);
  base_conf_ = md.conf_state();
  base_conf_index_ = md.index();
  applied_conf_ = base_conf_;
  log_conf_changes_.clear();
  trk_.Reset(md.conf_state(), log_.LastIndex() + 1);
  RecomputeConfig();
  if (Progress* p = trk_.Get(id_)) p->match = log_.LastIndex();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Membership.

void Raft::TrackConfChanges(uint64_t from_index, const std::vector<v1::Entry>& es) {
  bool changed = false;
  // Entries from from_index on were (re)written: forget conf changes there, then add the new.
  for (auto it = log_conf_changes_.lower_bound(from_index); it != log_conf_changes_.end();) {
    it = log_conf_changes_.erase(it);
    changed = true;
  }
  for (const auto& e : es) {
    if (e.type() != v1::ENTRY_CONF_CHANGE || e.index() < from_index) continue;
    ConfChange cc;
    if (!cc.ParseFromString(e.data())) {
      LOG(ERROR) << "[shard " << shard_ << " node " << id_ << "] malformed conf change at index "
                 << e.index() << ", treated as a no-op";
      continue;
    }
    log_conf_changes_[e.index()] = cc;
    changed = true;
  }
  if (changed) RecomputeConfig();
}

void Raft::RecomputeConfig() {
  v1::ConfState cs = base_conf_;
  for (const auto& [index, cc] : log_conf_changes_) cs = ApplyConfChangeTo(cs, cc);
  trk_.SetConfig(cs, log_.LastIndex() + 1);
  is_learner_ = IsLearner(cs, id_);
  RLOG(1) << "membership now " << trk_.voters().DebugString() << " learners "
          << trk_.learners().size();
  if (state_ != StateType::kLeader) return;
  if (lead_transferee_ != kNone && trk_.Get(lead_transferee_) == nullptr) AbortLeaderTransfer();
  // The quorum changed: a removal can make pending entries committed; new members need
  // entries (sent by the caller's broadcast or the next heartbeat).
  if (MaybeCommit()) ReleasePendingReadIndexMessages();
}

bool Raft::IsCaughtUp(uint64_t id, uint64_t max_lag) const {
  if (state_ != StateType::kLeader || id == id_) return false;
  const Progress* pr = trk_.Get(id);
  if (pr == nullptr || pr->state != ProgressState::kReplicate || !pr->recent_active) return false;
  return pr->match + max_lag >= log_.committed();
}

v1::ConfState Raft::ApplyConfChange(const ConfChange& cc) {
  std::string ignored;
  applied_conf_ = ApplyConfChangeTo(applied_conf_, cc, &ignored);
  if (!ignored.empty()) {
    LOG(WARNING) << "[shard " << shard_ << " node " << id_ << "] conf change " << cc.type() << " "
                 << cc.node_id() << " ignored: " << ignored;
  }
  if (state_ == StateType::kLeader && cc.type() == v1::CONF_CHANGE_REMOVE_NODE &&
      cc.node_id() == id_ && ignored.empty()) {
    // Our removal is committed. We stopped counting ourselves in quorums when it was
    // appended; now step down so the remaining members elect a leader among themselves.
    VLOG(1) << "[shard " << shard_ << " node " << id_ << " term " << term_
            << "] removed from the group, stepping down";
    BecomeFollower(term_, kNone);
  }
  return applied_conf_;
}

// ---------------------------------------------------------------------------------------------
// Time.

void Raft::Tick() {
  ++ticks_;
  if (state_ == StateType::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (Promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    Message m;
    m.set_from(id_);
    m.set_type(v1::MSG_HUP);
    (void)Step(std::move(m));
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= election_timeout_) {
    election_elapsed_ = 0;
    if (check_quorum_) {
      Message m;
      m.set_from(id_);
      m.set_type(v1::MSG_CHECK_QUORUM);
      (void)Step(std::move(m));
    }
    // A transfer that did not finish within an election timeout has failed; resume serving.
    if (state_ == StateType::kLeader && lead_transferee_ != kNone) AbortLeaderTransfer();
  }
  if (state_ != StateType::kLeader) return;
  const bool due = align_heartbeats_ ? ticks_ % static_cast<uint64_t>(heartbeat_timeout_) == 0
                                     : heartbeat_elapsed_ >= heartbeat_timeout_;
  if (due) {
    heartbeat_elapsed_ = 0;
    Message m;
    m.set_from(id_);
    m.set_type(v1::MSG_BEAT);
    (void)Step(std::move(m));
  }
}

}  // namespace marmot::raft
