// StateMachine: what a shard's committed log is applied to (the replicator's SQLite shard, a
// test's counter). The NodeHost owns one per shard and calls it from that shard's apply
// worker only, never concurrently.
#ifndef MARMOT_RAFT_HOST_STATE_MACHINE_H_
#define MARMOT_RAFT_HOST_STATE_MACHINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "raft/host/snapshot_io.h"

namespace marmot::raft::host {

// One applied proposal. With NodeHostConfig::pack_proposals several proposals can share one
// log entry: they come as consecutive AppliedEntry with the same index, all in one Apply call,
// and the index counts as applied with the last of them.
struct AppliedEntry {
  uint64_t index = 0;
  uint64_t term = 0;
  // The proposed bytes. Empty for entries that are only Raft bookkeeping (a new leader's
  // no-op, a membership change): the state machine just moves its applied index.
  std::string data;
};

// A round of apply work (see ApplyRounds), begun by ApplyRounds::BeginRound; destroying it ends
// the round.
class ApplyRound {
 public:
  virtual ~ApplyRound() = default;
};

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Called once before anything else: the index of the last entry whose effects are durable
  // in the state machine (0 if none). Entries after it are applied again after a restart, so
  // an in-memory state machine returns 0 and is rebuilt from the snapshot and the log. Called
  // again, outside rounds, when a halted shard resumes (NodeHost::ResumeShard): what it holds
  // then, after which entries are applied again the same way (the log's snapshot first when it
  // is below the log's start).
  virtual uint64_t Open() = 0;
  // In the calls below, `round` is the round the call is part of (see ApplyRounds), or null
  // outside rounds (at the host's start, or a host without ApplyRounds).
  //
  // Applies committed entries, in log order, each exactly once per Open(). OK when every one
  // applied. Cancelled when it gave up because the host is stopping (the rest is applied again
  // after the next Open()). Any other error halts the shard on this node: the host applies
  // nothing more to it, takes no more snapshots of it, and shows the error as the shard's
  // ShardInfo::halted until it resumes (NodeHost::ResumeShard) or the process restarts. A state
  // machine returns such an error only for what waiting cannot fix (a failure of its store that
  // may pass, it waits out itself), or, with ShardWaitStatus below, for an entry it may not
  // apply yet.
  virtual absl::Status Apply(const std::vector<AppliedEntry>& entries, ApplyRound* round) = 0;
  // Writes the whole state as of the last applied entry to `out`. On any error the host records
  // nothing of what was written.
  virtual absl::Status SaveSnapshot(SnapshotSink& out, ApplyRound* round) = 0;
  // Replaces the whole state by the snapshot taken at log index `index`, read from `in` (empty
  // for the bootstrap snapshot every founding member starts from). Errors as Apply's.
  virtual absl::Status RecoverFromSnapshot(uint64_t index, const SnapshotSource& in,
                                           ApplyRound* round) = 0;
};

// What a state machine's Apply returns for an entry it may not apply yet because it needs
// something that goes on without it (in the replicator: another shard of this node applying
// further, replicator/schema_epochs.h). The host parks the shard as it halts one: the entries
// before it that Apply applied stay applied, nothing of that entry or after it is applied or
// skipped, the shard's Raft group goes on, and the other shards apply on. ShardInfo::waiting shows
// `reason` (not ShardInfo::halted: nothing failed). The shard resumes as a halted one does
// (NodeHost::ResumeShard, from where the state machine stands, StateMachine::Open): when someone
// asks, and by itself after `at_most` at the latest; the state machine then decides again (it
// may wait again: it keeps its own bound). An entry that waits must not be half applied.
// `entry`: the index of the entry that waits (the host resolves the proposals of those before
// it, which Apply applied).
absl::Status ShardWaitStatus(absl::string_view reason, absl::Duration at_most, uint64_t entry);
// The `at_most` of a status made by ShardWaitStatus; nullopt for any other status.
std::optional<absl::Duration> ShardWaitBound(const absl::Status& s);
// The `entry` of a status made by ShardWaitStatus; nullopt for any other status.
std::optional<uint64_t> ShardWaitEntry(const absl::Status& s);

// Checks a snapshot payload received for `shard` before anything of it is recorded: the whole
// payload, as the state machine would read it, with no side effect. An error refuses it (the
// sender tries again later). Called from transport threads, concurrently for different shards.
using SnapshotCheck = std::function<absl::Status(uint64_t shard, const SnapshotSource& payload)>;

using StateMachineFactory = std::function<std::unique_ptr<StateMachine>(uint64_t shard)>;

// Optional, for state machines of several shards that share one store (the replicator's SQLite
// file): an apply worker begins a round before it applies a run of queued tasks back to back
// (several shards' entries, snapshots taken or installed), passes it to every StateMachine call
// of the run, and destroys it after, all on its own thread, so that the store can make the whole
// round one commit instead of one per entry. Proposals are resolved within the round, before it
// ends: a proposer learns that its entry committed in Raft; a crash before the round's commit
// loses nothing, since Open() then reports the older applied index and the entries are applied
// again from the log.
class ApplyRounds {
 public:
  virtual ~ApplyRounds() = default;
  virtual std::unique_ptr<ApplyRound> BeginRound() = 0;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_STATE_MACHINE_H_
