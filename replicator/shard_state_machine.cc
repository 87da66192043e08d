#include "replicator/shard_state_machine.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "sqlite/database.h"

namespace marmot::replicator {

namespace {

// A host's apply round: a round of the writer for as long as it lives.
class HostRound : public raft::host::ApplyRound {
 public:
  explicit HostRound(DatabaseWriter& writer) : round(writer) {}
  DatabaseWriter::Round round;
};

}  // namespace

std::unique_ptr<raft::host::ApplyRound> ShardApplyRounds::BeginRound() {
  return std::make_unique<HostRound>(*writer_);
}

DatabaseWriter::Round& ShardStateMachine::WriterRound(raft::host::ApplyRound* round) const {
  auto* host_round = dynamic_cast<HostRound*>(round);
  CHECK(host_round != nullptr) << "shard " << shard_ << ": a round not begun by ShardApplyRounds";
  CHECK(&host_round->round.writer() == writer_.get())
      << "shard " << shard_ << ": a round of another database writer";
  return host_round->round;
}

absl::Status ShardStateMachine::InRound(
    raft::host::ApplyRound* round, absl::FunctionRef<absl::Status(DatabaseWriter::Round&)> work) {
  if (round != nullptr) return work(WriterRound(round));
  DatabaseWriter::Round own(*writer_);
  return work(own);
}

uint64_t ShardStateMachine::Open() {
  uint64_t applied = 0;
  uint64_t epoch = 0;
  // Only shutting down ends this early (a read fails only when the database does).
  (void)writer_->Run([&] { return absl::StrCat("shard ", shard_, ": reading the applied index"); },
                     [&](ChangeApplier& applier) {
                       absl::StatusOr<uint64_t> a = applier.AppliedIndex(shard_);
                       if (!a.ok()) return a.status();
                       applied = *a;
                       if (shard_ != 0 || options_.epochs == nullptr) return absl::OkStatus();
                       // Shard 0: the schema epoch kept (schema_epochs.h). A database of a
                       // version that kept none: every schema change up to the applied index is
                       // here, not known one by one; kept from now on.
                       absl::StatusOr<std::optional<uint64_t>> kept =
                           LoadSchemaEpoch(applier.database());
                       if (!kept.ok()) return kept.status();
                       epoch = kept->value_or(applied);
                       if (kept->has_value()) return absl::OkStatus();
                       return StoreSchemaEpoch(applier.database(), epoch);
                     });
  Applied(applied);
  if (shard_ == 0 && options_.epochs != nullptr) options_.epochs->SchemaAt(epoch);
  return applied;
}

void ShardStateMachine::Applied(uint64_t index) {
  SchemaEpochs* epochs = options_.epochs;
  if (epochs == nullptr) return;
  // Opened or installed: an entry that waited is decided again when it applies (a snapshot may
  // have covered it); a registration left would wake this shard later for nothing, or resume it
  // from a halt of another cause.
  epochs->StopWaiting(shard_);
  NoteWaiting(false);
  epochs->Applied(shard_, index);
}

void ShardStateMachine::NoteWaiting(bool waiting) {
  if (waiting == waiting_) return;
  waiting_ = waiting;
  if (options_.metrics == nullptr) return;
  if (waiting) {
    options_.metrics->schema_waiting_shards.Increment();
  } else {
    options_.metrics->schema_waiting_shards.Decrement();
  }
}

ShardStateMachine::~ShardStateMachine() { NoteWaiting(false); }

absl::Status ShardStateMachine::Apply(const std::vector<raft::host::AppliedEntry>& entries,
                                      raft::host::ApplyRound* round) {
  return InRound(round, [&](DatabaseWriter::Round& r) { return ApplyEntries(r, entries); });
}

absl::Status ShardStateMachine::ApplyEntries(DatabaseWriter::Round& round,
                                             const std::vector<raft::host::AppliedEntry>& entries) {
  ReplicatorMetrics* metrics = options_.metrics;
  for (const raft::host::AppliedEntry& e : entries) {
    const auto start = std::chrono::steady_clock::now();
    if (absl::Status s = ApplyOne(round, e); !s.ok()) {
      if (raft::host::ShardWaitBound(s).has_value()) return s;  // says which entry
      return absl::Status(s.code(), absl::StrCat("entry ", e.index, ": ", s.message()));
    }
    if (options_.epochs != nullptr) options_.epochs->Applied(shard_, e.index);
    if (metrics != nullptr) {
      metrics->entries_applied.Increment();
      metrics->apply_seconds.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  return absl::OkStatus();
}

absl::Status ShardStateMachine::ApplyOne(DatabaseWriter::Round& round,
                                         const raft::host::AppliedEntry& e) {
  auto what = [&](const char* step) {
    return [this, step, index = e.index] {
      return absl::StrCat("shard ", shard_, ": ", step, " at index ", index);
    };
  };
  // The round keeps each write to make it again should SQLite roll its transaction back
  // (DatabaseWriter): the writes own what they read.
  const int shard = shard_;
  const uint64_t index = e.index;
  if (e.data.empty()) {
    return round.Write(what("advancing"), [shard, index](ChangeApplier& applier) {
      return applier.AdvanceAppliedIndex(shard, index);
    });
  }
  auto batch = std::make_shared<change::v1::ChangeBatch>();
  if (!batch->ParseFromString(e.data)) {
    return round.Write(what("recording an undecodable entry"),
                       [shard, index, data = e.data](ChangeApplier& applier) {
                         return applier.RecordUndecodable(shard, index, data, "not a ChangeBatch");
                       });
  }
  if (batch->has_verify_marker() || batch->has_verify_report() || batch->has_repair_order()) {
    return ApplyVerification(round, e.index, *batch);
  }
  absl::Status ready = AwaitSchemaEpoch(e.index, *batch);
  if (ready.ok()) ready = AwaitRowsBefore(e.index, *batch);
  NoteWaiting(!ready.ok());
  if (!ready.ok()) return ready;
  // After the schema changes its rows were read with applied here: the renames since.
  if (options_.renames != nullptr && batch->tables_size() > 0) {
    NameTablesHere(*options_.renames, *batch);
  }
  if (ApplyWithoutWriting(round, e.index, *batch)) return absl::OkStatus();
  // Another node's entry may wait while this node's own schema moves (ChangeApplier::HoldFor):
  // without the write lock meanwhile.
  if (absl::Status s = round.Await(what("waiting"),
                                   [&](ChangeApplier& applier) { return applier.HoldFor(*batch); });
      !s.ok()) {
    return s;
  }
  // What the round's last (successful) making of the write counted.
  auto counted = std::make_shared<ApplyResult>();
  // Shard 0's schema changes keep their index as the schema epoch in the transaction that
  // applies them (schema_epochs.h; a savepoint of the round's).
  const bool schema = shard_ == 0 && options_.epochs != nullptr && !batch->schema_changes().empty();
  absl::Status s =
      round.Write(what("applying"), [shard, index, batch, counted, schema](ChangeApplier& applier) {
        if (!schema) {
          absl::StatusOr<ApplyResult> r = applier.Apply(shard, index, *batch);
          if (r.ok()) *counted = *r;
          return r.status();
        }
        absl::StatusOr<sqlite::Transaction> both =
            sqlite::Transaction::Begin(applier.database(), sqlite::Transaction::Mode::kImmediate);
        if (!both.ok()) return both.status();
        if (absl::Status kept = StoreSchemaEpoch(applier.database(), index); !kept.ok()) {
          return kept;
        }
        absl::StatusOr<ApplyResult> r = applier.Apply(shard, index, *batch);
        if (!r.ok()) return r.status();
        *counted = *r;
        return both->Commit();
      });
  if (!s.ok()) return s;
  if (schema) {
    // Before the round commits: rows that another process reads with this schema are read after
    // this, and carry it.
    options_.epochs->SchemaAt(e.index);
  }
  if (counted->dead_lettered > 0) {
    LOG(WARNING) << "shard " << shard_ << " index " << e.index << ": " << counted->dead_lettered
                 << " change(s) went to the dead letters";
  }
  if (options_.metrics != nullptr) {
    options_.metrics->dead_letters.Increment(counted->dead_lettered);
    options_.metrics->schema_changes_applied.Increment(counted->schema_applied);
    options_.metrics->schema_conflicts.Increment(counted->schema_conflicts);
    options_.metrics->schema_changes_refused.Increment(counted->schema_refused);
    options_.metrics->conflicts.Increment(counted->conflicts);
  }
  return s;
}

absl::Status ShardStateMachine::AwaitSchemaEpoch(uint64_t index,
                                                 const change::v1::ChangeBatch& batch) {
  // The hot path: one compare.
  const uint64_t epoch = batch.schema_epoch();
  if (options_.epochs == nullptr || epoch <= options_.epochs->applied(0)) return absl::OkStatus();
  return AwaitShard(index, 0, epoch, "the schema change its rows were read after");
}

absl::Status ShardStateMachine::AwaitRowsBefore(uint64_t index,
                                                const change::v1::ChangeBatch& batch) {
  if (options_.epochs == nullptr || batch.rows_committed_through().empty()) {
    return absl::OkStatus();
  }
  // In shard order: the wait is the same whatever order the map is read in.
  std::map<uint32_t, uint64_t> through(batch.rows_committed_through().begin(),
                                       batch.rows_committed_through().end());
  for (const auto& [shard, target] : through) {
    // This shard's own entries before it applied already; a shard this node does not have is
    // of a cluster of another shape.
    if (static_cast<int>(shard) == shard_ ||
        shard >= static_cast<uint32_t>(options_.epochs->shards())) {
      continue;
    }
    if (options_.epochs->applied(static_cast<int>(shard)) >= target) continue;
    absl::Status s =
        AwaitShard(index, static_cast<int>(shard), target, "rows its origin committed before it");
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ShardStateMachine::AwaitShard(uint64_t index, int shard, uint64_t target,
                                           const char* what) {
  SchemaEpochs& epochs = *options_.epochs;
  // Given up on already (shard `shard` stuck here): one wait of the bound per target, not one
  // per entry, or a halted shard 0 would let this shard apply one entry per bound; and none
  // while that shard has not moved since.
  if (auto given_up = gave_up_.find(shard);
      given_up != gave_up_.end() &&
      (target <= given_up->second.through || epochs.applied(shard) <= given_up->second.stood_at)) {
    return absl::OkStatus();
  }
  const absl::Time now = options_.env->MonotonicNow();
  if (wait_entry_ != index) {
    wait_entry_ = index;
    wait_since_ = now;
  }
  if (epochs.WaitFor(shard_, shard, target)) return absl::OkStatus();
  const absl::Duration left = wait_since_ + kEpochWaitBound - now;
  if (left <= absl::ZeroDuration()) {
    epochs.StopWaiting(shard_);
    if (options_.metrics != nullptr) options_.metrics->schema_waits_given_up.Increment();
    GaveUp& gave_up = gave_up_[shard];
    gave_up.through = std::max(gave_up.through, target);
    gave_up.stood_at = epochs.applied(shard);
    LOG(WARNING) << "shard " << shard_ << " index " << index << ": shard " << shard
                 << " did not apply index " << target << " (" << what << ") here within "
                 << kEpochWaitBound << " (it stands at " << epochs.applied(shard)
                 << "); applying without it: what the schema here cannot take goes to the dead "
                    "letters";
    return absl::OkStatus();
  }
  return raft::host::ShardWaitStatus(
      absl::StrCat("entry ", index, " waits for shard ", shard, " to apply index ", target, " (",
                   what, "; it stands at ", epochs.applied(shard), ")"),
      left, index);
}

bool ShardStateMachine::ApplyWithoutWriting(DatabaseWriter::Round& round, uint64_t index,
                                            const change::v1::ChangeBatch& batch) {
  return round.RunWithoutTransaction([&](ChangeApplier& applier) {
    absl::StatusOr<std::optional<ApplyResult>> r =
        applier.ApplyWithoutWriting(shard_, index, batch);
    if (!r.ok()) {
      // Applied with a write instead, in a transaction.
      VLOG(1) << "shard " << shard_ << " index " << index
              << ": applying without a write failed: " << r.status();
      return false;
    }
    return r->has_value();
  });
}

absl::Status ShardStateMachine::ApplyVerification(DatabaseWriter::Round& round, uint64_t index,
                                                  const change::v1::ChangeBatch& batch) {
  // The round keeps the write to make it again (DatabaseWriter): it owns what it reads.
  absl::Status s =
      round.Write([&] { return absl::StrCat("shard ", shard_, ": advancing at index ", index); },
                  [shard = shard_, index](ChangeApplier& applier) {
                    return applier.AdvanceAppliedIndex(shard, index);
                  });
  if (!s.ok()) return s;
  ShardVerifier* verifier = options_.verifier;
  if (verifier == nullptr) return absl::OkStatus();
  if (batch.has_verify_report()) {
    verifier->Received(shard_, batch.verify_report());
    return absl::OkStatus();
  }
  if (batch.has_repair_order()) {
    verifier->Ordered(shard_, batch.repair_order());
    return absl::OkStatus();
  }
  if (!verifier->ShouldMeasure(batch.verify_marker())) return absl::OkStatus();
  // Measured on what is committed up to this entry, still in the writer's turn: no apply
  // changes the rows meanwhile. A failure to commit only leaves the marker unmeasured.
  s = round.ReadCommitted([&](ChangeApplier& applier) {
    verifier->Measure(shard_, index, batch.verify_marker(), applier.database());
    return absl::OkStatus();
  });
  if (!s.ok()) {
    LOG(WARNING) << "shard " << shard_ << ": verify marker at index " << index
                 << " not measured: " << s;
  }
  return absl::OkStatus();
}

absl::Status ShardStateMachine::SaveSnapshot(raft::host::SnapshotSink& out,
                                             raft::host::ApplyRound* round) {
  return InRound(round, [&](DatabaseWriter::Round& r) {
    // The rows are read in a read transaction of their own, once the round's writes and the
    // deferred state (the shard's applied state as the database has it) are committed: the
    // application writes on meanwhile (WAL). Not retried: what was written cannot be taken back
    // (the host tries again later).
    absl::Status s = r.ReadCommitted([&](ChangeApplier& applier) {
      ShardSnapshotWriter writer(out, options_.snapshot_piece_bytes);
      // Read in the writer's turn, so no schema change of marmot's moves the baseline before
      // the snapshot reads it; the epoch moves before a change commits: at least the newest in
      // it (schema_epochs.h).
      if (options_.epochs != nullptr) writer.set_schema_epoch(options_.epochs->current());
      return applier.CreateSnapshot(shard_, writer);
    });
    if (s.ok() && options_.metrics != nullptr) options_.metrics->snapshots_created.Increment();
    return s;
  });
}

absl::Status ShardStateMachine::RecoverFromSnapshot(uint64_t index,
                                                    const raft::host::SnapshotSource& in,
                                                    raft::host::ApplyRound* round) {
  return InRound(round, [&](DatabaseWriter::Round& r) { return Install(r, index, in); });
}

absl::Status ShardStateMachine::Install(DatabaseWriter::Round& round, uint64_t index,
                                        const raft::host::SnapshotSource& in) {
  if (in.size() == 0) {
    // The bootstrap snapshot every founding member starts from: the group's history begins
    // here, the node keeps the rows it has.
    return round.Write(
        [&] { return absl::StrCat("shard ", shard_, ": starting at index ", index); },
        [shard = shard_, index](ChangeApplier& applier) {
          return applier.AdvanceAppliedIndex(shard, index);
        });
  }
  ShardSnapshotReader reader(in);
  if (absl::Status s = reader.ReadHeader(); !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the snapshot payload cannot be read: ", s.message()));
  }
  if (reader.shard() != static_cast<uint32_t>(shard_)) {
    return absl::FailedPreconditionError(absl::StrCat("the snapshot is of shard ", reader.shard()));
  }
  // The snapshot's schema is this node's once its transaction commits: rows read from then on
  // carry at least the epoch it brings (before the commit, as a schema change of shard 0 does;
  // InstallSnapshot keeps it in the same transaction).
  if (options_.epochs != nullptr) options_.epochs->SchemaAt(reader.schema_epoch());
  InstallResult result;
  absl::Status s = round.WriteAlone(
      [&] { return absl::StrCat("shard ", shard_, ": installing the snapshot at index ", index); },
      [&](ChangeApplier& applier) {
        absl::StatusOr<InstallResult> r = applier.InstallSnapshot(reader, index);
        if (r.ok()) result = *r;
        return r.status();
      });
  if (!s.ok()) return s;
  LOG(INFO) << "shard " << shard_ << ": installed a snapshot at index " << index << " ("
            << in.size() << " bytes)";
  Applied(index);
  if (options_.metrics != nullptr) {
    options_.metrics->snapshots_installed.Increment();
    // The snapshot's tables and dead letters that could not apply here are dead letters of this
    // node.
    options_.metrics->dead_letters.Increment(result.rows_kept + result.carried_kept);
  }
  return absl::OkStatus();
}

}  // namespace marmot::replicator
