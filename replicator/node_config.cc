#include "replicator/node_config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "raft/host/peer_auth.h"
#include "replicator/pod_identity.h"
#include "sqlite/database.h"

namespace marmot::replicator {
namespace {

using raft::host::HostPort;
using raft::host::ParseHostPort;

absl::Status FlagError(absl::string_view flag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("-", flag, ": ", what));
}

// The node port's protection: a cluster key (CLUSTER_KEY or -cluster-key-file), mutual TLS, or
// a loopback -bind (only this machine's processes can connect), or the operator's -insecure.
absl::Status ValidateSecurity(const FlagValues& flags, NodeConfig* config) {
  if (flags.cluster_key.has_value() && !flags.cluster_key_file.empty()) {
    return FlagError("cluster-key-file",
                     "give the cluster key either in CLUSTER_KEY or in a file, not both");
  }
  std::string key;
  if (!flags.cluster_key_file.empty()) {
    std::ifstream in(flags.cluster_key_file, std::ios::binary);
    std::stringstream text;
    if (in.is_open()) text << in.rdbuf();
    if (!in.is_open() || in.bad()) {
      return FlagError("cluster-key-file", absl::StrCat("cannot read ", flags.cluster_key_file));
    }
    key = text.str();
  } else if (flags.cluster_key.has_value()) {
    key = *flags.cluster_key;
  }
  if (flags.cluster_key.has_value() || !flags.cluster_key_file.empty()) {
    absl::StatusOr<raft::host::ClusterKey> parsed = raft::host::ClusterKey::FromSecret(key);
    if (!parsed.ok()) {
      return FlagError(
          flags.cluster_key_file.empty() ? "cluster-key (CLUSTER_KEY)" : "cluster-key-file",
          parsed.status().message());
    }
    config->cluster_key = key;
  }
  const int tls_files =
      !flags.tls_cert_file.empty() + !flags.tls_key_file.empty() + !flags.tls_ca_file.empty();
  if (tls_files != 0 && tls_files != 3) {
    return FlagError("tls-cert-file",
                     "TLS needs -tls-cert-file, -tls-key-file and -tls-ca-file together");
  }
  for (const std::string* f : {&flags.tls_cert_file, &flags.tls_key_file, &flags.tls_ca_file}) {
    if (!f->empty() && !std::filesystem::is_regular_file(*f)) {
      return FlagError("tls-cert-file", absl::StrCat(*f, " is not a readable file"));
    }
  }
  config->tls_cert_file = flags.tls_cert_file;
  config->tls_key_file = flags.tls_key_file;
  config->tls_ca_file = flags.tls_ca_file;
  config->insecure = flags.insecure;
  if (config->cluster_key.empty() && tls_files == 0 && !config->bind.is_loopback() &&
      !flags.insecure) {
    return FlagError("bind",
                     absl::StrCat(config->bind.ToString(),
                                  " is not a loopback address and node-to-node traffic would be "
                                  "unauthenticated: set CLUSTER_KEY (or -cluster-key-file), or "
                                  "-tls-cert-file, -tls-key-file "
                                  "and -tls-ca-file; -insecure starts anyway"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<raft::host::Member>> ParseBootstrap(absl::string_view text,
                                                               uint64_t self_id,
                                                               const HostPort& bind) {
  absl::StatusOr<std::vector<raft::host::Member>> peers = raft::host::ParseMemberList(text);
  if (!peers.ok()) return peers.status();
  for (const raft::host::Member& peer : *peers) {
    if (peer.id != self_id) continue;
    const bool same = bind.is_wildcard() ? peer.address.port == bind.port : peer.address == bind;
    if (!same) {
      return absl::InvalidArgumentError(
          absl::StrCat("entry '", peer.id, "@", peer.address.ToString(), "' gives this node (",
                       self_id, ") another address than -bind ", bind.ToString()));
    }
  }
  return peers;
}

absl::Status CheckDatabasePath(const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return absl::InvalidArgumentError("the path is empty");
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (fs::exists(st)) {
    if (fs::is_directory(st)) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not a SQLite file"));
    }
    if (fs::file_size(path, ec) > 0 && !sqlite::HasSqliteHeader(path)) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is not a SQLite database file"));
    }
    return absl::OkStatus();
  }
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the folder ", parent.string(), " does not exist"));
  }
  return absl::OkStatus();
}

namespace {

// Fills in -node-id, -bootstrap and -join from the pod name when -peers-template is given.
absl::StatusOr<FlagValues> WithPodIdentity(const FlagValues& flags) {
  if (flags.peers_template.empty()) {
    if (flags.replicas != 0) {
      return FlagError("replicas", "only means something with -peers-template");
    }
    return flags;
  }
  if (flags.node_id != 0) {
    return FlagError("node-id",
                     "must not be given with -peers-template, which derives it from -hostname");
  }
  if (!flags.bootstrap.empty()) {
    return FlagError("bootstrap", "must not be given with -peers-template, which derives it");
  }
  absl::StatusOr<PodIdentity> pod =
      DerivePodIdentity(flags.hostname, flags.peers_template, flags.replicas);
  if (!pod.ok()) return pod.status();
  FlagValues out = flags;
  out.node_id = pod->node_id;
  out.bootstrap = pod->bootstrap;
  out.join = flags.join || pod->join;
  return out;
}

}  // namespace

absl::StatusOr<NodeConfig> ValidateFlags(const FlagValues& raw_flags) {
  NodeConfig config;
  absl::StatusOr<FlagValues> derived = raw_flags.cleanup ? raw_flags : WithPodIdentity(raw_flags);
  if (!derived.ok()) return derived.status();
  const FlagValues& flags = *derived;
  config.cleanup = flags.cleanup;
  config.verbose = flags.verbose;
  config.join = flags.join;
  config.db_path = flags.db_path;
  if (absl::Status s = CheckDatabasePath(flags.db_path); !s.ok()) {
    return FlagError("db-path", s.message());
  }
  if (!flags.replicate.empty()) {
    config.warnings.push_back(
        "-replicate is deprecated and ignored: marmot replicates every table it discovers");
  }
  if (flags.cleanup) return config;

  if (flags.node_id == 0) {
    return FlagError("node-id", "required: a positive number, unique and stable for this node");
  }
  config.node_id = flags.node_id;

  absl::StatusOr<HostPort> bind = ParseHostPort(flags.bind);
  if (!bind.ok()) return FlagError("bind", bind.status().message());
  config.bind = *bind;

  absl::StatusOr<HostPort> pane = ParseHostPort(flags.bind_pane);
  if (!pane.ok()) return FlagError("bind-pane", pane.status().message());
  config.bind_pane = *pane;
  if (config.bind_pane == config.bind) {
    return FlagError("bind-pane", absl::StrCat("must differ from -bind (both are ",
                                               config.bind.ToString(), ")"));
  }
  if (!flags.bind_rest.empty()) {
    absl::StatusOr<HostPort> rest = ParseHostPort(flags.bind_rest);
    if (!rest.ok()) return FlagError("bind-rest", rest.status().message());
    if (*rest == config.bind || *rest == config.bind_pane) {
      return FlagError("bind-rest",
                       absl::StrCat("must differ from -bind and -bind-pane (", rest->ToString(),
                                    "); leave it empty to serve REST on -bind-pane"));
    }
    config.bind_rest = *rest;
  }

  if (flags.pane_tls_cert_file.empty() != flags.pane_tls_key_file.empty()) {
    return FlagError(flags.pane_tls_cert_file.empty() ? "pane-tls-cert-file" : "pane-tls-key-file",
                     "TLS on the pane needs -pane-tls-cert-file and -pane-tls-key-file together");
  }
  for (const auto& [flag, file] : {std::pair{"pane-tls-cert-file", &flags.pane_tls_cert_file},
                                   std::pair{"pane-tls-key-file", &flags.pane_tls_key_file}}) {
    if (!file->empty() && !std::filesystem::is_regular_file(*file)) {
      return FlagError(flag, absl::StrCat(*file, " is not a readable file"));
    }
  }
  config.pane_tls_cert_file = flags.pane_tls_cert_file;
  config.pane_tls_key_file = flags.pane_tls_key_file;

  if (flags.shards < 1 || flags.shards > kMaxShards) {
    return FlagError("shards",
                     absl::StrCat("must be between 1 and ", kMaxShards, ", not ", flags.shards));
  }
  config.shards = static_cast<int>(flags.shards);
  if (flags.snapshot_entries < 1) {
    return FlagError("snapshot-entries",
                     absl::StrCat("must be at least 1, not ", flags.snapshot_entries));
  }
  config.snapshot_entries = static_cast<uint64_t>(flags.snapshot_entries);
  if (flags.checkpoint_pages < 0 || flags.checkpoint_pages > 1000000) {
    return FlagError("checkpoint-pages", absl::StrCat("must be between 0 (off) and 1000000, not ",
                                                      flags.checkpoint_pages));
  }
  config.checkpoint_pages = flags.checkpoint_pages;
  if (flags.max_dead_letters < 0) {
    return FlagError("max-dead-letters",
                     absl::StrCat("must be at least 0, not ", flags.max_dead_letters));
  }
  config.max_dead_letters = flags.max_dead_letters;
  if (flags.snapshot_piece_bytes < 4096 || flags.snapshot_piece_bytes > (64 << 20)) {
    return FlagError("snapshot-piece-bytes", absl::StrCat("must be between 4096 and 67108864, not ",
                                                          flags.snapshot_piece_bytes));
  }
  config.snapshot_piece_bytes = flags.snapshot_piece_bytes;
  if (flags.verify_every < 0 || flags.verify_every > 7 * 24 * 3600) {
    return FlagError("verify-every", absl::StrCat("must be between 0 (off) and 604800 seconds, "
                                                  "not ",
                                                  flags.verify_every));
  }
  config.verify_every = absl::Seconds(flags.verify_every);

  if (flags.raft_path.empty()) return FlagError("raft-path", "must not be empty");
  config.raft_path = flags.raft_path;

  absl::StatusOr<std::vector<raft::host::Member>> peers =
      ParseBootstrap(flags.bootstrap, config.node_id, config.bind);
  if (!peers.ok()) return FlagError("bootstrap", peers.status().message());
  config.bootstrap = *std::move(peers);
  if (config.join && config.bootstrap.empty()) {
    return FlagError("join", "needs -bootstrap to name the members to join");
  }
  config.seed = flags.seed;
  config.take_cluster_rows = flags.take_cluster_rows;
  if (config.seed && config.take_cluster_rows) {
    return FlagError("take-cluster-rows",
                     "deletes this database's rows to take the cluster's; -seed founds the "
                     "cluster from them: give one of the two");
  }
  if (config.seed && config.join) {
    return FlagError("seed",
                     "founds a cluster from this database's rows; a node that joins (-join, or a "
                     "pod past -replicas) takes the cluster's rows instead");
  }
  if (absl::Status s = ValidateSecurity(flags, &config); !s.ok()) return s;
  return config;
}

}  // namespace marmot::replicator
