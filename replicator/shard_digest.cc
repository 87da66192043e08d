#include "replicator/shard_digest.h"

#include <xxhash.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sqlite/schema.h"

namespace marmot::replicator {
namespace {

using sqlite::StorageClass;
using sqlite::Value;

// A scan of a table's rows in key order, each row's key and its encoding.
struct TableScan {
  std::string sql;
  bool keyed_by_rowid = false;
  std::vector<int> key_columns;  // Positions of the key in the selected row.
  std::vector<std::string> columns;
};

TableScan PlanScan(const sqlite::TableSchema& t, bool after) {
  TableScan scan;
  scan.keyed_by_rowid = t.keyed_by_rowid();
  std::vector<std::string> selected;
  if (scan.keyed_by_rowid) selected.push_back("rowid");
  for (const sqlite::ColumnInfo& c : t.columns) {
    scan.columns.push_back(c.name);
    selected.push_back(sqlite::QuoteIdentifier(c.name));
  }
  std::vector<std::string> order;
  if (scan.keyed_by_rowid) {
    scan.key_columns.push_back(0);
    order.push_back("rowid");
  } else {
    for (const std::string& k : t.primary_key) {
      auto it = std::find(scan.columns.begin(), scan.columns.end(), k);
      scan.key_columns.push_back(static_cast<int>(it - scan.columns.begin()));
      order.push_back(absl::StrCat(sqlite::QuoteIdentifier(k), " COLLATE BINARY"));
    }
  }
  scan.sql = absl::StrCat("SELECT ", absl::StrJoin(selected, ", "), " FROM ",
                          sqlite::QuoteIdentifier(t.name));
  if (after) {
    std::vector<std::string> params;
    for (size_t i = 0; i < order.size(); ++i) params.push_back(absl::StrCat("?", i + 1));
    absl::StrAppend(&scan.sql, " WHERE (", absl::StrJoin(order, ", "), ") > (",
                    absl::StrJoin(params, ", "), ")");
  }
  absl::StrAppend(&scan.sql, " ORDER BY ", absl::StrJoin(order, ", "));
  return scan;
}

// Steps `scan` over the rows of `shard`, calling `row` with each one's key and encoding until it
// returns false.
template <typename RowFn>
absl::Status ForEachShardRow(sqlite::Statement& stmt, const TableScan& scan,
                             const std::string& table, const ShardRouter& router, int shard,
                             RowFn row) {
  for (;;) {
    absl::StatusOr<bool> more = stmt.Step();
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
    std::vector<Value> key;
    for (int i : scan.key_columns) key.push_back(stmt.Column(i));
    if (router.ShardOf(table, key) != shard) continue;
    std::vector<Value> values;
    for (int i = 0; i < stmt.column_count(); ++i) values.push_back(stmt.Column(i));
    if (!row(std::move(key), EncodeRowIdentity("", values))) return absl::OkStatus();
  }
}

void AppendName(std::string* out, absl::string_view name) {
  const uint32_t n = static_cast<uint32_t>(name.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out->append(name.data(), name.size());
}

int Rank(const Value& v) {
  switch (v.storage_class()) {
    case StorageClass::kNull:
      return 0;
    case StorageClass::kInteger:
    case StorageClass::kReal:
      return 1;
    case StorageClass::kText:
      return 2;
    case StorageClass::kBlob:
      return 3;
  }
  return 4;
}

int CompareValues(const Value& a, const Value& b) {
  const int ra = Rank(a), rb = Rank(b);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 0:
      return 0;
    case 1: {
      if (a.storage_class() == StorageClass::kInteger &&
          b.storage_class() == StorageClass::kInteger) {
        return a.integer() < b.integer() ? -1 : (a.integer() > b.integer() ? 1 : 0);
      }
      const double x =
          a.storage_class() == StorageClass::kInteger ? static_cast<double>(a.integer()) : a.real();
      const double y =
          b.storage_class() == StorageClass::kInteger ? static_cast<double>(b.integer()) : b.real();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    default: {
      const int c = a.bytes().compare(b.bytes());
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<TableDigest>> DigestShard(sqlite::Database& db,
                                                     const ShardRouter& router, int shard) {
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(db);
  if (!listing.ok()) return listing.status();
  std::vector<TableDigest> out;
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> state(XXH64_createState(),
                                                                          XXH64_freeState);
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> folded(XXH64_createState(),
                                                                           XXH64_freeState);
  for (const sqlite::TableSchema& t : listing->tables) {
    const TableScan scan = PlanScan(t, /*after=*/false);
    absl::StatusOr<sqlite::Statement> stmt = db.Prepare(scan.sql);
    if (!stmt.ok()) return stmt.status();
    XXH64_reset(state.get(), 0);
    std::string names, folded_names;
    for (const std::string& c : scan.columns) {
      AppendName(&names, c);
      AppendName(&folded_names, absl::AsciiStrToLower(c));
    }
    XXH64_update(state.get(), names.data(), names.size());
    // Names all in lower case already: one digest of both kinds.
    const bool fold = folded_names != names;
    if (fold) {
      XXH64_reset(folded.get(), 0);
      XXH64_update(folded.get(), folded_names.data(), folded_names.size());
    }
    TableDigest digest{.table = t.name};
    absl::Status s = ForEachShardRow(*stmt, scan, t.name, router, shard,
                                     [&](std::vector<Value>, const std::string& encoded) {
                                       XXH64_update(state.get(), encoded.data(), encoded.size());
                                       if (fold) {
                                         XXH64_update(folded.get(), encoded.data(), encoded.size());
                                       }
                                       ++digest.rows;
                                       return true;
                                     });
    if (!s.ok()) return s;
    digest.digest = XXH64_digest(state.get());
    digest.digest_folded = fold ? XXH64_digest(folded.get()) : digest.digest;
    out.push_back(std::move(digest));
  }
  return out;
}

absl::StatusOr<KeyPage> ListShardKeys(sqlite::Database& db, const ShardRouter& router, int shard,
                                      const std::string& table, const std::vector<Value>& after,
                                      int limit) {
  if (limit <= 0) return absl::InvalidArgumentError("the limit of keys must be positive");
  absl::StatusOr<std::string> here = UserTableNamedHere(db, table);
  if (!here.ok()) return here.status();
  absl::StatusOr<sqlite::TableSchema> t = sqlite::ReadTableSchema(db, *here);
  if (!t.ok()) {
    if (absl::IsInvalidArgument(t.status())) {
      return absl::NotFoundError(absl::StrCat("\"", table, "\" is not a replicated table here"));
    }
    return t.status();
  }
  const TableScan scan = PlanScan(*t, !after.empty());
  if (!after.empty() && after.size() != scan.key_columns.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a key of \"", table, "\" has ", scan.key_columns.size(), " value(s), not ", after.size()));
  }
  absl::StatusOr<sqlite::Statement> stmt = db.Prepare(scan.sql);
  if (!stmt.ok()) return stmt.status();
  for (size_t i = 0; i < after.size(); ++i) {
    if (absl::Status s = stmt->Bind(static_cast<int>(i) + 1, after[i]); !s.ok()) return s;
  }
  KeyPage page;
  absl::Status s = ForEachShardRow(
      *stmt, scan, t->name, router, shard, [&](std::vector<Value> key, const std::string& encoded) {
        if (static_cast<int>(page.keys.size()) == limit) {
          page.more = true;
          return false;
        }
        page.keys.push_back({std::move(key), XXH64(encoded.data(), encoded.size(), 0)});
        return true;
      });
  if (!s.ok()) return s;
  return page;
}

absl::StatusOr<std::string> UserTableNamedHere(sqlite::Database& db, const std::string& table) {
  absl::StatusOr<std::vector<std::vector<Value>>> rows =
      db.QueryRows(absl::StrCat("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ",
                                Value::Text(table).DebugString(), " COLLATE NOCASE"));
  if (!rows.ok()) return rows.status();
  return rows->size() == 1 ? (*rows)[0][0].bytes() : table;
}

int CompareKeys(const std::vector<Value>& a, const std::vector<Value>& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (const int c = CompareValues(a[i], b[i]); c != 0) return c;
  }
  if (a.size() == b.size()) return 0;
  return a.size() < b.size() ? -1 : 1;
}

}  // namespace marmot::replicator
