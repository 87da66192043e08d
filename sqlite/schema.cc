#include "sqlite/schema.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace marmot::sqlite {

std::string TableSchema::ShapeString() const {
  std::string out = QuoteIdentifier(name);
  for (const ColumnInfo& c : columns) absl::StrAppend(&out, " ", QuoteIdentifier(c.name));
  out += " key";
  for (const std::string& k : primary_key) absl::StrAppend(&out, " ", QuoteIdentifier(k));
  return out;
}

bool IsReservedName(absl::string_view name) {
  return absl::StartsWithIgnoreCase(name, "sqlite_") ||
         absl::StartsWithIgnoreCase(name, kMarmotPrefix);
}

absl::StatusOr<TableSchema> ReadTableSchema(Database& db, const std::string& table) {
  if (IsReservedName(table)) {
    return absl::InvalidArgumentError(absl::StrCat(
        QuoteIdentifier(table), " is SQLite's or marmot's own table, not a user table"));
  }
  absl::StatusOr<Statement> list =
      db.Prepare("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1");
  if (!list.ok()) return list.status();
  if (absl::Status s = list->Bind(1, Value::Text(table)); !s.ok()) return s;
  absl::StatusOr<bool> found = list->Step();
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(absl::StrCat("no table ", QuoteIdentifier(table)));
  if (const std::string type = list->Column(0).bytes(); type != "table") {
    return absl::InvalidArgumentError(
        absl::StrCat(QuoteIdentifier(table), " is a ", type, ", not a plain table"));
  }

  TableSchema schema;
  schema.name = table;
  schema.without_rowid = list->Column(1).integer() != 0;

  // table_xinfo, unlike table_info, also lists generated columns (hidden = 2 or 3), so they can
  // be counted and left out on purpose.
  absl::StatusOr<Statement> info = db.Prepare(
      "SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1, 'main') ORDER BY "
      "cid");
  if (!info.ok()) return info.status();
  if (absl::Status s = info->Bind(1, Value::Text(table)); !s.ok()) return s;
  std::vector<std::pair<int, std::string>> key;
  while (true) {
    absl::StatusOr<bool> row = info->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (info->Column(4).integer() != 0) {
      ++schema.generated_columns;
      continue;
    }
    ColumnInfo column;
    column.name = info->Column(0).bytes();
    column.declared_type = info->Column(1).is_null() ? "" : info->Column(1).bytes();
    column.not_null = info->Column(2).integer() != 0;
    column.pk_position = static_cast<int>(info->Column(3).integer());
    if (column.pk_position > 0) key.emplace_back(column.pk_position, column.name);
    schema.columns.push_back(std::move(column));
  }
  std::sort(key.begin(), key.end());
  for (auto& [position, name] : key) schema.primary_key.push_back(std::move(name));
  if (!schema.without_rowid && schema.primary_key.size() == 1) {
    // Any other declared key of a rowid table has an index of its own (origin 'pk').
    absl::StatusOr<Statement> pk_index =
        db.Prepare("SELECT count(*) FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'");
    if (!pk_index.ok()) return pk_index.status();
    if (absl::Status s = pk_index->Bind(1, Value::Text(table)); !s.ok()) return s;
    absl::StatusOr<bool> counted = pk_index->Step();
    if (!counted.ok()) return counted.status();
    schema.key_is_rowid = pk_index->Column(0).integer() == 0;
  }
  return schema;
}

absl::StatusOr<SchemaListing> ListUserTables(Database& db) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows =
      db.QueryRows("SELECT name, type FROM pragma_table_list WHERE schema = 'main' ORDER BY name");
  if (!rows.ok()) return rows.status();
  SchemaListing listing;
  for (const std::vector<Value>& row : *rows) {
    const std::string& name = row[0].bytes();
    const std::string& type = row[1].bytes();
    if (IsReservedName(name)) continue;
    if (type == "virtual" || type == "shadow") {
      listing.skipped_virtual.push_back(name);
      continue;
    }
    if (type != "table") continue;  // Views.
    absl::StatusOr<TableSchema> schema = ReadTableSchema(db, name);
    if (!schema.ok()) return schema.status();
    listing.tables.push_back(*std::move(schema));
  }
  return listing;
}

}  // namespace marmot::sqlite
