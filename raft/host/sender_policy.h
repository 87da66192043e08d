// SenderPolicy: which messages from the network a shard takes, by who sent them (DESIGN.md,
// "Security model").
//
// The transport vouches for a message's `from` (the stream's authenticated peer, see
// grpc_transport.h); this unit decides whether that node may send this message to this shard:
//
// - Proposals, read requests, votes and every response only from members of the shard (voters
//   and learners). A node that is no member, or was removed, cannot write rows, change the
//   membership through a forged conf change entry, or sway an election.
// - Appends, heartbeats, snapshots and leadership hand-overs only from the leader of their
//   term: a message claiming the current term from another node than the known leader is
//   forged (Raft elects one leader per term).
// - A leader this node does not know as a member yet is heard only when it claims a newer term,
//   or this term while this node knows no other leader of it, and never when it was removed.
//   This keeps Raft's rule that a lagging server takes appends from a leader added after the
//   membership it knows (Raft thesis, 4.1): refusing it would leave that server behind for
//   good. A node that is not a member itself (a new node waiting to be added, -join) takes
//   leader messages the same way, from whoever the cluster added it under; restarted before it
//   learnt the membership, it has kept the term but not the leader, which goes on in it.
// - MSG_TRANSFER_LEADER names the transferee as its `from` (the core's convention; a follower
//   forwards it): the transferee must be a voter.
//
// Pure: the host (node_host.cc) fills a SenderView from the shard's Raft state on its loop, so
// the core and its simulator stay untouched and deterministic.
#ifndef MARMOT_RAFT_HOST_SENDER_POLICY_H_
#define MARMOT_RAFT_HOST_SENDER_POLICY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "proto/raft.pb.h"

namespace marmot::raft::host {

enum class ShardRole { kNone, kLearner, kVoter };

// What a shard knows when a message arrives.
struct SenderView {
  // This node's role in the shard and the sender's (as of the latest applied membership).
  ShardRole self = ShardRole::kNone;
  ShardRole sender = ShardRole::kNone;
  // The sender was removed from this shard (and not added again since).
  bool sender_removed = false;
  // This node's current term and the leader it knows for it (0: none).
  uint64_t term = 0;
  uint64_t lead = 0;
};

// OK if the shard should step `m`; PermissionDenied naming the reason otherwise.
absl::Status CheckSender(const SenderView& v, const v1::Message& m);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SENDER_POLICY_H_
