#include "replicator/database_writer.h"

#include <glog/logging.h>
#include <sqlite3.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "replicator/table_writer.h"

namespace marmot::replicator {

namespace {

constexpr std::chrono::milliseconds kFirstBackoff(10);
constexpr std::chrono::milliseconds kMaxBackoff(1000);

}  // namespace

class DatabaseWriter::Turn {
 public:
  explicit Turn(DatabaseWriter& writer) : writer_(writer) { writer_.AcquireTurn(); }
  ~Turn() { writer_.ReleaseTurn(); }
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

 private:
  DatabaseWriter& writer_;
};

DatabaseWriter::DatabaseWriter(std::unique_ptr<ChangeApplier> applier)
    : applier_(std::move(applier)) {
  CHECK(applier_ != nullptr);
}

void DatabaseWriter::AcquireTurn() {
  absl::MutexLock l(&mu_);
  const uint64_t mine = next_turn_++;
  auto my_turn = [this, mine]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return serving_ == mine; };
  mu_.Await(absl::Condition(&my_turn));
}

void DatabaseWriter::ReleaseTurn() {
  absl::MutexLock l(&mu_);
  ++serving_;
}

void DatabaseWriter::SetTransactionOpen(bool open) {
  absl::MutexLock l(&mu_);
  transaction_open_ = open;
}

bool DatabaseWriter::AwaitEnd(std::chrono::microseconds timeout) {
  absl::MutexLock l(&mu_);
  if (!transaction_open_) return false;
  auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !transaction_open_; };
  mu_.AwaitWithTimeout(absl::Condition(&ended), absl::FromChrono(timeout));
  return true;
}

void DatabaseWriter::BeginShutdown() {
  absl::MutexLock l(&mu_);
  shutting_down_ = true;
}

bool DatabaseWriter::shutting_down() const {
  absl::MutexLock l(&mu_);
  return shutting_down_;
}

void DatabaseWriter::Backoff(std::chrono::milliseconds backoff) {
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), absl::FromChrono(backoff));
}

absl::Status DatabaseWriter::RunUntilDone(
    What what, absl::FunctionRef<absl::Status()> attempt,
    absl::FunctionRef<void(std::chrono::milliseconds)> pause) {
  std::chrono::milliseconds backoff = kFirstBackoff;
  for (int tries = 1;; ++tries) {
    absl::Status s = attempt();
    if (s.ok() || !IsDatabaseFailure(s)) return s;
    if (shutting_down()) {
      LOG(WARNING) << what() << " not done before stopping (done again at restart): " << s;
      return absl::CancelledError(absl::StrCat(what(), ": stopping"));
    }
    LOG_EVERY_N(ERROR, 20) << what() << " failed (attempt " << tries << "), retrying: " << s;
    pause(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

absl::Status DatabaseWriter::Run(What what, Step step) {
  return RunUntilDone(
      what,
      [&] {
        Turn turn(*this);
        return step(*applier_);
      },
      [&](std::chrono::milliseconds backoff) { Backoff(backoff); });
}

absl::Status DatabaseWriter::RunOnce(Step step) {
  Turn turn(*this);
  return step(*applier_);
}

absl::Status DatabaseWriter::WriteWithDeferred(
    const std::function<absl::Status(sqlite::Database&)>& write) {
  Turn turn(*this);
  return WriteDeferredTransaction(write);
}

absl::Status DatabaseWriter::WriteDeferredTransaction(
    const std::function<absl::Status(sqlite::Database&)>& write) {
  sqlite::Database& db = applier_->database();
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  if (absl::Status s = applier_->WriteDeferred(); !s.ok()) return s;
  if (write) {
    if (absl::Status s = write(db); !s.ok()) return s;
  }
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  applier_->DeferredCommitted();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------

DatabaseWriter::Round::Round(DatabaseWriter& writer) : writer_(writer) {
  writer_.AcquireTurn();
  if (!writer_.shutting_down()) writer_.applier_->CatchUpLocalChanges();
}

DatabaseWriter::Round::~Round() {
  CommitTransaction();
  writer_.ReleaseTurn();
}

absl::Status DatabaseWriter::Round::OpenTransaction() {
  // When shutting down, the round's writes run as transactions of their own.
  if (transaction_open_ || writer_.shutting_down()) return absl::OkStatus();
  ChangeApplier& applier = *writer_.applier_;
  if (absl::Status s = applier.database().Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  if (absl::Status s = applier.WriteDeferred(); !s.ok()) {
    (void)applier.database().Exec("ROLLBACK");
    return s;
  }
  transaction_open_ = true;
  writer_.SetTransactionOpen(true);
  return absl::OkStatus();
}

void DatabaseWriter::Round::CommitTransaction() {
  if (!transaction_open_) return;
  ChangeApplier& applier = *writer_.applier_;
  std::chrono::milliseconds backoff = kFirstBackoff;
  for (int tries = 1;; ++tries) {
    absl::Status s = applier.database().Exec("COMMIT");
    if (s.ok()) {
      applier.DeferredCommitted();
      break;
    }
    // A failed COMMIT normally leaves the transaction open, to be committed again. If SQLite
    // rolled it back instead, the host already counts the round's entries as applied: only a
    // restart, which applies them again from the Raft log after the durable applied index,
    // keeps this node whole.
    LOG_IF(FATAL, sqlite3_get_autocommit(applier.database().raw()) != 0)
        << "the apply transaction was rolled back by SQLite (" << s
        << "); exiting so that a restart applies those entries again from the Raft log";
    if (writer_.shutting_down()) {
      LOG(WARNING)
          << "committing an apply transaction not done before stopping (done again at restart): "
          << s;
      (void)applier.database().Exec("ROLLBACK");
      break;
    }
    LOG_EVERY_N(ERROR, 20) << "committing an apply transaction failed (attempt " << tries
                           << "), retrying: " << s;
    writer_.Backoff(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
  transaction_open_ = false;
  writer_.SetTransactionOpen(false);
}

void DatabaseWriter::Round::Pause(std::chrono::milliseconds backoff) {
  // The round's work so far stays applied; the wait holds nothing the application or marmot's
  // other writers (the shipper's marking, another round) could wait on.
  CommitTransaction();
  writer_.ReleaseTurn();
  writer_.Backoff(backoff);
  writer_.AcquireTurn();
}

absl::Status DatabaseWriter::Round::Write(What what, Step step) {
  return writer_.RunUntilDone(
      what,
      [&] {
        absl::Status s = OpenTransaction();
        return s.ok() ? step(*writer_.applier_) : s;
      },
      [&](std::chrono::milliseconds backoff) { Pause(backoff); });
}

absl::Status DatabaseWriter::Round::WriteAlone(What what, Step step) {
  return writer_.RunUntilDone(
      what,
      [&] {
        CommitTransaction();
        return step(*writer_.applier_);
      },
      [&](std::chrono::milliseconds backoff) { Pause(backoff); });
}

bool DatabaseWriter::Round::RunWithoutTransaction(absl::FunctionRef<bool(ChangeApplier&)> step) {
  if (transaction_open_) return false;
  return step(*writer_.applier_);
}

absl::Status DatabaseWriter::Round::ReadCommitted(Step read) {
  CommitTransaction();
  if (writer_.applier_->has_deferred()) {
    if (absl::Status s = writer_.WriteDeferredTransaction(nullptr); !s.ok()) return s;
  }
  return read(*writer_.applier_);
}

}  // namespace marmot::replicator
