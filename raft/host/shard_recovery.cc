#include "raft/host/shard_recovery.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/host/snapshot_payloads.h"
#include "raft/log_prefix.h"
#include "raft/membership.h"

namespace marmot::raft::host {

absl::StatusOr<RecoveredShard> RecoverShard(uint64_t node, uint64_t shard, const ShardLog& log,
                                            StateMachine& sm, const std::string& snapshot_dir) {
  RecoveredShard out;
  out.applied = sm.Open();
  const v1::SnapshotMetadata& meta = log.snapshot_metadata();
  if (out.applied < meta.index()) {
    // The state machine is behind the log's start: install the snapshot first.
    absl::StatusOr<std::shared_ptr<SnapshotSource>> payload =
        OpenRecordedPayload(snapshot_dir, log.snapshot_file());
    if (!payload.ok()) return payload.status();
    absl::Status r = sm.RecoverFromSnapshot(meta.index(), **payload, /*round=*/nullptr);
    if (!r.ok()) {
      // The shard starts halted (as ApplyWorker::Halt would halt it); the others run.
      out.halted =
          absl::StrCat("installing the snapshot at ", meta.index(), " at start: ", r.message());
      LOG(ERROR) << LogPrefix(shard, node) << "halted: " << out.halted
                 << "; this node applies nothing to the shard until it resumes or restarts";
    } else {
      out.applied = meta.index();
    }
  }
  if (out.applied > log.LastIndex()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shard ", shard, ": state machine applied ", out.applied, " but the raft log ends at ",
        log.LastIndex(), " (raft folder from another run?)"));
  }
  // Membership as of `applied`: the snapshot's plus the conf changes after it.
  out.conf = meta.conf_state();
  if (out.applied > meta.index()) {
    auto ents = log.Entries(meta.index() + 1, out.applied + 1, UINT64_MAX);
    if (!ents.ok()) return ents.status();
    for (const auto& e : *ents) {
      v1::ConfChange cc;
      if (e.type() == v1::ENTRY_CONF_CHANGE && cc.ParseFromString(e.data())) {
        out.conf = ApplyConfChangeTo(out.conf, cc);
      }
    }
  }
  absl::StatusOr<uint64_t> term = log.Term(out.applied);
  out.applied_term = term.ok() ? *term : 0;
  return out;
}

}  // namespace marmot::raft::host
