// Large Raft messages on the node-to-node stream (proto/transport.proto, MessagePiece).
//
// gRPC refuses a message above the size both sides configured, and a refused write ends the
// whole stream of a node pair: every shard's traffic between the two nodes stops, the peer is
// reported unreachable and Raft sends the same append again, forever: one large row stalls
// replication behind it and costs shards their leaders. An append carries at
// least one entry whatever max_size_per_msg says, and an entry is as large as the row it
// carries, so a message's size has no bound below what protobuf can hold (2 GiB).
//
// PeerOutbox (sender) cuts every message larger than `batch_bytes` into pieces of at most
// `batch_bytes`; MessageAssembler (receiver) puts them back together. Both are pure (no
// threads, no I/O), owned by one thread each: the peer's sender thread and the thread reading
// one stream.
//
// Ordering. Raft is safe with reordered messages, but an append of shard S overtaking the large
// append before it would be rejected and make the leader send the large one again. So the
// outbox keeps each shard's messages in the order they were added, while messages of other
// shards (heartbeats above all) go out between the pieces of a large one: a 1 GB append takes
// seconds on a real network, longer than an election timeout.
#ifndef MARMOT_RAFT_HOST_MESSAGE_PIECES_H_
#define MARMOT_RAFT_HOST_MESSAGE_PIECES_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "proto/raft.pb.h"
#include "proto/transport.pb.h"

namespace marmot::raft::host {

// The largest message that can be sent or assembled: protobuf serializes and parses at most
// INT_MAX bytes.
inline constexpr uint64_t kMaxRaftMessageBytes = (uint64_t{1} << 31) - 1;

struct PeerOutboxOptions {
  // Small messages are batched up to this many bytes; a larger message goes in pieces of this
  // size. Must stay below the transport's gRPC message limit (with room for the framing).
  size_t batch_bytes = 4 << 20;
  // Messages waiting behind a large message of their shard (or behind the large one in
  // progress), by count and by bytes. Beyond either, a new one is dropped (Raft sends again):
  // a leader probing a slow follower resends its large append every heartbeat, and copies of
  // it must not pile up in memory.
  size_t max_held_messages = 8192;
  uint64_t max_held_bytes = 256 << 20;
};

class PeerOutbox {
 public:
  explicit PeerOutbox(PeerOutboxOptions options);

  // Queues `m` behind everything added before it of the same shard. False if it was dropped:
  // held back too long a queue, or larger than kMaxRaftMessageBytes (logged; never happens
  // with proposals within NodeHostConfig::max_entry_bytes).
  bool Add(v1::Message m);

  // Moves into `batch` (cleared first) small messages that may go now, at most batch_bytes of
  // them (or one). False when there is none.
  bool NextBatch(transport::v1::MessageBatch* batch);
  // Moves into `batch` (cleared first) the next piece of the large message in progress. After
  // its last piece, the messages held behind it become ready, and the next large one (if any)
  // starts. False when no large message is in progress.
  bool NextPiece(transport::v1::MessageBatch* batch);

  // True while a large message is being sent (NextPiece has work).
  bool sending_large() const { return large_.has_value(); }
  // True if nothing is queued.
  bool empty() const { return ready_.empty() && !large_ && held_.empty(); }
  // Drops everything (the stream broke; Raft sends again).
  void Clear();

  size_t held_messages() const { return held_.size(); }
  uint64_t held_bytes() const { return held_bytes_; }

 private:
  struct Sized {
    v1::Message message;
    size_t bytes = 0;
  };
  struct Large {
    uint64_t shard = 0;
    std::string bytes;  // serialized message
    size_t offset = 0;  // sent so far
  };

  // Places a message: ready, held, or started as the large message in progress.
  bool Place(Sized s);
  bool ShardWaits(uint64_t shard) const;
  void Hold(Sized s);

  const PeerOutboxOptions options_;
  std::deque<Sized> ready_;
  std::optional<Large> large_;
  // Messages behind the large one in progress, in order; their count per shard.
  std::deque<Sized> held_;
  std::map<uint64_t, size_t> held_per_shard_;
  uint64_t held_bytes_ = 0;
};

// Reassembles the pieces read from one stream.
class MessageAssembler {
 public:
  // Takes the next piece. Returns the message once its last piece arrived, nullopt while more
  // are due, or an error for a piece that does not continue the message in progress (a new
  // one at offset 0 replaces it) or a bogus size; the partial message is then dropped.
  absl::StatusOr<std::optional<v1::Message>> Add(const transport::v1::MessagePiece& piece);

  // Bytes of the partial message held.
  size_t partial_bytes() const { return buffer_.size(); }

 private:
  std::string buffer_;
  uint64_t total_ = 0;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_MESSAGE_PIECES_H_
