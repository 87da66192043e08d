#include "replicator/database_writer.h"

#include <glog/logging.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "replicator/table_writer.h"
#include "sqlite/database.h"

namespace marmot::replicator {

namespace {

constexpr std::chrono::milliseconds kFirstBackoff(10);
constexpr std::chrono::milliseconds kMaxBackoff(1000);
// How often a paused apply says it still waits.
constexpr absl::Duration kPauseLogInterval = absl::Seconds(10);

// What a failed write of the database says of its disk.
std::string CauseOf(const absl::Status& s) {
  switch (sqlite::ResultCode(s) & 0xff) {
    case SQLITE_FULL:
      return "disk full";
    case SQLITE_IOERR:
      return "I/O error";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "busy";
    default:
      return "error";
  }
}

// "N bytes free" on the file system of `db_path`, or "free space unknown".
std::string FreeSpace(const std::string& db_path) {
  std::error_code error;
  const std::filesystem::path path(db_path);
  const std::filesystem::space_info space =
      std::filesystem::space(path.has_parent_path() ? path.parent_path() : ".", error);
  if (error) return "free space unknown";
  return absl::StrCat(space.available, " bytes free");
}

// The line a paused apply logs at first and every kPauseLogInterval, e.g. "database disk full:
// apply paused, 15 write(s) of the apply round wait for /data/app.db to take writes again (0
// bytes free); the Raft logs keep the entries, nothing is lost (database or disk is full ...)".
std::string PausedLine(const std::string& db_path, const absl::Status& cause, size_t writes,
                       absl::Duration paused_for) {
  return absl::StrCat(
      "database ", CauseOf(cause), ": apply paused",
      paused_for > absl::ZeroDuration()
          ? absl::StrCat(" for ", absl::FormatDuration(absl::Trunc(paused_for, absl::Seconds(1))))
          : "",
      ", ", writes, " write(s) of the apply round wait for ", db_path, " to take writes again (",
      FreeSpace(db_path), "); the Raft logs keep the entries, nothing is lost (", cause.message(),
      ")");
}

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

absl::Status DatabaseWriter::Refusal() const {
  absl::MutexLock l(&mu_);
  if (!lost_round_) return absl::OkStatus();
  return absl::CancelledError(
      "an apply round's writes were lost while stopping; they are applied again at the next "
      "start, and nothing more is written before");
}

void DatabaseWriter::SetPaused(std::optional<ApplyPause> pause) {
  absl::MutexLock l(&mu_);
  paused_ = std::move(pause);
}

std::optional<DatabaseWriter::ApplyPause> DatabaseWriter::apply_paused() const {
  absl::MutexLock l(&mu_);
  return paused_;
}

absl::Status DatabaseWriter::RunUntilDone(
    What what, absl::FunctionRef<absl::Status()> attempt,
    absl::FunctionRef<void(std::chrono::milliseconds, const absl::Status&)> pause) {
  std::chrono::milliseconds backoff = kFirstBackoff;
  for (int tries = 1;; ++tries) {
    absl::Status s = attempt();
    if (s.ok() || !IsDatabaseFailure(s)) return s;
    if (shutting_down()) {
      LOG(WARNING) << what() << " not done before stopping (done again at restart): " << s;
      return absl::CancelledError(absl::StrCat(what(), ": stopping"));
    }
    if (IsHeldForOwnSchema(s)) {
      if (tries == 1) LOG(INFO) << what() << ": " << s.message();
    } else {
      LOG_EVERY_N(ERROR, 20) << what() << " failed (attempt " << tries << "), retrying: " << s;
    }
    pause(backoff, s);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

absl::Status DatabaseWriter::Run(What what, Step step) {
  return RunUntilDone(
      what,
      [&] {
        Turn turn(*this);
        if (absl::Status refused = Refusal(); !refused.ok()) return refused;
        return step(*applier_);
      },
      [&](std::chrono::milliseconds backoff, const absl::Status&) { Backoff(backoff); });
}

absl::Status DatabaseWriter::RunOnce(Step step) {
  Turn turn(*this);
  if (absl::Status refused = Refusal(); !refused.ok()) return refused;
  return step(*applier_);
}

absl::Status DatabaseWriter::WriteWithDeferred(
    const std::function<absl::Status(sqlite::Database&)>& write) {
  Turn turn(*this);
  if (absl::Status refused = Refusal(); !refused.ok()) return refused;
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

bool DatabaseWriter::Round::CommitTransaction(const absl::Status& cause) {
  if (!transaction_open_) return true;
  ChangeApplier& applier = *writer_.applier_;
  sqlite::Database& db = applier.database();
  // After a failed write SQLite may have rolled the transaction back already.
  absl::Status s = sqlite3_get_autocommit(db.raw()) == 0 ? db.Exec("COMMIT")
                   : cause.ok() ? absl::InternalError("the transaction was rolled back by SQLite")
                                : cause;
  if (s.ok()) {
    applier.DeferredCommitted();
  } else {
    // SQLite rolls back on a COMMIT that fails with a full disk or an I/O error; whatever else
    // failed is rolled back too, so that the wait holds no lock.
    const absl::Status why = sqlite::ResultCode(s) == SQLITE_OK && !cause.ok() ? cause : s;
    if (sqlite3_get_autocommit(db.raw()) == 0) (void)db.Exec("ROLLBACK");
    applier.TransactionRolledBack();
    writer_.SetTransactionOpen(false);
    const absl::Time since = absl::Now();
    writer_.SetPaused(ApplyPause{.since = since, .cause = CauseOf(why)});
    LOG(ERROR) << PausedLine(db.path(), why, written_.size(), absl::ZeroDuration());
    absl::Time logged = since;
    std::chrono::milliseconds backoff = kFirstBackoff;
    for (;;) {
      if (writer_.shutting_down()) {
        LOG(WARNING) << "stopping while an apply round waits for the database: its "
                     << written_.size()
                     << " write(s) are applied again from the Raft log at the next start, and "
                        "nothing more is written until then ("
                     << s.message() << ")";
        {
          absl::MutexLock l(&writer_.mu_);
          writer_.lost_round_ = true;
        }
        writer_.SetPaused(std::nullopt);
        written_.clear();
        transaction_open_ = false;
        return false;
      }
      writer_.ReleaseTurn();
      writer_.Backoff(backoff);
      writer_.AcquireTurn();
      backoff = std::min(backoff * 2, kMaxBackoff);
      if (writer_.shutting_down()) continue;
      s = WriteAgain();
      if (s.ok()) break;
      if (!IsDatabaseFailure(s)) {
        // Not the database's failure, so not one that waiting mends (the host counts these
        // entries as applied): a restart applies them again from the Raft log, and the host
        // halts a shard whose entry cannot apply.
        LOG(ERROR) << "an apply round rolled back by the database could not be made again ("
                   << s.message() << "); exiting (code " << kLostRoundExitCode
                   << ") so that a restart applies its entries from the Raft log";
        google::FlushLogFiles(google::GLOG_INFO);
        _exit(kLostRoundExitCode);
      }
      if (absl::Now() - logged >= kPauseLogInterval) {
        logged = absl::Now();
        LOG(ERROR) << PausedLine(db.path(), s, written_.size(), logged - since);
      }
    }
    LOG(WARNING) << "database " << db.path() << " takes writes again: apply resumed after "
                 << absl::FormatDuration(absl::Now() - since) << ", " << written_.size()
                 << " write(s) of the round made again";
    writer_.SetPaused(std::nullopt);
  }
  written_.clear();
  transaction_open_ = false;
  writer_.SetTransactionOpen(false);
  return true;
}

absl::Status DatabaseWriter::Round::WriteAgain() {
  ChangeApplier& applier = *writer_.applier_;
  sqlite::Database& db = applier.database();
  auto failed = [&](absl::Status s) {
    if (sqlite3_get_autocommit(db.raw()) == 0) (void)db.Exec("ROLLBACK");
    applier.TransactionRolledBack();
    writer_.SetTransactionOpen(false);
    return s;
  };
  if (absl::Status s = db.Exec("BEGIN IMMEDIATE"); !s.ok()) return failed(s);
  writer_.SetTransactionOpen(true);
  if (absl::Status s = applier.WriteDeferred(); !s.ok()) return failed(s);
  for (const Redo& write : written_) {
    if (absl::Status s = write(applier); !s.ok()) return failed(s);
  }
  if (sqlite3_get_autocommit(db.raw()) != 0) {
    // A write met a failure it did not pass on, and SQLite rolled the transaction back.
    return failed(absl::InternalError("the transaction was rolled back while writing again"));
  }
  if (absl::Status s = db.Exec("COMMIT"); !s.ok()) return failed(s);
  applier.DeferredCommitted();
  return absl::OkStatus();
}

void DatabaseWriter::Round::Pause(std::chrono::milliseconds backoff, const absl::Status& cause) {
  // The round's work so far stays applied; the wait holds nothing the application or marmot's
  // other writers (the shipper's marking, another round) could wait on.
  if (!CommitTransaction(cause)) return;  // Lost: the next try is refused.
  writer_.ReleaseTurn();
  writer_.Backoff(backoff);
  writer_.AcquireTurn();
}

absl::Status DatabaseWriter::Round::Write(What what, Redo step) {
  absl::Status s = writer_.RunUntilDone(
      what,
      [&] {
        if (absl::Status refused = writer_.Refusal(); !refused.ok()) return refused;
        absl::Status s = OpenTransaction();
        return s.ok() ? step(*writer_.applier_) : s;
      },
      [&](std::chrono::milliseconds backoff, const absl::Status& cause) { Pause(backoff, cause); });
  if (s.ok() && transaction_open_) written_.push_back(std::move(step));
  return s;
}

absl::Status DatabaseWriter::Round::WriteAlone(What what, Step step) {
  return writer_.RunUntilDone(
      what,
      [&] {
        if (!CommitTransaction()) return writer_.Refusal();
        if (absl::Status refused = writer_.Refusal(); !refused.ok()) return refused;
        return step(*writer_.applier_);
      },
      [&](std::chrono::milliseconds backoff, const absl::Status& cause) { Pause(backoff, cause); });
}

bool DatabaseWriter::Round::RunWithoutTransaction(absl::FunctionRef<bool(ChangeApplier&)> step) {
  if (transaction_open_ || !writer_.Refusal().ok()) return false;
  return step(*writer_.applier_);
}

absl::Status DatabaseWriter::Round::Await(What what, Step check) {
  return writer_.RunUntilDone(
      what,
      [&] {
        if (absl::Status refused = writer_.Refusal(); !refused.ok()) return refused;
        return check(*writer_.applier_);
      },
      [&](std::chrono::milliseconds backoff, const absl::Status& cause) { Pause(backoff, cause); });
}

absl::Status DatabaseWriter::Round::ReadCommitted(Step read) {
  CommitTransaction();
  // A snapshot of a state that lost writes would be recorded at an index it does not hold.
  if (absl::Status refused = writer_.Refusal(); !refused.ok()) return refused;
  if (writer_.applier_->has_deferred()) {
    if (absl::Status s = writer_.WriteDeferredTransaction(nullptr); !s.ok()) return s;
  }
  return read(*writer_.applier_);
}

}  // namespace marmot::replicator
