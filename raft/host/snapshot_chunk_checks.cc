#include "raft/host/snapshot_chunk_checks.h"

#include "absl/strings/str_cat.h"
#include "proto/raft.pb.h"

namespace marmot::raft::host {

namespace tv1 = ::marmot::raft::transport::v1;

absl::Status CheckFirstSnapshotChunk(uint64_t node_id, uint64_t shards,
                                     const tv1::SnapshotChunk& first) {
  const v1::Message& h = first.header();
  const uint64_t from = first.from_node();
  if (first.to_node() != node_id || h.to() != node_id) {
    return absl::InvalidArgumentError("addressed to another node");
  }
  if (h.from() != from || from == 0 || from == node_id) {
    return absl::InvalidArgumentError("the header's sender is not the caller");
  }
  if (h.type() != v1::MSG_SNAP) return absl::InvalidArgumentError("header is not a MSG_SNAP");
  if (first.offset() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad first chunk (at offset ", first.offset(), ")"));
  }
  if (shards != 0 && h.shard() >= shards) {
    return absl::InvalidArgumentError(absl::StrCat("no such shard: ", h.shard()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReceiveSnapshotChunks(const tv1::SnapshotChunk& first,
                                                  absl::FunctionRef<bool(tv1::SnapshotChunk*)> next,
                                                  SnapshotReceipts::Receipt& receipt) {
  const tv1::SnapshotChunk* c = &first;
  tv1::SnapshotChunk later;
  for (;;) {
    if (absl::Status s = receipt.Add(c->offset(), c->data()); !s.ok()) return s;
    if (c->last()) break;
    if (!next(&later)) return absl::InvalidArgumentError("stream ended before the last chunk");
    if (later.has_header() || later.has_handshake()) {
      return absl::InvalidArgumentError("a second header in one snapshot");
    }
    c = &later;
  }
  return receipt.Finish();
}

}  // namespace marmot::raft::host
