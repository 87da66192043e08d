#include "raft/host/host_meta.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"

namespace marmot::raft::host {

std::string AddressKey(uint64_t node) { return absl::StrCat("addr/", node); }

std::string RemovedKey(uint64_t shard, uint64_t node) {
  return absl::StrCat("removed/", shard, "/", node);
}

absl::StatusOr<HostMeta> StartHostMeta(RocksLogStore& store, const NodeHostConfig& config) {
  const uint64_t me = config.node_id;
  HostMeta meta;
  meta.addresses = config.peers;
  if (store.fresh()) {
    if (!config.join) {
      if (!config.peers.count(me)) {
        return absl::InvalidArgumentError(
            absl::StrCat("node ", me, ": the bootstrap member list must include this node"));
      }
      v1::ConfState cs;
      for (const auto& [id, addr] : config.peers) {
        cs.add_voters(id);
        store.PutMeta(AddressKey(id), addr);
      }
      for (int s = 0; s < config.shards; ++s) store.Bootstrap(s, cs);
      LOG(INFO) << "[node " << me << "] bootstrapped " << config.shards << " shards with members "
                << absl::StrJoin(cs.voters(), ",");
    }
  } else {
    for (const auto& [k, v] : store.ReadMetaWithPrefix("addr/")) {
      uint64_t id = std::strtoull(k.c_str() + 5, nullptr, 10);
      if (id != 0 && !meta.addresses.count(id)) meta.addresses[id] = v;
    }
  }
  for (const auto& [k, v] : store.ReadMetaWithPrefix("run")) {
    meta.run = std::strtoull(v.c_str(), nullptr, 10);
  }
  ++meta.run;
  store.PutMeta("run", std::to_string(meta.run));
  if (absl::Status s = store.Commit(true); !s.ok()) return s;

  meta.removed.resize(config.shards);
  for (const auto& [k, v] : store.ReadMetaWithPrefix("removed/")) {
    uint64_t shard = 0, node = 0;
    if (std::sscanf(k.c_str(), "removed/%" SCNu64 "/%" SCNu64, &shard, &node) == 2 &&
        shard < meta.removed.size() && v == "1") {
      meta.removed[shard].insert(node);
    }
  }
  return meta;
}

absl::StatusOr<std::shared_ptr<ClusterIdentity>> LoadClusterIdentity(RocksLogStore& store,
                                                                     uint64_t node,
                                                                     const v1::ConfState& shard0) {
  std::string cluster_id = store.cluster_id_at_open();
  bool candidate = false;
  const auto& voters = shard0.voters();
  if (cluster_id.empty() && !voters.empty() &&
      *std::max_element(voters.begin(), voters.end()) == node) {
    cluster_id = NewClusterId();
    if (auto s = store.SetClusterId(cluster_id); !s.ok()) return s;
    candidate = true;
    LOG(INFO) << "[node " << node << "] drew cluster id " << FormatClusterId(cluster_id)
              << " (highest voter of shard 0); a peer that already has one replaces it";
  } else {
    LOG(INFO) << "[node " << node << "] cluster " << FormatClusterId(cluster_id)
              << (cluster_id.empty() ? ": learnt from the first peer that has one" : "");
  }
  return std::make_shared<ClusterIdentity>(
      node, cluster_id, candidate,
      [store = &store](const std::string& id) { return store->SetClusterId(id); });
}

}  // namespace marmot::raft::host
