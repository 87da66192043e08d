// The production parts of a NodeHost: its Raft log in a RocksLogStore in config.raft_path, and a
// GrpcTransport on config.bind_address with the config's TLS files, cluster key, snapshot check
// and chunk size. What the marmot binary, the benchmarks and the host's tests start; a test that
// brings its own transport or store calls NodeHost::Start with it.
#ifndef MARMOT_RAFT_HOST_GRPC_NODE_HOST_H_
#define MARMOT_RAFT_HOST_GRPC_NODE_HOST_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "raft/host/node_host.h"
#include "raft/host/rocks_log_store.h"

namespace marmot::raft::host {

// Opens (or creates) the log store in config.raft_path for config.node_id and config.shards
// (RocksLogStore::Open, whose errors it returns). A write that fails later in RocksDB's
// background ends the process (storage_failure.h).
absl::StatusOr<std::unique_ptr<RocksLogStore>> OpenHostLogStore(const NodeHostConfig& config);

// Builds a GrpcTransport for `config` whose snapshots go to and come from `snapshot_dir` (the
// log store's RocksLogStore::SnapshotDir()).
TransportFactory GrpcTransportFactory(const NodeHostConfig& config, std::string snapshot_dir);

// NodeHost::Start on the parts above.
absl::StatusOr<std::unique_ptr<NodeHost>> StartNodeHost(NodeHostConfig config,
                                                        StateMachineFactory factory);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_GRPC_NODE_HOST_H_
