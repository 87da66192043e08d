// A NodeControl that forwards to another one once it is set, and answers UNAVAILABLE ("starting")
// until then. It lets marmot open its pane ports before it touches Raft state, so a busy port
// fails the start before this node has talked to its peers.
#ifndef MARMOT_PANE_SWITCHABLE_NODE_CONTROL_H_
#define MARMOT_PANE_SWITCHABLE_NODE_CONTROL_H_

#include <atomic>

#include "pane/node_control.h"

namespace marmot::pane {

class SwitchableNodeControl : public NodeControl {
 public:
  // `target` must outlive this object (or be replaced by nullptr first).
  void Set(NodeControl* target) { target_.store(target); }
  NodeControl* target() const { return target_.load(); }

  absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() override {
    NodeControl* t = target();
    return t != nullptr ? t->GetStatus() : Starting();
  }
  absl::StatusOr<admin::v1::ListDeadLettersResponse> ListDeadLetters(int limit) override {
    NodeControl* t = target();
    return t != nullptr ? t->ListDeadLetters(limit) : Starting();
  }
  bool Ready() override {
    NodeControl* t = target();
    return t != nullptr && t->Ready();
  }
  absl::StatusOr<admin::v1::ListNodesResponse> ListNodes() override {
    NodeControl* t = target();
    return t != nullptr ? t->ListNodes() : Starting();
  }
  absl::Status AddNode(uint64_t node_id, const std::string& address) override {
    NodeControl* t = target();
    return t != nullptr ? t->AddNode(node_id, address) : Starting();
  }
  absl::Status RemoveNode(uint64_t node_id) override {
    NodeControl* t = target();
    return t != nullptr ? t->RemoveNode(node_id) : Starting();
  }
  absl::Status TransferLeader(uint32_t shard, uint64_t node_id) override {
    NodeControl* t = target();
    return t != nullptr ? t->TransferLeader(shard, node_id) : Starting();
  }
  absl::StatusOr<admin::v1::BalanceLeadersResponse> BalanceLeaders() override {
    NodeControl* t = target();
    return t != nullptr ? t->BalanceLeaders() : Starting();
  }
  absl::Status TriggerSnapshot(int shard) override {
    NodeControl* t = target();
    return t != nullptr ? t->TriggerSnapshot(shard) : Starting();
  }
  absl::Status Backup(const std::function<bool(const admin::v1::BackupChunk&)>& write) override {
    NodeControl* t = target();
    return t != nullptr ? t->Backup(write) : Starting();
  }
  absl::StatusOr<admin::v1::RetryDeadLettersResponse> RetryDeadLetters(
      const std::vector<int64_t>& ids) override {
    NodeControl* t = target();
    return t != nullptr ? t->RetryDeadLetters(ids) : Starting();
  }
  absl::StatusOr<admin::v1::VerifyResponse> Verify(const std::vector<int>& shards,
                                                   absl::Duration timeout) override {
    NodeControl* t = target();
    return t != nullptr ? t->Verify(shards, timeout) : Starting();
  }
  absl::StatusOr<admin::v1::RepairResponse> Repair(int shard, absl::Duration timeout) override {
    NodeControl* t = target();
    return t != nullptr ? t->Repair(shard, timeout) : Starting();
  }
  absl::StatusOr<admin::v1::ListConflictsResponse> ListConflicts(int limit,
                                                                 const std::string& table,
                                                                 int64_t before_id) override {
    NodeControl* t = target();
    return t != nullptr ? t->ListConflicts(limit, table, before_id) : Starting();
  }
  absl::StatusOr<admin::v1::ResolveConflictResponse> ResolveConflict(
      const admin::v1::ResolveConflictRequest& request) override {
    NodeControl* t = target();
    return t != nullptr ? t->ResolveConflict(request) : Starting();
  }

 private:
  static absl::Status Starting() { return absl::UnavailableError("marmot is starting"); }
  std::atomic<NodeControl*> target_{nullptr};
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_SWITCHABLE_NODE_CONTROL_H_
