// Fuzz target: a committed Raft entry's payload applied by node 2's state machine of shard 0
// (replicator/shard_state_machine.h, change_applier.h, value_codec.h) to a real SQLite
// database (fuzz_replica.h), in an apply round as the host runs it.
//
// Whatever the bytes: nothing crashes; the entry applies (a change that cannot goes to the dead
// letters, a payload that is no ChangeBatch is recorded as undecodable) and the shard moves past
// it, so the round ends instead of retrying forever (libFuzzer's -timeout reports that as a
// hang); the database file stays sound. Wire values read back exactly as they were sent.
#include <cstdlib>
#include <string>

#include "glog/logging.h"
#include "proto/change.pb.h"
#include "replicator/value_codec.h"
#include "tests/fuzz/fuzz_replica.h"
#include "tests/fuzz/fuzz_target.h"

namespace marmot::fuzz {
namespace {

FuzzReplica* replica = nullptr;

// What FromWire reads encodes back to the same wire value (a value with no kind reads as NULL).
void CheckValues(const change::v1::ChangeBatch& batch) {
  auto check = [](const change::v1::Value& v) {
    change::v1::Value again = replicator::ToWire(replicator::FromWire(v));
    if (v.kind_case() == change::v1::Value::KIND_NOT_SET) {
      CHECK_EQ(again.kind_case(), change::v1::Value::kNull);
      return;
    }
    if (v.kind_case() == change::v1::Value::kNull) {
      CHECK_EQ(again.kind_case(), change::v1::Value::kNull);
      return;
    }
    // Byte for byte (a NaN compares unequal to itself, its bits do not).
    CHECK(again.SerializeAsString() == v.SerializeAsString())
        << v.ShortDebugString() << " read back as " << again.ShortDebugString();
  };
  for (const auto& t : batch.tables()) {
    for (const auto& c : t.changes()) {
      for (const auto& v : c.row()) check(v);
      for (const auto& v : c.old_key()) check(v);
      if (c.has_rowid()) check(c.rowid());
    }
  }
}

int Run(const uint8_t* data, size_t size) {
  const std::string payload(reinterpret_cast<const char*>(data), size);
  change::v1::ChangeBatch batch;
  if (batch.ParseFromString(payload)) CheckValues(batch);

  replica->Fresh();
  const uint64_t index = FuzzReplica::kAppliedIndex + 1;
  {
    std::unique_ptr<raft::host::ApplyRound> round = replica->rounds().BeginRound();
    // Whatever the payload, the shard moves past the entry (checked below): an error here
    // would halt it.
    (void)replica->machine().Apply(
        {raft::host::AppliedEntry{.index = index, .term = 2, .data = payload}}, round.get());
  }

  CHECK_EQ(replica->AppliedIndex(0), index) << "the shard did not move past the entry";
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
