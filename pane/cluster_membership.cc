#include "pane/cluster_membership.h"

#include <glog/logging.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "raft/host/host_port.h"
#include "raft/membership.h"

namespace marmot::pane {

namespace {

bool IsMember(const raft::v1::ConfState& cs, uint64_t node) {
  return raft::IsVoter(cs, node) || raft::IsLearner(cs, node);
}

// Shards whose membership, as applied on this node, does not have `node` as a voter.
std::vector<int> ShardsWhereNotVoter(raft::host::NodeHost& host, uint64_t node) {
  std::vector<int> out;
  for (int shard = 0; shard < host.shards(); ++shard) {
    if (!raft::IsVoter(host.GetShardInfo(shard).applied_conf_state, node)) out.push_back(shard);
  }
  return out;
}

}  // namespace

absl::Status AddNodeToEveryShard(raft::host::NodeHost& host, uint64_t node,
                                 const std::string& address, absl::Duration timeout) {
  // Every member dials the address: one that cannot be dialed would leave a learner in every
  // shard that never catches up.
  absl::StatusOr<raft::host::HostPort> parsed = raft::host::ParseHostPort(address);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("address of node ", node, ": ", parsed.status().message()));
  }
  if (parsed->is_wildcard()) {
    return absl::InvalidArgumentError(
        absl::StrCat("address of node ", node, ": ", address,
                     " listens on every interface; give the host and port the other nodes dial"));
  }
  // A member keeps its address (the other nodes know it by it): another one takes RemoveNode
  // first.
  const std::map<uint64_t, std::string> known = host.PeerAddresses();
  if (auto it = known.find(node); it != known.end() && it->second != address) {
    for (int shard = 0; shard < host.shards(); ++shard) {
      if (IsMember(host.GetShardInfo(shard).conf_state, node)) {
        return absl::FailedPreconditionError(
            absl::StrCat("node ", node, " is already a member, at ", it->second,
                         "; to give it another address, remove it first (RemoveNode)"));
      }
    }
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (int shard = 0; shard < host.shards(); ++shard) {
    // A learner added by an earlier call is left alone: its promotion is under way.
    if (IsMember(host.GetShardInfo(shard).applied_conf_state, node)) continue;
    absl::Status s =
        host.AddLearner(shard, node, address, std::max(deadline - absl::Now(), absl::Seconds(1)));
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("adding node ", node, " to shard ", shard,
                                                 " as a learner failed (earlier shards have it; "
                                                 "call again to finish): ",
                                                 s.message()));
    }
  }
  LOG(INFO) << "node " << node << " (" << address
            << ") is a member of every shard, waiting for its promotion to voter";
  std::vector<int> waiting = ShardsWhereNotVoter(host, node);
  while (!waiting.empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    waiting = ShardsWhereNotVoter(host, node);
  }
  if (!waiting.empty()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "node ", node, " joined every shard but is still a learner catching up in shard(s) ",
        absl::StrJoin(waiting, ","), " after ", absl::FormatDuration(timeout),
        "; each shard's leader promotes it to voter automatically once it has caught up (call "
        "AddNode again to wait for it)"));
  }
  LOG(INFO) << "node " << node << " (" << address << ") is a voter of every shard";
  return absl::OkStatus();
}

absl::Status RemoveNodeFromEveryShard(raft::host::NodeHost& host, uint64_t node) {
  bool member = false;
  for (int shard = 0; shard < host.shards(); ++shard) {
    raft::host::ShardInfo info = host.GetShardInfo(shard);
    if (!IsMember(info.conf_state, node)) continue;
    member = true;
    if (!raft::IsVoter(info.conf_state, node)) continue;  // a learner: no quorum at stake
    if (info.conf_state.voters_size() <= 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("node ", node, " is the last voter of shard ", shard));
    }
    if (info.leader == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shard ", shard, " has no leader now; removing a node could leave it without quorum"));
    }
  }
  if (!member) return absl::NotFoundError(absl::StrCat("node ", node, " is not a member"));
  for (int shard = 0; shard < host.shards(); ++shard) {
    if (!IsMember(host.GetShardInfo(shard).conf_state, node)) continue;
    absl::Status s = host.RemoveNode(shard, node);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("removing node ", node, " from shard ", shard,
                                                 " failed (call again to finish): ", s.message()));
    }
  }
  LOG(INFO) << "node " << node << " removed from every shard";
  return absl::OkStatus();
}

}  // namespace marmot::pane
