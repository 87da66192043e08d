#include "raft/host/grpc_node_host.h"

#include <utility>

#include "raft/host/grpc_transport.h"
#include "raft/host/storage_failure.h"

namespace marmot::raft::host {

absl::StatusOr<std::unique_ptr<RocksLogStore>> OpenHostLogStore(const NodeHostConfig& config) {
  RocksLogStore::Options options;
  options.node_id = config.node_id;
  options.shards = config.shards;
  options.on_background_error = [me = config.node_id,
                                 path = config.raft_path](const absl::Status& s) {
    ExitOnStorageFailure(me, path, "log write", s);
  };
  return RocksLogStore::Open(config.raft_path, options);
}

TransportFactory GrpcTransportFactory(const NodeHostConfig& config, std::string snapshot_dir) {
  GrpcTransportOptions options;
  options.node_id = config.node_id;
  options.bind_address = config.bind_address;
  options.snapshot_dir = std::move(snapshot_dir);
  options.check_snapshot = config.check_snapshot;
  options.snapshot_chunk_bytes = config.snapshot_chunk_bytes;
  options.tls_cert_file = config.tls_cert_file;
  options.tls_key_file = config.tls_key_file;
  options.tls_ca_file = config.tls_ca_file;
  options.cluster_key = config.cluster_key;
  options.shards = static_cast<uint64_t>(config.shards);
  options.env = config.env;
  return [options = std::move(options)](std::shared_ptr<ClusterIdentity> cluster) mutable {
    options.cluster = std::move(cluster);
    return std::make_unique<GrpcTransport>(std::move(options));
  };
}

absl::StatusOr<std::unique_ptr<NodeHost>> StartNodeHost(NodeHostConfig config,
                                                        StateMachineFactory factory) {
  if (config.node_id == 0) return absl::InvalidArgumentError("node id must be positive");
  if (config.shards <= 0) return absl::InvalidArgumentError("shard count must be positive");
  absl::StatusOr<std::unique_ptr<RocksLogStore>> store = OpenHostLogStore(config);
  if (!store.ok()) return store.status();
  TransportFactory transport = GrpcTransportFactory(config, (*store)->SnapshotDir());
  return NodeHost::Start(std::move(config), *std::move(store), std::move(transport),
                         std::move(factory));
}

}  // namespace marmot::raft::host
