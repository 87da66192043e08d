#include "raft/host/pending_proposals.h"

#include <utility>

namespace marmot::raft::host {

PendingProposals::PendingProposals(int shards, uint64_t first_id)
    : next_id_(first_id), by_shard_(shards) {}

uint64_t PendingProposals::Add(uint64_t shard, ProposalCallback done, absl::Time deadline) {
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t id = next_id_++;
  by_shard_[shard][id] = Pending{std::move(done), deadline};
  return id;
}

void PendingProposals::Resolve(uint64_t shard, uint64_t id, absl::Status s, uint64_t index) {
  ProposalCallback cb;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = by_shard_[shard].find(id);
    if (it == by_shard_[shard].end()) return;  // ended already (timed out, say)
    cb = std::move(it->second.done);
    by_shard_[shard].erase(it);
  }
  cb(std::move(s), index);
}

void PendingProposals::Expire(absl::Time now) {
  std::vector<ProposalCallback> expired;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& m : by_shard_) {
      for (auto it = m.begin(); it != m.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second.done));
          it = m.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  for (auto& cb : expired) cb(absl::DeadlineExceededError("proposal timed out"), 0);
}

void PendingProposals::CancelAll() {
  std::vector<ProposalCallback> cancelled;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& m : by_shard_) {
      for (auto& [id, p] : m) cancelled.push_back(std::move(p.done));
      m.clear();
    }
  }
  for (auto& cb : cancelled) cb(absl::CancelledError("node host stopped"), 0);
}

}  // namespace marmot::raft::host
