// Bootstrap: a Raft host from a few flags, for test binaries (marmot itself starts its host
// from replicator/replicator.cc).
//
//   auto host = StartNodeHost(FLAGS_node_id, FLAGS_bind, FLAGS_raft_path, FLAGS_shards,
//                             {{2, "127.0.0.1:8162"}, ...}, factory);
//
// This node is added to the member list with its bind address if the list omits it (the
// original marmot lists only the other nodes). A raft folder with existing state ignores the
// list for membership (it still provides peer addresses).
#ifndef MARMOT_RAFT_HOST_BOOTSTRAP_H_
#define MARMOT_RAFT_HOST_BOOTSTRAP_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "raft/host/node_host.h"

namespace marmot::raft::host {

absl::StatusOr<std::unique_ptr<NodeHost>> StartNodeHost(uint64_t node_id,
                                                        const std::string& bind_address,
                                                        const std::string& raft_path, int shards,
                                                        std::map<uint64_t, std::string> peers,
                                                        StateMachineFactory factory);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_BOOTSTRAP_H_
