// Transport: how a NodeHost exchanges Raft messages with its peers.
//
// The host hands every outgoing message of a loop iteration to Send() at once; the transport
// batches them per destination node, never blocks the caller, and may drop messages (Raft
// retries). Incoming messages, unreachable peers and snapshot outcomes come back through the
// MessageHandler, from the transport's own threads. GrpcTransport is the production
// implementation; tests may plug their own.
#ifndef MARMOT_RAFT_HOST_TRANSPORT_H_
#define MARMOT_RAFT_HOST_TRANSPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "proto/raft.pb.h"

namespace marmot::raft::host {

class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  // Messages addressed to this node (any shards). Validating them is the handler's job. A
  // snapshot never comes this way: a MSG_SNAP here is bogus.
  virtual void HandleMessages(std::vector<v1::Message> messages) = 0;
  // A MSG_SNAP received whole and checked. Its snapshot's `data` is the name of the payload's
  // file in the snapshots folder (snapshot_file.h); the handler owns that file from now on and
  // removes it if it does not keep the snapshot.
  virtual void HandleSnapshot(v1::Message snapshot) = 0;
  // Sending to `node` failed (connection lost or refused).
  virtual void HandleUnreachable(uint64_t node) = 0;
  // A MSG_SNAP this node sent to `node` for `shard` arrived and was accepted (ok) or not.
  virtual void HandleSnapshotStatus(uint64_t shard, uint64_t node, bool ok) = 0;
  // The transport refused a call (`what` "call": no valid cluster key proof, a certificate
  // naming another node; "shards": another shard count; "cluster": another cluster id;
  // "duplicate": another process with a live node's id) or dropped a message claiming another
  // sender ("message"). For metrics; must be cheap.
  virtual void HandleRefused(const char* what) {}
  // Another process runs with this node's id and is alive (`why` says where): a peer refused
  // this one (node_incarnation.h). This process must not go on as that node. Called at most once.
  virtual void HandleDuplicateNode(const std::string& why) {}
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Starts serving; the handler must outlive Stop().
  virtual absl::Status Start(MessageHandler* handler) = 0;
  // Closes every stream and joins every thread. Idempotent.
  virtual void Stop() = 0;
  // Where `node` listens (adds or replaces).
  virtual void SetPeerAddress(uint64_t node, const std::string& address) = 0;
  // Queues messages for sending; never blocks. MSG_SNAP messages go on the snapshot path.
  virtual void Send(std::vector<v1::Message> messages) = 0;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_TRANSPORT_H_
