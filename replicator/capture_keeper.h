// Keeps change capture installed on a live database and reports what it captures.
//
// Applications change the database while marmot runs: they create tables, add columns, write
// rows. `CaptureKeeper` notices schema changes (`PRAGMA schema_version`) and reinstalls capture,
// backfilling tables that appeared since start so that rows written before their triggers
// existed are not missed; it notices new writes (`PRAGMA data_version`) and reports how many
// changes each table's log gained. It is polled; it owns no thread.
#ifndef MARMOT_REPLICATOR_CAPTURE_KEEPER_H_
#define MARMOT_REPLICATOR_CAPTURE_KEEPER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "sqlite/change_log.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// The id every change log hands out ids above after capture is installed (CaptureOptions::
// log_ids_above): 16 x the microseconds since the Unix epoch now (see CaptureKeeper::Install).
int64_t CaptureLogIdsAbove();

// What the first start on a database (marmot never applied anything to it) does with the rows
// its tables already hold.
enum class ExistingRows {
  // Refuse to start, naming the tables: the rows would never reach the other nodes, and the
  // cluster's rows of the same keys would be written over them. A node that was a member
  // before (its Raft store exists: a database cleaned up with -cleanup, say) is refused too:
  // without its applied state and row versions, it would apply the shards' logs again over rows
  // that are newer, and writes made meanwhile would be taken for concurrent ones.
  kRefuse,
  kSeed,         // Copy them into the logs: they reach every node (-seed).
  kTakeCluster,  // Delete them, so that the node holds the cluster's rows (-take-cluster-rows).
};

class CaptureKeeper {
 public:
  // Opens `db_path`, switches it to WAL and installs capture on every user table. At the first
  // start on a database, rows that exist are handled as `existing_rows` says. At a later
  // start (marmot applied changes here before), the rows of tables that got capture only now
  // (created while marmot was stopped) are copied, and `existing_rows` changes nothing.
  // `was_member`: this node has Raft state (it was in the cluster before; only the words of a
  // refusal differ). Fails when the
  // file is not a usable database or cannot be put in WAL mode, and with FAILED_PRECONDITION
  // when it refuses the rows.
  static absl::StatusOr<std::unique_ptr<CaptureKeeper>> Open(
      const std::string& db_path, ExistingRows existing_rows = ExistingRows::kRefuse,
      bool was_member = false);

  // Reinstalls capture if the schema changed (new tables are backfilled). Cheap when it did not
  // (one kept statement): the replicator calls it after every commit it notices.
  absl::Status CheckSchema();

  // CheckSchema(), then counts the changes captured since the last round (a scan of the new
  // log rows: for tools and tests, not the replication path). Returns the number of new changes.
  absl::StatusOr<int64_t> Poll();

  // The schema_version capture was last checked at; it moves with every schema change.
  int64_t schema_version() const { return schema_version_; }

  // Newest change id seen per table.
  const std::map<std::string, int64_t>& last_change_ids() const { return last_ids_; }

 private:
  explicit CaptureKeeper(sqlite::Database db) : db_(std::move(db)) {}
  absl::Status Install(bool backfill);
  absl::StatusOr<int64_t> CountNewChanges();

  sqlite::Database db_;
  int64_t schema_version_ = -1;
  int64_t data_version_ = -1;
  std::map<std::string, int64_t> last_ids_;
  // The tables that had capture after the last install (none before the first, so a table made
  // again while marmot was stopped is copied whole): CaptureOptions::captured_before.
  std::set<std::string> captured_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CAPTURE_KEEPER_H_
