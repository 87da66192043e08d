// GrpcTransport: the Transport between NodeHosts, over gRPC (proto/transport.proto).
//
// Each pair of nodes shares ONE bidirectional `Stream` call carrying batches of messages of all
// shards both ways (split to stay under the message size limit; a message larger than a batch,
// an append with a large entry, goes in pieces between the other shards' messages, see
// message_pieces.h): the node with the lower id
// dials it as soon as it learns the peer's address and keeps it open; the higher id answers on
// the stream it accepted. When the call breaks the peer is reported unreachable, queued
// messages are dropped (Raft retransmits) and the dialer re-opens it with exponential backoff.
// Per peer a sender thread writes batches; a thread
// sends snapshots on `SendSnapshot` in chunks read from the payload's file (snapshot_file.h);
// gRPC's flow control paces the writes. The receiver takes them in within bounds
// (snapshot_receipt.h: one per shard at a time, free disk checked, bounded chunks), checks size,
// checksum and the whole payload (GrpcTransportOptions::check_snapshot), and only then hands
// the MSG_SNAP, naming the payload's file, to the host (MessageHandler::HandleSnapshot).
//
// Received input is validated (addressed to this node, sane chunk offsets and sizes); anything
// malformed is dropped and logged, never a crash.
//
// Who may speak (DESIGN.md, "Security model"). Every call opens with a handshake
// (proto/transport.proto): with a cluster key (GrpcTransportOptions::cluster_key) both sides of
// a `Stream` prove they hold it over fresh nonces of both, and the sender of a snapshot proves it
// over the receiver's nonce and the snapshot's header (peer_auth.h); a call without a valid proof
// is refused before anything it carries reaches the handler. Both sides of a stream also compare
// their shard counts and cluster ids (cluster_identity.h: a node without an id takes its peer's),
// and the acceptor admits a stream only if no other live process claims the dialer's id
// (node_incarnation.h: handshakes carry each process's incarnation, idle streams carry
// keepalives; a process refused as a duplicate is told, and so is one that asks with Identify).
// On an accepted stream every message must come from the stream's peer and be addressed
// to this node, or it is dropped, logged and counted (refusals()); the host then checks
// membership (node_host.h). Optional mutual TLS (GrpcTransportOptions::tls_*): both sides present
// certificates signed by the cluster's CA, and each certificate must name its node's id as a
// subjectAltName DNS entry `node-<id>.marmot` (checked both ways for the ids the call claims, so
// a member cannot speak as another); it can be combined with the key.
//
// Fault injection for tests: SetFaults() drops or delays this node's outgoing traffic,
// per destination (a one-way partition blocks one direction only).
#ifndef MARMOT_RAFT_HOST_GRPC_TRANSPORT_H_
#define MARMOT_RAFT_HOST_GRPC_TRANSPORT_H_

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "raft/host/env.h"
#include "raft/host/state_machine.h"
#include "raft/host/transport.h"

namespace grpc {
class ChannelCredentials;
class ClientContext;
class Server;
}  // namespace grpc
namespace marmot::raft::transport::v1 {
class IdentifyResponse;
class MessageBatch;
}  // namespace marmot::raft::transport::v1

namespace marmot::raft::host {

class ClusterIdentity;
class ClusterKey;
class StreamIntake;
struct StreamOrigin;

struct GrpcTransportOptions {
  uint64_t node_id = 0;
  // host:port to listen on; port 0 picks a free one (see bound_port()).
  std::string bind_address;
  // The snapshots folder: payloads sent are read from it, payloads received written to it.
  std::string snapshot_dir;
  // Checks a received payload whole before it is handed to the host; empty: not checked.
  SnapshotCheck check_snapshot;
  // Upper bound of one gRPC message (a batch, a piece or a chunk), both directions. It does
  // not bound Raft messages: those larger than max_batch_bytes travel in pieces.
  int max_message_bytes = 64 << 20;
  // Batches are cut at this size, and large messages into pieces of it (lowered if it does
  // not fit max_message_bytes with the framing).
  size_t max_batch_bytes = 4 << 20;
  size_t snapshot_chunk_bytes = 256 << 10;
  // Messages queued for one peer beyond which new ones are dropped; the same count, and
  // max_held_bytes, for the messages waiting behind a large message in pieces.
  size_t max_queued_messages = 8192;
  uint64_t max_held_bytes = 256 << 20;
  absl::Duration min_backoff = absl::Milliseconds(20);
  absl::Duration max_backoff = absl::Seconds(1);
  // Mutual TLS when all three are set (PEM files): this node's certificate and key, and the
  // CA that signed every node's certificate. Otherwise plaintext. The certificate must carry
  // the DNS name `node-<node_id>.marmot` besides those peers dial (see above).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;
  // The shared cluster key (peer_auth.h); empty: none, calls are not authenticated.
  std::string cluster_key;
  // This node's shard count; a peer announcing another one is refused (0: not checked).
  uint64_t shards = 0;
  // A caller that has not completed its handshake by then is cut off: an unauthenticated
  // caller that stalls must not hold a server thread for as long as it keeps its connection.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // The cluster this node belongs to (cluster_identity.h), compared when a stream opens; null:
  // not compared.
  std::shared_ptr<ClusterIdentity> cluster;
  // This process's incarnation (node_incarnation.h); 0: the transport draws one.
  uint64_t incarnation = 0;
  // A stream this side wrote nothing to for keepalive_interval gets an empty batch; a stream not
  // heard from for liveness_window no longer counts as proof that its peer's process is alive
  // (node_incarnation.h). The window must hold a few intervals.
  absl::Duration keepalive_interval = absl::Milliseconds(500);
  absl::Duration liveness_window = absl::Seconds(2);
  // The clock of every timeout, backoff, keepalive and liveness window above, and the files
  // (snapshot payloads, TLS files). gRPC's own deadlines stay on the system clock. Must
  // outlive the transport.
  Env* env = Env::Default();
};

// What the transport refused since it started.
struct TransportRefusals {
  // Calls whose handshake failed: no or a wrong cluster key proof, another shard count or
  // cluster (on either side of the call), a second process with a live node's id, a call not
  // meant for this node.
  uint64_t calls = 0;
  // Messages dropped on an accepted call because they claimed another sender or receiver.
  uint64_t messages = 0;
};

// What a test does to this node's outgoing traffic.
struct TransportFaults {
  // Destinations whose traffic is dropped (messages and snapshots).
  std::set<uint64_t> blocked;
  // Probability that a message is dropped.
  double drop_probability = 0;
  // Added before each batch is written.
  absl::Duration delay = absl::ZeroDuration();
};

class GrpcTransport : public Transport {
 public:
  explicit GrpcTransport(GrpcTransportOptions options);
  ~GrpcTransport() override;

  absl::Status Start(MessageHandler* handler) override;
  void Stop() override;
  void SetPeerAddress(uint64_t node, const std::string& address) override;
  void Send(std::vector<v1::Message> messages) override;

  void SetFaults(const TransportFaults& faults);
  int bound_port() const { return bound_port_; }
  TransportRefusals refusals() const;
  // The peers this node has an open, authenticated stream with now.
  std::set<uint64_t> ConnectedPeers() const;
  uint64_t incarnation() const { return incarnation_; }

 private:
  class Service;
  class Peer;
  struct Link;
  class HandshakeDeadlines;

  // Requires mu_. Creates the peer if its address is known or `create`.
  Peer* GetPeer(uint64_t node, bool create);
  // Asks every known peer, a liveness window after Start(), whether another live process claims
  // this node's id (proto/transport.proto, Identify); reports one to the handler.
  void RunIdentityProbe();
  // One Identify call to `node`: its answer if it names a live process (proven, with a key).
  std::optional<transport::v1::IdentifyResponse> AskIdentity(uint64_t node,
                                                             const std::string& address);
  // For Identify: the origin of a live stream with node `node` of another incarnation.
  std::optional<StreamOrigin> LiveOtherThan(uint64_t node, uint64_t incarnation);
  // Where this node listens, as its handshakes say.
  std::string AdvertisedAddress() const;
  // Attaches a stream `node` dialed, unless a live stream of another process claiming `node` is
  // open (node_incarnation.h): then why not.
  std::string Admit(uint64_t node, std::shared_ptr<Link> link);
  void Detach(uint64_t node, const std::shared_ptr<Link>& link);
  // Hands what a batch read from a stream delivers (stream_intake.h) to the handler, and counts
  // what it refused.
  void Deliver(StreamIntake* intake, transport::v1::MessageBatch batch);
  TransportFaults faults() const;
  // Counts and logs (rate-limited: a flood of bad calls must not flood the log) a refused call;
  // `reason` is the kind reported to MessageHandler::HandleRefused.
  void RefuseCall(absl::string_view what, const std::string& peer, absl::string_view why,
                  const char* reason = "call");
  // Counts a call this node refused as the dialer (the acceptor's answer disqualified it).
  void CountRefusal(const char* reason);
  // The stream this node dialed to `node` (`where`) was refused because another process with
  // this node's id is alive there (`why`, from `node`). Reported to the handler once `node` has
  // refused for two liveness windows without admitting a stream meanwhile (AdmittedBy), which
  // rules out this process's own restart (node_incarnation.h); logged before.
  void RefusedAsDuplicate(uint64_t node, const std::string& where, const std::string& why);
  void AdmittedBy(uint64_t node);

  // Room in a gRPC message for what wraps a batch's messages or a piece's bytes.
  static constexpr int kFramingBytes = 64 << 10;

  const GrpcTransportOptions options_;
  const uint64_t incarnation_;
  // Since when each peer refuses this process's streams as a duplicate (under mu_).
  std::map<uint64_t, absl::Time> refused_as_duplicate_since_;
  // bind_address, its port filled in by Start() when it was 0 (under mu_).
  std::string advertised_address_;
  std::atomic<bool> duplicate_reported_{false};
  // Parsed from options_.cluster_key by Start(); null without a key.
  std::unique_ptr<ClusterKey> key_;
  // Mutual TLS is on (set by Start()): peers' certificates must name their node ids.
  bool tls_ = false;
  std::atomic<uint64_t> refused_calls_{0};
  std::atomic<uint64_t> refused_messages_{0};
  // max_batch_bytes, lowered to fit max_message_bytes with the framing.
  const size_t batch_bytes_;
  MessageHandler* handler_ = nullptr;
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials_;
  std::unique_ptr<HandshakeDeadlines> deadlines_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int bound_port_ = 0;

  mutable std::mutex mu_;
  bool started_ = false;
  bool stopped_ = false;
  std::map<uint64_t, std::string> addresses_;
  std::map<uint64_t, std::unique_ptr<Peer>> peers_;
  TransportFaults faults_;
  std::thread probe_thread_;
  std::condition_variable probe_cv_;  // stopped_
  grpc::ClientContext* probe_ctx_ = nullptr;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_GRPC_TRANSPORT_H_
