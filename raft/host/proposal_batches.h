// How the proposals of one shard, queued during one iteration of the Raft loop, become log
// entries and RawNode::ProposeBatch calls. Pure functions of the queue.
#ifndef MARMOT_RAFT_HOST_PROPOSAL_BATCHES_H_
#define MARMOT_RAFT_HOST_PROPOSAL_BATCHES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace marmot::raft::host {

// A pack holds proposals up to this many bytes (a larger proposal goes alone).
inline constexpr size_t kMaxPackBytes = 256 << 10;
// One ProposeBatch call (one message, one append, one broadcast) takes at most this many
// entries, and is cut once it reaches this many bytes: a burst then stays within the core's
// uncommitted-bytes limit instead of being refused whole.
inline constexpr size_t kMaxChunkEntries = 4096;
inline constexpr size_t kMaxChunkBytes = 4 << 20;

struct QueuedEntries {
  std::vector<std::string> entries;
  // Per entry, the proposals it carries: [begin, end) in the queue.
  std::vector<std::pair<size_t, size_t>> proposals;
};

// The entries for queued proposals `ids` with their `payloads`: with `pack`, packs of
// consecutive proposals framed for proposer `node` (proposal_codec.h); without, one entry per
// payload, which is then framed already.
QueuedEntries EntriesOfQueue(uint64_t node, bool pack, const std::vector<uint64_t>& ids,
                             std::vector<std::string> payloads);

// Cuts `entries` into runs for one ProposeBatch each: [begin, end) ranges, in order.
std::vector<std::pair<size_t, size_t>> ProposeChunks(const std::vector<std::string>& entries);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_PROPOSAL_BATCHES_H_
