#include "raft/raw_node.h"

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/errors.h"

namespace marmot::raft {

bool IsEmptyHardState(const v1::HardState& hs) {
  return hs.term() == 0 && hs.vote() == 0 && hs.commit() == 0;
}

namespace {
bool SameHardState(const v1::HardState& a, const v1::HardState& b) {
  return a.term() == b.term() && a.vote() == b.vote() && a.commit() == b.commit();
}
}  // namespace

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(const Config& config) {
  if (auto s = config.Validate(); !s.ok()) return s;
  auto st = config.storage->InitialState();
  if (!st.ok()) return st.status();
  const uint64_t snap_index = config.storage->FirstIndex() - 1;
  const uint64_t last = config.storage->LastIndex();
  if (st->hard_state.commit() > last) {
    return absl::DataLossError(absl::StrCat("raft: hard state commit ", st->hard_state.commit(),
                                            " is past the last stored index ", last));
  }
  if (config.applied != 0 && (config.applied < snap_index ||
                              config.applied > std::max(st->hard_state.commit(), snap_index))) {
    return absl::InvalidArgumentError(absl::StrCat("raft: applied index ", config.applied,
                                                   " is outside [snapshot ", snap_index,
                                                   ", commit ", st->hard_state.commit(), "]"));
  }
  return std::unique_ptr<RawNode>(new RawNode(config));
}

RawNode::RawNode(const Config& config) : raft_(config) {
  prev_soft_state_ = raft_.soft_state();
  prev_hard_state_ = raft_.hard_state();
}

absl::Status RawNode::Campaign() {
  v1::Message m;
  m.set_type(v1::MSG_HUP);
  return raft_.Step(std::move(m));
}

absl::Status RawNode::Propose(std::string data) {
  v1::Message m;
  m.set_type(v1::MSG_PROP);
  m.set_from(raft_.id());
  m.add_entries()->set_data(std::move(data));
  return raft_.Step(std::move(m));
}

absl::Status RawNode::ProposeBatch(std::vector<std::string> data) {
  if (data.empty()) return absl::InvalidArgumentError("raft: empty proposal batch");
  v1::Message m;
  m.set_type(v1::MSG_PROP);
  m.set_from(raft_.id());
  m.mutable_entries()->Reserve(data.size());
  for (auto& d : data) m.add_entries()->set_data(std::move(d));
  return raft_.Step(std::move(m));
}

absl::Status RawNode::ProposeConfChange(const v1::ConfChange& cc) {
  if (cc.node_id() == kNone) return absl::InvalidArgumentError("raft: conf change without node");
  v1::Message m;
  m.set_type(v1::MSG_PROP);
  m.set_from(raft_.id());
  v1::Entry* e = m.add_entries();
  e->set_type(v1::ENTRY_CONF_CHANGE);
  e->set_data(cc.SerializeAsString());
  return raft_.Step(std::move(m));
}

absl::Status RawNode::Step(v1::Message m) {
  if (IsLocalMsg(m.type())) {
    return absl::InvalidArgumentError(
        absl::StrCat("raft: cannot step local message type ", m.type()));
  }
  if (!v1::MessageType_IsValid(m.type())) {
    return absl::InvalidArgumentError("raft: unknown message type");
  }
  // Proposals, reads and leadership transfers are termless (a follower forwards them as they
  // came); every other message from a peer carries its sender's term. The core builds its
  // answers on that (a vote answer echoes the vote's term), and a message breaking it would make
  // the core send one that breaks it too: refuse it here, it cannot come from a correct peer.
  const bool termless = m.type() == v1::MSG_PROP || m.type() == v1::MSG_READ_INDEX ||
                        m.type() == v1::MSG_TRANSFER_LEADER;
  if (termless != (m.term() == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raft: a message of type ", m.type(), termless ? " carries a term" : " carries no term"));
  }
  if (IsResponseMsg(m.type()) && raft_.tracker().Get(m.from()) == nullptr) {
    return PeerNotFoundError();
  }
  return raft_.Step(std::move(m));
}

absl::Status RawNode::TransferLeader(uint64_t transferee) {
  v1::Message m;
  m.set_type(v1::MSG_TRANSFER_LEADER);
  m.set_from(transferee);
  return raft_.Step(std::move(m));
}

absl::Status RawNode::ReadIndex(std::string ctx) {
  v1::Message m;
  m.set_type(v1::MSG_READ_INDEX);
  m.add_entries()->set_data(std::move(ctx));
  return raft_.Step(std::move(m));
}

void RawNode::ReportUnreachable(uint64_t id) {
  v1::Message m;
  m.set_type(v1::MSG_UNREACHABLE);
  m.set_from(id);
  (void)raft_.Step(std::move(m));
}

void RawNode::ReportSnapshot(uint64_t id, SnapshotStatus status) {
  v1::Message m;
  m.set_type(v1::MSG_SNAP_STATUS);
  m.set_from(id);
  m.set_reject(status == SnapshotStatus::kFailure);
  (void)raft_.Step(std::move(m));
}

bool RawNode::HasReady() const {
  if (awaiting_advance_) return false;
  if (!(raft_.soft_state() == prev_soft_state_)) return true;
  const v1::HardState hs = raft_.hard_state();
  if (!IsEmptyHardState(hs) && !SameHardState(hs, prev_hard_state_)) return true;
  const RaftLog& log = raft_.log();
  if (log.unstable().snapshot().has_value()) return true;
  if (!log.unstable().entries().empty()) return true;
  if (log.HasNextCommittedEntries()) return true;
  return !raft_.msgs().empty() || !raft_.read_states().empty();
}

absl::StatusOr<Ready> RawNode::GetReady() {
  if (awaiting_advance_) {
    return absl::FailedPreconditionError("raft: GetReady called before Advance");
  }
  Ready rd;
  const SoftState ss = raft_.soft_state();
  if (!(ss == prev_soft_state_)) {
    rd.soft_state = ss;
    prev_soft_state_ = ss;
  }
  const v1::HardState hs = raft_.hard_state();
  if (!IsEmptyHardState(hs) && !SameHardState(hs, prev_hard_state_)) {
    rd.must_sync = hs.term() != prev_hard_state_.term() || hs.vote() != prev_hard_state_.vote();
    rd.hard_state = hs;
  }
  const RaftLog& log = raft_.log();
  rd.entries = log.unstable().entries();
  if (!rd.entries.empty()) rd.must_sync = true;
  if (log.unstable().snapshot()) {
    rd.snapshot = *log.unstable().snapshot();
    rd.must_sync = true;
  }
  rd.committed_entries = log.NextCommittedEntries();
  rd.messages.swap(raft_.msgs());
  rd.read_states.swap(raft_.read_states());

  awaiting_advance_ = true;
  ready_last_entry_index_ = rd.entries.empty() ? 0 : rd.entries.back().index();
  ready_last_entry_term_ = rd.entries.empty() ? 0 : rd.entries.back().term();
  ready_snapshot_index_ = rd.snapshot ? rd.snapshot->metadata().index() : 0;
  ready_last_committed_ = rd.committed_entries.empty() ? 0 : rd.committed_entries.back().index();
  ready_committed_bytes_ = 0;
  for (const auto& e : rd.committed_entries) ready_committed_bytes_ += e.data().size();
  if (rd.hard_state) prev_hard_state_ = *rd.hard_state;
  return rd;
}

absl::Status RawNode::Advance() {
  if (!awaiting_advance_) {
    return absl::FailedPreconditionError("raft: Advance called without an outstanding Ready");
  }
  awaiting_advance_ = false;
  if (ready_snapshot_index_ != 0) {
    raft_.StableSnapTo(ready_snapshot_index_);
    // The host installed the snapshot: its state is applied.
    if (raft_.log().applied() < ready_snapshot_index_) raft_.AppliedTo(ready_snapshot_index_, 0);
  }
  if (ready_last_entry_index_ != 0) raft_.StableTo(ready_last_entry_index_, ready_last_entry_term_);
  if (ready_last_committed_ != 0) raft_.AppliedTo(ready_last_committed_, ready_committed_bytes_);
  return absl::OkStatus();
}

NodeStatus RawNode::Status() const {
  NodeStatus s;
  s.id = raft_.id();
  s.hard_state = raft_.hard_state();
  s.soft_state = raft_.soft_state();
  s.applied = raft_.log().applied();
  s.lead_transferee = raft_.lead_transferee();
  s.conf_state = raft_.tracker().ConfState();
  if (raft_.state() == StateType::kLeader) {
    for (const auto& [id, pr] : raft_.tracker().progress()) s.progress[id] = {pr.match, pr.state};
  }
  return s;
}

}  // namespace marmot::raft
