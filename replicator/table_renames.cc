#include "replicator/table_renames.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "sqlite/value.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;

absl::Status Run(sqlite::Database& db, const std::string& sql, const std::vector<Value>& values) {
  absl::StatusOr<sqlite::Statement> stmt = db.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(values); !s.ok()) return s;
  return stmt->Run();
}

std::string Lower(absl::string_view name) { return absl::AsciiStrToLower(name); }

absl::StatusOr<bool> HasTables(sqlite::Database& db) {
  absl::StatusOr<Value> n = db.QueryValue(
      absl::StrCat("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('",
                   kTableRoutesTable, "', '", kTableHistoryTable, "')"));
  if (!n.ok()) return n.status();
  return n->integer() == 2;
}

}  // namespace

absl::Status EnsureTableRenameState(sqlite::Database& db) {
  return db.Exec(
      absl::StrCat("CREATE TABLE IF NOT EXISTS ", sqlite::QuoteIdentifier(kTableRoutesTable),
                   " (name TEXT PRIMARY KEY, route TEXT NOT NULL) WITHOUT ROWID;"
                   "CREATE TABLE IF NOT EXISTS ",
                   sqlite::QuoteIdentifier(kTableHistoryTable),
                   " (\"from\" TEXT NOT NULL, \"to\" TEXT NOT NULL, shard0_index INTEGER NOT NULL,"
                   " PRIMARY KEY (\"from\", shard0_index)) WITHOUT ROWID"));
}

absl::Status RecordTableRenamed(sqlite::Database& db, const std::string& from,
                                const std::string& to, uint64_t index) {
  if (absl::Status s = EnsureTableRenameState(db); !s.ok()) return s;
  const std::string routes = sqlite::QuoteIdentifier(kTableRoutesTable);
  // This rename recorded already (the origin records its own when it commits, and again when it
  // applies it): `from` routes by its own name by now, and `to` has its route.
  absl::StatusOr<std::vector<std::vector<Value>>> known = db.QueryRows(
      absl::StrCat("SELECT 1 FROM ", sqlite::QuoteIdentifier(kTableHistoryTable),
                   " WHERE \"from\" = ", Value::Text(Lower(from)).DebugString(),
                   " AND \"to\" = ", Value::Text(to).DebugString(), " AND shard0_index = ", index));
  if (!known.ok()) return known.status();
  if (known->empty()) {
    if (absl::Status s = Run(db,
                             absl::StrCat("INSERT OR REPLACE INTO ", routes,
                                          " (name, route) VALUES (?1, coalesce((SELECT route FROM ",
                                          routes, " WHERE name = ?2), ?3))"),
                             {Value::Text(Lower(to)), Value::Text(Lower(from)), Value::Text(from)});
        !s.ok()) {
      return s;
    }
    if (Lower(from) != Lower(to)) {
      if (absl::Status s = Run(db, absl::StrCat("DELETE FROM ", routes, " WHERE name = ?1"),
                               {Value::Text(Lower(from))});
          !s.ok()) {
        return s;
      }
    }
  }
  return Run(
      db,
      absl::StrCat("INSERT OR REPLACE INTO ", sqlite::QuoteIdentifier(kTableHistoryTable),
                   " (\"from\", \"to\", shard0_index) VALUES (?1, ?2, ?3)"),
      {Value::Text(Lower(from)), Value::Text(to), Value::Integer(static_cast<int64_t>(index))});
}

absl::Status RecordRenameLost(sqlite::Database& db, const std::string& lost,
                              const std::string& winner, uint64_t index) {
  if (absl::Status s = EnsureTableRenameState(db); !s.ok()) return s;
  return Run(
      db,
      absl::StrCat("INSERT OR REPLACE INTO ", sqlite::QuoteIdentifier(kTableHistoryTable),
                   " (\"from\", \"to\", shard0_index) VALUES (?1, ?2, ?3)"),
      {Value::Text(Lower(lost)), Value::Text(winner), Value::Integer(static_cast<int64_t>(index))});
}

absl::StatusOr<bool> RenameLostAt(sqlite::Database& db, const std::string& lost, uint64_t index) {
  absl::StatusOr<bool> has = HasTables(db);
  if (!has.ok() || !*has) return has;
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(absl::StrCat(
      "SELECT 1 FROM ", sqlite::QuoteIdentifier(kTableHistoryTable),
      " WHERE \"from\" = ", Value::Text(Lower(lost)).DebugString(), " AND shard0_index = ", index));
  if (!rows.ok()) return rows.status();
  return !rows->empty();
}

absl::StatusOr<std::optional<std::string>> RenamedBefore(sqlite::Database& db,
                                                         const std::string& name, uint64_t before) {
  absl::StatusOr<bool> has = HasTables(db);
  if (!has.ok()) return has.status();
  if (!*has) return std::nullopt;
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(absl::StrCat(
      "SELECT \"from\", \"to\", shard0_index FROM ", sqlite::QuoteIdentifier(kTableHistoryTable),
      " WHERE shard0_index < ", before, " ORDER BY shard0_index"));
  if (!rows.ok()) return rows.status();
  // The newest rename of `name` below `before`.
  std::optional<std::string> at;
  int64_t after = 0;
  for (const std::vector<Value>& r : *rows) {
    if (r[0].bytes() == Lower(name)) {
      at = r[1].bytes();
      after = r[2].integer();
    }
  }
  if (!at.has_value()) return std::nullopt;
  // Then each later rename of the name it got, in order (each step moves to a later index).
  for (const std::vector<Value>& r : *rows) {
    if (r[2].integer() > after && r[0].bytes() == Lower(*at)) {
      at = r[1].bytes();
      after = r[2].integer();
    }
  }
  return at;
}

absl::Status ForgetTableRoute(sqlite::Database& db, const std::string& name) {
  if (absl::Status s = EnsureTableRenameState(db); !s.ok()) return s;
  return Run(
      db,
      absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(kTableRoutesTable), " WHERE name = ?1"),
      {Value::Text(Lower(name))});
}

absl::Status RecordTableCreated(sqlite::Database& db, const std::string& name, bool made) {
  if (absl::Status s = EnsureTableRenameState(db); !s.ok()) return s;
  return Run(
      db,
      absl::StrCat("INSERT OR ", made ? "REPLACE" : "IGNORE", " INTO ",
                   sqlite::QuoteIdentifier(kTableRoutesTable), " (name, route) VALUES (?1, ?2)"),
      {Value::Text(Lower(name)), Value::Text(name)});
}

absl::Status ReadTableRenames(sqlite::Database& db, std::vector<change::v1::TableRoute>* routes,
                              std::vector<change::v1::TableRename>* renames) {
  absl::StatusOr<bool> has = HasTables(db);
  if (!has.ok()) return has.status();
  if (!*has) return absl::OkStatus();
  absl::StatusOr<std::vector<std::vector<Value>>> rows = db.QueryRows(absl::StrCat(
      "SELECT name, route FROM ", sqlite::QuoteIdentifier(kTableRoutesTable), " ORDER BY name"));
  if (!rows.ok()) return rows.status();
  for (const std::vector<Value>& r : *rows) {
    change::v1::TableRoute& route = routes->emplace_back();
    route.set_name(r[0].bytes());
    route.set_route(r[1].bytes());
  }
  rows = db.QueryRows(absl::StrCat("SELECT \"from\", \"to\", shard0_index FROM ",
                                   sqlite::QuoteIdentifier(kTableHistoryTable),
                                   " ORDER BY shard0_index, \"from\""));
  if (!rows.ok()) return rows.status();
  for (const std::vector<Value>& r : *rows) {
    change::v1::TableRename& rename = renames->emplace_back();
    rename.set_from(r[0].bytes());
    rename.set_to(r[1].bytes());
    rename.set_shard0_index(static_cast<uint64_t>(r[2].integer()));
  }
  return absl::OkStatus();
}

absl::Status TakeTableRenames(
    sqlite::Database& db, const google::protobuf::RepeatedPtrField<change::v1::TableRoute>& routes,
    const google::protobuf::RepeatedPtrField<change::v1::TableRename>& renames) {
  if (routes.empty() && renames.empty()) return absl::OkStatus();
  if (absl::Status s = EnsureTableRenameState(db); !s.ok()) return s;
  for (const change::v1::TableRoute& r : routes) {
    if (absl::Status s =
            Run(db,
                absl::StrCat("INSERT OR IGNORE INTO ", sqlite::QuoteIdentifier(kTableRoutesTable),
                             " (name, route) VALUES (?1, ?2)"),
                {Value::Text(Lower(r.name())), Value::Text(r.route())});
        !s.ok()) {
      return s;
    }
  }
  for (const change::v1::TableRename& r : renames) {
    if (absl::Status s =
            Run(db,
                absl::StrCat("INSERT OR IGNORE INTO ", sqlite::QuoteIdentifier(kTableHistoryTable),
                             " (\"from\", \"to\", shard0_index) VALUES (?1, ?2, ?3)"),
                {Value::Text(Lower(r.from())), Value::Text(r.to()),
                 Value::Integer(static_cast<int64_t>(r.shard0_index()))});
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status TableRenames::Load(sqlite::Database& db) {
  std::vector<change::v1::TableRoute> routes;
  std::vector<change::v1::TableRename> renames;
  if (absl::Status s = ReadTableRenames(db, &routes, &renames); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  loaded_routes_.clear();
  history_.clear();
  for (const change::v1::TableRoute& r : routes) loaded_routes_[Lower(r.name())] = r.route();
  for (const change::v1::TableRename& r : renames) {
    history_.emplace(Lower(r.from()), std::make_pair(r.shard0_index(), r.to()));
    // Committed: no longer pending.
    auto pending = pending_.find(Lower(r.from()));
    if (pending != pending_.end() && Lower(pending->second) == Lower(r.to())) {
      pending_.erase(pending);
    }
  }
  MakeRoutes();
  return absl::OkStatus();
}

void TableRenames::MakeRoutes() {
  routes_ = loaded_routes_;
  // Pending renames route as they will once committed.
  for (const auto& [from, to] : pending_) {
    auto route = loaded_routes_.find(from);
    routes_[Lower(to)] = route == loaded_routes_.end() ? from : route->second;
  }
  any_.store(!routes_.empty() || !history_.empty() || !pending_.empty());
}

std::string TableRenames::RouteOf(absl::string_view table) const {
  if (!any_.load(std::memory_order_relaxed)) return std::string(table);
  absl::MutexLock lock(&mu_);
  auto it = routes_.find(Lower(table));
  return it == routes_.end() ? std::string(table) : it->second;
}

std::string TableRenames::NameHere(const std::string& table, uint64_t epoch) const {
  if (!any_.load(std::memory_order_relaxed)) return table;
  absl::MutexLock lock(&mu_);
  std::string name = table;
  // Each step moves to a rename of a later index than the one before, or to a pending one
  // (which comes after every committed one): the history is finite, so is the walk.
  uint64_t after = epoch;
  for (size_t steps = 0; steps <= history_.size() + pending_.size(); ++steps) {
    const std::string lower = Lower(name);
    const std::pair<uint64_t, std::string>* next = nullptr;
    auto [begin, end] = history_.equal_range(lower);
    for (auto it = begin; it != end; ++it) {
      if (it->second.first > after && (next == nullptr || it->second.first < next->first)) {
        next = &it->second;
      }
    }
    if (next != nullptr) {
      name = next->second;
      after = next->first;
      continue;
    }
    auto pending = pending_.find(lower);
    if (pending == pending_.end()) break;
    name = pending->second;
    after = UINT64_MAX;
  }
  return name;
}

void NameTablesHere(const TableRenames& renames, change::v1::ChangeBatch& batch) {
  for (change::v1::TableChanges& t : *batch.mutable_tables()) {
    std::string here = renames.NameHere(t.table(), batch.schema_epoch());
    if (here != t.table()) t.set_table(std::move(here));
  }
}

void TableRenames::SetPending(const std::vector<std::pair<std::string, std::string>>& renames) {
  absl::MutexLock lock(&mu_);
  pending_.clear();
  for (const auto& [from, to] : renames) pending_[Lower(from)] = to;
  MakeRoutes();
}

}  // namespace marmot::replicator
