// The validated configuration of one marmot node, built from its command-line flags.
//
// marmot.cc owns the flags; this unit turns their raw values into a `NodeConfig` or a single
// clear error, so that every bad value fails fast at start instead of deep inside a subsystem.
#ifndef MARMOT_REPLICATOR_NODE_CONFIG_H_
#define MARMOT_REPLICATOR_NODE_CONFIG_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "raft/host/host_port.h"

namespace marmot::replicator {

// Parses `-bootstrap`: a member list (raft::host::ParseMemberList). If `self_id` appears, its
// address must be the one the node binds to (`bind`), or share its port when `bind` is a
// wildcard address.
absl::StatusOr<std::vector<raft::host::Member>> ParseBootstrap(absl::string_view text,
                                                               uint64_t self_id,
                                                               const raft::host::HostPort& bind);

// Raw flag values, as marmot.cc read them.
struct FlagValues {
  bool cleanup = false;
  std::string db_path;
  std::string replicate;  // Deprecated; any value is accepted and ignored.
  uint64_t node_id = 0;
  std::string bind;
  std::string raft_path;
  int64_t shards = 0;
  int64_t snapshot_entries = 10000;
  int64_t checkpoint_pages = 256;
  int64_t max_dead_letters = 100000;
  int64_t snapshot_piece_bytes = 1 << 20;
  int64_t verify_every = 0;  // Seconds; 0: off.
  std::string bootstrap;
  std::string bind_pane;
  std::string bind_rest;  // Empty: REST shares -bind-pane.
  std::string pane_tls_cert_file;
  std::string pane_tls_key_file;
  bool join = false;
  bool seed = false;
  bool take_cluster_rows = false;
  bool verbose = false;
  // Kubernetes StatefulSets (see pod_identity.h): with a -peers-template, -node-id and
  // -bootstrap are derived from the pod name `hostname` and the founding pod count `replicas`.
  std::string hostname;
  std::string peers_template;
  int64_t replicas = 0;
  // Node-to-node security (README, "Security"). `cluster_key` is the CLUSTER_KEY environment
  // variable as marmot.cc found it (nullopt: unset); `cluster_key_file` the flag.
  std::optional<std::string> cluster_key;
  std::string cluster_key_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;
  bool insecure = false;
};

struct NodeConfig {
  bool cleanup = false;
  std::string db_path;
  uint64_t node_id = 0;
  raft::host::HostPort bind;
  std::string raft_path;
  int shards = 0;
  // Raft log entries of a shard between two of its snapshots.
  uint64_t snapshot_entries = 10000;
  // marmot checkpoints the WAL once this many of its pages are not in the database yet
  // (WalCheckpointer); 0: it leaves checkpoints to SQLite's automatic ones.
  int64_t checkpoint_pages = 256;
  // The most dead letters this node keeps; a shard that needs one more halts
  // (ChangeApplier::set_max_dead_letters).
  int64_t max_dead_letters = 100000;
  // Rows of a shard snapshot go in pieces of about this many bytes (snapshot_stream.h).
  int64_t snapshot_piece_bytes = 1 << 20;
  // Every this often the node verifies the shards it leads (ShardVerifier::StartPeriodic);
  // zero: never by itself.
  absl::Duration verify_every = absl::ZeroDuration();
  std::vector<raft::host::Member> bootstrap;
  raft::host::HostPort bind_pane;
  // REST on a port of its own; nullopt: REST shares -bind-pane with gRPC.
  std::optional<raft::host::HostPort> bind_rest;
  // TLS on the pane's port(s): both or none.
  std::string pane_tls_cert_file;
  std::string pane_tls_key_file;
  // Start with no shard membership and wait to be added (AddNode) instead of founding the
  // cluster with the -bootstrap members. Ignored once Raft state exists.
  bool join = false;
  // At the first start on this database, copy the rows its tables hold into the change logs, so
  // that they reach every node (CaptureKeeper::Open). Never with join.
  bool seed = false;
  // At the first start on this database, delete the rows its tables hold, so that it holds the
  // cluster's (CaptureKeeper::Open); without it or `seed`, such rows refuse the start. Never
  // with seed.
  bool take_cluster_rows = false;
  bool verbose = false;
  // The cluster key every node-to-node call proves (raft/host/peer_auth.h); empty: none.
  std::string cluster_key;
  // Mutual TLS on the node port: all three or none.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;
  // Started without a key or TLS on a non-loopback -bind, as -insecure allowed.
  bool insecure = false;
  // Non-fatal findings to log at start (e.g. the deprecated -replicate flag).
  std::vector<std::string> warnings;
};

inline constexpr int kMaxShards = 1024;

// Validates every flag. The error message is one line naming the flag and what is wrong. With
// `-cleanup` only `-db-path` matters. A node whose -bind is not a loopback address must have a
// cluster key or TLS for its node port, or -insecure (DESIGN.md, "Security model"). With
// `-peers-template`, the node id, bootstrap list and join mode come from DerivePodIdentity, and
// giving `-node-id` or `-bootstrap` too is an error.
absl::StatusOr<NodeConfig> ValidateFlags(const FlagValues& flags);

// Checks that `path` can be a marmot database: an existing SQLite file, or an absent or empty
// file in an existing directory (SQLite will create it).
absl::Status CheckDatabasePath(const std::string& path);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_NODE_CONFIG_H_
