#include "sqlite/database.h"

#include <glog/logging.h>

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace marmot::sqlite {
namespace {

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_READONLY:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_ERROR:
    case SQLITE_RANGE:
      return absl::StatusCode::kInvalidArgument;
    case SQLITE_NOTFOUND:
    case SQLITE_CANTOPEN:
      return absl::StatusCode::kNotFound;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::StatusCode::kDataLoss;
    default:
      return absl::StatusCode::kInternal;
  }
}

constexpr absl::string_view kCodePayload = "marmot.sqlite/result_code";

// A status of code CodeFor(rc) carrying `rc` (ResultCode).
absl::Status WithCode(int rc, std::string message) {
  absl::Status s(CodeFor(rc), std::move(message));
  s.SetPayload(kCodePayload, absl::Cord(absl::StrCat(rc)));
  return s;
}

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return WithCode(rc, absl::StrCat(what, ": ", msg, " (sqlite code ", rc, ")"));
}

}  // namespace

int ResultCode(const absl::Status& s) {
  const auto payload = s.GetPayload(kCodePayload);
  int rc = SQLITE_OK;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &rc)) return SQLITE_OK;
  return rc;
}

bool IsStorageFailure(const absl::Status& s) {
  const int primary = ResultCode(s) & 0xff;
  return primary == SQLITE_FULL || primary == SQLITE_IOERR;
}

std::string QuoteIdentifier(absl::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

bool HasSqliteHeader(const std::string& path) {
  static constexpr char kHeader[16] = "SQLite format 3";  // 15 chars and the terminating zero.
  std::ifstream in(path, std::ios::binary);
  char buf[16];
  if (!in.read(buf, sizeof buf)) return false;
  return std::equal(buf, buf + 16, kHeader);
}

absl::StatusOr<Database> Database::Open(const std::string& path, const OpenOptions& options) {
  int flags = SQLITE_OPEN_NOMUTEX;
  if (options.read_only) {
    flags |= SQLITE_OPEN_READONLY;
  } else {
    flags |= SQLITE_OPEN_READWRITE;
    if (options.create) flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Database db(raw, path);  // Owns `raw` even when opening failed.
  if (rc != SQLITE_OK) return SqliteError(raw, rc, absl::StrCat("open ", path));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(options.busy_timeout.count()));
  // No statement of marmot's (or of a name in a replicated change) may corrupt the file: no
  // writable_schema, no writes to shadow tables, no journal_mode=OFF.
  if (int rc = sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr); rc != SQLITE_OK) {
    return SqliteError(raw, rc, absl::StrCat("defensive mode for ", path));
  }
  // SQLite opens lazily: a file that is not a database fails only when first read.
  if (absl::Status s = db.Exec("SELECT count(*) FROM sqlite_master"); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat(path, " is not a usable SQLite database: ", s.message()));
  }
  return db;
}

Database::Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      path_(std::move(other.path_)),
      kept_(std::move(other.kept_)) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    kept_.clear();
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
    kept_ = std::move(other.kept_);
  }
  return *this;
}

Database::~Database() {
  kept_.clear();  // finalized before the connection closes
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

absl::Status Database::Exec(absl::string_view sql) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return WithCode(rc, absl::StrCat(msg, " (sqlite code ", rc, ") in: ", sql));
}

absl::StatusOr<Statement> Database::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, absl::StrCat("prepare `", sql, "`"));
  if (stmt == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("no statement in `", sql, "`"));
  }
  return Statement(stmt);
}

absl::StatusOr<Value> Database::QueryValue(absl::string_view sql) {
  absl::StatusOr<Statement> stmt = Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("no row from `", sql, "`"));
  return stmt->Column(0);
}

absl::StatusOr<Statement*> Database::Kept(const std::string& sql) {
  auto it = kept_.find(sql);
  if (it == kept_.end()) {
    absl::StatusOr<Statement> stmt = Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    it = kept_.emplace(sql, std::make_unique<Statement>(*std::move(stmt))).first;
  }
  it->second->Reset();
  return it->second.get();
}

absl::Status Database::RunKept(const std::string& sql, const std::vector<Value>& values) {
  absl::StatusOr<Statement*> stmt = Kept(sql);
  if (!stmt.ok()) return stmt.status();
  absl::Status s = (*stmt)->BindAll(values);
  if (s.ok()) s = (*stmt)->Run();
  (*stmt)->Reset();
  return s;
}

absl::Status Database::QueryKept(const std::string& sql, const std::vector<Value>& values,
                                 absl::FunctionRef<absl::Status(const Statement&)> visit) {
  absl::StatusOr<Statement*> stmt = Kept(sql);
  if (!stmt.ok()) return stmt.status();
  absl::Status s = (*stmt)->BindAll(values);
  while (s.ok()) {
    absl::StatusOr<bool> row = (*stmt)->Step();
    if (!row.ok() || !*row) {
      s = row.status();
      break;
    }
    s = visit(**stmt);
  }
  (*stmt)->Reset();
  return s;
}

absl::StatusOr<Value> Database::QueryKeptValue(const std::string& sql) {
  absl::StatusOr<Statement*> stmt = Kept(sql);
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = (*stmt)->Step();
  absl::StatusOr<Value> value = !row.ok() ? absl::StatusOr<Value>(row.status())
                                : *row
                                    ? absl::StatusOr<Value>((*stmt)->Column(0))
                                    : absl::NotFoundError(absl::StrCat("no row from `", sql, "`"));
  (*stmt)->Reset();
  return value;
}

void Database::DropKept() { kept_.clear(); }

absl::StatusOr<std::vector<std::vector<Value>>> Database::QueryRows(absl::string_view sql) {
  absl::StatusOr<Statement> stmt = Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  std::vector<std::vector<Value>> rows;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return rows;
    rows.push_back(stmt->Row());
  }
}

absl::Status Database::EnsureWal() {
  absl::StatusOr<Value> mode = QueryValue("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  if (mode->storage_class() != StorageClass::kText ||
      absl::AsciiStrToLower(mode->bytes()) != "wal") {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, " cannot be switched to WAL mode (it stays in journal mode ", mode->DebugString(),
        "); marmot needs WAL so that applications and marmot can read and write side by side"));
  }
  return absl::OkStatus();
}

absl::Status Database::SetTriggersEnabled(bool enabled) {
  int now = -1;
  int rc = sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_TRIGGER, enabled ? 1 : 0, &now);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "enable/disable triggers");
  if (now != (enabled ? 1 : 0))
    return absl::InternalError("SQLite did not change the trigger setting");
  return absl::OkStatus();
}

Statement::Statement(Statement&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

absl::Status Statement::Error(int rc, absl::string_view what) const {
  return SqliteError(sqlite3_db_handle(stmt_), rc, absl::StrCat(what, " `", sql(), "`"));
}

absl::Status Statement::Bind(int index, const Value& value) {
  int rc = SQLITE_OK;
  switch (value.storage_class()) {
    case StorageClass::kNull:
      rc = sqlite3_bind_null(stmt_, index);
      break;
    case StorageClass::kInteger:
      rc = sqlite3_bind_int64(stmt_, index, value.integer());
      break;
    case StorageClass::kReal:
      rc = sqlite3_bind_double(stmt_, index, value.real());
      break;
    case StorageClass::kText:
      rc = sqlite3_bind_text64(stmt_, index, value.bytes().data(), value.bytes().size(),
                               SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    case StorageClass::kBlob:
      // A zero-length BLOB must stay a BLOB: sqlite3_bind_blob64 with a null pointer binds NULL.
      rc = value.bytes().empty() ? sqlite3_bind_zeroblob(stmt_, index, 0)
                                 : sqlite3_bind_blob64(stmt_, index, value.bytes().data(),
                                                       value.bytes().size(), SQLITE_TRANSIENT);
      break;
  }
  if (rc != SQLITE_OK) return Error(rc, absl::StrCat("bind parameter ", index, " of"));
  return absl::OkStatus();
}

absl::Status Statement::BindAll(const std::vector<Value>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (absl::Status s = Bind(static_cast<int>(i) + 1, values[i]); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  absl::Status error = Error(rc, "step");
  sqlite3_reset(stmt_);
  return error;
}

absl::Status Statement::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

void Statement::Reset() { sqlite3_reset(stmt_); }

Value Statement::Column(int i) const {
  switch (sqlite3_column_type(stmt_, i)) {
    case SQLITE_INTEGER:
      return Value::Integer(sqlite3_column_int64(stmt_, i));
    case SQLITE_FLOAT:
      return Value::Real(sqlite3_column_double(stmt_, i));
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
      return Value::Text(std::string(p, sqlite3_column_bytes(stmt_, i)));
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, i));
      int n = sqlite3_column_bytes(stmt_, i);
      return Value::Blob(n == 0 ? std::string() : std::string(p, n));
    }
    default:
      return Value::Null();
  }
}

std::vector<Value> Statement::Row() const {
  std::vector<Value> row;
  row.reserve(column_count());
  for (int i = 0; i < column_count(); ++i) row.push_back(Column(i));
  return row;
}

absl::StatusOr<Transaction> Transaction::Begin(Database& db, Mode mode) {
  const bool nested = sqlite3_get_autocommit(db.raw()) == 0;
  absl::Status s = db.Exec(nested                     ? "SAVEPOINT marmot_nested"
                           : mode == Mode::kImmediate ? "BEGIN IMMEDIATE"
                                                      : "BEGIN");
  if (!s.ok()) return s;
  return Transaction(&db, nested);
}

Transaction::Transaction(Transaction&& other) noexcept
    : db_(other.db_), nested_(other.nested_), open_(std::exchange(other.open_, false)) {}

Transaction::~Transaction() {
  if (!open_) return;
  if (absl::Status s =
          db_->Exec(nested_ ? "ROLLBACK TO marmot_nested; RELEASE marmot_nested" : "ROLLBACK");
      !s.ok()) {
    LOG(WARNING) << "rollback of " << db_->path() << " failed: " << s;
  }
}

absl::Status Transaction::Commit() {
  CHECK(open_) << "Commit on a transaction that is no longer open";
  absl::Status s = db_->Exec(nested_ ? "RELEASE marmot_nested" : "COMMIT");
  if (s.ok()) open_ = false;
  return s;
}

}  // namespace marmot::sqlite
