#include "replicator/row_versions.h"

#include "absl/strings/str_cat.h"
#include "sqlite/change_log.h"

namespace marmot::replicator {

namespace {

using sqlite::Statement;
using sqlite::Value;

// Runs `stmt` (kept, bound) to its first row and hands it to `read`; resets it either way.
template <typename Read>
absl::Status StepOnce(Statement& stmt, bool& found, Read read) {
  absl::StatusOr<bool> row = stmt.Step();
  found = row.ok() && *row;
  if (found) read(stmt);
  stmt.Reset();
  return row.status();
}

RowVersion ReadVersion(const Statement& stmt, int first) {
  RowVersion v;
  v.shard = static_cast<int>(stmt.Column(first).integer());
  v.raft_index = static_cast<uint64_t>(stmt.Column(first + 1).integer());
  v.origin = static_cast<uint64_t>(stmt.Column(first + 2).integer());
  v.change_id = stmt.Column(first + 3).integer();
  const Value held = stmt.Column(first + 4);
  if (!held.is_null()) v.held = held.bytes();
  v.columns = stmt.Column(first + 5).integer();
  return v;
}

constexpr char kColumns[] = "shard, raft_index, origin, change_id, held, columns";

}  // namespace

namespace {

// X'...' as quote() writes a BLOB: its bytes in upper-case hex.
void AppendBlobLiteral(const std::string& bytes, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += "X'";
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  out += '\'';
}

// What RowVersionKeySql computes for `v`, without SQLite, for every storage class but REAL
// (quote() writes a REAL with SQLite's own formatting: asked of SQLite); false for a REAL.
bool AppendQuoted(const Value& v, std::string& out) {
  switch (v.storage_class()) {
    case sqlite::StorageClass::kNull:
      out += "NULL";
      return true;
    case sqlite::StorageClass::kInteger:
      absl::StrAppend(&out, v.integer());
      return true;
    case sqlite::StorageClass::kReal:
      return false;
    case sqlite::StorageClass::kText: {
      const std::string& text = v.bytes();
      if (text.find('\0') != std::string::npos) {
        out += 'T';
        AppendBlobLiteral(text, out);
        return true;
      }
      out += '\'';
      for (char c : text) {
        out += c;
        if (c == '\'') out += '\'';
      }
      out += '\'';
      return true;
    }
    case sqlite::StorageClass::kBlob:
      AppendBlobLiteral(v.bytes(), out);
      return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::string> RowVersions::KeyOf(const std::vector<Value>& key) {
  std::string fast;
  bool known = true;
  for (size_t i = 0; i < key.size() && known; ++i) {
    if (i > 0) fast += ',';
    known = AppendQuoted(key[i], fast);
  }
  if (known) return fast;
  return KeyOfBySqlite(key);
}

absl::StatusOr<std::string> RowVersions::KeyOfBySqlite(const std::vector<Value>& key) {
  std::vector<std::string> params;
  for (size_t i = 0; i < key.size(); ++i) params.push_back(absl::StrCat("?", i + 1));
  absl::StatusOr<Statement*> stmt =
      db_.Kept(absl::StrCat("SELECT ", sqlite::RowVersionKeySql(params)));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = (*stmt)->BindAll(key); !s.ok()) return s;
  std::string text;
  bool found = false;
  absl::Status s =
      StepOnce(**stmt, found, [&](const Statement& st) { text = st.Column(0).bytes(); });
  if (!s.ok()) return s;
  return text;
}

absl::StatusOr<std::optional<RowVersion>> RowVersions::Get(const std::string& table,
                                                           const std::string& key) {
  static const std::string* const sql = new std::string(absl::StrCat(
      "SELECT ", kColumns, " FROM ", sqlite::QuoteIdentifier(sqlite::kRowVersionsTable),
      " WHERE tbl = ?1 AND key = ?2"));
  absl::StatusOr<Statement*> stmt = db_.Kept(*sql);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = (*stmt)->BindAll({Value::Text(table), Value::Text(key)}); !s.ok()) return s;
  std::optional<RowVersion> stored;
  bool found = false;
  absl::Status s =
      StepOnce(**stmt, found, [&](const Statement& st) { stored = ReadVersion(st, 0); });
  if (!s.ok()) return s;
  auto deferred = deferred_.find({table, key});
  if (deferred != deferred_.end() &&
      (!stored.has_value() || deferred->second.raft_index > stored->raft_index)) {
    return deferred->second;
  }
  return stored;
}

absl::Status RowVersions::Set(const std::string& table, const std::string& key,
                              const RowVersion& v) {
  static const std::string* const sql = new std::string(absl::StrCat(
      "INSERT INTO ", sqlite::QuoteIdentifier(sqlite::kRowVersionsTable), " (tbl, key, ", kColumns,
      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (tbl, key) DO UPDATE SET "
      "shard = excluded.shard, raft_index = excluded.raft_index, origin = excluded.origin, "
      "change_id = excluded.change_id, held = excluded.held, columns = excluded.columns "
      "WHERE excluded.raft_index >= raft_index"));
  return db_.RunKept(
      *sql, {Value::Text(table), Value::Text(key), Value::Integer(v.shard),
             Value::Integer(static_cast<int64_t>(v.raft_index)),
             Value::Integer(static_cast<int64_t>(v.origin)), Value::Integer(v.change_id),
             v.held.empty() ? Value::Null() : Value::Blob(v.held), Value::Integer(v.columns)});
}

void RowVersions::Defer(const std::string& table, const std::string& key, const RowVersion& v) {
  RowVersion& slot = deferred_[{table, key}];
  if (v.raft_index >= slot.raft_index) slot = v;
}

absl::Status RowVersions::WriteDeferred() {
  for (const auto& [row, v] : deferred_) {
    if (absl::Status s = Set(row.first, row.second, v); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void RowVersions::ForgetDeferred(int shard) {
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    it = it->second.shard == shard ? deferred_.erase(it) : std::next(it);
  }
}

absl::Status RowVersions::ForEachOfShard(
    int shard,
    const std::function<absl::Status(const std::string&, const std::string&, const RowVersion&)>&
        visit) {
  absl::StatusOr<Statement> stmt = db_.Prepare(
      absl::StrCat("SELECT tbl, key, ", kColumns, " FROM ",
                   sqlite::QuoteIdentifier(sqlite::kRowVersionsTable), " WHERE shard = ?1"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll({Value::Integer(shard)}); !s.ok()) return s;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
    if (absl::Status s =
            visit(stmt->Column(0).bytes(), stmt->Column(1).bytes(), ReadVersion(*stmt, 2));
        !s.ok()) {
      return s;
    }
  }
}

absl::Status RowVersions::DeleteShard(int shard) {
  return db_.RunKept(
      absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(sqlite::kRowVersionsTable),
                   " WHERE shard = ?1"),
      {Value::Integer(shard)});
}

}  // namespace marmot::replicator
