// NodeHost's snapshots (node_host.h): those received from a leader (whose payload files the
// host owns until they are recorded or dropped), those this node's apply workers take (recorded,
// then the log compacted), and the reports of those this node sent.
#include <filesystem>
#include <optional>
#include <system_error>

#include "glog/logging.h"
#include "raft/host/node_host.h"
#include "raft/log_prefix.h"

namespace marmot::raft::host {

void NodeHost::HandleSnapshot(v1::Message m) {
  Post([this, m = std::move(m)]() mutable { StepSnapshot(std::move(m)); });
}

void NodeHost::StepSnapshot(v1::Message m) {
  const std::string file = m.snapshot().data();
  const uint64_t shard = m.shard();
  StepIncoming(std::move(m));
  // The core keeps the snapshot (as its unstable one, until the next Ready records it) or
  // drops it (stale, or from a sender it refused). The file goes with what is dropped, never
  // while a record may name it.
  std::vector<std::string> unused = {file};
  if (shard < shards_.size()) {
    Shard* sh = shards_[shard].get();
    const std::optional<v1::Snapshot>& unstable = sh->raw->raft().log().unstable().snapshot();
    if (unstable.has_value() && unstable->data() == file) {
      unused = {sh->unstable_snapshot_file};
      sh->unstable_snapshot_file = file;
    }
    if (unused[0] == sh->log->snapshot_file()) unused.clear();
  }
  for (const std::string& f : unused) {
    if (f.empty()) continue;
    std::error_code ec;
    std::filesystem::remove(store_->SnapshotDir() + "/" + f, ec);
  }
}

void NodeHost::HandleSnapshotStatus(uint64_t shard, uint64_t node, bool ok) {
  if (config_.observer != nullptr) config_.observer->OnSnapshotSent(shard, node, ok);
  Post([this, shard, node, ok] {
    if (shard < shards_.size()) {
      shards_[shard]->raw->ReportSnapshot(node,
                                          ok ? SnapshotStatus::kFinish : SnapshotStatus::kFailure);
    }
  });
}

void NodeHost::OnSnapshotTaken(uint64_t shard, v1::SnapshotMetadata meta, std::string file,
                               uint64_t keep) {
  Post([this, shard, keep, meta = std::move(meta), file = std::move(file)] {
    ShardLog* log = shards_[shard]->log;
    auto s = log->SetLocalSnapshot(meta, file);
    if (!s.ok()) {
      // A newer snapshot arrived from the leader meanwhile.
      std::error_code ec;
      std::filesystem::remove(store_->SnapshotDir() + "/" + file, ec);
      return;
    }
    // Compact only what the state machine made durable (the snapshot), keeping some slack.
    const uint64_t target = meta.index() > keep ? meta.index() - keep : 0;
    if (target >= log->FirstIndex()) {
      auto cs = log->Compact(target);
      if (!cs.ok()) LOG(WARNING) << LogPrefix(shard, config_.node_id) << "compact: " << cs;
    }
    VLOG(1) << LogPrefix(shard, config_.node_id) << "snapshot at " << meta.index()
            << ", log now starts at " << log->FirstIndex();
    std::lock_guard<std::mutex> l(info_mu_);
    info_[shard].first_index = log->FirstIndex();
    info_[shard].snapshot_index = meta.index();
  });
}

void NodeHost::RequestSnapshot(uint64_t shard) {
  Post([this, shard] {
    ApplyTask t;
    t.shard = shard;
    t.take_snapshot = true;
    t.conf_after = shards_[shard]->applied_conf;
    shards_[shard]->worker->Enqueue(std::move(t));
  });
}

}  // namespace marmot::raft::host
