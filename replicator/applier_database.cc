#include "replicator/applier_database.h"

#include <chrono>
#include <thread>

#include "replicator/conflict_store.h"
#include "replicator/schema_epochs.h"
#include "sqlite/change_log.h"

namespace marmot::replicator {

namespace {

constexpr char kStateTables[] =
    "CREATE TABLE IF NOT EXISTS \"__marmot__shard_state\" ("
    "  shard INTEGER PRIMARY KEY, applied_index INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS \"__marmot__applied\" ("
    "  shard INTEGER NOT NULL, origin INTEGER NOT NULL, tbl TEXT NOT NULL,"
    "  change_id INTEGER NOT NULL, PRIMARY KEY (shard, origin, tbl)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS \"__marmot__dead_letters\" ("
    "  id INTEGER PRIMARY KEY, shard INTEGER, raft_index INTEGER, origin INTEGER, tbl TEXT,"
    "  change_id INTEGER, error TEXT, change BLOB,"
    "  at_ms INTEGER DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)));";

// SQLite's own busy handler sleeps 1, 2, 5, 10, ... up to 100 ms between attempts, so a writer
// that holds the lock for a few milliseconds (the application's transaction, the shipper's
// marking) costs the applier tens of milliseconds per entry. Retry every 250 us instead, for the
// same 5 s in total.
int RetrySoon(void*, int attempt) {
  constexpr int kMaxAttempts = 5'000'000 / 250;
  if (attempt >= kMaxAttempts) return 0;
  std::this_thread::sleep_for(std::chrono::microseconds(250));
  return 1;
}

}  // namespace

absl::StatusOr<sqlite::Database> OpenApplierDatabase(const std::string& db_path) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(db_path);
  if (!db.ok()) return db.status();
  if (absl::Status s = db->SetTriggersEnabled(false); !s.ok()) return s;
  sqlite3_busy_handler(db->raw(), RetrySoon, nullptr);
  if (absl::Status s = db->Exec("PRAGMA foreign_keys = OFF"); !s.ok()) return s;
  if (absl::Status s = db->EnsureWal(); !s.ok()) return s;
  // See "Cost" in change_applier.h: commits need not wait for the disk; the Raft log is the
  // durable record of what is applied, and the applied index read at a start is what survived.
  if (absl::Status s = db->Exec("PRAGMA synchronous = NORMAL"); !s.ok()) return s;
  // Room for an apply round's dirty pages (SQLite's default is 2 MiB): a transaction that
  // outgrows its cache writes pages to the WAL before its commit, some of them twice.
  if (absl::Status s = db->Exec("PRAGMA cache_size = -32768"); !s.ok()) return s;
  // Each entry of an apply round is a savepoint: the first change of a page inside one copies
  // the page to the statement journal, which otherwise goes to a file in /var/tmp: a write() per
  // page, a fifth of a follower's apply thread under load. marmot's own queries need no large
  // temporary storage. A snapshot install, which changes whole tables under one savepoint, uses
  // a file (StatementJournalOnDisk in change_applier.cc).
  if (absl::Status s = db->Exec("PRAGMA temp_store = MEMORY"); !s.ok()) return s;
  if (absl::Status s = db->Exec(kStateTables); !s.ok()) return s;
  if (absl::Status s = db->Exec(kCreateSchemaEpoch); !s.ok()) return s;
  if (absl::Status s = db->Exec(kCreateConflicts); !s.ok()) return s;
  // (rewritten in its current layout if an older marmot left another: the applier may open
  // the file before capture is installed, a tool or test without a keeper always does)
  if (absl::Status s = sqlite::EnsureRowVersions(*db); !s.ok()) return s;
  return db;
}

}  // namespace marmot::replicator
