// How NodeHost frames proposals in log entries. The state machine never sees this framing.
//
// A single proposal: [proposer u64][proposal id u64][payload]. The proposer is a node id, so
// its top bit is clear.
//
// A pack (NodeHostConfig::pack_proposals): [proposer | kPackedBit u64], then per proposal
// [proposal id u64][payload size u32][payload]. Integers are little-endian. Proposals of one
// shard queued in one loop iteration share one log entry: one append, one replication
// message entry and one state machine index instead of one each.
#ifndef MARMOT_RAFT_HOST_PROPOSAL_CODEC_H_
#define MARMOT_RAFT_HOST_PROPOSAL_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace marmot::raft::host {

inline constexpr size_t kSingleHeaderBytes = 16;
inline constexpr size_t kPackHeaderBytes = 8;
inline constexpr size_t kPackItemHeaderBytes = 12;

// The entry data of one proposal.
std::string EncodeSingle(uint64_t proposer, uint64_t id, absl::string_view payload);

// Builds the entry data of a pack, one Add per proposal.
class PackWriter {
 public:
  explicit PackWriter(uint64_t proposer, size_t reserve);
  void Add(uint64_t id, absl::string_view payload);
  size_t size() const { return data_.size(); }
  std::string Take() { return std::move(data_); }

 private:
  std::string data_;
};

struct DecodedProposal {
  uint64_t id = 0;
  std::string payload;
};

// Decodes an entry's data (either form), moving the payload out of `data` where it can (a
// single proposal). InvalidArgument when the framing is damaged; `out` is then left empty.
absl::Status DecodeProposals(std::string&& data, uint64_t* proposer,
                             std::vector<DecodedProposal>* out);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_PROPOSAL_CODEC_H_
