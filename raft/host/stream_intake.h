// StreamIntake: the receiving half of one node-to-node `Stream` call (proto/transport.proto,
// grpc_transport.h) after its handshake, without gRPC: what the batches read from the call
// hand to the host. Kept apart from the transport so that it can be tested and fuzzed alone.
//
// Every byte of a batch comes from the network. A batch that does not claim to come from the
// stream's (authenticated) peer to this node is dropped whole. A message is bound to the stream
// it came on: one whose `from` is not the peer, or whose `to` is not this node, is dropped.
// Without this a member, or anyone on a key-less loopback stream, could speak for another node
// (vote for it, answer appends in its name). The one exception is MSG_TRANSFER_LEADER: by the
// core's convention its `from` names the transferee, and a follower forwards it to the leader
// unchanged; the leader acts on it only if the transferee is a voter of the shard (raft.cc), so
// it cannot make a non-member lead. Pieces of a large message go to a MessageAssembler
// (message_pieces.h); the message they complete is checked the same way. Anything malformed is
// dropped and logged, never a crash. Whether the sender may send that message to that shard is
// the host's check (sender_policy.h).
//
// Pure (no threads, no I/O besides rate-limited logs); one per stream, owned by the thread that
// reads it.
#ifndef MARMOT_RAFT_HOST_STREAM_INTAKE_H_
#define MARMOT_RAFT_HOST_STREAM_INTAKE_H_

#include <cstdint>
#include <vector>

#include "proto/raft.pb.h"
#include "proto/transport.pb.h"
#include "raft/host/message_pieces.h"

namespace marmot::raft::host {

class StreamIntake {
 public:
  // The stream of `node_id` (this node) with `peer`.
  StreamIntake(uint64_t node_id, uint64_t peer) : node_id_(node_id), peer_(peer) {}

  struct Delivery {
    // To hand to the host, in the order they came; each from the peer (MSG_TRANSFER_LEADER
    // aside) to this node.
    std::vector<v1::Message> messages;
    // Messages dropped because they claimed another sender or receiver.
    uint64_t refused = 0;
  };

  // Takes the next batch read from the stream.
  Delivery Take(transport::v1::MessageBatch batch);

  // Bytes of a large message held while its pieces arrive.
  size_t partial_bytes() const { return assembler_.partial_bytes(); }

 private:
  // Appends `m` to `d` if it may be delivered; counts it as refused otherwise.
  void Admit(v1::Message m, Delivery& d) const;

  const uint64_t node_id_;
  const uint64_t peer_;
  MessageAssembler assembler_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_STREAM_INTAKE_H_
