// The applier's plans of the tables it writes: per table, the writer of changes with a given
// set of columns and key (table_writer.h), or why changes of that shape cannot apply here. A
// plan is kept until the database's schema_version moves (a table created, dropped or altered;
// the applier's kept statements are dropped with it), or kShapesPerTable plans of the table's
// other shapes were asked for since it was last: a plan asked for while another is in use (a
// held change written in the middle of an entry's writes) does not pull that one away.
// Every call runs on the applier's connection; not thread-safe.
#ifndef MARMOT_REPLICATOR_TABLE_PLANS_H_
#define MARMOT_REPLICATOR_TABLE_PLANS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/table_writer.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// How to write one table's changes, checked against the local schema.
struct TablePlan {
  absl::Status status;  // Not OK: the table is missing or differs; `writer` is unset.
  std::vector<std::string> columns, key_columns;  // What the plan was checked against.
  TableWriter writer;
};

class TablePlans {
 public:
  // `db` (the applier's connection) outlives the plans.
  explicit TablePlans(sqlite::Database& db) : db_(db) {}

  // Drops every plan, and the connection's kept statements, when the schema changed since the
  // last call; returns whether it did (what the caller keeps about tables is stale then).
  absl::StatusOr<bool> CheckSchema();

  // The plan of `t`'s table for its columns and key, kept until CheckSchema drops it. A plan
  // whose status is not OK says why its changes cannot apply here (they become dead letters);
  // an error is the database's. The pointer is valid until CheckSchema drops the plan, or
  // until kShapesPerTable plans of other shapes of the table were asked for since.
  absl::StatusOr<const TablePlan*> Plan(const change::v1::TableChanges& t);

  // Plan(*t), unless its changes cannot apply here because they were read on a node before a
  // column was renamed or dropped there and this node applied the rename or drop since: then
  // the plan of `t` as it applies here (AsHere), which `storage` holds and `t` points to after.
  absl::StatusOr<const TablePlan*> PlanAsHere(const change::v1::TableChanges*& t,
                                              change::v1::TableChanges& storage);

  // `t` with its columns as this node's table names them: its columns that the table lacks
  // here and that the column history (schema_changes.h) says were renamed take their new name,
  // and those dropped are left out, values and all; a column the table names in another case
  // takes its name as here (a rename of only the case does not replicate), and so does the
  // table (TableNameHere). When two of `t`'s
  // columns would land on one column here, the history does not tell `t`'s story (a name used
  // again on the origin since, which has not reached this node): `t` stays as it is and waits.
  // Returns `t` itself when nothing changes, or
  // `storage` filled with the changes as they apply here. Reads the history (PlanAsHere asks
  // only for changes whose plan failed). Errors are the database's.
  absl::StatusOr<const change::v1::TableChanges*> AsHere(const change::v1::TableChanges& t,
                                                         change::v1::TableChanges& storage);

  // The name of table `table` here: SQLite's names are one name in any case, and another node
  // may spell this node's table `item` as `Item` (both made at once, its CREATE met this one's).
  // What marmot keeps by table name (dedupe, row versions, conflicts, dead letters) is kept
  // under this name. `table` itself when no user table here has it in another case (SQLite's
  // and marmot's own are never named so: a change naming them is refused as named). Read once per
  // schema (CheckSchema). Errors are the database's.
  absl::StatusOr<std::string> TableNameHere(const std::string& table);

 private:
  static constexpr size_t kShapesPerTable = 8;
  sqlite::Database& db_;
  // Per table, its plans, the one asked for last at the back.
  std::map<std::string, std::vector<std::unique_ptr<TablePlan>>> plans_;
  // The tables here: lower case -> as named; read at the first TableNameHere of a schema.
  std::optional<std::map<std::string, std::string>> tables_here_;
  int64_t schema_version_ = -1;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_TABLE_PLANS_H_
