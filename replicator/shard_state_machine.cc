#include "replicator/shard_state_machine.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <glog/logging.h>
#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace marmot::replicator {

std::unique_lock<std::mutex> SharedApplier::Lock() {
  if (InRound()) return std::unique_lock<std::mutex>();
  return std::unique_lock<std::mutex>(mu);
}

void SharedApplier::BeginRound() {
  mu.lock();
  round_owner_.store(std::this_thread::get_id());
  round_open_ = false;
  if (!stopping.load()) applier->CatchUpLocalChanges();
}

absl::Status SharedApplier::OpenRoundTransaction() {
  // When stopping, the round's applies run as transactions of their own.
  if (round_open_ || stopping.load()) return absl::OkStatus();
  if (absl::Status s = applier->database().Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  if (absl::Status s = applier->WriteDeferred(); !s.ok()) {
    (void)applier->database().Exec("ROLLBACK");
    return s;
  }
  round_open_ = true;
  std::lock_guard<std::mutex> l(writing_mu_);
  writing_ = true;
  return absl::OkStatus();
}

void SharedApplier::CommitRoundTransaction() {
  if (round_open_) {
    auto backoff = std::chrono::milliseconds(10);
    for (int attempt = 1;; ++attempt) {
      absl::Status s = applier->database().Exec("COMMIT");
      if (s.ok()) {
        applier->DeferredCommitted();
        break;
      }
      // A failed COMMIT normally leaves the transaction open, to be committed again. If SQLite
      // rolled it back instead, the host already counts the round's entries as applied: only a
      // restart, which applies them again from the Raft log after the durable applied index,
      // keeps this node whole.
      LOG_IF(FATAL, sqlite3_get_autocommit(applier->database().raw()) != 0)
          << "the apply transaction was rolled back by SQLite (" << s
          << "); exiting so that a restart applies those entries again from the Raft log";
      if (stopping.load()) {
        LOG(WARNING)
            << "committing an apply transaction not done before stopping (done again at restart): "
            << s;
        (void)applier->database().Exec("ROLLBACK");
        break;
      }
      LOG_EVERY_N(ERROR, 20) << "committing an apply transaction failed (attempt " << attempt
                             << "), retrying: " << s;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
  }
  round_open_ = false;
  {
    std::lock_guard<std::mutex> l(writing_mu_);
    writing_ = false;
  }
  writing_cv_.notify_all();
}

void SharedApplier::EndRound() {
  CommitRoundTransaction();
  round_owner_.store(std::thread::id());
  mu.unlock();
}

void SharedApplier::Backoff(std::chrono::milliseconds backoff) {
  if (!InRound()) {
    std::this_thread::sleep_for(backoff);
    return;
  }
  // The round's work so far stays applied; the wait holds nothing the application or marmot's
  // other writers (the shipper's marking, another shard's round) could wait on.
  CommitRoundTransaction();
  round_owner_.store(std::thread::id());
  mu.unlock();
  std::this_thread::sleep_for(backoff);
  mu.lock();
  round_owner_.store(std::this_thread::get_id());
}

absl::Status SharedApplier::RunUntilDone(const std::function<std::string()>& what, RunIn in,
                                         const std::function<absl::Status()>& step) {
  auto backoff = std::chrono::milliseconds(10);
  for (int attempt = 1;; ++attempt) {
    absl::Status s;
    {
      std::unique_lock<std::mutex> lock = Lock();
      if (InRound()) {
        if (in == RunIn::kRoundTransaction) {
          s = OpenRoundTransaction();
        } else {
          CommitRoundTransaction();
        }
      }
      if (s.ok()) s = step();
    }
    if (s.ok() || !IsDatabaseFailure(s)) return s;
    if (stopping.load()) {
      LOG(WARNING) << what() << " not done before stopping (done again at restart): " << s;
      return absl::CancelledError(absl::StrCat(what(), ": stopping"));
    }
    LOG_EVERY_N(ERROR, 20) << what() << " failed (attempt " << attempt << "), retrying: " << s;
    Backoff(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

absl::Status SharedApplier::WriteWithDeferred(
    const std::function<absl::Status(sqlite::Database&)>& write) {
  std::lock_guard<std::mutex> lock(mu);
  return WriteDeferredLocked(write);
}

absl::Status SharedApplier::WriteDeferredLocked(
    const std::function<absl::Status(sqlite::Database&)>& write) {
  sqlite::Database& db = applier->database();
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  if (absl::Status s = applier->WriteDeferred(); !s.ok()) return s;
  if (write) {
    if (absl::Status s = write(db); !s.ok()) return s;
  }
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  applier->DeferredCommitted();
  return absl::OkStatus();
}

bool SharedApplier::AwaitEnd(std::chrono::microseconds timeout) {
  std::unique_lock<std::mutex> l(writing_mu_);
  if (!writing_) return false;
  writing_cv_.wait_for(l, timeout, [this] { return !writing_; });
  return true;
}

uint64_t ShardStateMachine::Open() {
  uint64_t applied = 0;
  // Only stopping ends this early (a read fails only when the database does).
  (void)shared_->RunUntilDone(
      [&] { return absl::StrCat("shard ", shard_, ": reading the applied index"); },
      SharedApplier::RunIn::kOwnTransaction,
      [&] {
        absl::StatusOr<uint64_t> a = shared_->applier->AppliedIndex(shard_);
        if (a.ok()) applied = *a;
        return a.status();
      });
  return applied;
}

absl::Status ShardStateMachine::Apply(const std::vector<raft::host::AppliedEntry>& entries) {
  ReplicatorMetrics* metrics = shared_->metrics;
  for (const raft::host::AppliedEntry& e : entries) {
    const auto start = std::chrono::steady_clock::now();
    if (absl::Status s = ApplyOne(e); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("entry ", e.index, ": ", s.message()));
    }
    if (metrics != nullptr) {
      metrics->entries_applied.Increment();
      metrics->apply_seconds.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  return absl::OkStatus();
}

absl::Status ShardStateMachine::ApplyOne(const raft::host::AppliedEntry& e) {
  using RunIn = SharedApplier::RunIn;
  auto what = [&](const char* step) {
    return [this, step, index = e.index] {
      return absl::StrCat("shard ", shard_, ": ", step, " at index ", index);
    };
  };
  if (e.data.empty()) {
    return shared_->RunUntilDone(what("advancing"), RunIn::kRoundTransaction, [&] {
      return shared_->applier->AdvanceAppliedIndex(shard_, e.index);
    });
  }
  change::v1::ChangeBatch batch;
  if (!batch.ParseFromString(e.data)) {
    return shared_->RunUntilDone(
        what("recording an undecodable entry"), RunIn::kRoundTransaction, [&] {
          return shared_->applier->RecordUndecodable(shard_, e.index, e.data, "not a ChangeBatch");
        });
  }
  if (shared_->InRound() && !shared_->TransactionOpen() && ApplyWithoutWriting(e.index, batch)) {
    return absl::OkStatus();
  }
  return shared_->RunUntilDone(what("applying"), RunIn::kRoundTransaction, [&] {
    absl::StatusOr<ApplyResult> r = shared_->applier->Apply(shard_, e.index, batch);
    if (r.ok() && r->dead_lettered > 0) {
      LOG(WARNING) << "shard " << shard_ << " index " << e.index << ": " << r->dead_lettered
                   << " change(s) went to the dead letters";
      if (shared_->metrics != nullptr) shared_->metrics->dead_letters.Increment(r->dead_lettered);
    }
    return r.status();
  });
}

bool ShardStateMachine::ApplyWithoutWriting(uint64_t index, const change::v1::ChangeBatch& batch) {
  absl::StatusOr<std::optional<ApplyResult>> r =
      shared_->applier->ApplyWithoutWriting(shard_, index, batch);
  if (!r.ok()) {
    // Apply retries it, in a transaction.
    VLOG(1) << "shard " << shard_ << " index " << index
            << ": applying without a write failed: " << r.status();
    return false;
  }
  return r->has_value();
}

absl::Status ShardStateMachine::SaveSnapshot(raft::host::SnapshotSink& out) {
  std::unique_lock<std::mutex> lock = shared_->Lock();
  // The rows are read in a read transaction of their own, once the round's writes and the
  // deferred state (the shard's applied state as the database has it) are committed: the
  // application writes on meanwhile (WAL). Not retried: what was written cannot be taken back
  // (the host tries again later).
  if (shared_->InRound()) shared_->CommitRoundTransaction();
  if (shared_->applier->has_deferred()) {
    if (absl::Status s = shared_->WriteDeferredLocked(nullptr); !s.ok()) return s;
  }
  ShardSnapshotWriter writer(out, shared_->snapshot_piece_bytes);
  if (absl::Status s = shared_->applier->CreateSnapshot(shard_, writer); !s.ok()) return s;
  if (shared_->metrics != nullptr) shared_->metrics->snapshots_created.Increment();
  return absl::OkStatus();
}

absl::Status ShardStateMachine::RecoverFromSnapshot(uint64_t index,
                                                    const raft::host::SnapshotSource& in) {
  using RunIn = SharedApplier::RunIn;
  if (in.size() == 0) {
    // The bootstrap snapshot every founding member starts from: the group's history begins
    // here, the node keeps the rows it has.
    return shared_->RunUntilDone(
        [&] { return absl::StrCat("shard ", shard_, ": starting at index ", index); },
        RunIn::kRoundTransaction,
        [&] { return shared_->applier->AdvanceAppliedIndex(shard_, index); });
  }
  ShardSnapshotReader reader(in);
  if (absl::Status s = reader.ReadHeader(); !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the snapshot payload cannot be read: ", s.message()));
  }
  if (reader.shard() != static_cast<uint32_t>(shard_)) {
    return absl::FailedPreconditionError(absl::StrCat("the snapshot is of shard ", reader.shard()));
  }
  InstallResult result;
  absl::Status s = shared_->RunUntilDone(
      [&] { return absl::StrCat("shard ", shard_, ": installing the snapshot at index ", index); },
      RunIn::kOwnTransaction,
      [&] {
        absl::StatusOr<InstallResult> r = shared_->applier->InstallSnapshot(reader, index);
        if (r.ok()) result = *r;
        return r.status();
      });
  if (!s.ok()) return s;
  LOG(INFO) << "shard " << shard_ << ": installed a snapshot at index " << index << " ("
            << in.size() << " bytes)";
  if (shared_->metrics != nullptr) {
    shared_->metrics->snapshots_installed.Increment();
    // The snapshot's tables and dead letters that could not apply here are dead letters of this
    // node.
    shared_->metrics->dead_letters.Increment(result.rows_kept + result.carried_kept);
  }
  return absl::OkStatus();
}

}  // namespace marmot::replicator
