#include "raft/host/snapshot_payloads.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/host/snapshot_file.h"
#include "raft/log_prefix.h"

namespace marmot::raft::host {

absl::StatusOr<std::string> WriteLocalSnapshot(StateMachine& sm, ApplyRound* round,
                                               const std::string& dir, uint64_t node,
                                               uint64_t shard, uint64_t index, uint64_t term) {
  const std::string file = absl::StrCat("local-shard-", shard, "-", index, "-", term, ".snap");
  absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> out =
      SnapshotFileWriter::Create(dir + "/" + file);
  absl::Status s = out.status();
  if (s.ok()) {
    s = sm.SaveSnapshot(**out, round);
    if (!s.ok()) {
      LOG(ERROR) << LogPrefix(shard, node) << "state machine cannot snapshot: " << s;
      return s;
    }
    s = (*out)->Finish();
  }
  if (!s.ok()) {
    LOG(ERROR) << LogPrefix(shard, node) << "cannot write snapshot: " << s;
    return s;
  }
  return file;
}

absl::StatusOr<std::shared_ptr<SnapshotSource>> OpenRecordedPayload(const std::string& dir,
                                                                    const std::string& file) {
  if (file.empty()) return std::make_shared<StringSnapshotSource>();
  absl::StatusOr<std::unique_ptr<FileSnapshotSource>> source =
      FileSnapshotSource::Open(dir + "/" + file);
  if (!source.ok()) {
    return absl::DataLossError(absl::StrCat("the recorded snapshot file ", file,
                                            " cannot be opened: ", source.status().message()));
  }
  return std::shared_ptr<SnapshotSource>(*std::move(source));
}

}  // namespace marmot::raft::host
