#include "replicator/table_plans.h"

namespace marmot::replicator {

absl::StatusOr<bool> TablePlans::CheckSchema() {
  absl::StatusOr<sqlite::Value> version = db_.QueryKeptValue("PRAGMA schema_version");
  if (!version.ok()) return version.status();
  if (version->integer() == schema_version_) return false;
  plans_.clear();
  // Statements of dropped or altered tables would only fail or be prepared again.
  db_.DropKept();
  schema_version_ = version->integer();
  return true;
}

absl::StatusOr<const TablePlan*> TablePlans::Plan(const change::v1::TableChanges& t) {
  const std::vector<std::string> columns(t.columns().begin(), t.columns().end());
  const std::vector<std::string> key_columns(t.key_columns().begin(), t.key_columns().end());
  auto it = plans_.find(t.table());
  if (it == plans_.end() || it->second->columns != columns ||
      it->second->key_columns != key_columns) {
    auto plan = std::make_unique<TablePlan>();
    plan->columns = columns;
    plan->key_columns = key_columns;
    absl::StatusOr<TableWriter> writer = PlanWriter(db_, t.table(), columns, key_columns);
    if (writer.ok()) {
      plan->writer = *std::move(writer);
    } else {
      plan->status = writer.status();
      if (plan->status.code() != absl::StatusCode::kFailedPrecondition) return plan->status;
    }
    it = plans_.insert_or_assign(t.table(), std::move(plan)).first;
  }
  return it->second.get();
}

}  // namespace marmot::replicator
