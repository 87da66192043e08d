// PendingProposals: the proposals this node made and that have not ended yet, per shard, with
// their callbacks and deadlines. Each ends exactly once: applied, refused, expired or cancelled,
// whichever comes first; a later outcome of the same proposal is ignored. Thread-safe; callbacks
// run on the calling thread, never under the lock.
#ifndef MARMOT_RAFT_HOST_PENDING_PROPOSALS_H_
#define MARMOT_RAFT_HOST_PENDING_PROPOSALS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace marmot::raft::host {

// How a proposal ended: OK (committed and applied here, with its log index), Aborted
// (dropped: no leader, transfer in progress, ...; it will not commit), DeadlineExceeded or
// Cancelled (host stopped). After DeadlineExceeded or Cancelled the outcome is unknown: the
// entry may still commit (a caller that retries must make its entries idempotent).
using ProposalCallback = std::function<void(absl::Status, uint64_t index)>;

class PendingProposals {
 public:
  // Ids are drawn from `first_id` on (see NodeHost: they carry the run number).
  PendingProposals(int shards, uint64_t first_id);

  // Records a proposal to `shard` ending at `deadline` at the latest; its id.
  uint64_t Add(uint64_t shard, ProposalCallback done, absl::Time deadline);
  // Ends proposal `id` of `shard` with `s` (and `index`), unless it ended already.
  void Resolve(uint64_t shard, uint64_t id, absl::Status s, uint64_t index);
  // Ends every proposal whose deadline is at or before `now` with DeadlineExceeded.
  void Expire(absl::Time now);
  // Ends every proposal with Cancelled.
  void CancelAll();

 private:
  struct Pending {
    ProposalCallback done;
    absl::Time deadline;
  };

  std::mutex mu_;
  uint64_t next_id_;
  std::vector<std::map<uint64_t, Pending>> by_shard_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_PENDING_PROPOSALS_H_
