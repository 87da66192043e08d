#include "replicator/shard_state_machine.h"

#include <chrono>
#include <thread>

#include <glog/logging.h>
#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace marmot::replicator {

namespace {

// Runs `step` until it succeeds. After a failure it gives up (false) once `stopping` is set,
// else logs every 20th failure and tries again after a backoff of 10 ms doubling up to 1 s:
// database failures (busy past the timeout, disk full) are waited out, never skipped. `what`
// names the step in logs; it is only called on failure (the step runs once per entry).
bool RetryWithBackoff(const std::atomic<bool>& stopping, const std::function<std::string()>& what,
                      const std::function<absl::Status()>& step) {
  auto backoff = std::chrono::milliseconds(10);
  for (int attempt = 1;; ++attempt) {
    absl::Status s = step();
    if (s.ok()) return true;
    if (stopping.load()) {
      LOG(WARNING) << what() << " not done before stopping (done again at restart): " << s;
      return false;
    }
    LOG_EVERY_N(ERROR, 20) << what() << " failed (attempt " << attempt << "), retrying: " << s;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace

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

void SharedApplier::PrepareWrite() {
  if (InRound()) EnsureTransaction();
}

bool SharedApplier::EnsureTransaction() {
  if (round_open_) return true;
  // When stopping, the round's applies run as transactions of their own. The applier's busy
  // handler already waits up to 5 s for the application's writer at each attempt.
  if (stopping.load()) return false;
  round_open_ = RetryWithBackoff(
      stopping, [] { return std::string("beginning an apply transaction"); },
      [this] {
        absl::Status s = applier->database().Exec("BEGIN IMMEDIATE");
        if (!s.ok()) return s;
        s = applier->WriteDeferred();
        if (!s.ok()) (void)applier->database().Exec("ROLLBACK");
        return s;
      });
  if (round_open_) {
    std::lock_guard<std::mutex> l(writing_mu_);
    writing_ = true;
  }
  return round_open_;
}

absl::Status SharedApplier::WriteWithDeferred(const std::function<absl::Status(sqlite::Database&)>& write) {
  std::lock_guard<std::mutex> lock(mu);
  return WriteDeferredLocked(write);
}

absl::Status SharedApplier::WriteDeferredNow() {
  if (InRound() && EnsureTransaction()) return absl::OkStatus();
  if (!applier->has_deferred()) return absl::OkStatus();
  return WriteDeferredLocked(nullptr);
}

absl::Status SharedApplier::WriteDeferredLocked(const std::function<absl::Status(sqlite::Database&)>& write) {
  sqlite::Database& db = applier->database();
  absl::StatusOr<sqlite::Transaction> txn = sqlite::Transaction::Begin(db, sqlite::Transaction::Mode::kImmediate);
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

void SharedApplier::EndRound() {
  if (round_open_) {
    auto commit = [this] {
      absl::Status s = applier->database().Exec("COMMIT");
      // A failed COMMIT normally leaves the transaction open, to be committed again. If SQLite
      // rolled it back instead, the host already counts the round's entries as applied: only a
      // restart, which applies them again from the Raft log after the durable applied index,
      // keeps this node whole.
      LOG_IF(FATAL, !s.ok() && sqlite3_get_autocommit(applier->database().raw()) != 0)
          << "the apply transaction was rolled back by SQLite (" << s
          << "); exiting so that a restart applies those entries again from the Raft log";
      return s;
    };
    if (RetryWithBackoff(stopping, [] { return std::string("committing an apply transaction"); }, commit)) {
      applier->DeferredCommitted();
    } else {
      (void)applier->database().Exec("ROLLBACK");
    }
  }
  round_open_ = false;
  {
    std::lock_guard<std::mutex> l(writing_mu_);
    writing_ = false;
  }
  writing_cv_.notify_all();
  round_owner_.store(std::thread::id());
  mu.unlock();
}

bool ShardStateMachine::RetryUntilDone(const char* what, uint64_t index,
                                       const std::function<absl::Status()>& step) {
  return RetryWithBackoff(
      shared_->stopping,
      [&] { return absl::StrCat("shard ", shard_, ": ", what, " at index ", index); },
      [&] {
        std::unique_lock<std::mutex> lock = shared_->Lock();
        return step();
      });
}

uint64_t ShardStateMachine::Open() {
  uint64_t applied = 0;
  RetryUntilDone("reading the applied index", 0, [&] {
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
    bool done;
    if (e.data.empty()) {
      shared_->PrepareWrite();
      done = RetryUntilDone("advancing", e.index,
                            [&] { return shared_->applier->AdvanceAppliedIndex(shard_, e.index); });
    } else {
      change::v1::ChangeBatch batch;
      if (!batch.ParseFromString(e.data)) {
        shared_->PrepareWrite();
        done = RetryUntilDone("recording an undecodable entry", e.index, [&] {
          return shared_->applier->RecordUndecodable(shard_, e.index, e.data,
                                                     "not a ChangeBatch");
        });
      } else if (shared_->InRound() && !shared_->TransactionOpen() && ApplyWithoutWriting(e.index, batch)) {
        done = true;
      } else {
        shared_->PrepareWrite();
        done = RetryUntilDone("applying", e.index, [&] {
          absl::StatusOr<ApplyResult> r = shared_->applier->Apply(shard_, e.index, batch);
          if (r.ok() && r->dead_lettered > 0) {
            LOG(WARNING) << "shard " << shard_ << " index " << e.index << ": " << r->dead_lettered
                         << " change(s) went to the dead letters";
            if (metrics != nullptr) metrics->dead_letters.Increment(r->dead_lettered);
          }
          return r.status();
        });
      }
    }
    if (!done) return absl::CancelledError("stopping");
    if (metrics != nullptr) {
      metrics->entries_applied.Increment();
      metrics->apply_seconds.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  return absl::OkStatus();
}

bool ShardStateMachine::ApplyWithoutWriting(uint64_t index, const change::v1::ChangeBatch& batch) {
  absl::StatusOr<std::optional<ApplyResult>> r = shared_->applier->ApplyWithoutWriting(shard_, index, batch);
  if (!r.ok()) {
    // Apply retries it, in a transaction.
    VLOG(1) << "shard " << shard_ << " index " << index << ": applying without a write failed: " << r.status();
    return false;
  }
  return r->has_value();
}

absl::Status ShardStateMachine::SaveSnapshot(raft::host::SnapshotSink& out) {
  std::unique_lock<std::mutex> lock = shared_->Lock();
  // The snapshot holds the shard's applied state as the database has it: deferred state first.
  if (absl::Status s = shared_->WriteDeferredNow(); !s.ok()) return s;
  absl::StatusOr<change::v1::ShardSnapshot> snap = shared_->applier->CreateSnapshot(shard_);
  if (!snap.ok()) return snap.status();
  std::string bytes;
  if (!snap->SerializeToString(&bytes)) {
    return absl::ResourceExhaustedError("the shard's snapshot exceeds protobuf's 2 GiB");
  }
  if (absl::Status s = out.Write(bytes); !s.ok()) return s;
  if (shared_->metrics != nullptr) shared_->metrics->snapshots_created.Increment();
  return absl::OkStatus();
}

absl::Status ShardStateMachine::RecoverFromSnapshot(uint64_t index, const raft::host::SnapshotSource& in) {
  if (in.size() == 0) {
    // The bootstrap snapshot every founding member starts from: the group's history begins
    // here, the node keeps the rows it has.
    shared_->PrepareWrite();
    bool done = RetryUntilDone("starting the shard", index,
                               [&] { return shared_->applier->AdvanceAppliedIndex(shard_, index); });
    return done ? absl::OkStatus() : absl::CancelledError("stopping");
  }
  std::string data;
  if (absl::Status s = in.ReadAt(0, in.size(), &data); !s.ok()) return s;
  change::v1::ShardSnapshot snap;
  if (!snap.ParseFromString(data) || static_cast<int>(snap.shard()) != shard_) {
    return absl::DataLossError("snapshot payload is not a snapshot of this shard");
  }
  shared_->PrepareWrite();
  bool done = RetryUntilDone("installing a snapshot", index, [&] {
    absl::StatusOr<InstallResult> r = shared_->applier->InstallSnapshot(snap, index);
    // The snapshot's dead letters that could not apply here either are dead letters of this node.
    if (r.ok() && r->carried_kept > 0 && shared_->metrics != nullptr) {
      shared_->metrics->dead_letters.Increment(r->carried_kept);
    }
    return r.status();
  });
  if (!done) return absl::CancelledError("stopping");
  LOG(INFO) << "shard " << shard_ << ": installed a snapshot at index " << index;
  if (shared_->metrics != nullptr) shared_->metrics->snapshots_installed.Increment();
  return absl::OkStatus();
}

}  // namespace marmot::replicator
