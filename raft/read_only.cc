#include "raft/read_only.h"

namespace marmot::raft {

void ReadOnly::AddRequest(uint64_t index, v1::Message req) {
  std::string ctx = req.entries(0).data();
  if (pending_.count(ctx)) return;
  pending_[ctx] = ReadIndexStatus{std::move(req), index, {}};
  queue_.push_back(std::move(ctx));
}

const std::set<uint64_t>* ReadOnly::RecvAck(uint64_t id, const std::string& ctx) {
  auto it = pending_.find(ctx);
  if (it == pending_.end()) return nullptr;
  it->second.acks.insert(id);
  return &it->second.acks;
}

std::vector<ReadIndexStatus> ReadOnly::Advance(const std::string& ctx) {
  std::vector<ReadIndexStatus> out;
  if (!pending_.count(ctx)) return out;
  while (!queue_.empty()) {
    std::string c = std::move(queue_.front());
    queue_.pop_front();
    auto it = pending_.find(c);
    out.push_back(std::move(it->second));
    pending_.erase(it);
    if (c == ctx) break;
  }
  return out;
}

std::string ReadOnly::LastPendingRequestCtx() const {
  return queue_.empty() ? std::string() : queue_.back();
}

}  // namespace marmot::raft
