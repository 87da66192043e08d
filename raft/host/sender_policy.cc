#include "raft/host/sender_policy.h"

#include "absl/strings/str_cat.h"

namespace marmot::raft::host {

namespace {

absl::Status Refuse(const v1::Message& m, absl::string_view why) {
  return absl::PermissionDeniedError(
      absl::StrCat(v1::MessageType_Name(m.type()), " from node ", m.from(), " refused: ", why));
}

absl::Status NotAMember(const SenderView& v, const v1::Message& m) {
  return Refuse(
      m, v.sender_removed ? "it was removed from the shard" : "it is not a member of the shard");
}

}  // namespace

absl::Status CheckSender(const SenderView& v, const v1::Message& m) {
  const bool member = v.sender != ShardRole::kNone;
  switch (m.type()) {
    case v1::MSG_PROP:
    case v1::MSG_READ_INDEX:
    case v1::MSG_VOTE:
    case v1::MSG_PRE_VOTE:
    case v1::MSG_APP_RESP:
    case v1::MSG_VOTE_RESP:
    case v1::MSG_PRE_VOTE_RESP:
    case v1::MSG_HEARTBEAT_RESP:
      return member ? absl::OkStatus() : NotAMember(v, m);

    case v1::MSG_TRANSFER_LEADER:
      return v.sender == ShardRole::kVoter
                 ? absl::OkStatus()
                 : Refuse(m, "the transferee is not a voter of the shard");

    case v1::MSG_APP:
    case v1::MSG_HEARTBEAT:
    case v1::MSG_SNAP:
    case v1::MSG_TIMEOUT_NOW:
    case v1::MSG_READ_INDEX_RESP: {
      if (v.sender_removed && !member) return NotAMember(v, m);
      if (m.term() == v.term && v.lead != 0 && v.lead != m.from()) {
        return Refuse(m, absl::StrCat("node ", v.lead, " leads term ", v.term));
      }
      // Only the leader this node follows may tell it to campaign at once.
      if (m.type() == v1::MSG_TIMEOUT_NOW && (!member || v.lead != m.from())) {
        return Refuse(m, "only the current leader hands leadership over");
      }
      if (member) return absl::OkStatus();
      // A leader unknown here (added after the membership this node knows, or this node is not
      // a member yet): only with a newer term, or with this term while this node knows no other
      // leader for it (see the header).
      if (m.term() > v.term || (m.term() == v.term && (v.lead == 0 || v.lead == m.from()))) {
        return absl::OkStatus();
      }
      return NotAMember(v, m);
    }

    default:
      // MSG_HUP, MSG_BEAT and the other local messages never come from the network.
      return Refuse(m, "a local message type");
  }
}

}  // namespace marmot::raft::host
