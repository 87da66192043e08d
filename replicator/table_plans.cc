#include "replicator/table_plans.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "replicator/schema_changes.h"
#include "sqlite/schema.h"

namespace marmot::replicator {

absl::StatusOr<bool> TablePlans::CheckSchema() {
  absl::StatusOr<sqlite::Value> version = db_.QueryKeptValue("PRAGMA schema_version");
  if (!version.ok()) return version.status();
  if (version->integer() == schema_version_) return false;
  plans_.clear();
  tables_here_.reset();
  // Statements of dropped or altered tables would only fail or be prepared again.
  db_.DropKept();
  schema_version_ = version->integer();
  return true;
}

absl::StatusOr<const TablePlan*> TablePlans::PlanAsHere(const change::v1::TableChanges*& t,
                                                        change::v1::TableChanges& storage) {
  absl::StatusOr<const TablePlan*> plan = Plan(*t);
  if (!plan.ok() || (*plan)->status.ok()) return plan;
  absl::StatusOr<const change::v1::TableChanges*> here = AsHere(*t, storage);
  if (!here.ok()) return here.status();
  if (*here == t) return plan;
  t = *here;
  return Plan(*t);
}

absl::StatusOr<std::string> TablePlans::TableNameHere(const std::string& table) {
  if (!tables_here_.has_value()) {
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows =
        db_.QueryRows("SELECT name FROM sqlite_master WHERE type = 'table'");
    if (!rows.ok()) return rows.status();
    tables_here_.emplace();
    for (const std::vector<sqlite::Value>& r : *rows) {
      // User tables only: a change naming SQLite's or marmot's own is refused by its name.
      if (sqlite::IsReservedName(r[0].bytes())) continue;
      (*tables_here_)[absl::AsciiStrToLower(r[0].bytes())] = r[0].bytes();
    }
  }
  auto it = tables_here_->find(absl::AsciiStrToLower(table));
  return it == tables_here_->end() ? table : it->second;
}

absl::StatusOr<const change::v1::TableChanges*> TablePlans::AsHere(
    const change::v1::TableChanges& t, change::v1::TableChanges& storage) {
  // The table as named here (another node's `Item` is this node's `item`).
  absl::StatusOr<std::string> table = TableNameHere(t.table());
  if (!table.ok()) return table.status();
  absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows =
      db_.QueryRows(absl::StrCat("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ",
                                 sqlite::Value::Text(kColumnHistoryTable).DebugString()));
  if (!rows.ok()) return rows.status();
  std::map<std::string, std::optional<std::string>> gone;  // Lower case -> new name, if any.
  if (!rows->empty()) {
    rows = db_.QueryRows(
        absl::StrCat("SELECT old, new FROM ", sqlite::QuoteIdentifier(kColumnHistoryTable),
                     " WHERE tbl = lower(", sqlite::Value::Text(t.table()).DebugString(), ")"));
    if (!rows.ok()) return rows.status();
    for (const std::vector<sqlite::Value>& r : *rows) {
      std::optional<std::string>& to = gone[r[0].bytes()];
      if (!r[1].is_null()) to = r[1].bytes();
    }
  }
  // The table's columns here: lower case -> as named.
  rows = db_.QueryRows(absl::StrCat("SELECT lower(name), name FROM pragma_table_xinfo(",
                                    sqlite::Value::Text(t.table()).DebugString(), ", 'main')"));
  if (!rows.ok()) return rows.status();
  std::map<std::string, std::string> here;
  for (const std::vector<sqlite::Value>& r : *rows) here[r[0].bytes()] = r[1].bytes();
  // Where each column goes here: its own name, a newer one, or nowhere (dropped).
  auto as_here = [&](const std::string& column) -> std::optional<std::string> {
    std::string name = column;
    // A chain of renames is followed, but never round a cycle.
    for (size_t step = 0; step <= gone.size(); ++step) {
      // As this table names it: a column renamed here only in case is the same column.
      auto local = here.find(absl::AsciiStrToLower(name));
      if (local != here.end()) return local->second;
      auto went = gone.find(absl::AsciiStrToLower(name));
      if (went == gone.end()) return name;  // Unknown here: the plan says so.
      if (!went->second.has_value()) return std::nullopt;
      name = *went->second;
    }
    return column;
  };
  bool changes = false;
  std::vector<std::optional<std::string>> columns;
  std::set<std::string> taken;  // Lower case.
  for (const std::string& c : t.columns()) {
    columns.push_back(as_here(c));
    changes = changes || columns.back() != c;
    // Two of the change's columns in one place here: the history does not tell this change's
    // story (a name used again since: a column renamed away and another added under its old
    // name on the origin, which has not reached this node yet). The change waits as it is.
    if (columns.back().has_value() &&
        !taken.insert(absl::AsciiStrToLower(*columns.back())).second) {
      return &t;
    }
  }
  std::vector<std::string> key_columns;
  for (const std::string& k : t.key_columns()) {
    std::optional<std::string> key = as_here(k);
    key_columns.push_back(key.value_or(k));  // A key column is never dropped.
    changes = changes || key_columns.back() != k;
  }
  if (!changes && *table == t.table()) return &t;
  storage.Clear();
  storage.set_table(*table);
  for (const std::optional<std::string>& c : columns) {
    if (c.has_value()) storage.add_columns(*c);
  }
  for (std::string& k : key_columns) storage.add_key_columns(std::move(k));
  for (const change::v1::Change& c : t.changes()) {
    change::v1::Change& copy = *storage.add_changes();
    copy = c;
    if (c.row().empty()) continue;
    copy.clear_row();
    for (int i = 0; i < c.row_size() && i < static_cast<int>(columns.size()); ++i) {
      if (columns[i].has_value()) *copy.add_row() = c.row(i);
    }
  }
  return &storage;
}

absl::StatusOr<const TablePlan*> TablePlans::Plan(const change::v1::TableChanges& t) {
  const std::vector<std::string> columns(t.columns().begin(), t.columns().end());
  const std::vector<std::string> key_columns(t.key_columns().begin(), t.key_columns().end());
  std::vector<std::unique_ptr<TablePlan>>& shapes = plans_[t.table()];
  // The newest used last: a plan in use is one of the last few asked for.
  for (auto it = shapes.begin(); it != shapes.end(); ++it) {
    if ((*it)->columns != columns || (*it)->key_columns != key_columns) continue;
    std::rotate(it, it + 1, shapes.end());
    return shapes.back().get();
  }
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
  if (shapes.size() >= kShapesPerTable) shapes.erase(shapes.begin());
  shapes.push_back(std::move(plan));
  return shapes.back().get();
}

}  // namespace marmot::replicator
