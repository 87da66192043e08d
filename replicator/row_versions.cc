#include "replicator/row_versions.h"

#include <glog/logging.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sqlite/change_log.h"

namespace marmot::replicator {

namespace {

using sqlite::Statement;
using sqlite::Value;

RowVersion ReadVersion(const Statement& stmt, int first) {
  RowVersion v;
  v.shard = static_cast<int>(stmt.Column(first).integer());
  v.raft_index = static_cast<uint64_t>(stmt.Column(first + 1).integer());
  v.origin = static_cast<uint64_t>(stmt.Column(first + 2).integer());
  v.change_id = stmt.Column(first + 3).integer();
  const Value held = stmt.Column(first + 4);
  if (!held.is_null()) v.held = held.bytes();
  v.columns = stmt.Column(first + 5).integer();
  if (const Value digest = stmt.Column(first + 6); !digest.is_null()) v.digest = digest.integer();
  return v;
}

constexpr char kColumns[] = "shard, raft_index, origin, change_id, held, columns, digest";
constexpr size_t kBound = 9;  // Values bound per version written: tbl, key and kColumns.

// A key (KeyOf's text) as the table stores it (RowVersionKeySql): the text of a key of one
// INTEGER, its digits, as that integer; any other as it is. KeyOf writes an integer as
// absl::StrAppend does, so only that form is taken for one (never "007" or "-0").
Value StoredKey(const std::string& key) {
  const size_t digits = !key.empty() && key[0] == '-' ? 1 : 0;
  bool integer =
      key.size() > digits && (key[digits] != '0' || key.size() == digits + 1) && key != "-0";
  for (size_t i = digits; i < key.size() && integer; ++i) {
    integer = key[i] >= '0' && key[i] <= '9';
  }
  int64_t n = 0;
  if (integer && absl::SimpleAtoi(key, &n)) return Value::Integer(n);
  return Value::Text(key);
}

// The key (KeyOf's text) of a key as the table stores it.
std::string KeyText(const Value& stored) {
  if (stored.storage_class() == sqlite::StorageClass::kInteger) {
    return absl::StrCat(stored.integer());
  }
  return stored.bytes();
}

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
  std::string text;
  absl::Status s = db_.QueryKept(absl::StrCat("SELECT ", sqlite::RowVersionKeySql(params)), key,
                                 [&](const Statement& row) {
                                   text = KeyText(row.Column(0));
                                   return absl::OkStatus();
                                 });
  if (!s.ok()) return s;
  return text;
}

absl::StatusOr<std::optional<RowVersion>> RowVersions::Stored(const std::string& table,
                                                              const std::string& key) {
  static const std::string* const sql = new std::string(absl::StrCat(
      "SELECT ", kColumns, " FROM ", sqlite::QuoteIdentifier(sqlite::kRowVersionsTable),
      " WHERE tbl = ?1 AND key = ?2"));
  std::optional<RowVersion> stored;
  absl::Status s =
      db_.QueryKept(*sql, {Value::Text(table), StoredKey(key)}, [&](const Statement& row) {
        stored = ReadVersion(row, 0);
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return stored;
}

absl::StatusOr<std::vector<std::pair<std::string, RowVersion>>> RowVersions::Held(
    const std::string& table) {
  static const std::string* const sql = new std::string(absl::StrCat(
      "SELECT key, ", kColumns, " FROM ", sqlite::QuoteIdentifier(sqlite::kRowVersionsTable),
      // Without it SQLite scans the table's versions by its key: every version of the table,
      // per write (apply_bench unique:1 took 30x as long).
      " INDEXED BY ", sqlite::QuoteIdentifier(sqlite::kRowVersionsHeldIndex),
      " WHERE tbl = ?1 AND held IS NOT NULL"));
  std::map<std::string, RowVersion> held;
  absl::Status s = db_.QueryKept(*sql, {Value::Text(table)}, [&](const Statement& row) {
    held.emplace(KeyText(row.Column(0)), ReadVersion(row, 1));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  // As Get() reads them: the open batch's versions of the table (only those Set in it differ
  // from the stored ones), then newer deferred ones.
  const bool batched = batch_.has_value() && batch_->table == table;
  for (auto it = held.begin(); it != held.end();) {
    const Slot* slot = nullptr;
    if (batched) {
      auto found = batch_->slots.find(it->first);
      if (found != batch_->slots.end() && found->second.dirty) slot = &found->second;
    }
    if (slot != nullptr && (!slot->version.has_value() || slot->version->held.empty())) {
      it = held.erase(it);
    } else {
      ++it;
    }
  }
  if (batched) {
    for (const std::string& key : batch_->held) held[key] = *batch_->slots.at(key).version;
  }
  for (auto it = held.begin(); it != held.end();) {
    auto deferred = deferred_.find({table, it->first});
    if (deferred != deferred_.end() && deferred->second.raft_index > it->second.raft_index) {
      it = held.erase(it);
    } else {
      ++it;
    }
  }
  return std::vector<std::pair<std::string, RowVersion>>(held.begin(), held.end());
}

absl::StatusOr<std::optional<RowVersion>> RowVersions::Get(const std::string& table,
                                                           const std::string& key) {
  std::optional<RowVersion> stored;
  if (batch_.has_value() && batch_->table == table) {
    absl::StatusOr<Slot*> slot = BatchSlot(key);
    if (!slot.ok()) return slot.status();
    stored = (*slot)->version;
  } else {
    absl::StatusOr<std::optional<RowVersion>> read = Stored(table, key);
    if (!read.ok()) return read.status();
    stored = *std::move(read);
  }
  auto deferred = deferred_.find({table, key});
  if (deferred != deferred_.end() &&
      (!stored.has_value() || deferred->second.raft_index > stored->raft_index)) {
    return deferred->second;
  }
  return stored;
}

absl::Status RowVersions::Set(const std::string& table, const std::string& key,
                              const RowVersion& v) {
  if (!batch_.has_value() || batch_->table != table) return Write(table, key, v);
  absl::StatusOr<Slot*> slot = BatchSlot(key);
  if (!slot.ok()) return slot.status();
  // Write's rule: never over a version of a later Raft index.
  if ((*slot)->version.has_value() && (*slot)->version->raft_index > v.raft_index) {
    return absl::OkStatus();
  }
  (*slot)->version = v;
  if (!(*slot)->dirty) {
    (*slot)->dirty = true;
    batch_->dirty.push_back(key);
  }
  if (v.held.empty()) {
    batch_->held.erase(key);
  } else {
    batch_->held.insert(key);
  }
  return absl::OkStatus();
}

namespace {

constexpr size_t kBatchRows = 64;  // Rows per statement of a batch's reads and writes.

std::string VersionsTable() { return sqlite::QuoteIdentifier(sqlite::kRowVersionsTable); }

void AppendVersion(const RowVersion& v, std::vector<Value>& values) {
  values.push_back(Value::Integer(v.shard));
  values.push_back(Value::Integer(static_cast<int64_t>(v.raft_index)));
  values.push_back(Value::Integer(static_cast<int64_t>(v.origin)));
  values.push_back(Value::Integer(v.change_id));
  values.push_back(v.held.empty() ? Value::Null() : Value::Blob(v.held));
  values.push_back(Value::Integer(v.columns));
  values.push_back(v.digest.has_value() ? Value::Integer(*v.digest) : Value::Null());
}

// An upsert of `rows` versions (binds tbl, key, then kColumns per row), under Set's rule.
std::string UpsertSql(size_t rows) {
  std::vector<std::string> tuples;
  for (size_t r = 0; r < rows; ++r) {
    std::vector<std::string> marks;
    for (size_t i = 1; i <= kBound; ++i) marks.push_back(absl::StrCat("?", r * kBound + i));
    tuples.push_back(absl::StrCat("(", absl::StrJoin(marks, ", "), ")"));
  }
  return absl::StrCat(
      "INSERT INTO ", VersionsTable(), " (tbl, key, ", kColumns, ") VALUES ",
      absl::StrJoin(tuples, ", "),
      " ON CONFLICT (tbl, key) DO UPDATE SET shard = excluded.shard, raft_index = "
      "excluded.raft_index, origin = excluded.origin, change_id = excluded.change_id, held = "
      "excluded.held, columns = excluded.columns, digest = excluded.digest WHERE "
      "excluded.raft_index "
      ">= raft_index");
}

}  // namespace

absl::Status RowVersions::Write(const std::string& table, const std::string& key,
                                const RowVersion& v) {
  static const std::string* const sql = new std::string(UpsertSql(1));
  std::vector<Value> values = {Value::Text(table), StoredKey(key)};
  AppendVersion(v, values);
  return db_.RunKept(*sql, values);
}

absl::StatusOr<std::unique_ptr<RowVersions::Batch>> RowVersions::BeginBatch(
    const std::string& table, const std::vector<std::string>& keys) {
  CHECK(!batch_.has_value()) << "a batch of row versions is open already";
  static const std::string* const sql = new std::string([] {
    std::vector<std::string> marks;
    for (size_t i = 0; i < kBatchRows; ++i) marks.push_back(absl::StrCat("?", i + 2));
    return absl::StrCat("SELECT key, ", kColumns, " FROM ", VersionsTable(),
                        " WHERE tbl = ?1 AND key IN (", absl::StrJoin(marks, ", "), ")");
  }());
  Batched batched{.table = table};
  std::vector<const std::string*> unread;
  for (const std::string& key : keys) {
    if (batched.slots.try_emplace(key).second) unread.push_back(&key);
  }
  for (size_t first = 0; first < unread.size(); first += kBatchRows) {
    std::vector<Value> values = {Value::Text(table)};
    for (size_t i = first; i < first + kBatchRows; ++i) {
      values.push_back(i < unread.size() ? StoredKey(*unread[i]) : Value::Null());
    }
    absl::Status s = db_.QueryKept(*sql, values, [&](const Statement& row) {
      batched.slots[KeyText(row.Column(0))].version = ReadVersion(row, 1);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
  }
  batch_ = std::move(batched);
  return std::unique_ptr<Batch>(new Batch(*this));
}

absl::StatusOr<RowVersions::Slot*> RowVersions::BatchSlot(const std::string& key) {
  auto [at, added] = batch_->slots.try_emplace(key);
  if (added) {
    absl::StatusOr<std::optional<RowVersion>> stored = Stored(batch_->table, key);
    if (!stored.ok()) {
      batch_->slots.erase(at);
      return stored.status();
    }
    at->second.version = *std::move(stored);
  }
  return &at->second;
}

absl::Status RowVersions::EndBatch() {
  CHECK(batch_.has_value()) << "no batch of row versions is open";
  Batched batched = *std::move(batch_);
  batch_.reset();
  // One statement per kBatchRows versions, the last of the remainder's size.
  static const std::vector<std::string>* const sqls = new std::vector<std::string>([] {
    std::vector<std::string> by_rows(kBatchRows + 1);
    for (size_t rows = 1; rows <= kBatchRows; ++rows) by_rows[rows] = UpsertSql(rows);
    return by_rows;
  }());
  const std::vector<std::string>& dirty = batched.dirty;
  for (size_t first = 0; first < dirty.size(); first += kBatchRows) {
    const size_t rows = std::min(kBatchRows, dirty.size() - first);
    std::vector<Value> values;
    values.reserve(rows * kBound);
    for (size_t i = first; i < first + rows; ++i) {
      values.push_back(Value::Text(batched.table));
      values.push_back(StoredKey(dirty[i]));
      AppendVersion(*batched.slots[dirty[i]].version, values);
    }
    if (absl::Status s = db_.RunKept((*sqls)[rows], values); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void RowVersions::Defer(const std::string& table, const std::string& key, const RowVersion& v) {
  RowVersion& slot = deferred_[{table, key}];
  if (v.raft_index >= slot.raft_index) slot = v;
}

absl::Status RowVersions::WriteDeferred() {
  for (const auto& [row, v] : deferred_) {
    if (absl::Status s = Write(row.first, row.second, v); !s.ok()) return s;
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
            visit(stmt->Column(0).bytes(), KeyText(stmt->Column(1)), ReadVersion(*stmt, 2));
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
