#include "raft/host/bootstrap.h"

#include "raft/host/grpc_node_host.h"

namespace marmot::raft::host {

absl::StatusOr<std::unique_ptr<NodeHost>> StartNodeHost(uint64_t node_id,
                                                        const std::string& bind_address,
                                                        const std::string& raft_path, int shards,
                                                        std::map<uint64_t, std::string> peers,
                                                        StateMachineFactory factory) {
  peers.emplace(node_id, bind_address);
  NodeHostConfig c;
  c.node_id = node_id;
  c.bind_address = bind_address;
  c.raft_path = raft_path;
  c.shards = shards;
  c.peers = std::move(peers);
  return StartNodeHost(std::move(c), std::move(factory));
}

}  // namespace marmot::raft::host
