#include "raft/host/grpc_transport.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <optional>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "proto/transport.grpc.pb.h"
#include "raft/host/cluster_identity.h"
#include "raft/host/env.h"
#include "raft/host/message_pieces.h"
#include "raft/host/node_incarnation.h"
#include "raft/host/peer_auth.h"
#include "raft/host/snapshot_chunk_checks.h"
#include "raft/host/snapshot_file.h"
#include "raft/host/snapshot_receipt.h"
#include "raft/host/stream_intake.h"

namespace marmot::raft::host {

namespace tv1 = ::marmot::raft::transport::v1;

namespace {

grpc::ChannelArguments ChannelArgs(const GrpcTransportOptions& o) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(o.max_message_bytes);
  args.SetMaxSendMessageSize(o.max_message_bytes);
  // gRPC's default reconnect backoff starts at 1 s and grows to 2 min; a restarted peer must
  // be reachable again within an election timeout or two.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(o.max_backoff)));
  // A peer that vanished without closing its connection (power loss, partition) is noticed
  // within seconds instead of at the TCP timeout.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  return args;
}

// With TLS, a node's certificate must name its id: a subjectAltName DNS entry
// `node-<id>.marmot`, beside the names or addresses peers dial it at. Without it any member could
// speak as another; the CA vouches for the name, the handshake for the id.
std::string CertificateName(uint64_t node) { return absl::StrCat("node-", node, ".marmot"); }

bool CertificateNames(const std::shared_ptr<const grpc::AuthContext>& auth, uint64_t node) {
  if (auth == nullptr) return false;
  const std::string want = CertificateName(node);
  for (const grpc::string_ref& v : auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    if (absl::string_view(v.data(), v.size()) == want) return true;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Sending side: one Peer per destination node.

// One direction of a node pair's stream, for the sender: a write function and whether the
// stream is still usable. The thread that owns the call marks it dead (under write_mu) before
// finishing the call, so no write can touch a finished call.
struct GrpcTransport::Link {
  std::mutex write_mu;
  bool dead = false;
  std::function<bool(const tv1::MessageBatch&)> write;
  // The process at the other end, as its handshake described it (last_heard unused: see below).
  StreamOrigin origin;
  // When the stream last carried something from the other end (absl::ToUnixNanos of the
  // Env's MonotonicNow).
  std::atomic<int64_t> last_heard_ns{0};
  // Ends the call (accepted streams only). Called under the Peer's mu_ while the link is attached;
  // the call's handler detaches it (under the same lock) before the call ends.
  std::function<void()> cancel;

  void Heard(absl::Time now) {
    last_heard_ns.store(absl::ToUnixNanos(now), std::memory_order_relaxed);
  }
  StreamOrigin Origin() const {
    StreamOrigin o = origin;
    o.last_heard = absl::FromUnixNanos(last_heard_ns.load(std::memory_order_relaxed));
    return o;
  }
};

class GrpcTransport::Peer {
 public:
  Peer(GrpcTransport* t, uint64_t id, std::string address)
      : t_(t),
        env_(t->options_.env),
        id_(id),
        dial_(t->options_.node_id < id),
        address_(std::move(address)) {
    if (dial_) conn_thread_ = std::thread([this] { RunConnection(); });
    msg_thread_ = std::thread([this] { RunMessages(); });
    snap_thread_ = std::thread([this] { RunSnapshots(); });
  }
  ~Peer() { Stop(); }

  void Enqueue(v1::Message m) {
    std::lock_guard<std::mutex> l(mu_);
    auto& q = m.type() == v1::MSG_SNAP ? snaps_ : msgs_;
    if (q.size() >= t_->options_.max_queued_messages) {
      VLOG(1) << "[node " << t_->options_.node_id << "] queue to node " << id_
              << " full, dropping a message of shard " << m.shard();
      return;
    }
    // Only an empty queue can have its thread waiting; it takes everything queued meanwhile.
    if (q.empty()) (&q == &snaps_ ? snap_cv_ : msg_cv_).notify_one();
    q.push_back(std::move(m));
  }

  void SetAddress(const std::string& address) {
    std::lock_guard<std::mutex> l(mu_);
    if (address == address_) return;
    address_ = address;
    stub_.reset();
    if (conn_ctx_ != nullptr) conn_ctx_->TryCancel();  // reconnect to the new address
  }

  // The accepting side: the peer dialed us; our messages to it go back on its stream.
  //
  // More than one stream of the pair can be open at once: the peer restarted and dialed again
  // before the old connection was noticed dead, or (without a cluster key) someone else opened
  // one in its name. The newest carries our messages; when it closes, the newest of those still
  // open takes over. Replacing the link outright, as this once did, let a second stream that
  // opened and closed cut the pair apart until a restart: the real dialer's stream stayed
  // open, so it never dialed again, yet nothing was written to it any more.
  void Attach(std::shared_ptr<Link> link) {
    std::lock_guard<std::mutex> l(mu_);
    links_.push_back(std::move(link));
  }
  // Attach for a stream the peer dialed, unless another process claiming the peer's id is alive
  // on an open one (node_incarnation.h): then why not. Streams of other incarnations that the
  // new one replaces are ended.
  std::string Admit(std::shared_ptr<Link> link) {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<StreamOrigin> open;
    for (const auto& o : links_) open.push_back(o->Origin());
    const Admission a = AdmitStream(id_, link->Origin(), open, address_, env_->MonotonicNow(),
                                    t_->options_.liveness_window);
    if (!a.refusal.empty()) return a.refusal;
    for (size_t i : a.replaced) {
      LOG(INFO) << "[node " << t_->options_.node_id << "] node " << id_ << " is back (listening at "
                << link->origin.bind_address << "); ending its stream from "
                << links_[i]->origin.peer << " (listening at " << links_[i]->origin.bind_address
                << "), of another process";
      if (links_[i]->cancel) links_[i]->cancel();
    }
    links_.push_back(std::move(link));
    return "";
  }
  void Detach(const std::shared_ptr<Link>& link) {
    std::lock_guard<std::mutex> l(mu_);
    links_.erase(std::remove(links_.begin(), links_.end(), link), links_.end());
  }
  // An open (authenticated) stream of the pair exists.
  bool Connected() {
    std::lock_guard<std::mutex> l(mu_);
    return !links_.empty();
  }
  // A stream of the pair, live (heard within the liveness window), whose other end is not
  // `incarnation`: its origin.
  std::optional<StreamOrigin> LiveOtherThan(uint64_t incarnation) {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& link : links_) {
      StreamOrigin o = link->Origin();
      if (o.incarnation != 0 && o.incarnation != incarnation &&
          env_->MonotonicNow() - o.last_heard < t_->options_.liveness_window) {
        return o;
      }
    }
    return std::nullopt;
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
      stopping_ = true;
      if (conn_ctx_ != nullptr) conn_ctx_->TryCancel();
      if (snap_ctx_ != nullptr) snap_ctx_->TryCancel();
      cv_.notify_all();
      msg_cv_.notify_all();
      snap_cv_.notify_all();
    }
    if (conn_thread_.joinable()) conn_thread_.join();
    msg_thread_.join();
    snap_thread_.join();
  }

 private:
  // Sleeps up to `d`; false if stopping.
  bool SleepFor(absl::Duration d) {
    std::unique_lock<std::mutex> l(mu_);
    return !env_->WaitFor(l, cv_, d, [this] { return stopping_; });
  }

  // Requires mu_. Null without an address.
  std::shared_ptr<tv1::RaftTransport::Stub> StubLocked() {
    if (stub_ == nullptr && !address_.empty()) {
      stub_ = tv1::RaftTransport::NewStub(
          grpc::CreateCustomChannel(address_, t_->channel_credentials_, ChannelArgs(t_->options_)));
    }
    return stub_;
  }

  // The dialing side (the lower node id of the pair): keeps one bidirectional stream open,
  // reads the peer's batches from it, re-opens it with backoff when it breaks.
  void RunConnection() {
    const auto& o = t_->options_;
    absl::Duration backoff = o.min_backoff;
    for (;;) {
      std::shared_ptr<tv1::RaftTransport::Stub> stub;
      auto ctx = std::make_unique<grpc::ClientContext>();
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stopping_) break;
        stub = StubLocked();
        if (stub != nullptr) conn_ctx_ = ctx.get();
      }
      bool connected = false;
      const absl::Time opened = env_->MonotonicNow();
      if (stub != nullptr) {
        auto stream = stub->Stream(ctx.get());
        auto link = std::make_shared<Link>();
        std::string why;
        const char* reason = "call";
        if (Handshake(ctx.get(), stream.get(), &link->origin, &why, &reason)) {
          connected = true;
          link->write = [s = stream.get()](const tv1::MessageBatch& b) { return s->Write(b); };
          link->Heard(env_->MonotonicNow());
          Attach(link);
          VLOG(1) << "[node " << o.node_id << "] stream to node " << id_ << " open";
          tv1::MessageBatch b;
          StreamIntake intake(o.node_id, id_);
          for (bool first = true; stream->Read(&b); first = false) {
            if (first) t_->AdmittedBy(id_);  // the peer answered on it: not refused
            link->Heard(env_->MonotonicNow());
            t_->Deliver(&intake, std::move(b));
          }
          {
            std::lock_guard<std::mutex> wl(link->write_mu);
            link->dead = true;
          }
          Detach(link);
        }
        {
          std::lock_guard<std::mutex> l(mu_);
          conn_ctx_ = nullptr;
        }
        // A call this side gives up on is cancelled; one that ended (the peer closed it or
        // refused us: a Read failed) is finished as it is, so that the peer's status is read.
        if (!why.empty()) ctx->TryCancel();
        grpc::Status st = stream->Finish();
        const std::string where = absl::StrCat("stream to node ", id_, " at ", AddressNow());
        if (!why.empty()) {
          // Not a network problem: the two nodes disagree on who may talk (key, shard count,
          // cluster).
          t_->CountRefusal(reason);
          LOG_EVERY_N(WARNING, 30) << "[node " << o.node_id << "] " << where << " refused: " << why
                                   << " (peer: " << st.error_message() << ")";
        } else if (st.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
          t_->RefusedAsDuplicate(id_, where, st.error_message());
        } else if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                   st.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                   st.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
          LOG_EVERY_N(WARNING, 30) << "[node " << o.node_id << "] " << where
                                   << " refused by that node: " << st.error_message();
        }
        VLOG(1) << "[node " << o.node_id << "] " << where << " closed: " << st.error_message();
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stopping_) break;
      }
      t_->handler_->HandleUnreachable(id_);
      if (connected && env_->MonotonicNow() - opened > absl::Seconds(1)) backoff = o.min_backoff;
      if (!SleepFor(backoff)) break;
      backoff = std::min(backoff * 2, o.max_backoff);
    }
  }

  std::string AddressNow() {
    std::lock_guard<std::mutex> l(mu_);
    return address_;
  }

  // The dialer's side of a stream's handshake (proto/transport.proto, peer_auth.h,
  // cluster_identity.h). Fills `origin` from the acceptor's answer. False if the stream broke or
  // the acceptor must not be talked to; then `why` says why and `reason` is the refusal's kind
  // ("call", "shards", "cluster": HandleRefused), unless the stream merely broke (the acceptor
  // refused us or is down: Finish() tells).
  bool Handshake(grpc::ClientContext* ctx,
                 grpc::ClientReaderWriter<tv1::MessageBatch, tv1::MessageBatch>* stream,
                 StreamOrigin* origin, std::string* why, const char** reason) {
    const auto& o = t_->options_;
    const ClusterKey* key = t_->key_.get();
    ClusterIdentity* cluster = o.cluster.get();
    const std::string client_nonce = key != nullptr ? FreshNonce() : "";
    tv1::MessageBatch hello;
    hello.set_from_node(o.node_id);
    hello.set_to_node(id_);
    hello.mutable_handshake()->set_nonce(client_nonce);
    hello.mutable_handshake()->set_shards(o.shards);
    if (cluster != nullptr) hello.mutable_handshake()->set_cluster_id(cluster->OfferWhenDialing());
    hello.mutable_handshake()->set_incarnation(t_->incarnation_);
    hello.mutable_handshake()->set_bind_address(t_->AdvertisedAddress());
    tv1::MessageBatch reply;
    if (!stream->Write(hello) || !stream->Read(&reply)) return false;
    if (!reply.has_handshake() || reply.from_node() != id_ || reply.to_node() != o.node_id) {
      *why = "the peer's first message is not a handshake of this node pair";
      return false;
    }
    const tv1::Handshake& h = reply.handshake();
    const std::string peer = absl::StrCat("node ", id_, " (listening at ", h.bind_address(), ")");
    if (o.shards != 0 && h.shards() != 0 && h.shards() != o.shards) {
      *why = absl::StrCat(peer, " runs ", h.shards(), " shards, this node (", o.node_id, ") ",
                          o.shards);
      *reason = "shards";
      return false;
    }
    if (cluster != nullptr) {
      if (absl::Status s = cluster->Check(h.cluster_id()); !s.ok()) {
        *why = absl::StrCat(peer, " ", s.message());
        *reason = "cluster";
        return false;
      }
    }
    if (t_->tls_ && !CertificateNames(ctx->auth_context(), id_)) {
      *why = absl::StrCat("the certificate of the node at ", AddressNow(), " does not name ",
                          CertificateName(id_));
      return false;
    }
    if (key == nullptr) {
      if (!h.nonce().empty()) {
        *why = absl::StrCat("node ", id_, " requires a cluster key and this node has none");
        return false;
      }
    } else if (h.nonce().size() != kNonceBytes ||
               !SameProof(h.proof(), StreamServerProof(*key, client_nonce, h.nonce(), o.node_id,
                                                       id_, o.shards))) {
      // The acceptor proves the key first: a node that dialed an impostor (a wrong address) must
      // not go on to send it the cluster's traffic, nor take its cluster id.
      *why = absl::StrCat("node ", id_, " did not prove the cluster key");
      return false;
    }
    if (cluster != nullptr) {
      if (absl::Status s = cluster->Settle(h.cluster_id(), id_, h.bind_address()); !s.ok()) {
        *why = absl::StrCat(peer, " ", s.message());
        *reason = "cluster";
        return false;
      }
    }
    *origin = {
        .incarnation = h.incarnation(), .bind_address = h.bind_address(), .peer = ctx->peer()};
    if (key == nullptr) return true;
    tv1::MessageBatch proof;
    proof.set_from_node(o.node_id);
    proof.set_to_node(id_);
    proof.mutable_handshake()->set_proof(
        StreamClientProof(*key, client_nonce, h.nonce(), o.node_id, id_, o.shards));
    return stream->Write(proof);
  }

  // Writes queued messages, batched, on whichever stream currently links the pair. A message
  // larger than a batch goes in pieces, one piece per round, with the other shards' messages
  // of each round before it (message_pieces.h).
  void RunMessages() {
    const auto& o = t_->options_;
    absl::BitGen rng;
    PeerOutboxOptions oo;
    oo.batch_bytes = t_->batch_bytes_;
    oo.max_held_messages = o.max_queued_messages;
    oo.max_held_bytes = o.max_held_bytes;
    PeerOutbox outbox(oo);
    // The stream the large message in progress started on: its receiver holds the first pieces.
    std::shared_ptr<Link> piece_link;
    // The stream last written to, and when: an idle one gets a keepalive.
    std::shared_ptr<Link> written_link;
    absl::Time written_at = absl::InfinitePast();
    for (;;) {
      std::deque<v1::Message> pending;
      std::shared_ptr<Link> link;
      {
        std::unique_lock<std::mutex> l(mu_);
        const absl::Duration idle =
            written_link == nullptr
                ? o.keepalive_interval
                : std::clamp(written_at + o.keepalive_interval - env_->MonotonicNow(),
                             absl::Milliseconds(10), o.keepalive_interval);
        env_->WaitFor(l, msg_cv_, idle,
                      [&] { return stopping_ || !msgs_.empty() || !outbox.empty(); });
        if (stopping_) break;
        pending.swap(msgs_);
        if (!links_.empty()) link = links_.back();
      }
      TransportFaults f = t_->faults();
      if (f.blocked.count(id_)) {
        outbox.Clear();
        continue;
      }
      if (pending.empty() && outbox.empty()) {
        // Nothing to send: an empty batch when the stream was idle for a keepalive interval, so
        // that the other end knows this process is alive (node_incarnation.h).
        if (link == written_link && env_->MonotonicNow() - written_at < o.keepalive_interval) {
          continue;
        }
        written_link.reset();  // until written to: no spinning on a dead or missing stream
        if (link == nullptr) continue;
        std::lock_guard<std::mutex> wl(link->write_mu);
        if (link->dead) continue;
        tv1::MessageBatch keepalive;
        keepalive.set_from_node(o.node_id);
        keepalive.set_to_node(id_);
        if (!link->write(keepalive)) {
          link->dead = true;
          t_->handler_->HandleUnreachable(id_);
          continue;
        }
        written_link = link;
        written_at = env_->MonotonicNow();
        continue;
      }
      if (f.delay > absl::ZeroDuration() && !SleepFor(f.delay)) break;
      if (link == nullptr) {
        // Not connected (yet): Raft resends; tell it the peer is unreachable.
        outbox.Clear();
        t_->handler_->HandleUnreachable(id_);
        if (!SleepFor(o.min_backoff)) break;
        continue;
      }
      // A new stream's receiver never saw the first pieces: the large message starts over when
      // Raft sends it again.
      if (outbox.sending_large() && piece_link != link) outbox.Clear();
      for (auto& m : pending) {
        if (f.drop_probability > 0 && absl::Bernoulli(rng, f.drop_probability)) continue;
        outbox.Add(std::move(m));
      }
      std::lock_guard<std::mutex> wl(link->write_mu);
      bool ok = !link->dead;
      tv1::MessageBatch batch;
      auto write = [&] {
        batch.set_from_node(o.node_id);
        batch.set_to_node(id_);
        ok = link->write(batch);
      };
      while (ok && outbox.NextBatch(&batch)) write();
      if (ok && outbox.NextPiece(&batch)) {
        write();
        piece_link = link;
      }
      if (ok) {
        written_link = link;
        written_at = env_->MonotonicNow();
      } else {
        // The stream's owner sees the break too and re-opens (or the peer re-dials).
        link->dead = true;
        outbox.Clear();
        t_->handler_->HandleUnreachable(id_);
      }
    }
  }

  void RunSnapshots() {
    const auto& o = t_->options_;
    for (;;) {
      v1::Message m;
      {
        std::unique_lock<std::mutex> l(mu_);
        snap_cv_.wait(l, [this] { return stopping_ || !snaps_.empty(); });
        if (stopping_) break;
        m = std::move(snaps_.front());
        snaps_.pop_front();
      }
      const uint64_t shard = m.shard();
      if (t_->faults().blocked.count(id_)) {
        t_->handler_->HandleSnapshotStatus(shard, id_, false);
        continue;
      }
      // The payload is the file the snapshot's data names (snapshot_file.h), read a chunk at a
      // time; a file gone meanwhile (a newer snapshot replaced it) fails this send, and Raft
      // sends the newer one.
      const std::string file = m.snapshot().data();
      m.mutable_snapshot()->clear_data();
      std::unique_ptr<FileSnapshotSource> payload;
      uint64_t size = 0, sum = kPayloadChecksumSeed;
      absl::Status read = absl::OkStatus();
      if (!file.empty()) {
        absl::StatusOr<std::unique_ptr<FileSnapshotSource>> opened =
            FileSnapshotSource::Open(o.snapshot_dir + "/" + file, env_);
        read = opened.status();
        if (opened.ok()) payload = *std::move(opened);
      }
      if (payload != nullptr) {
        size = payload->size();
        std::string bytes;
        for (uint64_t off = 0; off < size && read.ok(); off += bytes.size()) {
          read =
              payload->ReadAt(off, std::min<uint64_t>(o.snapshot_chunk_bytes, size - off), &bytes);
          sum = PayloadChecksum(sum, bytes.data(), bytes.size());
        }
      }
      if (!read.ok()) {
        LOG(WARNING) << "[shard " << shard << " node " << o.node_id
                     << "] cannot send the snapshot at " << m.snapshot().metadata().index()
                     << " to node " << id_ << ": " << read;
        t_->handler_->HandleSnapshotStatus(shard, id_, false);
        continue;
      }
      grpc::ClientContext ctx;
      std::shared_ptr<tv1::RaftTransport::Stub> stub;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stopping_) break;
        stub = StubLocked();
        if (stub != nullptr) snap_ctx_ = &ctx;
      }
      if (stub == nullptr) {
        LOG(WARNING) << "[shard " << shard << " node " << o.node_id << "] no address for node "
                     << id_ << ", cannot send a snapshot";
        t_->handler_->HandleSnapshotStatus(shard, id_, false);
        continue;
      }
      auto writer = stub->SendSnapshot(&ctx);
      tv1::SnapshotChunk chunk;
      chunk.set_from_node(o.node_id);
      chunk.set_to_node(id_);
      *chunk.mutable_header() = m;
      chunk.set_total_size(size);
      chunk.set_checksum(sum);
      // The receiver speaks first, with the nonce our proof must cover.
      std::string why;
      tv1::SnapshotAck challenge;
      bool ok = writer->Read(&challenge) && challenge.has_handshake();
      if (ok && t_->tls_ && !CertificateNames(ctx.auth_context(), id_)) {
        why = absl::StrCat("its certificate does not name ", CertificateName(id_), "; ");
        ok = false;
      }
      if (ok) why = ProveSnapshot(challenge.handshake(), &chunk);
      ok = ok && why.empty();
      uint64_t off = 0;
      while (ok) {
        const uint64_t n = std::min<uint64_t>(o.snapshot_chunk_bytes, size - off);
        chunk.set_offset(off);
        if (n > 0) {
          read = payload->ReadAt(off, n, chunk.mutable_data());
          if (!read.ok()) {
            why = absl::StrCat(read.message(), "; ");
            ok = false;
            break;
          }
        }
        off += n;
        chunk.set_last(off == size);
        // Write blocks while the receiver's flow-control window is full.
        ok = writer->Write(chunk);
        chunk.Clear();
        if (off == size) break;
      }
      tv1::SnapshotAck ack;
      if (ok) ok = writer->WritesDone() && writer->Read(&ack);
      // Stopped on our side (no proof, the file unreadable): the receiver still waits for
      // chunks. Otherwise Finish() brings the receiver's answer (why it refused, say).
      if (!why.empty()) ctx.TryCancel();
      grpc::Status st = writer->Finish();
      {
        std::lock_guard<std::mutex> l(mu_);
        snap_ctx_ = nullptr;
      }
      const bool delivered = ok && st.ok() && ack.ok();
      LOG(INFO) << "[shard " << shard << " node " << o.node_id << "] snapshot at "
                << m.snapshot().metadata().index() << " (" << size << " bytes) to node " << id_
                << (delivered ? " delivered"
                              : " failed: " + why + st.error_message() + ack.error());
      t_->handler_->HandleSnapshotStatus(shard, id_, delivered);
    }
  }

  // Fills the first chunk's handshake for the receiver's `challenge`; what is wrong, or empty.
  std::string ProveSnapshot(const tv1::Handshake& challenge, tv1::SnapshotChunk* first) {
    const auto& o = t_->options_;
    if (o.shards != 0 && challenge.shards() != 0 && challenge.shards() != o.shards) {
      return absl::StrCat("node ", id_, " runs ", challenge.shards(), " shards, this node ",
                          o.shards, "; ");
    }
    first->mutable_handshake()->set_shards(o.shards);
    if (t_->key_ == nullptr) {
      if (!challenge.nonce().empty()) {
        return absl::StrCat("node ", id_, " requires a cluster key and this node has none; ");
      }
      return "";
    }
    if (challenge.nonce().size() != kNonceBytes) {
      return absl::StrCat("node ", id_, " does not use a cluster key; ");
    }
    const v1::Message& h = first->header();
    first->mutable_handshake()->set_proof(SnapshotProof(*t_->key_, challenge.nonce(),
                                                        {.from = o.node_id,
                                                         .to = id_,
                                                         .shards = o.shards,
                                                         .shard = h.shard(),
                                                         .index = h.snapshot().metadata().index(),
                                                         .term = h.snapshot().metadata().term(),
                                                         .total_size = first->total_size(),
                                                         .checksum = first->checksum()}));
    return "";
  }

  GrpcTransport* t_;
  Env* const env_;
  const uint64_t id_;
  // The lower id of a pair dials; the higher one answers on the stream it accepted.
  const bool dial_;

  std::mutex mu_;
  std::condition_variable cv_;       // stopping (for backoff sleeps)
  std::condition_variable msg_cv_;   // msgs_ became non-empty
  std::condition_variable snap_cv_;  // snaps_ became non-empty
  bool stopping_ = false;
  std::string address_;
  std::shared_ptr<tv1::RaftTransport::Stub> stub_;
  // Open streams of the pair, oldest first; the last one carries our messages (see Attach).
  std::vector<std::shared_ptr<Link>> links_;
  std::deque<v1::Message> msgs_;
  std::deque<v1::Message> snaps_;
  grpc::ClientContext* conn_ctx_ = nullptr;
  grpc::ClientContext* snap_ctx_ = nullptr;
  std::thread conn_thread_;
  std::thread msg_thread_;
  std::thread snap_thread_;
};

// ---------------------------------------------------------------------------------------------
// Receiving side.

// Cancels server calls whose handshake is not done by their deadline, from one thread. A call
// is added when it starts and removed (under the same lock, so its context is never touched
// after) as soon as its handshake is done or it ends.
class GrpcTransport::HandshakeDeadlines {
 public:
  explicit HandshakeDeadlines(Env* env) : env_(env), thread_([this] { Run(); }) {}
  ~HandshakeDeadlines() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
      cv_.notify_all();
    }
    thread_.join();
  }
  // Until the returned guard is reset or destroyed, `ctx` is cancelled `timeout` from now.
  std::shared_ptr<void> Watch(grpc::ServerContext* ctx, absl::Duration timeout) {
    std::lock_guard<std::mutex> l(mu_);
    calls_[ctx] = env_->MonotonicNow() + timeout;
    ++added_;
    cv_.notify_all();
    return std::shared_ptr<void>(nullptr, [this, ctx](void*) {
      std::lock_guard<std::mutex> l(mu_);
      calls_.erase(ctx);
    });
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    while (!stopping_) {
      // Few calls are in their handshake at once: a scan is cheap.
      const absl::Time now = env_->MonotonicNow();
      absl::Time next = absl::InfiniteFuture();
      for (auto& [ctx, deadline] : calls_) {
        if (deadline <= now) {
          LOG(WARNING) << "cutting off a raft transport call: no handshake in time";
          ctx->TryCancel();
          deadline = absl::InfiniteFuture();  // listed until its handler returns
        }
        next = std::min(next, deadline);
      }
      const uint64_t added = added_;
      env_->WaitUntil(l, cv_, next, [&] { return stopping_ || added_ != added; });
    }
  }

  Env* const env_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<grpc::ServerContext*, absl::Time> calls_;
  uint64_t added_ = 0;  // calls watched so far: a new one may have an earlier deadline
  std::thread thread_;
};

class GrpcTransport::Service final : public tv1::RaftTransport::Service {
 public:
  explicit Service(GrpcTransport* t)
      : t_(t),
        receipts_({.dir = t->options_.snapshot_dir,
                   .check = t->options_.check_snapshot,
                   .env = t->options_.env}) {}

  grpc::Status Stream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<tv1::MessageBatch, tv1::MessageBatch>* stream) override {
    const auto& o = t_->options_;
    const uint64_t me = o.node_id;
    const ClusterKey* key = t_->key_.get();
    ClusterIdentity* cluster = o.cluster.get();
    auto refuse = [&](grpc::StatusCode code, const std::string& why, const char* reason = "call") {
      t_->RefuseCall("stream", ctx->peer(), why, reason);
      return grpc::Status(code, why);
    };
    std::shared_ptr<void> deadline = t_->deadlines_->Watch(ctx, o.handshake_timeout);
    tv1::MessageBatch b;
    if (!stream->Read(&b)) return grpc::Status::OK;
    const uint64_t from = b.from_node();
    if (b.to_node() != me || from == 0 || from >= me) {
      // Only the lower id of a pair dials; anything else is a misconfigured or foreign peer.
      return refuse(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("not a stream for this node (node ", from, " to node ", b.to_node(), ")"));
    }
    if (t_->tls_ && !CertificateNames(ctx->auth_context(), from)) {
      return refuse(grpc::StatusCode::UNAUTHENTICATED,
                    absl::StrCat("the client certificate does not name ", CertificateName(from)));
    }
    // The handshake (proto/transport.proto). Nothing the dialer sent before its proof is
    // delivered: the hello is a handshake only.
    const tv1::Handshake hello = b.handshake();
    const std::string peer =
        absl::StrCat("node ", from, " (listening at ", hello.bind_address(), ")");
    if (o.shards != 0 && hello.shards() != 0 && hello.shards() != o.shards) {
      return refuse(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat(peer, " runs ", hello.shards(), " shards, this node (", me, ") ", o.shards),
          "shards");
    }
    if (cluster != nullptr) {
      if (absl::Status s = cluster->Check(hello.cluster_id()); !s.ok()) {
        return refuse(grpc::StatusCode::FAILED_PRECONDITION, absl::StrCat(peer, " ", s.message()),
                      "cluster");
      }
    }
    if (key != nullptr && hello.nonce().size() != kNonceBytes) {
      return refuse(
          grpc::StatusCode::UNAUTHENTICATED,
          absl::StrCat("node ", from, " offered no cluster key handshake; this node requires one"));
    }
    const std::string server_nonce = key != nullptr ? FreshNonce() : "";
    tv1::MessageBatch reply;
    reply.set_from_node(me);
    reply.set_to_node(from);
    reply.mutable_handshake()->set_nonce(server_nonce);
    reply.mutable_handshake()->set_shards(o.shards);
    if (cluster != nullptr) {
      reply.mutable_handshake()->set_cluster_id(cluster->OfferWhenAnswering(hello.cluster_id()));
    }
    reply.mutable_handshake()->set_incarnation(t_->incarnation_);
    reply.mutable_handshake()->set_bind_address(t_->AdvertisedAddress());
    if (key != nullptr) {
      reply.mutable_handshake()->set_proof(
          StreamServerProof(*key, hello.nonce(), server_nonce, from, me, o.shards));
    }
    if (!stream->Write(reply)) return grpc::Status::OK;
    if (key != nullptr) {
      if (!stream->Read(&b)) return grpc::Status::OK;
      if (b.from_node() != from || b.to_node() != me ||
          !SameProof(b.handshake().proof(),
                     StreamClientProof(*key, hello.nonce(), server_nonce, from, me, o.shards))) {
        return refuse(grpc::StatusCode::UNAUTHENTICATED,
                      absl::StrCat("node ", from, " did not prove the cluster key"));
      }
    }
    // Authenticated (as far as this node asks): its cluster id may be taken now.
    if (cluster != nullptr) {
      absl::Status s = cluster->Settle(hello.cluster_id(), from, hello.bind_address());
      if (!s.ok()) {
        return refuse(grpc::StatusCode::FAILED_PRECONDITION, absl::StrCat(peer, " ", s.message()),
                      "cluster");
      }
    }
    deadline.reset();
    auto link = std::make_shared<Link>();
    link->write = [stream](const tv1::MessageBatch& out) { return stream->Write(out); };
    link->origin = {.incarnation = hello.incarnation(),
                    .bind_address = hello.bind_address(),
                    .peer = ctx->peer()};
    link->cancel = [ctx] { ctx->TryCancel(); };
    link->Heard(o.env->MonotonicNow());
    if (std::string duplicate = t_->Admit(from, link); !duplicate.empty()) {
      return refuse(grpc::StatusCode::ALREADY_EXISTS, duplicate, "duplicate");
    }
    VLOG(1) << "[node " << me << "] stream from node " << from << " accepted"
            << (key != nullptr ? " (cluster key proven)" : "");
    StreamIntake intake(me, from);
    while (stream->Read(&b)) {
      link->Heard(o.env->MonotonicNow());
      t_->Deliver(&intake, std::move(b));
    }
    {
      std::lock_guard<std::mutex> wl(link->write_mu);
      link->dead = true;
    }
    t_->Detach(from, link);
    return grpc::Status::OK;
  }

  grpc::Status Identify(grpc::ServerContext* ctx, const tv1::IdentifyRequest* req,
                        tv1::IdentifyResponse* resp) override {
    const auto& o = t_->options_;
    if (req->to_node() != o.node_id || req->from_node() == 0 || req->from_node() == o.node_id) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not a request for this node");
    }
    if (o.shards != 0 && req->shards() != 0 && req->shards() != o.shards) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "another shard count");
    }
    if (o.cluster != nullptr && !o.cluster->Check(req->cluster_id()).ok()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "another cluster");
    }
    const uint64_t from = req->from_node();
    if (std::optional<StreamOrigin> live = t_->LiveOtherThan(from, req->incarnation())) {
      resp->set_live_incarnation(live->incarnation);
      resp->set_live_bind_address(live->bind_address);
      resp->set_live_peer(live->peer);
      LOG(WARNING) << "[node " << o.node_id << "] " << ctx->peer() << " asked as node " << from
                   << " (incarnation " << absl::StrCat(absl::Hex(req->incarnation()))
                   << ") while the live node " << from << " listens at " << live->bind_address
                   << ": another process was started with that node's id";
    }
    if (t_->key_ != nullptr) {
      resp->set_proof(IdentifyProof(*t_->key_, req->nonce(),
                                    {.from = req->from_node(),
                                     .to = o.node_id,
                                     .incarnation = req->incarnation(),
                                     .live_incarnation = resp->live_incarnation(),
                                     .live_bind_address = resp->live_bind_address(),
                                     .live_peer = resp->live_peer()}));
    }
    return grpc::Status::OK;
  }

  grpc::Status SendSnapshot(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<tv1::SnapshotAck, tv1::SnapshotChunk>* reader) override {
    const auto& o = t_->options_;
    const uint64_t me = o.node_id;
    const ClusterKey* key = t_->key_.get();
    grpc::StatusCode code = grpc::StatusCode::INVALID_ARGUMENT;
    auto refuse = [&](absl::string_view why) {
      LOG(WARNING) << "[node " << me << "] refusing a snapshot from " << ctx->peer() << ": " << why;
      return grpc::Status(code, std::string(why));
    };
    // A fresh nonce per call, sent before anything is read: the sender's proof must cover it,
    // so a recorded call cannot be replayed.
    std::shared_ptr<void> deadline = t_->deadlines_->Watch(ctx, o.handshake_timeout);
    const std::string server_nonce = key != nullptr ? FreshNonce() : "";
    {
      tv1::SnapshotAck challenge;
      challenge.mutable_handshake()->set_nonce(server_nonce);
      challenge.mutable_handshake()->set_shards(o.shards);
      if (!reader->Write(challenge)) return grpc::Status::OK;
    }
    tv1::SnapshotChunk c;
    if (!reader->Read(&c)) return refuse("no header chunk");
    if (absl::Status s = CheckFirstSnapshotChunk(me, o.shards, c); !s.ok()) {
      return refuse(s.message());
    }
    v1::Message header = c.header();
    const uint64_t from = c.from_node();
    if (t_->tls_ && !CertificateNames(ctx->auth_context(), from)) {
      code = grpc::StatusCode::UNAUTHENTICATED;
      t_->RefuseCall("snapshot", ctx->peer(),
                     absl::StrCat("the certificate does not name ", CertificateName(from)));
      return grpc::Status(code, "the client certificate does not name the sender");
    }
    const tv1::Handshake& h = c.handshake();
    if (o.shards != 0 && h.shards() != 0 && h.shards() != o.shards) {
      code = grpc::StatusCode::FAILED_PRECONDITION;
      t_->RefuseCall("snapshot", ctx->peer(), "another shard count");
      return refuse(
          absl::StrCat("node ", from, " runs ", h.shards(), " shards, this node ", o.shards));
    }
    if (key != nullptr &&
        !SameProof(h.proof(), SnapshotProof(*key, server_nonce,
                                            {.from = from,
                                             .to = me,
                                             .shards = o.shards,
                                             .shard = header.shard(),
                                             .index = header.snapshot().metadata().index(),
                                             .term = header.snapshot().metadata().term(),
                                             .total_size = c.total_size(),
                                             .checksum = c.checksum()}))) {
      code = grpc::StatusCode::UNAUTHENTICATED;
      t_->RefuseCall("snapshot", ctx->peer(),
                     absl::StrCat("node ", from, " did not prove the cluster key"));
      return grpc::Status(code, "no valid cluster key proof");
    }
    deadline.reset();
    // Bounded (snapshot_receipt.h): written to a file as it comes, checked whole, and only then
    // handed over, so a bad payload is refused before anything of it is recorded.
    const uint64_t index = header.snapshot().metadata().index();
    absl::StatusOr<std::unique_ptr<SnapshotReceipts::Receipt>> receipt =
        receipts_.Begin(header.shard(), from, index, c.total_size(), c.checksum());
    if (!receipt.ok()) {
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      return refuse(receipt.status().message());
    }
    absl::StatusOr<std::string> file = ReceiveSnapshotChunks(
        c, [&](tv1::SnapshotChunk* next) { return reader->Read(next); }, **receipt);
    if (!file.ok()) {
      // The sender learns whether its bytes were wrong or this node's disk failed them.
      switch (file.status().code()) {
        case absl::StatusCode::kDataLoss:
          code = grpc::StatusCode::DATA_LOSS;
          break;
        case absl::StatusCode::kResourceExhausted:
          code = grpc::StatusCode::RESOURCE_EXHAUSTED;
          break;
        case absl::StatusCode::kInternal:
          code = grpc::StatusCode::INTERNAL;
          break;
        default:
          code = grpc::StatusCode::INVALID_ARGUMENT;
      }
      return refuse(absl::StrCat("shard ", header.shard(), " snapshot at ", index, " from node ",
                                 from, ": ", file.status().message()));
    }
    const uint64_t total = c.total_size();
    header.mutable_snapshot()->set_data(*file);
    LOG(INFO) << "[shard " << header.shard() << " node " << me << "] received snapshot at " << index
              << " (" << total << " bytes) from node " << header.from();
    t_->handler_->HandleSnapshot(std::move(header));
    tv1::SnapshotAck ack;
    ack.set_ok(true);
    reader->Write(ack);
    return grpc::Status::OK;
  }

 private:
  GrpcTransport* t_;
  SnapshotReceipts receipts_;
};

// ---------------------------------------------------------------------------------------------

// Every gRPC message of the stream is a batch or a piece of at most batch_bytes_ plus framing.
GrpcTransport::GrpcTransport(GrpcTransportOptions options)
    : options_(std::move(options)),
      incarnation_(options_.incarnation != 0 ? options_.incarnation : NewIncarnation()),
      advertised_address_(options_.bind_address),
      batch_bytes_(std::max<size_t>(
          1, std::min<int64_t>(options_.max_batch_bytes,
                               int64_t{options_.max_message_bytes} - kFramingBytes))) {
  CHECK_GT(options_.max_message_bytes, kFramingBytes)
      << "raft transport: gRPC messages of " << options_.max_message_bytes
      << " bytes are too small";
}

GrpcTransport::~GrpcTransport() { Stop(); }

absl::Status GrpcTransport::Start(MessageHandler* handler) {
  handler_ = handler;
  std::shared_ptr<grpc::ServerCredentials> server_credentials;
  const auto& o = options_;
  if (!o.cluster_key.empty()) {
    absl::StatusOr<ClusterKey> key = ClusterKey::FromSecret(o.cluster_key);
    if (!key.ok())
      return absl::InvalidArgumentError(absl::StrCat("raft transport: ", key.status().message()));
    key_ = std::make_unique<ClusterKey>(*std::move(key));
  }
  const int tls_files = !o.tls_cert_file.empty() + !o.tls_key_file.empty() + !o.tls_ca_file.empty();
  if (tls_files == 3) {
    auto cert = ReadWholeFile(o.env, o.tls_cert_file);
    auto key = ReadWholeFile(o.env, o.tls_key_file);
    auto ca = ReadWholeFile(o.env, o.tls_ca_file);
    for (const auto* f : {&cert, &key, &ca}) {
      if (!f->ok())
        return absl::InvalidArgumentError(
            absl::StrCat("raft transport TLS: ", f->status().message()));
    }
    grpc::SslServerCredentialsOptions so(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    so.pem_root_certs = *ca;
    so.pem_key_cert_pairs.push_back({*key, *cert});
    server_credentials = grpc::SslServerCredentials(so);
    grpc::SslCredentialsOptions co;
    co.pem_root_certs = *ca;
    co.pem_private_key = *key;
    co.pem_cert_chain = *cert;
    channel_credentials_ = grpc::SslCredentials(co);
    tls_ = true;
  } else if (tls_files == 0) {
    server_credentials = grpc::InsecureServerCredentials();
    channel_credentials_ = grpc::InsecureChannelCredentials();
  } else {
    return absl::InvalidArgumentError(
        "raft transport TLS needs a certificate, its key and the CA, or none of them");
  }
  {
    // Before the server: a stream accepted right away must find started_ set.
    std::lock_guard<std::mutex> l(mu_);
    started_ = true;
  }
  deadlines_ = std::make_unique<HandshakeDeadlines>(o.env);
  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder b;
  b.AddListeningPort(options_.bind_address, server_credentials, &bound_port_);
  b.SetMaxReceiveMessageSize(options_.max_message_bytes);
  b.SetMaxSendMessageSize(options_.max_message_bytes);
  // Accept the clients' keepalive pings (see ChannelArgs).
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 4000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC sets SO_REUSEPORT by default: a second node on the same address would listen too and
  // receive half of the first one's Raft traffic. A busy address must be an error.
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  b.RegisterService(service_.get());
  server_ = b.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("raft transport: cannot listen on ", options_.bind_address));
  }
  {
    // Peers dial once the port is known: their handshakes name it.
    std::lock_guard<std::mutex> l(mu_);
    if (absl::EndsWith(options_.bind_address, ":0")) {
      advertised_address_ = absl::StrCat(
          options_.bind_address.substr(0, options_.bind_address.size() - 1), bound_port_);
    }
    for (const auto& [id, addr] : addresses_) GetPeer(id, /*create=*/true);
  }
  probe_thread_ = std::thread([this] { RunIdentityProbe(); });
  LOG(INFO) << "[node " << options_.node_id << "] raft transport listening on "
            << options_.bind_address << " (port " << bound_port_ << ")"
            << (tls_files == 3 ? " with mutual TLS" : "")
            << (key_ != nullptr ? " with a cluster key" : "");
  return absl::OkStatus();
}

void GrpcTransport::Stop() {
  std::map<uint64_t, std::unique_ptr<Peer>> peers;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_) return;
    stopped_ = true;
    peers.swap(peers_);
    probe_cv_.notify_all();
    if (probe_ctx_ != nullptr) probe_ctx_->TryCancel();
  }
  if (probe_thread_.joinable()) probe_thread_.join();
  // The server first: that cancels accepted streams, on which our senders may be blocked.
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    server_->Wait();
  }
  for (auto& [id, p] : peers) p->Stop();
  peers.clear();
  server_.reset();
}

void GrpcTransport::SetPeerAddress(uint64_t node, const std::string& address) {
  std::lock_guard<std::mutex> l(mu_);
  if (stopped_) return;
  addresses_[node] = address;
  if (!started_) return;  // Start() connects to every known address
  auto it = peers_.find(node);
  if (it != peers_.end()) {
    it->second->SetAddress(address);
  } else {
    GetPeer(node, /*create=*/true);  // a dialing peer connects now, not at the first message
  }
}

std::set<uint64_t> GrpcTransport::ConnectedPeers() const {
  std::lock_guard<std::mutex> l(mu_);
  std::set<uint64_t> out;
  for (const auto& [id, peer] : peers_) {
    if (peer->Connected()) out.insert(id);
  }
  return out;
}

GrpcTransport::Peer* GrpcTransport::GetPeer(uint64_t node, bool create) {
  auto it = peers_.find(node);
  if (it != peers_.end()) return it->second.get();
  auto a = addresses_.find(node);
  if (!create && a == addresses_.end()) return nullptr;
  auto* p = new Peer(this, node, a == addresses_.end() ? "" : a->second);
  peers_[node].reset(p);
  return p;
}

std::optional<StreamOrigin> GrpcTransport::LiveOtherThan(uint64_t node, uint64_t incarnation) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = peers_.find(node);
  if (it == peers_.end()) return std::nullopt;
  return it->second->LiveOtherThan(incarnation);
}

std::optional<tv1::IdentifyResponse> GrpcTransport::AskIdentity(uint64_t node,
                                                                const std::string& address) {
  auto stub = tv1::RaftTransport::NewStub(
      grpc::CreateCustomChannel(address, channel_credentials_, ChannelArgs(options_)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_) return std::nullopt;
    probe_ctx_ = &ctx;
  }
  tv1::IdentifyRequest req;
  req.set_from_node(options_.node_id);
  req.set_to_node(node);
  req.set_incarnation(incarnation_);
  req.set_shards(options_.shards);
  if (options_.cluster != nullptr) req.set_cluster_id(options_.cluster->OfferWhenDialing());
  if (key_ != nullptr) req.set_nonce(FreshNonce());
  tv1::IdentifyResponse resp;
  const grpc::Status st = stub->Identify(&ctx, req, &resp);
  {
    std::lock_guard<std::mutex> l(mu_);
    probe_ctx_ = nullptr;
  }
  // An older node (UNIMPLEMENTED), one that is down, or an answer that proves nothing: no news.
  if (!st.ok() || resp.live_incarnation() == 0) return std::nullopt;
  if (tls_ && !CertificateNames(ctx.auth_context(), node)) return std::nullopt;
  if (key_ != nullptr &&
      !SameProof(resp.proof(), IdentifyProof(*key_, req.nonce(),
                                             {.from = options_.node_id,
                                              .to = node,
                                              .incarnation = incarnation_,
                                              .live_incarnation = resp.live_incarnation(),
                                              .live_bind_address = resp.live_bind_address(),
                                              .live_peer = resp.live_peer()}))) {
    return std::nullopt;
  }
  return resp;
}

void GrpcTransport::RunIdentityProbe() {
  // Each peer is asked once; one that says another process of this node's id is alive is asked
  // again two liveness windows later, and only a second answer naming the same process counts: a
  // stream of this node's previous process (a restart) can look alive there for up to one window
  // after the last sign of that process reached it (node_incarnation.h).
  auto sleep = [this](absl::Duration d) {
    std::unique_lock<std::mutex> l(mu_);
    return !options_.env->WaitFor(l, probe_cv_, d, [this] { return stopped_; });
  };
  if (!sleep(options_.liveness_window)) return;  // let the peers hear of the other process first
  std::map<uint64_t, std::string> addresses;
  {
    std::lock_guard<std::mutex> l(mu_);
    addresses = addresses_;
  }
  for (const auto& [node, address] : addresses) {
    if (node == options_.node_id || address.empty()) continue;
    std::optional<tv1::IdentifyResponse> first = AskIdentity(node, address);
    if (!first) continue;
    if (!sleep(2 * options_.liveness_window)) return;
    std::optional<tv1::IdentifyResponse> again = AskIdentity(node, address);
    if (!again || again->live_incarnation() != first->live_incarnation()) continue;
    if (duplicate_reported_.exchange(true)) return;
    handler_->HandleDuplicateNode(
        absl::StrCat("node ", node, " at ", address, " says node ", options_.node_id,
                     " already runs: the process listening at ", again->live_bind_address(),
                     " (connection ", again->live_peer(), ", incarnation ",
                     absl::Hex(again->live_incarnation()), ") is alive there"));
    return;
  }
}

std::string GrpcTransport::AdvertisedAddress() const {
  std::lock_guard<std::mutex> l(mu_);
  return advertised_address_;
}

std::string GrpcTransport::Admit(uint64_t node, std::shared_ptr<Link> link) {
  std::lock_guard<std::mutex> l(mu_);
  if (stopped_ || !started_) return "";
  return GetPeer(node, /*create=*/true)->Admit(std::move(link));
}

void GrpcTransport::Detach(uint64_t node, const std::shared_ptr<Link>& link) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = peers_.find(node);
  if (it != peers_.end()) it->second->Detach(link);
}

void GrpcTransport::Deliver(StreamIntake* intake, tv1::MessageBatch batch) {
  StreamIntake::Delivery d = intake->Take(std::move(batch));
  if (d.refused > 0) {
    refused_messages_.fetch_add(d.refused, std::memory_order_relaxed);
    for (uint64_t i = 0; i < d.refused; ++i) handler_->HandleRefused("message");
  }
  if (!d.messages.empty()) handler_->HandleMessages(std::move(d.messages));
}

void GrpcTransport::Send(std::vector<v1::Message> messages) {
  std::vector<std::pair<uint64_t, uint64_t>> failed_snapshots;  // (shard, node)
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_ || !started_) return;
    for (auto& m : messages) {
      Peer* p = GetPeer(m.to(), /*create=*/false);
      if (p == nullptr) {
        VLOG(1) << "[shard " << m.shard() << " node " << options_.node_id
                << "] no address for node " << m.to() << ", dropping";
        if (m.type() == v1::MSG_SNAP) failed_snapshots.emplace_back(m.shard(), m.to());
        continue;
      }
      p->Enqueue(std::move(m));
    }
  }
  for (auto [shard, node] : failed_snapshots) handler_->HandleSnapshotStatus(shard, node, false);
}

void GrpcTransport::CountRefusal(const char* reason) {
  refused_calls_.fetch_add(1, std::memory_order_relaxed);
  if (handler_ != nullptr) handler_->HandleRefused(reason);
}

void GrpcTransport::RefusedAsDuplicate(uint64_t node, const std::string& where,
                                       const std::string& why) {
  // Only refusals that go on for two liveness windows count: this process's own restart is
  // refused for up to one window after the last sign of its previous process reached the peer
  // (node_incarnation.h).
  const absl::Time now = options_.env->MonotonicNow();
  absl::Time since;
  {
    std::lock_guard<std::mutex> l(mu_);
    since = refused_as_duplicate_since_.emplace(node, now).first->second;
  }
  if (now - since < 2 * options_.liveness_window) {
    LOG(WARNING) << "[node " << options_.node_id << "] " << where << " refused: " << why
                 << "; retrying (a node that restarted a moment ago looks like this until its "
                    "previous process is seen gone)";
    return;
  }
  if (duplicate_reported_.exchange(true)) return;
  handler_->HandleDuplicateNode(absl::StrCat(where, " refused it: ", why));
}

void GrpcTransport::AdmittedBy(uint64_t node) {
  std::lock_guard<std::mutex> l(mu_);
  refused_as_duplicate_since_.erase(node);
}

void GrpcTransport::RefuseCall(absl::string_view what, const std::string& peer,
                               absl::string_view why, const char* reason) {
  const uint64_t n = refused_calls_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (handler_ != nullptr) handler_->HandleRefused(reason);
  // The first few each time (a misconfigured key or shard count shows at once), then one in a
  // hundred: a flood of bad calls must not flood the log.
  if (n <= 10 || n % 100 == 0) {
    LOG(WARNING) << "[node " << options_.node_id << "] refusing a " << what << " call from " << peer
                 << ": " << why << " (" << n << " refused so far)";
  }
}

TransportRefusals GrpcTransport::refusals() const {
  return {.calls = refused_calls_.load(std::memory_order_relaxed),
          .messages = refused_messages_.load(std::memory_order_relaxed)};
}

void GrpcTransport::SetFaults(const TransportFaults& faults) {
  std::lock_guard<std::mutex> l(mu_);
  faults_ = faults;
}

TransportFaults GrpcTransport::faults() const {
  std::lock_guard<std::mutex> l(mu_);
  return faults_;
}

}  // namespace marmot::raft::host
