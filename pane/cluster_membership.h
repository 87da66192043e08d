// Membership of the whole cluster: a node joins or leaves every shard at once. This is what the
// admin calls AddNode and RemoveNode do, over the Raft host of the node that serves the call
// (any node: each shard's change is forwarded to that shard's leader).
//
// A node joins as a learner first and becomes a voter once it has caught up, so that adding an
// empty node never costs a shard its quorum while the node receives snapshots: with three
// voters and an empty fourth one, a quorum would be three of four while the fourth cannot
// acknowledge anything yet. The promotion is done by each shard's leader (NodeHost::AddLearner),
// not by the caller, so it completes even if the call gives up waiting.
#ifndef MARMOT_PANE_CLUSTER_MEMBERSHIP_H_
#define MARMOT_PANE_CLUSTER_MEMBERSHIP_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "raft/host/node_host.h"

namespace marmot::pane {

// Adds `node` (reachable at `address`) to every shard where it is not a member yet as a
// learner to promote, then waits until it is a voter of every shard (committed and applied on
// this node). Returns OK once it votes everywhere; DEADLINE_EXCEEDED if that took longer than
// `timeout` (the node is then a learner still catching up where it does not vote yet, and will
// be promoted automatically; calling again just waits). Another error of a shard's change is
// returned with the shard named; shards done before it keep the node (call again to finish).
absl::Status AddNodeToEveryShard(raft::host::NodeHost& host, uint64_t node,
                                 const std::string& address, absl::Duration timeout);

// Removes `node`, voter or learner, from every shard it is a member of. NOT_FOUND if it is a
// member of none. Refused with FAILED_PRECONDITION, before anything changes, if it is the last
// voter of a shard or a shard where it votes has no leader (learners never count for quorum,
// so neither check applies where it is a learner).
absl::Status RemoveNodeFromEveryShard(raft::host::NodeHost& host, uint64_t node);

}  // namespace marmot::pane

#endif  // MARMOT_PANE_CLUSTER_MEMBERSHIP_H_
