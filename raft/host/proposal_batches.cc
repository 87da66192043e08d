#include "raft/host/proposal_batches.h"

#include "raft/host/proposal_codec.h"

namespace marmot::raft::host {

QueuedEntries EntriesOfQueue(uint64_t node, bool pack, const std::vector<uint64_t>& ids,
                             std::vector<std::string> payloads) {
  QueuedEntries out;
  if (!pack) {
    out.entries = std::move(payloads);
    for (size_t i = 0; i < out.entries.size(); ++i) out.proposals.emplace_back(i, i + 1);
    return out;
  }
  size_t begin = 0;
  while (begin < ids.size()) {
    size_t end = begin, bytes = kPackHeaderBytes;
    while (end < ids.size() &&
           (end == begin || bytes + kPackItemHeaderBytes + payloads[end].size() <= kMaxPackBytes)) {
      bytes += kPackItemHeaderBytes + payloads[end].size();
      ++end;
    }
    PackWriter writer(node, bytes);
    for (size_t i = begin; i < end; ++i) writer.Add(ids[i], payloads[i]);
    out.entries.push_back(writer.Take());
    out.proposals.emplace_back(begin, end);
    begin = end;
  }
  return out;
}

std::vector<std::pair<size_t, size_t>> ProposeChunks(const std::vector<std::string>& entries) {
  std::vector<std::pair<size_t, size_t>> chunks;
  size_t begin = 0;
  while (begin < entries.size()) {
    size_t end = begin, bytes = 0;
    while (end < entries.size() && end - begin < kMaxChunkEntries && bytes < kMaxChunkBytes) {
      bytes += entries[end].size();
      ++end;
    }
    chunks.emplace_back(begin, end);
    begin = end;
  }
  return chunks;
}

}  // namespace marmot::raft::host
