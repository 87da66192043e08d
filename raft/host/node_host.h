// NodeHost: runs every shard (Raft group) of a process over the pure core in raft/.
//
// One Raft loop thread steps incoming messages, ticks every group, collects their Readys,
// persists all of them in ONE RocksDB write with ONE fsync (RocksLogStore), hands the
// messages to the transport, applies membership changes, and queues committed entries to
// apply workers (shards hashed to a few threads), which call the shard's StateMachine,
// resolve proposal callbacks and take snapshots. A slow state machine therefore delays only
// the shards of its worker, never the ticks or the replication of any shard.
//
// Proposals carry a header (proposing node, proposal id; proposal_codec.h) so that the
// proposing node recognizes its own entries when they are applied and resolves their
// callbacks; the state machine sees the payload only. A follower forwards proposals to the
// leader (the core does).
//
// A write of the raft folder that fails (a full disk, an I/O error) ends the process with one
// line naming the cause and exit code kStorageFailureExitCode (storage_failure.h): what is
// staged can no longer be made durable, and everything acknowledged already is.
//
// Bootstrap: a node whose raft folder is new starts every shard with the same membership
// (config.peers) unless config.join is set (it then waits to be added and receive a snapshot).
// A node with existing state ignores config.peers for membership.
//
// Identity: the raft folder keeps the cluster id (cluster_identity.h; the highest voter of shard
// 0 draws it, the others learn it from a peer), compared when a stream opens; a second process
// started with this node's id while this one runs is refused by the peers, and a process that
// finds itself refused so ends (node_incarnation.h).
#ifndef MARMOT_RAFT_HOST_NODE_HOST_H_
#define MARMOT_RAFT_HOST_NODE_HOST_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/raft.pb.h"
#include "raft/host/apply_worker.h"
#include "raft/host/env.h"
#include "raft/host/pending_proposals.h"
#include "raft/host/proposal_codec.h"
#include "raft/host/rocks_log_store.h"
#include "raft/host/state_machine.h"
#include "raft/host/transport.h"
#include "raft/raw_node.h"

namespace marmot::raft::host {

class ClusterIdentity;
class GrpcTransport;

// Optional hooks for metrics; called from host threads, must be cheap and thread-safe.
class HostObserver {
 public:
  virtual ~HostObserver() = default;
  // One loop iteration's write of every shard's entries and hard state (synced or not).
  virtual void OnLogWrite(absl::Duration took, bool synced) {}
  // A snapshot this node sent to `node` arrived (ok) or failed.
  virtual void OnSnapshotSent(uint64_t shard, uint64_t node, bool ok) {}
  // The transport lost `node` (its stream broke or it could not be dialed).
  virtual void OnPeerUnreachable(uint64_t node) {}
  // Something from the network was refused: `what` is "call", "shards", "cluster", "duplicate"
  // or "message" (the transport, see MessageHandler::HandleRefused) or "sender" (a sender that
  // may not send that message to that shard, sender_policy.h).
  virtual void OnRefused(const char* what) {}
};

struct NodeHostConfig {
  uint64_t node_id = 0;
  // host:port of the node-to-node gRPC server (GrpcTransportFactory, grpc_node_host.h).
  std::string bind_address;
  // Where the log store is (OpenHostLogStore, grpc_node_host.h).
  std::string raft_path;
  int shards = 16;
  // Addresses of the other nodes (and this one); for a new folder and !join also the founding
  // members of every shard.
  std::map<uint64_t, std::string> peers;
  bool join = false;

  // Heartbeats every 200 ms, elections after 1-2 s of silence (randomized; etcd's election
  // default, 5-10 heartbeats). Messages and proposals are handled as they arrive, not per tick:
  // the tick only drives timers, so a coarse one costs no latency. What an idle node costs is
  // thread wakeups per heartbeat exchange (aligned: one batch per peer per interval), hence the
  // interval. Tests use faster settings; a loaded machine needs slack here or leaders churn.
  absl::Duration tick_interval = absl::Milliseconds(100);
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  // A shard takes a snapshot after this many applied entries (0: never), or after this many
  // bytes of applied payload (0: no limit; large entries would otherwise keep a long log on
  // disk until the count is reached), then compacts its log, keeping `compaction_overhead`
  // entries behind the snapshot for slow followers, but no more than
  // `compaction_overhead_bytes` of their payload.
  uint64_t snapshot_entries = 10000;
  uint64_t snapshot_bytes = 256 << 20;
  uint64_t compaction_overhead = 1000;
  uint64_t compaction_overhead_bytes = 64 << 20;
  // A learner added with AddLearner is promoted to voter by the shard's leader once it is
  // within this many entries of the leader's commit index (see Raft::IsCaughtUp).
  uint64_t promotion_max_lag = 16;
  // Proposals of a shard queued in one loop iteration go into one log entry (up to 256 KiB):
  // one append, one replicated entry and one fsync'd record for many small proposals. The
  // state machine must accept packs: see AppliedEntry.
  bool pack_proposals = false;
  int apply_workers = 4;
  // Optional (must outlive the host): rounds of apply work, see ApplyRounds.
  ApplyRounds* apply_rounds = nullptr;
  // A shard with more than this many bytes committed but not yet applied stops taking Readys.
  uint64_t max_apply_backlog_bytes = 64 << 20;
  // A proposal larger than this is refused at once (InvalidArgument, logged as an error): an
  // append carries at least one whole entry and must fit one protobuf message (2 GiB, see
  // message_pieces.h) with its framing. The default holds SQLite's largest row
  // (SQLITE_MAX_LENGTH, 1,000,000,000 bytes by default) with room to spare; an entry of any
  // size up to it travels between nodes in pieces.
  uint64_t max_entry_bytes = uint64_t{3} << 29;  // 1.5 GiB
  // Proposals not committed within this time (plus a second per 8 MiB of payload) are
  // resolved with DeadlineExceeded.
  absl::Duration proposal_timeout = absl::Seconds(5);
  // The gRPC transport's settings (GrpcTransportFactory, grpc_node_host.h); a host started with
  // another transport ignores them.
  //
  // Snapshot payloads travel in chunks of this size (64 KiB to 1 MiB is sensible; receivers
  // refuse chunks above 4 MiB, snapshot_receipt.h).
  size_t snapshot_chunk_bytes = 256 << 10;
  // Checks a received snapshot payload whole before anything of it is recorded (see
  // SnapshotCheck); empty: not checked.
  SnapshotCheck check_snapshot;
  // Mutual TLS between nodes when all three PEM files are given (see GrpcTransportOptions).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;
  // The shared cluster key every node-to-node call must prove (peer_auth.h); empty: none.
  std::string cluster_key;
  // Called when another process with this node's id is alive (node_incarnation.h); null: the
  // process ends (ExitOnDuplicateNode). A test hook.
  std::function<void(const std::string& why)> on_duplicate_node;
  // Optional; must outlive the host.
  HostObserver* observer = nullptr;
  // The host's clock (ticks, proposal and membership deadlines, the snapshot policy) and the
  // clock and files of the GrpcTransport (GrpcTransportFactory, grpc_node_host.h); must
  // outlive the host.
  Env* env = Env::Default();
};

struct ShardInfo {
  uint64_t leader = 0;
  uint64_t term = 0;
  uint64_t commit = 0;
  // Applied by the state machine.
  uint64_t applied = 0;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
  uint64_t snapshot_index = 0;
  bool is_leader = false;
  // The current (latest appended) membership, with the learners waiting for promotion.
  v1::ConfState conf_state;
  // The membership as of the last committed entry handed to the state machine: a change
  // shown here is committed for good.
  v1::ConfState applied_conf_state;
  // Why this node applies nothing more to the shard (StateMachine::Apply), until it resumes
  // (NodeHost::ResumeShard) or the process restarts; empty while it applies.
  std::string halted;
  // What the shard waits for on this node (an entry its state machine may not apply yet,
  // ShardWaitStatus): nothing more of it is applied until it resumes, as for a halt, but
  // nothing failed; empty while it applies.
  std::string waiting;
};

// Builds the host's transport once the host knows which cluster it belongs to (the transport
// compares cluster ids at every handshake, cluster_identity.h). Called once, from Start().
using TransportFactory =
    std::function<std::unique_ptr<Transport>(std::shared_ptr<ClusterIdentity> cluster)>;

class NodeHost : private MessageHandler, private ApplyListener {
 public:
  // Runs on `store`, opened for config.node_id and config.shards (OpenHostLogStore): bootstraps
  // it if new, opens every shard's state machine (`factory`), builds the transport (`transport`)
  // and starts it, the apply workers and the Raft loop. StartNodeHost (grpc_node_host.h) does
  // this on the production store and transport.
  static absl::StatusOr<std::unique_ptr<NodeHost>> Start(NodeHostConfig config,
                                                         std::unique_ptr<RocksLogStore> store,
                                                         TransportFactory transport,
                                                         StateMachineFactory factory);
  // Stops cleanly (see Stop()).
  ~NodeHost() override;

  // Transport closed, threads joined, pending proposals Cancelled, store closed. Everything
  // acknowledged was already fsynced, so a later Start() loses nothing. Idempotent.
  void Stop();

  // Proposes `data` to `shard`; `done` is called exactly once, from a host thread.
  void Propose(uint64_t shard, std::string data, ProposalCallback done);
  // Blocking convenience: the index the entry was applied at, or the error.
  absl::StatusOr<uint64_t> ProposeAndWait(uint64_t shard, std::string data);

  // Membership changes of one shard (the caller runs them for every shard). Adding a node
  // records its address (carried in the change) on every member. Each call proposes the
  // change (even if the membership here already looks as asked: this node may be behind),
  // decided against the membership this node sees, and retries until it applies; a change
  // made meanwhile by someone else is never undone by a late try. OK once applied here;
  // DeadlineExceeded if not applied within `timeout` (the change may still apply later).
  //
  // AddNode adds a voter at once, or promotes a learner.
  absl::Status AddNode(uint64_t shard, uint64_t node, const std::string& address,
                       absl::Duration timeout = absl::Seconds(5));
  // AddLearner adds a learner marked for promotion: OK once that change applied here (or the
  // node is a voter here: promoted meanwhile). Whichever node leads the shard then proposes its
  // promotion to voter as soon as it has caught up (config.promotion_max_lag); the mark is part
  // of the membership, so this goes on across leader changes and restarts until the node is a
  // voter or removed. Watch ShardInfo::applied_conf_state to see it promoted.
  absl::Status AddLearner(uint64_t shard, uint64_t node, const std::string& address,
                          absl::Duration timeout = absl::Seconds(5));
  // Removes a voter or a learner.
  absl::Status RemoveNode(uint64_t shard, uint64_t node, absl::Duration timeout = absl::Seconds(5));
  // Asks the shard's leader (wherever it is) to hand leadership to `transferee`.
  void TransferLeadership(uint64_t shard, uint64_t transferee);
  // Takes a snapshot of the shard now (on its apply worker) and compacts its log.
  void RequestSnapshot(uint64_t shard);
  // Resumes a shard halted on this node (ShardInfo::halted), once its cause may be gone, as a
  // restart of the process would: on its apply worker the state machine is opened again
  // (StateMachine::Open says what it holds), the log's snapshot is installed when it is behind
  // the log's start, and the committed entries after what it holds are applied again from the
  // log, a bounded part at a time, before what came meanwhile. ShardInfo::halted clears once
  // they are; if applying fails again, the shard stays halted with the new reason. Nothing for
  // a shard that is not halted or is resuming already. Returns at once (posted to the loop).
  // A shard that waits (ShardInfo::waiting) resumes the same way, and by itself once its wait's
  // bound passed.
  void ResumeShard(uint64_t shard);

  ShardInfo GetShardInfo(uint64_t shard) const;
  // The node-to-node address of every node this host knows one of: its configured peers and
  // every node a membership change added with an address (kept across restarts).
  std::map<uint64_t, std::string> PeerAddresses() const;
  uint64_t node_id() const { return config_.node_id; }
  // The cluster this node belongs to (cluster_identity.h): 16 bytes, or empty while unknown.
  std::string cluster_id() const;
  int shards() const { return config_.shards; }
  // The transport when it is a GrpcTransport (fault injection, refusal counts), else nullptr.
  GrpcTransport* grpc_transport() const { return grpc_; }
  int bound_port() const;
  // Messages from the network refused because their sender may not send them to that shard
  // (sender_policy.h), since start.
  uint64_t refused_messages() const { return refused_messages_.load(std::memory_order_relaxed); }

 private:
  // Per-shard state owned by the Raft loop.
  struct Shard {
    uint64_t id = 0;
    ShardLog* log = nullptr;
    std::unique_ptr<RawNode> raw;
    // Membership as of the last committed entry handed to the apply worker.
    v1::ConfState applied_conf;
    // The latest conf changes handed to the apply worker that took effect, by the membership
    // version they made (ConfState.version): how ProposeConfChangeAndWait knows that one of its
    // tries is in. A few suffice; a try missed here (say behind a snapshot) is retried.
    std::map<uint64_t, v1::ConfChange> recent_conf_changes;
    static constexpr size_t kRecentConfChanges = 32;
    ApplyWorker* worker = nullptr;
    // The payload file of a received snapshot the core holds but the loop has not recorded yet
    // (the unstable one): the loop owns it until it is recorded or replaced.
    std::string unstable_snapshot_file;
    // When the shard, waiting (ShardWaitStatus), resumes by itself; InfiniteFuture: it does not
    // wait.
    absl::Time resume_at = absl::InfiniteFuture();
  };
  // Proposals of one shard waiting for the Raft loop (framed as single proposals, or bare
  // payloads when they are packed on the loop).
  struct ProposalQueue {
    std::vector<uint64_t> ids;
    std::vector<std::string> payloads;
  };

  NodeHost(NodeHostConfig config, std::unique_ptr<RocksLogStore> store);
  absl::Status Init(TransportFactory transport, StateMachineFactory factory);

  // MessageHandler (transport threads).
  void HandleMessages(std::vector<v1::Message> messages) override;
  void HandleUnreachable(uint64_t node) override;
  void HandleSnapshotStatus(uint64_t shard, uint64_t node, bool ok) override;
  void HandleRefused(const char* what) override;
  void HandleDuplicateNode(const std::string& why) override;
  void HandleSnapshot(v1::Message snapshot) override;

  // Steps a snapshot received whole (on the Raft loop) and removes its payload file unless the
  // core keeps the snapshot.
  void StepSnapshot(v1::Message m);

  // Runs `fn` on the Raft loop.
  void Post(std::function<void()> fn);
  void RunLoop();
  void StepIncoming(v1::Message m);
  // One iteration's Readys: staged, sent and committed, handed to the apply workers.
  void HandleReadies();
  using ShardReady = std::pair<Shard*, Ready>;
  // Steps of HandleReadies. Stages the Ready of every shard that has one and is not backlogged
  // (snapshot, entries, hard state) into the store's one batch; `sync`: one of them needs the
  // batch fsynced.
  std::vector<ShardReady> StageReadies(bool* sync);
  // Sends the messages that may leave before the batch is durable, commits it, sends the rest.
  void SendAndCommit(std::vector<ShardReady>& readies, bool sync);
  // The apply worker's task for a committed Ready (the Ready's payloads move into it); applies
  // its membership changes to the core on the way. `decoded`: scratch space.
  ApplyTask TaskFromReady(Shard& shard, Ready& rd, std::vector<DecodedProposal>& decoded);
  // Queues for a resuming shard the committed entries `from` to `through` again, read from the
  // log up to a bounded size, or the log's snapshot when `from` is compacted (see
  // ApplyListener::OnReplayNeeded).
  void EnqueueReplay(Shard& shard, uint64_t from, uint64_t through);
  // A committed membership change: applied to the core, remembered for the conf change waiters,
  // the sender policy (removed members) and the transport (the added node's address).
  void ApplyConfChange(Shard& shard, const v1::ConfChange& cc);
  // What GetShardInfo and PeerAddresses show, from the loop's state.
  void PublishShardInfo(const Shard& shard);
  // Proposes a shard's queued proposals as a few batches; resolves the refused ones.
  void ProposeQueued(uint64_t shard, ProposalQueue q);
  // On every tick: where this node leads a shard with a learner to promote that has caught
  // up, proposes the promotion (one conf change at a time, as the core requires).
  void PromoteCaughtUpLearners();
  // ApplyListener (apply worker threads).
  void OnApplied(uint64_t shard, uint64_t applied) override;
  void OnProposalApplied(uint64_t shard, uint64_t proposal_id, uint64_t index) override;
  void OnBacklogBelowLimit(uint64_t shard) override;
  void OnHalted(uint64_t shard, const std::string& reason) override;
  void OnWaiting(uint64_t shard, const std::string& reason, absl::Duration at_most) override;
  // On the loop: queues the resume of `shard` (ResumeShard).
  void EnqueueResume(Shard& s);
  void OnReplayNeeded(uint64_t shard, uint64_t from, uint64_t through) override;
  void OnResumed(uint64_t shard) override;
  void OnSnapshotTaken(uint64_t shard, v1::SnapshotMetadata meta, std::string file,
                       uint64_t keep) override;
  absl::Status ProposeConfChangeAndWait(uint64_t shard, const v1::ConfChange& cc,
                                        absl::Duration timeout);

  const NodeHostConfig config_;
  std::unique_ptr<RocksLogStore> store_;
  std::shared_ptr<ClusterIdentity> cluster_;
  std::unique_ptr<Transport> transport_;
  GrpcTransport* grpc_ = nullptr;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::unique_ptr<ApplyWorker>> workers_;
  // Who was removed from each shard (and not added since), for sender_policy.h; kept in the
  // store's meta ("removed/<shard>/<node>") across restarts. Raft loop only once started.
  std::vector<std::set<uint64_t>> removed_;
  std::atomic<uint64_t> refused_messages_{0};
  // Every peer address known (configured or learnt from membership changes); Raft loop only
  // once started.
  std::map<uint64_t, std::string> addresses_;

  // Inbox of the Raft loop.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<v1::Message> incoming_;
  std::vector<std::function<void()>> tasks_;
  // Proposals by shard, and the shards that have some, in arrival order.
  std::vector<ProposalQueue> proposals_;
  std::vector<uint64_t> proposal_shards_;
  std::thread loop_;
  bool stopped_ = false;

  // Proposals this node made that have not ended (set by Init).
  std::unique_ptr<PendingProposals> pending_;

  // For GetShardInfo (written by the loop and the workers).
  mutable std::mutex info_mu_;
  std::vector<ShardInfo> info_;
  std::map<uint64_t, std::string> published_addresses_;  // addresses_, for PeerAddresses()
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_NODE_HOST_H_
