// Fuzz target: a snapshot payload (the streamed format, replicator/snapshot_stream.h) received
// from the network, checked whole as the receiver checks it before recording it
// (CheckShardSnapshot), then installed by node 2's state machine of shard 0
// (replicator/shard_state_machine.h, change_applier.h) into a real SQLite database
// (fuzz_replica.h), in an apply round as the host runs it.
//
// Whatever the bytes: nothing crashes; a payload the check refuses is never installed; an
// install either succeeds, and the shard's applied index becomes the snapshot's (so the round
// ends instead of retrying forever; libFuzzer's -timeout reports that as a hang), or fails whole
// and changes nothing; no row of shard 1 is written (one may be deleted when a row of the
// snapshot takes its UNIQUE value, as applying a change does), unless the snapshot carries dead
// letters (which, like any committed change, may name rows of any shard); the database file
// stays sound.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "glog/logging.h"
#include "proto/change.pb.h"
#include "raft/host/snapshot_io.h"
#include "replicator/snapshot_stream.h"
#include "tests/fuzz/fuzz_replica.h"
#include "tests/fuzz/fuzz_target.h"

namespace marmot::fuzz {
namespace {

FuzzReplica* replica = nullptr;

int Run(const uint8_t* data, size_t size) {
  const raft::host::StringSnapshotSource payload(
      std::string(reinterpret_cast<const char*>(data), size));
  if (!replicator::CheckShardSnapshot(0, payload).ok()) return 0;
  absl::StatusOr<change::v1::ShardSnapshot> parsed = replicator::ReadShardSnapshot(payload);
  const bool carries_dead_letters = parsed.ok() && parsed->dead_letters_size() > 0;

  replica->Fresh();
  // Every fresh copy holds the same rows: read them once.
  static const std::string other_shard_before = replica->RowsOfShard(1);
  const uint64_t index = FuzzReplica::kAppliedIndex + 5;
  absl::Status s;
  {
    std::unique_ptr<raft::host::ApplyRound> round = replica->rounds().BeginRound();
    s = replica->machine().RecoverFromSnapshot(index, payload, round.get());
  }

  const uint64_t applied = replica->AppliedIndex(0);
  if (s.ok()) {
    CHECK_EQ(applied, index) << "an installed snapshot left the applied index behind";
    if (!carries_dead_letters) {
      // Rows of shard 1 may go (an upsert replaces the row holding the same UNIQUE value, as
      // applying a change does), but none may appear or change.
      const std::vector<std::string> before = absl::StrSplit(other_shard_before, '\n');
      const std::string after = replica->RowsOfShard(1);
      for (absl::string_view row : absl::StrSplit(after, '\n', absl::SkipEmpty())) {
        CHECK(std::binary_search(before.begin(), before.end(), row))
            << "a snapshot of shard 0 wrote a row of shard 1: " << row;
      }
    }
  } else {
    CHECK_EQ(applied, FuzzReplica::kAppliedIndex) << "a failed install changed the shard: " << s;
  }
  replica->CheckIntact();
  return 0;
}

}  // namespace
}  // namespace marmot::fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  marmot::fuzz::QuietLogs((*argv)[0]);
  marmot::fuzz::replica = new marmot::fuzz::FuzzReplica();
  std::atexit([] { delete marmot::fuzz::replica; });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return marmot::fuzz::Run(data, size);
}
