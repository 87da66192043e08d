// The Raft state machine of one shard: committed ChangeBatch entries applied to the local
// SQLite database through the node's DatabaseWriter, and the shard's snapshots.
//
// Entries must apply exactly once, in order. What can go wrong is told apart:
//   - a failure of the database itself (busy beyond the busy timeout, I/O, a full disk;
//     IsDatabaseFailure) is waited out: retried with backoff, holding neither marmot's write
//     transaction nor the writer's turn between tries (DatabaseWriter), so the application and
//     marmot's other writes are not kept waiting on it;
//   - a change that cannot apply here goes to the dead letters (ChangeApplier), and so does a
//     snapshot table that cannot be installed here: the shard goes on;
//   - what neither can fix (no room for another dead letter, -max-dead-letters; a snapshot
//     table too large to keep as one dead letter; a snapshot payload that cannot be read) is
//     returned: the host halts this shard alone (StateMachine::Apply), says why in ShardInfo,
//     and applies nothing more to it until it resumes (the replicator resumes halted shards
//     after retrying dead letters) or marmot restarts.
// On shutdown a retry gives up (Cancelled): the durable applied index is older than the host
// believes, so the entry is applied again at the next start (Open() reports the durable index).
//
// Schema epochs (schema_epochs.h): a batch of row changes read on its origin after a schema
// change of shard 0 waits, before anything of it is applied, until shard 0 applied that change
// here: the shard waits (raft::host::ShardWaitStatus), holding neither a SQLite lock nor the
// writer's turn, and resumes when shard 0 gets there, or after kEpochWaitBound, applying it then
// as before (logged). The other way round, shard 0 applies a batch of schema changes only once
// every shard it lists applied the rows its origin committed there before it
// (ChangeBatch.rows_committed_through), waiting the same way, bounded the same.
//
// The host's apply rounds (raft::host::ApplyRounds) are the writer's rounds (ShardApplyRounds):
// a call made in a round works in that round (its transaction); a call outside rounds makes a
// round of its own for its duration.
#ifndef MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_
#define MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_

#include <cstddef>
#include <map>
#include <memory>
#include <vector>

#include "raft/host/env.h"
#include "raft/host/state_machine.h"
#include "replicator/database_writer.h"
#include "replicator/replicator_metrics.h"
#include "replicator/schema_epochs.h"
#include "replicator/shard_verifier.h"
#include "replicator/snapshot_stream.h"
#include "replicator/table_renames.h"

namespace marmot::replicator {

// Begins the host's apply rounds as rounds of `writer`.
class ShardApplyRounds : public raft::host::ApplyRounds {
 public:
  // `writer` must outlive this and every round begun.
  explicit ShardApplyRounds(DatabaseWriter* writer) : writer_(writer) {}
  std::unique_ptr<raft::host::ApplyRound> BeginRound() override;

 private:
  DatabaseWriter* writer_;
};

class ShardStateMachine : public raft::host::StateMachine {
 public:
  struct Options {
    ReplicatorMetrics* metrics = nullptr;  // Optional; must outlive the state machine.
    // Rows of a snapshot go in pieces of about this many bytes (snapshot_stream.h).
    size_t snapshot_piece_bytes = kDefaultPieceBytes;
    // Measures verification markers and keeps reports (shard_verifier.h); optional, must
    // outlive the state machine. Without it they only advance the applied index.
    ShardVerifier* verifier = nullptr;
    // Orders row batches after the schema changes they were read with (schema_epochs.h);
    // optional, must outlive the state machine. Without it batches apply as they come.
    SchemaEpochs* epochs = nullptr;
    // Renamed tables (table_renames.h): a row batch read before a rename that applied here
    // names the table by its new name. Optional, must outlive the state machine.
    TableRenames* renames = nullptr;
    // The clock of the epochs' bound; must outlive the state machine.
    raft::host::Env* env = raft::host::Env::Default();
  };
  // The rounds passed to the calls below must be ShardApplyRounds' of `writer`.
  ShardStateMachine(int shard, std::shared_ptr<DatabaseWriter> writer, Options options)
      : shard_(shard), writer_(std::move(writer)), options_(options) {}
  ShardStateMachine(int shard, std::shared_ptr<DatabaseWriter> writer)
      : ShardStateMachine(shard, std::move(writer), Options()) {}
  ~ShardStateMachine() override;

  uint64_t Open() override;
  absl::Status Apply(const std::vector<raft::host::AppliedEntry>& entries,
                     raft::host::ApplyRound* round) override;
  absl::Status SaveSnapshot(raft::host::SnapshotSink& out, raft::host::ApplyRound* round) override;
  absl::Status RecoverFromSnapshot(uint64_t index, const raft::host::SnapshotSource& in,
                                   raft::host::ApplyRound* round) override;

 private:
  // The writer's round `round` stands for; CHECK-fails for a round of something else.
  DatabaseWriter::Round& WriterRound(raft::host::ApplyRound* round) const;
  // Runs `work` in `round`, or in a round of its own when `round` is null.
  absl::Status InRound(raft::host::ApplyRound* round,
                       absl::FunctionRef<absl::Status(DatabaseWriter::Round&)> work);
  absl::Status ApplyEntries(DatabaseWriter::Round& round,
                            const std::vector<raft::host::AppliedEntry>& entries);
  // Applies one entry; errors as Apply's.
  absl::Status ApplyOne(DatabaseWriter::Round& round, const raft::host::AppliedEntry& e);
  // ChangeApplier::ApplyWithoutWriting, when the round's transaction is not open: whether the
  // entry is applied (false also when it failed; it is then applied with a write).
  bool ApplyWithoutWriting(DatabaseWriter::Round& round, uint64_t index,
                           const change::v1::ChangeBatch& batch);
  // A verification marker, report or repair order (a batch without tables): advances the
  // applied index, then measures a marker once the entries before it are committed, in the
  // round's turn, or hands the order on.
  absl::Status ApplyVerification(DatabaseWriter::Round& round, uint64_t index,
                                 const change::v1::ChangeBatch& batch);
  absl::Status Install(DatabaseWriter::Round& round, uint64_t index,
                       const raft::host::SnapshotSource& in);
  // OK when the batch at `index` may apply now (its schema epoch is applied here, or it waited
  // kEpochWaitBound already), else the wait (raft::host::ShardWaitStatus).
  absl::Status AwaitSchemaEpoch(uint64_t index, const change::v1::ChangeBatch& batch);
  // OK when the schema changes at `index` may apply now: every shard it lists
  // (ChangeBatch.rows_committed_through) applied that far here, or the entry waited
  // kEpochWaitBound already; else the wait.
  absl::Status AwaitRowsBefore(uint64_t index, const change::v1::ChangeBatch& batch);
  // OK once `shard` applied `target` here, or when the entry at `index` waited for it
  // kEpochWaitBound (logged: `what` says why it waited); else the wait.
  absl::Status AwaitShard(uint64_t index, int shard, uint64_t target, const char* what);
  // This node applied (or installed, or holds at Open) the shard up to `index`.
  void Applied(uint64_t index);
  // Whether the shard waits for a schema epoch now (ReplicatorMetrics::schema_waiting_shards).
  void NoteWaiting(bool waiting);

  const int shard_;
  const std::shared_ptr<DatabaseWriter> writer_;
  const Options options_;
  // The entry that waits (AwaitShard) and since when: a shard resumed before its wait is over
  // waits only the rest.
  uint64_t wait_entry_ = 0;
  absl::Time wait_since_;
  // Per shard waited for, the highest index this shard gave up waiting for (the bound passed),
  // and where that shard stood then: later entries that need no more than it apply at once,
  // without a wait of their own, and so do those that need more while that shard has not moved
  // since (halted, or without a leader: a migration of many schema changes would wait the
  // bound for each).
  struct GaveUp {
    uint64_t through = 0;
    uint64_t stood_at = 0;
  };
  std::map<int, GaveUp> gave_up_;
  bool waiting_ = false;  // NoteWaiting
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_STATE_MACHINE_H_
