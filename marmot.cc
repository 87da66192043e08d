// marmot: replicates a SQLite database across nodes. This file holds the flags, the wiring and
// signal handling; everything else lives in the libraries.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "pane/metrics_text.h"
#include "pane/pane_server.h"
#include "pane/replicator_control.h"
#include "pane/switchable_node_control.h"
#include "replicator/database_lock.h"
#include "replicator/memory_trimmer.h"
#include "replicator/node_config.h"
#include "replicator/replicator.h"
#include "replicator/stop_signals.h"
#include "sqlite/change_log.h"
#include "sqlite/database.h"

// Flag names and defaults follow the original Marmot (`-db-path`, one dash or two). gflags'
// DEFINE_* macros would name them `db_path`, so they are registered under their real names.
#define MARMOT_FLAG(type, var, name, value, help)                                         \
  static type FLAGS_##var = value;                                                        \
  static type FLAGS_##var##_default = value;                                              \
  static gflags::FlagRegisterer flag_registerer_##var(name, help, __FILE__, &FLAGS_##var, \
                                                      &FLAGS_##var##_default)

MARMOT_FLAG(bool, cleanup, "cleanup", false,
            "Remove every marmot trigger and change-log table, then exit");
MARMOT_FLAG(std::string, db_path, "db-path", "/tmp/marmot.db",
            "Path of the SQLite database to replicate");
MARMOT_FLAG(std::string, replicate, "replicate", "",
            "Deprecated and ignored: every table is discovered and replicated");
MARMOT_FLAG(uint64_t, node_id, "node-id", 0,
            "This node's id: positive, unique in the cluster, stable across restarts");
MARMOT_FLAG(std::string, bind, "bind", "0.0.0.0:8610", "host:port for node-to-node gRPC traffic");
MARMOT_FLAG(std::string, raft_path, "raft-path", "/tmp/raft", "Folder of the Raft log (RocksDB)");
MARMOT_FLAG(int64_t, shards, "shards", 16,
            "Number of Raft groups rows are spread over (the same on every node)");
MARMOT_FLAG(int64_t, snapshot_entries, "snapshot-entries", 10000,
            "Raft log entries of a shard between two of its snapshots (the log is compacted up to "
            "each snapshot)");
MARMOT_FLAG(int64_t, checkpoint_pages, "checkpoint-pages", 256,
            "Copy the WAL into the database in the background once this many of its pages are not "
            "in the database yet, so that the application's commits seldom have to; 0: leave it to "
            "SQLite's automatic checkpoints");
MARMOT_FLAG(
    int64_t, max_dead_letters, "max-dead-letters", 100000,
    "Most dead letters (changes this node could not apply) it keeps; a shard that needs one "
    "more halts on this node, saying why in GetStatus, until dead letters are retried "
    "(RetryDeadLetters, or the retry after a schema change, resumes it) or marmot restarts");
MARMOT_FLAG(int64_t, snapshot_piece_bytes, "snapshot-piece-bytes", 1 << 20,
            "Rows of a shard snapshot are written and read in pieces of about this many bytes "
            "(4096 to 67108864); a lower value only helps tests");
MARMOT_FLAG(int64_t, verify_every, "verify-every", 0,
            "Every this many seconds, verify the shards this node leads (compare every node's "
            "rows, as the Verify call does, and log what differs); 0 (default): only when asked");
MARMOT_FLAG(std::string, bootstrap, "bootstrap", "",
            "Initial members: <id>@<host>:<port>,... (ignored once Raft state exists)");
MARMOT_FLAG(std::string, bind_pane, "bind-pane", "localhost:6010",
            "host:port of the control pane: admin gRPC and its REST gateway (/v1/..., /healthz, "
            "/readyz, /metrics) on one port");
MARMOT_FLAG(std::string, bind_rest, "bind-rest", "",
            "host:port to serve the REST gateway on a port of its own instead (default: empty, "
            "REST shares -bind-pane with gRPC)");
MARMOT_FLAG(std::string, pane_tls_cert_file, "pane-tls-cert-file", "",
            "TLS on the control pane's port (gRPC and REST): its certificate chain (PEM); needs "
            "-pane-tls-key-file");
MARMOT_FLAG(std::string, pane_tls_key_file, "pane-tls-key-file", "",
            "TLS on the control pane's port: the private key of -pane-tls-cert-file (PEM)");
MARMOT_FLAG(bool, join, "join", false,
            "Start without membership and wait to be added to the cluster (AddNode) instead of "
            "founding it with the -bootstrap members");
MARMOT_FLAG(bool, seed, "seed", false,
            "Found the cluster from the rows this database already holds: at this node's first "
            "start they are copied to every node (as inserts, shard by shard). Start the other "
            "founders with the same schema and empty tables; ignored once this database was "
            "replicated; not with -join");
MARMOT_FLAG(bool, take_cluster_rows, "take-cluster-rows", false,
            "At this node's first start on its database (or the first after -cleanup), delete "
            "the rows its tables hold and take the cluster's (without it or -seed, such a start "
            "on tables that hold rows is refused); ignored once this database was replicated; "
            "not with -seed");
MARMOT_FLAG(bool, verbose, "verbose", false, "Log more detail");
MARMOT_FLAG(std::string, cluster_key_file, "cluster-key-file", "",
            "File holding the shared cluster key that every node-to-node call must prove (or set "
            "the CLUSTER_KEY environment variable); at least 16 bytes, the same on every node");
MARMOT_FLAG(std::string, tls_cert_file, "tls-cert-file", "",
            "Mutual TLS on the node port: this node's certificate (PEM); needs -tls-key-file and "
            "-tls-ca-file");
MARMOT_FLAG(std::string, tls_key_file, "tls-key-file", "",
            "Mutual TLS: this node's private key (PEM)");
MARMOT_FLAG(std::string, tls_ca_file, "tls-ca-file", "",
            "Mutual TLS: the CA that signed every node's certificate (PEM)");
MARMOT_FLAG(bool, insecure, "insecure", false,
            "Start on a non-loopback -bind without a cluster key or TLS: anyone who reaches the "
            "node port can then write, wipe or join this cluster");
MARMOT_FLAG(std::string, peers_template, "peers-template", "",
            "Kubernetes StatefulSet: peer address with {ordinal}, e.g. "
            "marmot-{ordinal}.marmot-peers.default.svc:8610; derives -node-id (ordinal + 1) and "
            "-bootstrap (the -replicas founding pods) from -hostname, and -join for later pods");
MARMOT_FLAG(int64_t, replicas, "replicas", 0,
            "With -peers-template: how many pods founded the cluster (ordinals 0 to N-1)");
MARMOT_FLAG(std::string, hostname, "hostname", "",
            "With -peers-template: this pod's name, <name>-<ordinal> (default: the host name)");

namespace {

constexpr int kBadFlagsExit = 2;
constexpr char kVersion[] = "0.1.0";

[[noreturn]] void FailFlags(const absl::Status& status) {
  std::fprintf(stderr, "marmot: invalid flags: %s\n", std::string(status.message()).c_str());
  std::exit(kBadFlagsExit);
}

// `--help` lists the flags defined in this file, picked by the file that defines them. gflags'
// own --helpshort picks the flags of the file named after the binary, so a copy named
// `marmot-1.2` printed "No modules matched" instead. Exits 0.
[[noreturn]] void PrintHelp(std::string_view argv0) {
  const size_t slash = argv0.rfind('/');
  const std::string_view program =
      slash == std::string_view::npos ? argv0 : argv0.substr(slash + 1);
  std::string out =
      absl::StrCat(std::string(program), ": ", gflags::ProgramUsage(), "\n\n  Flags:\n");
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  for (const gflags::CommandLineFlagInfo& f : flags) {
    if (f.filename == __FILE__) out += gflags::DescribeOneFlag(f);
  }
  out += "\n  --helpfull lists the flags of the libraries (glog) too; --version the version.\n";
  std::fputs(out.c_str(), stdout);
  std::exit(0);
}

int RunCleanup(const std::string& db_path) {
  // Never under a running node: it would keep working on tables that are gone.
  absl::StatusOr<marmot::replicator::DatabaseLock> lock =
      marmot::replicator::DatabaseLock::Acquire(db_path);
  if (!lock.ok()) {
    LOG(ERROR) << "cleanup of " << db_path << " refused: " << lock.status().message();
    return 1;
  }
  absl::StatusOr<marmot::sqlite::Database> db = marmot::sqlite::Database::Open(db_path);
  if (db.ok()) {
    if (absl::Status s = marmot::sqlite::RemoveCapture(*db); !s.ok()) db = s;
  }
  if (!db.ok()) {
    LOG(ERROR) << "cleanup of " << db_path << " failed: " << db.status();
    return 1;
  }
  LOG(INFO) << "removed every marmot trigger and table from " << db_path;
  return 0;
}

// How long a drain may take before marmot exits without finishing it (stop_signals.h): inside
// Kubernetes' default grace period of 30 s.
constexpr absl::Duration kDrainLimit = absl::Seconds(20);

// Replicates and serves the control pane until SIGINT or SIGTERM arrives, then drains: health
// reports NOT_SERVING, leaderships move to other nodes, everything stops, exit 0. A signal while
// starting, a second signal or a drain past kDrainLimit ends the process at once, also exit 0.
int RunNode(const marmot::replicator::NodeConfig& config) {
  marmot::replicator::StopSignals stop_signals(kDrainLimit);
  // Memory freed after a catch-up or a burst of writes goes back to the system (memory_trimmer.h).
  marmot::replicator::MemoryTrimmer trimmer({});
  // The pane's ports first: a busy port must stop marmot before it touches Raft state or talks to
  // its peers. Until the replicator runs, calls answer UNAVAILABLE and health NOT_SERVING.
  marmot::pane::SwitchableNodeControl node;
  std::atomic<marmot::replicator::Replicator*> running{nullptr};
  const char* auth_key = std::getenv("AUTH_KEY");
  absl::StatusOr<std::unique_ptr<marmot::pane::PaneServer>> pane = marmot::pane::PaneServer::Start(
      {.address = config.bind_pane.ToString(),
       .rest_address = config.bind_rest.has_value() ? config.bind_rest->ToString() : "",
       .auth_key = auth_key != nullptr ? std::optional<std::string>(auth_key) : std::nullopt,
       .tls_cert_file = config.pane_tls_cert_file,
       .tls_key_file = config.pane_tls_key_file,
       .ready = [&node] { return node.Ready(); },
       .metrics =
           [&node, &running] {
             absl::StatusOr<marmot::admin::v1::GetStatusResponse> status = node.GetStatus();
             marmot::replicator::Replicator* r = running.load();
             return marmot::pane::RenderMetrics(
                 status.ok() ? *status : marmot::admin::v1::GetStatusResponse(),
                 r != nullptr ? &r->metrics().registry() : nullptr);
           }},
      &node);
  if (!pane.ok()) {
    LOG(ERROR) << pane.status();
    return 1;
  }
  (*pane)->SetServing(false);

  absl::StatusOr<std::unique_ptr<marmot::replicator::Replicator>> replicator =
      marmot::replicator::Replicator::Start(config);
  if (!replicator.ok()) {
    LOG(ERROR) << "cannot start: " << replicator.status();
    return 1;
  }
  absl::StatusOr<std::unique_ptr<marmot::pane::ReplicatorControl>> control =
      marmot::pane::ReplicatorControl::Create(replicator->get(), kVersion);
  if (!control.ok()) {
    LOG(ERROR) << "cannot start the control pane: " << control.status();
    return 1;
  }
  running.store(replicator->get());
  node.Set(control->get());
  (*pane)->SetServing(true);
  stop_signals.Started();

  const int sig = stop_signals.WaitForStop();
  LOG(INFO) << "received " << strsignal(sig) << ", draining";
  (*pane)->SetServing(false);
  int still_leading = (*replicator)->HandOffLeadership(std::chrono::seconds(3));
  if (still_leading > 0) LOG(WARNING) << "still leading " << still_leading << " shard(s) at stop";
  (*pane)->Shutdown();
  node.Set(nullptr);
  running.store(nullptr);
  (*replicator)->Stop();
  stop_signals.Drained();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals before any thread starts so that only StopSignals' thread takes them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  gflags::SetUsageMessage(
      "replicates a SQLite database across nodes\n"
      "  marmot -node-id 1 -bind 127.0.0.1:8161 -bind-pane localhost:6001 \\\n"
      "         -bootstrap 2@127.0.0.1:8162 -db-path /tmp/cache-1.db\n"
      "  marmot -cleanup -db-path /tmp/cache-1.db");
  gflags::SetVersionString(kVersion);
  FLAGS_logtostderr = true;
  // `--help` shows marmot's own flags; `--helpfull` (gflags) adds those of the libraries.
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "-help" || arg == "--help" || arg == "-h" || arg == "-helpshort" ||
        arg == "--helpshort") {
      PrintHelp(argv[0]);
    }
  }
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc > 1)
    FailFlags(absl::InvalidArgumentError(std::string("unexpected argument ") + argv[1]));
  if (FLAGS_verbose) FLAGS_v = std::max(FLAGS_v, 1);
  google::InitGoogleLogging(argv[0]);

  marmot::replicator::FlagValues flags;
  flags.cleanup = FLAGS_cleanup;
  flags.db_path = FLAGS_db_path;
  flags.replicate = FLAGS_replicate;
  flags.node_id = FLAGS_node_id;
  flags.bind = FLAGS_bind;
  flags.raft_path = FLAGS_raft_path;
  flags.shards = FLAGS_shards;
  flags.snapshot_entries = FLAGS_snapshot_entries;
  flags.checkpoint_pages = FLAGS_checkpoint_pages;
  flags.max_dead_letters = FLAGS_max_dead_letters;
  flags.snapshot_piece_bytes = FLAGS_snapshot_piece_bytes;
  flags.verify_every = FLAGS_verify_every;
  flags.bootstrap = FLAGS_bootstrap;
  flags.bind_pane = FLAGS_bind_pane;
  flags.bind_rest = FLAGS_bind_rest;
  flags.pane_tls_cert_file = FLAGS_pane_tls_cert_file;
  flags.pane_tls_key_file = FLAGS_pane_tls_key_file;
  flags.join = FLAGS_join;
  flags.seed = FLAGS_seed;
  flags.take_cluster_rows = FLAGS_take_cluster_rows;
  flags.verbose = FLAGS_verbose;
  flags.peers_template = FLAGS_peers_template;
  flags.replicas = FLAGS_replicas;
  flags.hostname = FLAGS_hostname;
  if (const char* key = std::getenv("CLUSTER_KEY"); key != nullptr) flags.cluster_key = key;
  flags.cluster_key_file = FLAGS_cluster_key_file;
  flags.tls_cert_file = FLAGS_tls_cert_file;
  flags.tls_key_file = FLAGS_tls_key_file;
  flags.tls_ca_file = FLAGS_tls_ca_file;
  flags.insecure = FLAGS_insecure;
  if (flags.hostname.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) == 0) flags.hostname = name;
  }
  absl::StatusOr<marmot::replicator::NodeConfig> config = marmot::replicator::ValidateFlags(flags);
  if (!config.ok()) FailFlags(config.status());
  for (const std::string& w : config->warnings) LOG(WARNING) << w;
  if (config->insecure && !config->cleanup) {
    LOG(WARNING)
        << "-insecure: " << config->bind.ToString()
        << (config->cluster_key.empty() && config->tls_ca_file.empty()
                ? " accepts Raft traffic from anyone who can reach it"
                : " is protected by the cluster key or TLS given; -insecure changes nothing");
  }

  if (config->cleanup) return RunCleanup(config->db_path);
  return RunNode(*config);
}
