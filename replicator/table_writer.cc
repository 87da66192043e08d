#include "replicator/table_writer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replicator/replaced_rows.h"
#include "replicator/shard_router.h"
#include "replicator/value_codec.h"
#include "sqlite/schema.h"

namespace marmot::replicator {

using change::v1::Change;
using change::v1::TableChanges;
using sqlite::QuoteIdentifier;
using sqlite::Value;

bool IsDatabaseFailure(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kInternal ||
         s.code() == absl::StatusCode::kDataLoss;
}

namespace {
constexpr char kHeldPayload[] = "marmot/held-for-own-schema";
}  // namespace

absl::Status HeldForOwnSchema() {
  absl::Status s = absl::UnavailableError(
      "other nodes' changes wait until this node's own schema change stands still");
  s.SetPayload(kHeldPayload, absl::Cord("1"));
  return s;
}

bool IsHeldForOwnSchema(const absl::Status& s) { return s.GetPayload(kHeldPayload).has_value(); }

std::string QuotedList(const std::vector<std::string>& names) {
  std::vector<std::string> quoted;
  for (const std::string& n : names) quoted.push_back(QuoteIdentifier(n));
  return absl::StrJoin(quoted, ", ");
}

std::vector<Value> KeyOf(const TableChanges& t, const std::vector<int>& key_positions,
                         const Change& c) {
  if (c.op() == change::v1::OP_DELETE) return FromWire(c.old_key());
  if (t.key_columns().empty()) return {FromWire(c.rowid())};
  std::vector<Value> key;
  for (int i : key_positions) {
    if (i < c.row_size()) key.push_back(FromWire(c.row(i)));
  }
  return key;
}

std::vector<std::vector<Value>> KeysOf(const TableChanges& t, const std::vector<int>& key_positions,
                                       const Change& c) {
  std::vector<std::vector<Value>> keys = {KeyOf(t, key_positions, c)};
  if (c.op() == change::v1::OP_REKEY) keys.push_back(FromWire(c.old_key()));
  return keys;
}

std::vector<std::string> RowsOf(const TableChanges& t, const std::vector<int>& key_positions,
                                const Change& c) {
  std::vector<std::string> rows;
  for (const std::vector<Value>& key : KeysOf(t, key_positions, c)) {
    rows.push_back(EncodeRowIdentity(t.table(), key));
  }
  return rows;
}

namespace {

std::string Placeholders(size_t n) {
  std::vector<std::string> marks(n, "?");
  return absl::StrJoin(marks, ", ");
}

}  // namespace

absl::StatusOr<TableWriter> PlanWriter(sqlite::Database& db, const std::string& table,
                                       const std::vector<std::string>& columns,
                                       const std::vector<std::string>& key_columns) {
  // Replicated changes and snapshots write user tables only: a change naming marmot's own state
  // (say, its dedupe table), SQLite's, a view or a virtual table never applies.
  absl::StatusOr<sqlite::TableSchema> local = sqlite::ReadTableSchema(db, table);
  if (local.status().code() == absl::StatusCode::kInvalidArgument) {
    return absl::FailedPreconditionError(
        absl::StrCat("not replicated: ", local.status().message()));
  }
  if (!local.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", QuoteIdentifier(table), " does not exist on this node"));
  }
  std::vector<std::string> local_columns;
  for (const sqlite::ColumnInfo& c : local->columns) local_columns.push_back(c.name);
  bool carried = local->primary_key == key_columns;
  for (const std::string& c : columns) {
    carried =
        carried && std::find(local_columns.begin(), local_columns.end(), c) != local_columns.end();
  }
  if (!carried) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", QuoteIdentifier(table), " differs on this node: columns (",
                     QuotedList(local_columns), ") key (", QuotedList(local->primary_key),
                     "), the change has columns (", QuotedList(columns), ") key (",
                     QuotedList(key_columns), ")"));
  }
  TableWriter w;
  w.keyed_by_rowid = key_columns.empty();
  std::vector<std::string> insert_columns = columns;
  std::vector<std::string> key_terms;
  if (w.keyed_by_rowid) {
    insert_columns.insert(insert_columns.begin(), "rowid");
    key_terms.push_back("rowid = ?");
  } else {
    for (const std::string& k : key_columns) key_terms.push_back(QuoteIdentifier(k) + " IS ?");
  }
  std::vector<std::string> quoted_insert;
  for (const std::string& c : insert_columns) {
    quoted_insert.push_back(c == "rowid" && w.keyed_by_rowid ? "rowid" : QuoteIdentifier(c));
  }
  w.upsert = absl::StrCat("INSERT OR REPLACE INTO ", QuoteIdentifier(table), " (",
                          absl::StrJoin(quoted_insert, ", "), ") VALUES (",
                          Placeholders(insert_columns.size()), ")");
  if (columns.size() < local_columns.size()) {
    // The change was read on a node whose table lacks columns that this one has (a column added
    // here first): it writes the columns it carries and leaves the others as they are, or at
    // their defaults for a new row. Replacing the whole row would erase values it never knew.
    std::vector<std::string> set;
    for (size_t i = 0; i < columns.size(); ++i) {
      if (std::find(key_columns.begin(), key_columns.end(), columns[i]) == key_columns.end()) {
        set.push_back(
            absl::StrCat(QuoteIdentifier(columns[i]), " = ?", i + 1 + (w.keyed_by_rowid ? 1 : 0)));
      }
    }
    if (set.empty())
      set.push_back(w.keyed_by_rowid ? "rowid = rowid"
                                     : absl::StrCat(QuoteIdentifier(key_columns[0]), " = ",
                                                    QuoteIdentifier(key_columns[0])));
    std::vector<std::string> where;
    if (w.keyed_by_rowid) {
      where.push_back("rowid = ?" + std::to_string(insert_columns.size() + 1));
    } else {
      for (size_t k = 0; k < key_columns.size(); ++k) {
        where.push_back(
            absl::StrCat(QuoteIdentifier(key_columns[k]), " IS ?", insert_columns.size() + 1 + k));
      }
    }
    w.update = absl::StrCat("UPDATE OR REPLACE ", QuoteIdentifier(table), " SET ",
                            absl::StrJoin(set, ", "), " WHERE ", absl::StrJoin(where, " AND "));
  }
  w.delete_key = absl::StrCat("DELETE FROM ", QuoteIdentifier(table), " WHERE ",
                              absl::StrJoin(key_terms, " AND "));
  w.select_row = absl::StrCat("SELECT ", absl::StrJoin(quoted_insert, ", "), " FROM ",
                              QuoteIdentifier(table), " WHERE ", absl::StrJoin(key_terms, " AND "));
  w.row_exists = absl::StrCat("SELECT 1 FROM ", QuoteIdentifier(table), " WHERE ",
                              absl::StrJoin(key_terms, " AND "));
  absl::StatusOr<std::vector<std::vector<Value>>> indexes = db.QueryRows(
      absl::StrCat("SELECT name FROM pragma_index_list(", Value::Text(table).DebugString(),
                   ") WHERE \"unique\" AND origin <> 'pk'"));
  if (!indexes.ok()) return indexes.status();
  w.other_unique_constraints = !indexes->empty();
  if (!w.other_unique_constraints) return w;
  w.whole_columns = local_columns;
  std::vector<std::string> whole_select;
  if (w.keyed_by_rowid) {
    whole_select.push_back("rowid");
    w.whole_key.push_back(0);
  }
  for (const std::string& c : local_columns) whole_select.push_back(QuoteIdentifier(c));
  for (const std::string& k : key_columns) {
    const auto at = std::find(local_columns.begin(), local_columns.end(), k);
    w.whole_key.push_back(static_cast<int>(at - local_columns.begin()));
  }
  w.select_whole =
      absl::StrCat("SELECT ", absl::StrJoin(whole_select, ", "), " FROM ", QuoteIdentifier(table),
                   " WHERE ", absl::StrJoin(key_terms, " AND "));
  for (const std::vector<Value>& index : *indexes) {
    // Each column as the index compares it: an index may collate otherwise than its column
    // ('B@x' and 'b@x' one value to an index ON t(email COLLATE NOCASE)).
    absl::StatusOr<std::vector<std::vector<Value>>> index_columns =
        db.QueryRows(absl::StrCat("SELECT name, coll FROM pragma_index_xinfo(",
                                  index[0].DebugString(), ") WHERE key ORDER BY seqno"));
    if (!index_columns.ok()) return index_columns.status();
    TableWriter::UniqueProbe probe;
    std::vector<std::string> terms;
    for (const std::vector<Value>& column : *index_columns) {
      auto at = column[0].is_null() ? columns.end()
                                    : std::find(columns.begin(), columns.end(), column[0].bytes());
      if (at == columns.end()) {  // An expression, or a column the change does not carry.
        terms.clear();
        break;
      }
      terms.push_back(absl::StrCat(QuoteIdentifier(column[0].bytes()), " COLLATE ",
                                   QuoteIdentifier(column[1].bytes()), " = ?"));
      probe.values.push_back(static_cast<int>(at - columns.begin()) + (w.keyed_by_rowid ? 1 : 0));
    }
    if (terms.empty()) {
      w.unprobed_unique = true;
      continue;
    }
    probe.sql = absl::StrCat("SELECT ", absl::StrJoin(whole_select, ", "), " FROM ",
                             QuoteIdentifier(table), " WHERE ", absl::StrJoin(terms, " AND "));
    w.unique_probes.push_back(std::move(probe));
  }
  if (!w.unprobed_unique) return w;
  if (!local->without_rowid) {
    w.select_replaced = absl::StrCat("SELECT ", absl::StrJoin(whole_select, ", "), " FROM ",
                                     QuoteIdentifier(table), " WHERE rowid = ?");
    return w;
  }
  // SQLite's preupdate hook numbers a row's columns among all of them, generated ones too.
  absl::StatusOr<std::vector<std::vector<Value>>> all_columns = db.QueryRows(absl::StrCat(
      "SELECT name FROM pragma_table_xinfo(", Value::Text(table).DebugString(), ") ORDER BY cid"));
  if (!all_columns.ok()) return all_columns.status();
  // Each key column between two bounds (ReadReplacedRows): SQLite 3.40's hook can give an
  // INTEGER key back as a REAL, rounded.
  std::vector<std::string> key_by_key;
  for (const std::string& k : key_columns) {
    for (size_t i = 0; i < all_columns->size(); ++i) {
      if ((*all_columns)[i][0].bytes() == k) w.replaced_key_columns.push_back(static_cast<int>(i));
    }
    key_by_key.push_back(absl::StrCat(QuoteIdentifier(k), " >= ?", 2 * key_by_key.size() + 1,
                                      " AND ", QuoteIdentifier(k), " <= ?",
                                      2 * key_by_key.size() + 2));
  }
  w.select_replaced =
      absl::StrCat("SELECT ", absl::StrJoin(whole_select, ", "), " FROM ", QuoteIdentifier(table),
                   " WHERE ", absl::StrJoin(key_by_key, " AND "));
  return w;
}

absl::Status ApplyChange(sqlite::Database& db, const TableWriter& w, const TableChanges& t,
                         const Change& c) {
  auto run = [&db](const std::string& sql, const std::vector<Value>& values) {
    return db.RunKept(sql, values);
  };
  const bool has_row = c.op() == change::v1::OP_INSERT || c.op() == change::v1::OP_UPDATE ||
                       c.op() == change::v1::OP_REKEY;
  if (c.op() == change::v1::OP_UNSPECIFIED || c.op() > change::v1::OP_DELETE) {
    return absl::InvalidArgumentError(absl::StrCat("unknown operation ", c.op()));
  }
  const size_t key_size = w.keyed_by_rowid ? 1 : t.key_columns_size();
  if (c.op() == change::v1::OP_REKEY || c.op() == change::v1::OP_DELETE) {
    if (static_cast<size_t>(c.old_key_size()) != key_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("old key has ", c.old_key_size(), " values, the table's key ", key_size));
    }
  }
  if (has_row && c.row_size() != t.columns_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("row has ", c.row_size(), " values for ", t.columns_size(), " columns"));
  }
  const bool two_statements = c.op() == change::v1::OP_REKEY;
  if (two_statements) {
    if (absl::Status s = db.Exec("SAVEPOINT change"); !s.ok()) return s;
  }
  absl::Status status = absl::OkStatus();
  if (c.op() == change::v1::OP_REKEY || c.op() == change::v1::OP_DELETE) {
    status = run(w.delete_key, FromWire(c.old_key()));
  }
  if (status.ok() && has_row) {
    std::vector<Value> values;
    values.reserve(c.row_size() + 1);
    if (w.keyed_by_rowid) values.push_back(FromWire(c.rowid()));
    for (const change::v1::Value& v : c.row()) values.push_back(FromWire(v));
    bool updated = false;
    if (!w.update.empty()) {
      std::vector<Value> with_key = values;
      if (w.keyed_by_rowid) {
        with_key.push_back(values[0]);
      } else {
        for (int i : KeyPositions(t)) with_key.push_back(FromWire(c.row(i)));
      }
      status = run(w.update, with_key);
      updated = status.ok() && db.Changes() > 0;
    }
    if (status.ok() && !updated) status = run(w.upsert, values);
  }
  if (two_statements) {
    if (!IsDatabaseFailure(status)) {
      absl::Status end =
          db.Exec(status.ok() ? "RELEASE change" : "ROLLBACK TO change; RELEASE change");
      if (!end.ok()) return end;
    }
  }
  return status;
}

namespace {

// The rows `sql` (one of `w`'s selects of whole rows: [rowid,] whole_columns) finds with
// `binds`, each with its key.
absl::StatusOr<std::vector<RowInTheWay>> ReadWholeRows(sqlite::Database& db, const TableWriter& w,
                                                       const std::string& sql,
                                                       const std::vector<Value>& binds) {
  const int width = static_cast<int>(w.whole_columns.size()) + (w.keyed_by_rowid ? 1 : 0);
  std::vector<RowInTheWay> rows;
  absl::Status s = db.QueryKept(sql, binds, [&](const sqlite::Statement& found) {
    RowInTheWay row;
    for (int i = 0; i < width; ++i) row.row.push_back(found.Column(i));
    for (int i : w.whole_key) row.key.push_back(row.row[i]);
    rows.push_back(std::move(row));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return rows;
}

}  // namespace

absl::StatusOr<std::vector<RowInTheWay>> RowsInTheWay(sqlite::Database& db, const TableWriter& w,
                                                      const TableChanges& t, const Change& c) {
  std::vector<RowInTheWay> rows;
  const bool has_row = c.op() == change::v1::OP_INSERT || c.op() == change::v1::OP_UPDATE ||
                       c.op() == change::v1::OP_REKEY;
  if (w.unique_probes.empty() || !has_row || c.row_size() != t.columns_size()) return rows;
  const std::vector<std::vector<Value>> own_keys = KeysOf(t, KeyPositions(t), c);
  const int offset = w.keyed_by_rowid ? 1 : 0;
  for (const TableWriter::UniqueProbe& probe : w.unique_probes) {
    std::vector<Value> values;
    for (int i : probe.values) {
      values.push_back(w.keyed_by_rowid && i == 0 ? FromWire(c.rowid())
                                                  : FromWire(c.row(i - offset)));
    }
    absl::StatusOr<std::vector<RowInTheWay>> found = ReadWholeRows(db, w, probe.sql, values);
    if (!found.ok()) return found.status();
    for (RowInTheWay& row : *found) {
      const bool own = std::find(own_keys.begin(), own_keys.end(), row.key) != own_keys.end();
      const bool seen = std::any_of(rows.begin(), rows.end(),
                                    [&](const RowInTheWay& r) { return r.key == row.key; });
      if (!own && !seen) rows.push_back(std::move(row));
    }
  }
  return rows;
}

absl::Status BeginTrialWrite(sqlite::Database& db) { return db.Exec("SAVEPOINT trial_write"); }

absl::Status EndTrialWrite(sqlite::Database& db, const absl::Status& written) {
  absl::Status rolled = db.Exec("ROLLBACK TO trial_write; RELEASE trial_write");
  if (IsDatabaseFailure(written)) return written;
  if (!rolled.ok()) {
    return absl::UnavailableError(absl::StrCat("ending a trial write: ", rolled.message()));
  }
  return absl::OkStatus();
}

namespace {

// The rows (whole, as a probe reads them) that the preupdate hook's identity of a deleted row
// names: the row of that rowid, or of a WITHOUT ROWID table the rows whose key lies between the
// doubles next to a REAL the hook gave (SQLite 3.40 gives a key column back with the REAL
// affinity of the table's column at the key's place in the key: an INTEGER above 2^53 rounded),
// or is each value given otherwise.
absl::StatusOr<std::vector<RowInTheWay>> ReadReplacedRows(sqlite::Database& db,
                                                          const TableWriter& w,
                                                          const std::vector<Value>& identity) {
  std::vector<Value> binds;
  if (w.replaced_key_columns.empty()) {  // A rowid table: the identity is the rowid.
    binds = identity;
  } else {
    for (const Value& v : identity) {
      if (v.storage_class() == sqlite::StorageClass::kReal) {
        binds.push_back(Value::Real(std::nextafter(v.real(), -HUGE_VAL)));
        binds.push_back(Value::Real(std::nextafter(v.real(), HUGE_VAL)));
      } else {
        binds.push_back(v);
        binds.push_back(v);
      }
    }
  }
  return ReadWholeRows(db, w, w.select_replaced, binds);
}

}  // namespace

absl::StatusOr<std::vector<RowInTheWay>> RowsATrialWriteReplaces(
    sqlite::Database& db, const TableWriter& w, const TableChanges& t, const Change& c,
    absl::FunctionRef<absl::Status()> write) {
  std::vector<RowInTheWay> replaced;
  if (absl::Status s = BeginTrialWrite(db); !s.ok()) return s;
  absl::Status written;
  std::vector<std::vector<Value>> deleted;
  {
    ReplacedRowsRecorder recorder(db, t.table(), w.replaced_key_columns);
    written = write();
    deleted = recorder.Take();
  }
  // The rows each identity names that are still there after the write: not deleted (a REAL's
  // neighbours among WITHOUT ROWID keys).
  std::vector<std::vector<std::vector<Value>>> still_there(deleted.size());
  for (size_t i = 0; written.ok() && !w.replaced_key_columns.empty() && i < deleted.size(); ++i) {
    absl::StatusOr<std::vector<RowInTheWay>> rows = ReadReplacedRows(db, w, deleted[i]);
    if (!rows.ok()) {
      written = rows.status();
      break;
    }
    for (RowInTheWay& row : *rows) still_there[i].push_back(std::move(row.key));
  }
  if (absl::Status s = EndTrialWrite(db, written); !s.ok()) return s;
  if (!written.ok()) return replaced;
  // The rows are back as they were: read each whole, as a probe would have. A row not found is
  // one the write itself made and deleted again, which the rollback took away too.
  const std::vector<std::vector<Value>> own = KeysOf(t, KeyPositions(t), c);
  for (size_t i = 0; i < deleted.size(); ++i) {
    absl::StatusOr<std::vector<RowInTheWay>> rows = ReadReplacedRows(db, w, deleted[i]);
    if (!rows.ok()) return rows.status();
    for (RowInTheWay& row : *rows) {
      const bool seen = std::any_of(replaced.begin(), replaced.end(),
                                    [&](const RowInTheWay& r) { return r.key == row.key; });
      if (seen || std::find(own.begin(), own.end(), row.key) != own.end() ||
          std::find(still_there[i].begin(), still_there[i].end(), row.key) !=
              still_there[i].end()) {
        continue;
      }
      replaced.push_back(std::move(row));
    }
  }
  return replaced;
}

absl::StatusOr<std::vector<RowInTheWay>> RowsATrialWriteReplaces(sqlite::Database& db,
                                                                 const TableWriter& w,
                                                                 const TableChanges& t,
                                                                 const Change& c) {
  return RowsATrialWriteReplaces(db, w, t, c, [&] { return ApplyChange(db, w, t, c); });
}

absl::StatusOr<std::vector<RowInTheWay>> RowsReplacedBy(sqlite::Database& db, const TableWriter& w,
                                                        const TableChanges& t, const Change& c,
                                                        std::vector<RowInTheWay> in_the_way) {
  std::vector<RowInTheWay> replaced;
  if (in_the_way.empty()) return replaced;
  if (absl::Status s = BeginTrialWrite(db); !s.ok()) return s;
  absl::Status written = ApplyChange(db, w, t, c);
  if (written.ok()) {
    for (RowInTheWay& row : in_the_way) {
      absl::StatusOr<bool> there = RowExists(db, w, row.key);
      if (!there.ok()) {
        written = there.status();
        break;
      }
      if (!*there) replaced.push_back(std::move(row));
    }
  }
  // A write that fails replaces nothing (it will fail again when it is made, and be dead-lettered
  // then); only the database's own failure is an error here.
  if (absl::Status s = EndTrialWrite(db, written); !s.ok()) return s;
  if (!written.ok()) replaced.clear();
  return replaced;
}

absl::StatusOr<std::optional<RowInTheWay>> ReadWholeRow(sqlite::Database& db, const TableWriter& w,
                                                        const std::vector<Value>& key) {
  absl::StatusOr<std::vector<RowInTheWay>> rows = ReadWholeRows(db, w, w.select_whole, key);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  return std::move(rows->front());
}

absl::StatusOr<bool> RowExists(sqlite::Database& db, const TableWriter& w,
                               const std::vector<Value>& key) {
  absl::StatusOr<sqlite::Statement*> stmt = db.Kept(w.row_exists);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = (*stmt)->BindAll(key); !s.ok()) return s;
  absl::StatusOr<bool> found = (*stmt)->Step();
  (*stmt)->Reset();
  return found;
}

}  // namespace marmot::replicator

namespace marmot::replicator {

absl::Status ApplyColumns(sqlite::Database& db, const TableChanges& t, const Change& c,
                          const std::vector<std::string>& columns) {
  if (c.op() != change::v1::OP_INSERT && c.op() != change::v1::OP_UPDATE) {
    return absl::InvalidArgumentError("only an insert or an update writes some columns");
  }
  if (c.row_size() != t.columns_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("row has ", c.row_size(), " values for ", t.columns_size(), " columns"));
  }
  auto among = [](const auto& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  TableChanges some;
  some.set_table(t.table());
  *some.mutable_key_columns() = t.key_columns();
  Change written;
  written.set_change_id(c.change_id());
  written.set_op(c.op());
  written.set_at_ms(c.at_ms());
  if (c.has_rowid()) *written.mutable_rowid() = c.rowid();
  for (int i = 0; i < t.columns_size(); ++i) {
    if (!among(t.key_columns(), t.columns(i)) && !among(columns, t.columns(i))) continue;
    some.add_columns(t.columns(i));
    *written.add_row() = c.row(i);
  }
  absl::StatusOr<TableWriter> w =
      PlanWriter(db, t.table(), {some.columns().begin(), some.columns().end()},
                 {some.key_columns().begin(), some.key_columns().end()});
  if (!w.ok()) return w.status();
  return ApplyChange(db, *w, some, written);
}

}  // namespace marmot::replicator
