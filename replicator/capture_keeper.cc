#include "replicator/capture_keeper.h"

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sqlite/schema.h"

namespace marmot::replicator {
namespace {

absl::StatusOr<int64_t> PragmaInt(sqlite::Database& db, const char* pragma) {
  absl::StatusOr<sqlite::Value> v = db.QueryValue(absl::StrCat("PRAGMA ", pragma));
  if (!v.ok()) return v.status();
  return v->integer();
}

// The user tables that hold at least one row (one probe each, whatever their size).
absl::StatusOr<std::vector<std::string>> TablesWithRows(sqlite::Database& db) {
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(db);
  if (!listing.ok()) return listing.status();
  std::vector<std::string> holding;
  for (const sqlite::TableSchema& t : listing->tables) {
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> any =
        db.QueryRows(absl::StrCat("SELECT 1 FROM ", sqlite::QuoteIdentifier(t.name), " LIMIT 1"));
    if (!any.ok()) return any.status();
    if (!any->empty()) holding.push_back(t.name);
  }
  return holding;
}

// Deletes every row of `tables` in one transaction, with the user's triggers off (the rows go
// because the node takes the cluster's, not because the application deleted them).
absl::Status DeleteRows(sqlite::Database& db, const std::vector<std::string>& tables) {
  if (absl::Status s = db.SetTriggersEnabled(false); !s.ok()) return s;
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  std::vector<std::string> deleted;
  for (const std::string& table : tables) {
    if (absl::Status s = db.Exec(absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(table)));
        !s.ok()) {
      return s;
    }
    deleted.push_back(absl::StrCat(table, " (", db.Changes(), ")"));
  }
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  LOG(INFO) << "deleted the rows of " << absl::StrJoin(deleted, ", ")
            << " to take the cluster's (-take-cluster-rows)";
  return db.SetTriggersEnabled(true);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CaptureKeeper>> CaptureKeeper::Open(const std::string& db_path,
                                                                   ExistingRows existing_rows,
                                                                   bool was_member) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(db_path);
  if (!db.ok()) return db.status();
  // A database marmot replicated before (its applied state is there) has its rows in the
  // cluster already: a table without capture now was created while marmot was stopped, and its
  // rows are copied like those of a table created while it runs. At the first start, the rows
  // already there are copied only when this node seeds the cluster with them.
  absl::StatusOr<sqlite::Value> replicated_before = db->QueryValue(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '__marmot__shard_state'");
  if (!replicated_before.ok()) return replicated_before.status();
  const bool first_start = replicated_before->integer() == 0;
  const bool seed = existing_rows == ExistingRows::kSeed;
  if (!first_start && existing_rows != ExistingRows::kRefuse) {
    LOG(WARNING) << (seed ? "-seed" : "-take-cluster-rows") << " changes nothing: " << db_path
                 << " was replicated before; its rows went into its change logs at its first start "
                    "and ship from there";
  }
  if (first_start && !seed) {
    absl::StatusOr<std::vector<std::string>> holding = TablesWithRows(*db);
    if (!holding.ok()) return holding.status();
    if (!holding->empty() && existing_rows == ExistingRows::kTakeCluster) {
      if (absl::Status s = DeleteRows(*db, *holding); !s.ok()) return s;
    } else if (!holding->empty() && was_member) {
      return absl::FailedPreconditionError(absl::StrCat(
          "tables ", absl::StrJoin(*holding, ", "), " of ", db_path,
          " hold rows but marmot's state in it is gone (removed by -cleanup, say) while this "
          "node's Raft store remains: its rows can no longer be told from the cluster's, and the "
          "shards' logs would be applied again over them. Start this node with "
          "-take-cluster-rows to delete them and take the cluster's again (rows written while "
          "marmot was away are deleted too: copy them out first)"));
    } else if (!holding->empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "tables ", absl::StrJoin(*holding, ", "), " of ", db_path,
          " hold rows at marmot's first start on it: they would never reach the other nodes, and "
          "the cluster's rows of the same keys would be written over them. Start this node with "
          "-seed to found the cluster from these rows, or with -take-cluster-rows to delete them "
          "and take the cluster's"));
    }
  }
  std::unique_ptr<CaptureKeeper> keeper(new CaptureKeeper(*std::move(db)));
  if (absl::Status s = keeper->Install(/*backfill=*/!first_start || seed); !s.ok()) return s;
  // Changes already in the logs (from an earlier run) count as seen.
  if (absl::StatusOr<int64_t> n = keeper->CountNewChanges(); !n.ok()) return n.status();
  return keeper;
}

int64_t CaptureLogIdsAbove() { return 16 * absl::ToUnixMicros(absl::Now()); }

absl::Status CaptureKeeper::Install(bool backfill) {
  // At every start (and schema change) the logs' ids move up to 16 x the microseconds since the
  // Unix epoch: above every id this node handed out before for the same table, even from a log
  // that was dropped since or a database file restored from a backup (a log would have to hand
  // out more than 16 ids per microsecond over its whole life to get ahead of the clock), and far
  // below SQLite's largest rowid (2^63 - 1 is 16 x the microseconds of some 18,000 years). Only a
  // clock set back by more than that margin could hand out an old id again.
  absl::StatusOr<sqlite::CaptureReport> report =
      sqlite::InstallCapture(db_, {.backfill_new_tables = backfill,
                                   .log_ids_above = CaptureLogIdsAbove(),
                                   .captured_before = captured_});
  if (!report.ok()) return report.status();
  captured_.clear();
  for (const auto& list : {report->installed, report->updated, report->unchanged}) {
    captured_.insert(list.begin(), list.end());
  }
  absl::StatusOr<int64_t> version = PragmaInt(db_, "schema_version");
  if (!version.ok()) return version.status();
  schema_version_ = *version;
  if (!report->installed.empty()) {
    LOG(INFO) << "capture installed on " << report->installed.size()
              << " table(s): " << absl::StrJoin(report->installed, ", ")
              << (backfill ? absl::StrCat("; ", report->backfilled_rows, " existing row(s) copied")
                           : "");
  }
  if (!report->updated.empty()) {
    LOG(INFO) << "capture updated for changed table(s): " << absl::StrJoin(report->updated, ", ");
  }
  for (const std::string& t : report->keyed_by_rowid) {
    if (last_ids_.count(t) == 0) {
      LOG(WARNING) << "table " << t << " has no primary key: its rows are identified by rowid, "
                   << "which is not stable across nodes; give it a primary key";
    }
  }
  for (const std::string& t : report->skipped_virtual) {
    if (last_ids_.count(t) == 0) VLOG(1) << "virtual table " << t << " is not replicated";
  }
  for (const auto& list : {report->installed, report->updated, report->unchanged}) {
    for (const std::string& t : list) last_ids_.emplace(t, 0);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CaptureKeeper::CountNewChanges() {
  int64_t total = 0;
  for (auto& [table, last_id] : last_ids_) {
    std::string log = sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(table));
    // Changes are the pending rows; rows added by log_ids_above (done) only move
    // the newest id.
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows = db_.QueryRows(absl::StrCat(
        "SELECT count(*) FILTER (WHERE \"__marmot__state\" = 0), max(\"__marmot__id\") FROM ", log,
        " WHERE \"__marmot__id\" > ", last_id));
    if (!rows.ok()) {
      // The user dropped the table (and the log with it is gone or stale): forget it.
      LOG(WARNING) << "cannot read the change log of " << table << ": " << rows.status();
      continue;
    }
    int64_t count = (*rows)[0][0].integer();
    if (!(*rows)[0][1].is_null()) last_id = (*rows)[0][1].integer();
    if (count == 0) continue;
    total += count;
    VLOG(1) << "captured " << count << " change(s) of " << table << " (newest id " << last_id
            << ")";
  }
  return total;
}

absl::Status CaptureKeeper::CheckSchema() {
  absl::StatusOr<sqlite::Value> schema = db_.QueryKeptValue("PRAGMA schema_version");
  if (!schema.ok()) return schema.status();
  if (schema->integer() == schema_version_) return absl::OkStatus();
  return Install(/*backfill=*/true);
}

absl::StatusOr<int64_t> CaptureKeeper::Poll() {
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  absl::StatusOr<int64_t> data = PragmaInt(db_, "data_version");
  if (!data.ok()) return data.status();
  if (*data == data_version_) return 0;
  data_version_ = *data;
  return CountNewChanges();
}

}  // namespace marmot::replicator
