// A thin RAII layer over the SQLite C API.
//
// `Database` owns one connection, `Statement` one prepared statement, `Transaction` one
// BEGIN...COMMIT scope that rolls back unless committed. Errors are `absl::Status` values that
// carry SQLite's message and the SQL that failed; nothing here throws. Values are bound and read
// as `Value`, keeping their storage class exactly.
#ifndef MARMOT_SQLITE_DATABASE_H_
#define MARMOT_SQLITE_DATABASE_H_

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sqlite/value.h"

namespace marmot::sqlite {

// The SQLite result code (extended) a status returned here carries, SQLITE_OK for any other
// status (one made elsewhere, or OK). It survives copies of the status, not a new status made
// from its message.
int ResultCode(const absl::Status& s);
// Whether the status carries SQLITE_FULL or an SQLITE_IOERR code: the disk refused a write, a
// sync or a read. SQLite may have rolled the whole transaction back then (not only the
// statement): a caller checks sqlite3_get_autocommit() before going on in it.
bool IsStorageFailure(const absl::Status& s);

// Quotes an identifier for SQL: `my "t"` -> `"my ""t"""`. Every identifier marmot writes into SQL
// goes through this, so tables named `order`, `my table` or `we"ird` work.
std::string QuoteIdentifier(absl::string_view name);

// True when the file at `path` starts with the SQLite header ("SQLite format 3\0"). An absent or
// empty file is not a SQLite file. It opens and closes the file: call it only while this process
// has no SQLite connection to it (closing any descriptor of a file drops every POSIX lock the
// process holds on that file, SQLite's included, and another process may then write beside them).
bool HasSqliteHeader(const std::string& path);

class Statement;

struct OpenOptions {
  bool read_only = false;
  // Create the file if it does not exist (ignored when read_only).
  bool create = true;
  // How long a statement waits for another connection's lock before SQLITE_BUSY.
  std::chrono::milliseconds busy_timeout{5000};
};

class Database {
 public:
  // Opens `path` in SQLite's defensive mode (SQLITE_DBCONFIG_DEFENSIVE: no statement can corrupt
  // the file). Fails with the SQLite error when the file cannot be opened, or when it exists
  // and is not a database (SQLite only notices that on first read, so Open reads the schema).
  static absl::StatusOr<Database> Open(const std::string& path, const OpenOptions& options = {});

  Database(Database&&) noexcept;
  Database& operator=(Database&&) noexcept;
  ~Database();

  // Runs one or more statements that return no rows of interest.
  absl::Status Exec(absl::string_view sql);

  // Prepares one statement. The Database must outlive it.
  absl::StatusOr<Statement> Prepare(absl::string_view sql);

  // Runs a query expected to return exactly one row with one column.
  absl::StatusOr<Value> QueryValue(absl::string_view sql);

  // Runs a query and returns every row (for small results: introspection, tests).
  absl::StatusOr<std::vector<std::vector<Value>>> QueryRows(absl::string_view sql);

  // Statements run often are prepared at their first use and kept for the connection's life.
  // Kept() returns one reset and ready to bind; the pointer stays valid until DropKept(), which
  // finalizes them all (after a schema change, say, so that statements of dropped tables go).
  // RunKept binds `values` and runs to completion; QueryKept binds them and hands each row to
  // `visit`, stopping at the first error it returns; QueryKeptValue is QueryValue through a kept
  // statement. Each resets the statement when done, even on error (an unreset statement keeps
  // its read transaction open).
  absl::StatusOr<Statement*> Kept(const std::string& sql);
  absl::Status RunKept(const std::string& sql, const std::vector<Value>& values);
  absl::Status QueryKept(const std::string& sql, const std::vector<Value>& values,
                         absl::FunctionRef<absl::Status(const Statement&)> visit);
  absl::StatusOr<Value> QueryKeptValue(const std::string& sql);
  void DropKept();

  // The database's journal mode, switched to WAL if it is not already. Fails with
  // FAILED_PRECONDITION when SQLite keeps another mode (in-memory or read-only databases).
  absl::Status EnsureWal();

  // Sets SQLITE_DBCONFIG_ENABLE_TRIGGER on this connection.
  absl::Status SetTriggersEnabled(bool enabled);

  int64_t Changes() const { return sqlite3_changes64(db_); }
  const std::string& path() const { return path_; }
  sqlite3* raw() const { return db_; }

 private:
  Database(sqlite3* db, std::string path);
  sqlite3* db_ = nullptr;
  std::string path_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> kept_;
};

class Statement {
 public:
  Statement(Statement&&) noexcept;
  Statement& operator=(Statement&&) noexcept;
  ~Statement();

  // Binds `value` to the 1-based parameter `index`.
  absl::Status Bind(int index, const Value& value);
  // Binds values to parameters 1..n.
  absl::Status BindAll(const std::vector<Value>& values);

  // Advances: true when a row is ready, false when done.
  absl::StatusOr<bool> Step();
  // Steps to completion, ignoring rows.
  absl::Status Run();
  // Makes the statement ready to run again; bindings are kept until rebound.
  void Reset();

  int column_count() const { return sqlite3_column_count(stmt_); }
  std::string column_name(int i) const { return sqlite3_column_name(stmt_, i); }
  // The value of column `i` of the current row with its exact storage class.
  Value Column(int i) const;
  std::vector<Value> Row() const;

  absl::string_view sql() const { return sqlite3_sql(stmt_); }

 private:
  friend class Database;
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  absl::Status Error(int rc, absl::string_view what) const;
  sqlite3_stmt* stmt_ = nullptr;
};

class Transaction {
 public:
  enum class Mode { kDeferred, kImmediate };

  // BEGIN [IMMEDIATE]. Inside a transaction that is already open on the connection (a caller
  // grouping several units of work into one commit), a SAVEPOINT instead: Commit() releases it
  // into the enclosing transaction, which makes it durable when that one commits, and a
  // rollback undoes just this unit. The Database must outlive the transaction.
  static absl::StatusOr<Transaction> Begin(Database& db, Mode mode = Mode::kDeferred);

  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  // Rolls back unless Commit succeeded.
  ~Transaction();

  absl::Status Commit();

 private:
  Transaction(Database* db, bool nested) : db_(db), nested_(nested) {}
  Database* db_;
  bool nested_;
  bool open_ = true;
};

}  // namespace marmot::sqlite

#endif  // MARMOT_SQLITE_DATABASE_H_
