// What a NodeHost keeps in its log store besides the shards' logs (RocksLogStore::PutMeta), and
// reads back when it starts:
//
//   addr/<node>              the address of a node this host learnt of (configured at bootstrap,
//                            or carried by a membership change), so that a restart finds every
//                            member even with a shorter peer list
//   run                      how many times the host started: proposal ids carry it, so an entry
//                            proposed in an earlier run (replayed after a restart) never resolves
//                            a proposal of this run
//   removed/<shard>/<node>   "1" while the node is removed from the shard (sender_policy.h)
//
// and the cluster id (cluster_identity.h), which the store keeps apart.
#ifndef MARMOT_RAFT_HOST_HOST_META_H_
#define MARMOT_RAFT_HOST_HOST_META_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/raft.pb.h"
#include "raft/host/cluster_identity.h"
#include "raft/host/node_host.h"
#include "raft/host/rocks_log_store.h"

namespace marmot::raft::host {

struct HostMeta {
  // config.peers, and the addresses learnt before (the configured ones win).
  std::map<uint64_t, std::string> addresses;
  // This run's number (1 for the first).
  uint64_t run = 0;
  // Per shard, the nodes removed from it (and not added since).
  std::vector<std::set<uint64_t>> removed;
};

// Bootstraps a fresh store unless config.join (every shard starts with config.peers as voters;
// InvalidArgumentError when they do not include this node), reads the meta, counts this run and
// commits the store (synced; its error if that fails).
absl::StatusOr<HostMeta> StartHostMeta(RocksLogStore& store, const NodeHostConfig& config);

// The meta keys of a node's address and of a removal (values: the address; "1" or "0").
std::string AddressKey(uint64_t node);
std::string RemovedKey(uint64_t shard, uint64_t node);

// The cluster identity of the node `node` whose store is `store`: the id the store holds, or,
// when it holds none and `node` is the highest voter of `shard0` (shard 0's membership), a new
// id drawn as a candidate and written first (the write's error if it fails).
absl::StatusOr<std::shared_ptr<ClusterIdentity>> LoadClusterIdentity(RocksLogStore& store,
                                                                     uint64_t node,
                                                                     const v1::ConfState& shard0);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_HOST_META_H_
