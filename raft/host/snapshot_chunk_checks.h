// The checks a receiver makes on the chunks of one `SendSnapshot` call (proto/transport.proto,
// grpc_transport.h) around its SnapshotReceipts::Receipt (snapshot_receipt.h), without gRPC, so
// that they run, and can be tested and fuzzed, alone:
//
//   - CheckFirstSnapshotChunk: the first chunk is a MSG_SNAP of an existing shard, addressed to
//     this node by the chunk's sender, and starts the payload;
//   - ReceiveSnapshotChunks: every chunk's bytes go to the receipt (which bounds them, checks
//     their order and writes them to its file); no chunk after the first carries a header or a
//     handshake; the stream holds a last chunk; then the receipt's Finish checks the whole.
//
// Every chunk comes from the network: whatever it holds is refused with a reason, never a crash.
#ifndef MARMOT_RAFT_HOST_SNAPSHOT_CHUNK_CHECKS_H_
#define MARMOT_RAFT_HOST_SNAPSHOT_CHUNK_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/transport.pb.h"
#include "raft/host/snapshot_receipt.h"

namespace marmot::raft::host {

// Checks the first chunk of a call served by node `node_id` of `shards` shards (0: any shard):
// the chunk and its header are addressed to this node, the header is a MSG_SNAP of a shard below
// `shards` sent by the chunk's sender (neither 0 nor this node), and the chunk is at offset 0.
// InvalidArgument naming what is wrong otherwise.
absl::Status CheckFirstSnapshotChunk(uint64_t node_id, uint64_t shards,
                                     const transport::v1::SnapshotChunk& first);

// Feeds the chunks of one call to `receipt` (begun with `first`'s announced size and checksum):
// `first`, then those `next` reads (false: the stream ended), up to the one marked last, then
// returns receipt.Finish(): the name of the payload's file. InvalidArgument when the stream ends
// before the last chunk or a later chunk carries a header or handshake; the receipt's error when
// it refuses a chunk or the whole payload. After an error the receipt is unusable.
absl::StatusOr<std::string> ReceiveSnapshotChunks(
    const transport::v1::SnapshotChunk& first,
    absl::FunctionRef<bool(transport::v1::SnapshotChunk*)> next,
    SnapshotReceipts::Receipt& receipt);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SNAPSHOT_CHUNK_CHECKS_H_
