#include "replicator/shard_snapshotter.h"

#include <glog/logging.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "replicator/apply_decider.h"
#include "replicator/displaced_rows.h"
#include "replicator/table_writer.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"

namespace marmot::replicator {

using change::v1::ShardSnapshot;
using change::v1::SnapshotRow;
using sqlite::QuoteIdentifier;
using sqlite::Statement;
using sqlite::Value;

size_t SnapshotRowWidth(const ShardSnapshot::Table& t) {
  const size_t width = t.columns_size() + (t.keyed_by_rowid() ? 1 : 0);
  return width == 0 || t.values_size() % width != 0 ? 0 : width;
}

absl::Status SnapshotUnreadable(const absl::Status& s) {
  return absl::FailedPreconditionError(
      absl::StrCat("the snapshot payload cannot be read: ", s.message()));
}

namespace {

// Positions of the key values within a snapshot row of `t`: the rowid leads rows keyed by it.
std::vector<int> SnapshotKeyIndex(const ShardSnapshot::Table& t) {
  return t.keyed_by_rowid() ? std::vector<int>{0} : KeyPositions(t);
}

// Where a snapshot row goes: the table, the shard whose snapshot holds it, and the router that
// says which shard orders each key.
struct SnapshotRowTarget {
  const std::string& table;
  int shard;
  const ShardRouter& router;
};

// Upserts the snapshot row of `width` values at `start` of `values` with `upsert` (a writer's
// upsert statement). InvalidArgument when the row's
// key routes to another shard than `target.shard`: a snapshot of one shard must not write rows
// that another shard orders (`row` numbers the row in that error). The key is routed as sent,
// before writing, and as stored, after (`select_row`, the writer's SELECT by key): a column's
// affinity can change a value's storage class (TEXT '5' into an INTEGER PRIMARY KEY is 5), and
// with it the shard; then the row was written and the caller rolls it back.
absl::Status UpsertSnapshotRow(Statement& upsert, Statement& select_row,
                               const SnapshotRowTarget& target,
                               const google::protobuf::RepeatedPtrField<change::v1::Value>& values,
                               int start, size_t width, const std::vector<int>& key_index,
                               int64_t row) {
  std::vector<Value> key;
  for (int i : key_index) key.push_back(FromWire(values.Get(start + i)));
  if (const int routed = target.router.ShardOf(target.table, key); routed != target.shard) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed: row ", row, " belongs to shard ", routed, ", not ", target.shard));
  }
  for (size_t i = 0; i < width; ++i) {
    if (absl::Status s =
            upsert.Bind(static_cast<int>(i) + 1, FromWire(values.Get(start + static_cast<int>(i))));
        !s.ok()) {
      return s;
    }
  }
  absl::Status s = upsert.Run();
  upsert.Reset();
  if (!s.ok()) return s;
  if (s = select_row.BindAll(key); !s.ok()) return s;
  absl::StatusOr<bool> found = select_row.Step();
  std::vector<Value> stored;
  if (found.ok() && *found) {
    for (int i : key_index) stored.push_back(select_row.Column(i));
  }
  select_row.Reset();
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed: row ", row, " cannot be found by its key once written"));
  }
  if (const int routed = target.router.ShardOf(target.table, stored); routed != target.shard) {
    return absl::InvalidArgumentError(absl::StrCat("malformed: row ", row, " is stored with a key ",
                                                   "of shard ", routed, ", not ", target.shard));
  }
  return absl::OkStatus();
}

// Upserts the rows of a snapshot table of `shard` kept whole (a snapshot-rows dead letter;
// SnapshotRowWidth must be positive) with `writer`. InvalidArgument, after some rows may have been
// written (the caller rolls them back), when a row routes to another shard.
absl::Status InsertSnapshotRows(sqlite::Database& db, const ShardSnapshot::Table& t,
                                const TableWriter& writer, const ShardRouter& router, int shard) {
  const size_t width = SnapshotRowWidth(t);
  CHECK_GT(width, 0u) << "snapshot rows of " << t.table() << " do not divide into rows";
  absl::StatusOr<Statement> upsert = db.Prepare(writer.upsert);
  if (!upsert.ok()) return upsert.status();
  absl::StatusOr<Statement> select_row = db.Prepare(writer.select_row);
  if (!select_row.ok()) return select_row.status();
  const std::vector<int> key_index = SnapshotKeyIndex(t);
  const SnapshotRowTarget target{t.table(), shard, router};
  int64_t row = 0;
  for (int start = 0; start < t.values_size(); start += static_cast<int>(width)) {
    if (absl::Status s = UpsertSnapshotRow(*upsert, *select_row, target, t.values(), start, width,
                                           key_index, ++row);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

change::v1::TableChanges SnapshotRowAsInsert(const ShardSnapshot::Table& header,
                                             const SnapshotRow& row, int64_t change_id) {
  change::v1::TableChanges t;
  t.set_table(header.table());
  *t.mutable_columns() = header.columns();
  *t.mutable_key_columns() = header.key_columns();
  change::v1::Change* c = t.add_changes();
  c->set_op(change::v1::OP_INSERT);
  c->set_change_id(change_id);
  const int offset = header.keyed_by_rowid() ? 1 : 0;
  if (offset == 1) *c->mutable_rowid() = row.values(0);
  for (int i = offset; i < row.values_size(); ++i) *c->add_row() = row.values(i);
  return t;
}

absl::Status ShardSnapshotter::Write(int shard, ShardSnapshotWriter& out) {
  absl::StatusOr<Statement> dedupe = db_.Prepare(absl::StrCat(
      "SELECT origin, tbl, change_id FROM \"__marmot__applied\" WHERE shard = ", shard));
  if (!dedupe.ok()) return dedupe.status();
  for (;;) {
    absl::StatusOr<bool> row = dedupe->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    ShardSnapshot::Applied a;
    a.set_origin_node(static_cast<uint64_t>(dedupe->Column(0).integer()));
    a.set_table(dedupe->Column(1).bytes());
    a.set_change_id(dedupe->Column(2).integer());
    if (absl::Status s = out.AddApplied(a); !s.ok()) return s;
  }
  absl::Status versions = versions_.ForEachOfShard(
      shard, [&](const std::string& table, const std::string& key, const RowVersion& v) {
        change::v1::SnapshotVersions::Entry e;
        e.set_table(table);
        e.set_key(key);
        e.set_raft_index(v.raft_index);
        e.set_origin(v.origin);
        e.set_change_id(v.change_id);
        e.set_held(v.held);
        e.set_columns(v.columns);
        if (v.digest.has_value()) e.set_digest(*v.digest);
        return out.AddVersion(std::move(e));
      });
  if (!versions.ok()) return versions;
  absl::Status conflicts = conflicts_.ForEachOfShard(
      shard,
      [&](change::v1::SnapshotVersions::Conflict c) { return out.AddConflict(std::move(c)); });
  if (!conflicts.ok()) return conflicts;
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(db_);
  if (!listing.ok()) return listing.status();
  for (const sqlite::TableSchema& t : listing->tables) {
    ShardSnapshot::Table header;
    header.set_table(t.name);
    header.set_keyed_by_rowid(t.keyed_by_rowid());
    std::vector<std::string> columns;
    for (const sqlite::ColumnInfo& c : t.columns) {
      header.add_columns(c.name);
      columns.push_back(c.name);
    }
    for (const std::string& k : t.primary_key) header.add_key_columns(k);
    if (absl::Status s = out.StartTable(header); !s.ok()) return s;
    const std::vector<int> key_index = KeyPositions(header);
    absl::StatusOr<Statement> scan =
        db_.Prepare(absl::StrCat("SELECT ", t.keyed_by_rowid() ? "rowid, " : "",
                                 QuotedList(columns), " FROM ", QuoteIdentifier(t.name)));
    if (!scan.ok()) return scan.status();
    const int offset = t.keyed_by_rowid() ? 1 : 0;
    for (;;) {
      absl::StatusOr<bool> row = scan->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      std::vector<Value> key;
      if (t.keyed_by_rowid()) {
        key.push_back(scan->Column(0));
      } else {
        for (int i : key_index) key.push_back(scan->Column(offset + i));
      }
      if (router_.ShardOf(t.name, key) != shard) continue;
      change::v1::SnapshotRow out_row;
      for (int i = 0; i < scan->column_count(); ++i) {
        *out_row.add_values() = ToWire(scan->Column(i));
      }
      if (absl::Status s = out.AddRow(std::move(out_row)); !s.ok()) return s;
    }
  }
  // The shard's dead letters, oldest first: the rows above lack their changes (see the header).
  absl::StatusOr<Statement> dead = db_.Prepare(absl::StrCat(
      "SELECT raft_index, origin, tbl, change_id, error, change FROM \"__marmot__dead_letters\" "
      "WHERE shard = ",
      shard, " ORDER BY id"));
  if (!dead.ok()) return dead.status();
  for (;;) {
    absl::StatusOr<bool> row = dead->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (absl::Status s = out.AddDeadLetter(CarriedDeadLetter(dead->Row())); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ShardSnapshotter::ReplaceRows(int shard, uint64_t at, uint64_t local_node,
                                           OwnChangesApplied own_applied, ShardSnapshotReader& in,
                                           InstallResult& result, std::vector<KeptRow>* kept_rows) {
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(db_);
  if (!listing.ok()) return listing.status();
  // Rows of the shard that this node changed after everything of it the snapshot holds keep
  // their local version: those changes come later in the shard's order than the snapshot and
  // will apply here as own changes the rows hold, so the application never sees an older row.
  // Neither they nor rows of other shards with own changes those shards have not applied lose a
  // UNIQUE value to a snapshot row (ReplaceRows in the header).
  absl::StatusOr<std::map<std::string, PendingRows>> pending =
      RowsWithLaterOwnChanges(shard, local_node, in.applied(), listing->tables, own_applied);
  if (!pending.ok()) return pending.status();
  auto kept_of = [&](const std::string& table) -> const PendingRows* {
    auto it = pending->find(table);
    return it == pending->end() ? nullptr : &it->second;
  };
  // Remove the shard's current rows from every local table.
  for (const sqlite::TableSchema& t : listing->tables) {
    if (absl::Status s = DeleteShardRows(shard, t, kept_of(t.name)); !s.ok()) return s;
  }
  // The shard's dead letters up to the snapshot are superseded by it (see the header). Deleted
  // before the snapshot's own dead letters below are recorded.
  absl::StatusOr<int64_t> superseded = dead_letters_.DeleteUpTo(shard, at);
  if (!superseded.ok()) return superseded.status();
  if (*superseded > 0) {
    LOG(WARNING) << "shard " << shard << ": the snapshot at index " << at << " supersedes "
                 << *superseded << " dead letter(s) of this shard; deleted";
  }
  // The snapshot's rows, table by table, each under this node's name of the table (its maker
  // may spell it in another case: one name to SQLite).
  std::map<std::string, std::string> named_here;  // lower case -> as here
  for (const sqlite::TableSchema& t : listing->tables) {
    named_here[absl::AsciiStrToLower(t.name)] = t.name;
  }
  std::map<std::string, std::pair<ShardSnapshot::Table, std::map<std::string, SnapshotRow>>> seen;
  for (;;) {
    absl::StatusOr<std::optional<ShardSnapshot::Table>> t = in.NextTable();
    if (!t.ok()) return SnapshotUnreadable(t.status());
    if (!t->has_value()) break;
    if (auto here = named_here.find(absl::AsciiStrToLower((*t)->table()));
        here != named_here.end()) {
      (*t)->set_table(here->second);
    }
    auto& [header, rows] = seen[(*t)->table()];
    header = **t;
    if (absl::Status s = InstallTable(shard, in.applied_index(), local_node, **t, in,
                                      kept_of((*t)->table()), result, &rows);
        !s.ok()) {
      return s;
    }
  }
  if (kept_rows == nullptr) return absl::OkStatus();
  for (const auto& [table, keys] : kept_keys_) {
    for (const auto& [identity, key] : keys) {
      KeptRow& row = kept_rows->emplace_back(KeptRow{.table = table, .key = key});
      auto t = seen.find(table);
      if (t == seen.end()) continue;
      row.header = t->second.first;
      auto found = t->second.second.find(identity);
      if (found != t->second.second.end()) row.snapshot_row = found->second;
    }
  }
  return absl::OkStatus();
}

absl::Status ShardSnapshotter::ReplaceWithSnapshotRows(int shard, const ShardSnapshot::Table& t) {
  std::vector<std::string> columns(t.columns().begin(), t.columns().end());
  absl::StatusOr<TableWriter> writer =
      PlanWriter(db_, t.table(), columns, {t.key_columns().begin(), t.key_columns().end()});
  if (!writer.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot rows not installed: ", writer.status().message()));
  }
  absl::StatusOr<sqlite::TableSchema> local = sqlite::ReadTableSchema(db_, t.table());
  if (!local.ok()) return local.status();
  if (absl::Status s = db_.Exec("SAVEPOINT retry_rows"); !s.ok()) return s;
  absl::Status status = DeleteShardRows(shard, *local);
  if (status.ok()) status = InsertSnapshotRows(db_, t, *writer, router_, shard);
  if (IsDatabaseFailure(status)) return status;
  absl::Status end =
      db_.Exec(status.ok() ? "RELEASE retry_rows" : "ROLLBACK TO retry_rows; RELEASE retry_rows");
  if (!end.ok()) return end;
  return status;
}

absl::Status ShardSnapshotter::DeleteShardRows(int shard, const sqlite::TableSchema& table,
                                               const PendingRows* keep) {
  std::vector<std::string> columns;
  for (const sqlite::ColumnInfo& c : table.columns) columns.push_back(c.name);
  absl::StatusOr<TableWriter> writer = PlanWriter(db_, table.name, columns, table.primary_key);
  if (!writer.ok()) return writer.status();
  const std::string key_select = table.keyed_by_rowid() ? "rowid" : QuotedList(table.primary_key);
  // Each row is deleted as the scan reaches it, not after reading every key of the table (of all
  // shards: as many as the database has rows, a newcomer's memory growing with it). Deleting the
  // row a SELECT is on is safe in SQLite (https://sqlite.org/isolation.html): the scan goes on
  // with the next row.
  absl::StatusOr<Statement> keys =
      db_.Prepare(absl::StrCat("SELECT ", key_select, " FROM ", QuoteIdentifier(table.name)));
  if (!keys.ok()) return keys.status();
  absl::StatusOr<Statement> del = db_.Prepare(writer->delete_key);
  if (!del.ok()) return del.status();
  for (;;) {
    absl::StatusOr<bool> more = keys->Step();
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
    const std::vector<Value> key = keys->Row();
    if (router_.ShardOf(table.name, key) != shard) continue;
    if (keep != nullptr && keep->contains(EncodeRowIdentity("", key))) continue;
    if (absl::Status s = del->BindAll(key); !s.ok()) return s;
    if (absl::Status s = del->Run(); !s.ok()) return s;
    del->Reset();
  }
}

absl::StatusOr<std::map<std::string, ShardSnapshotter::PendingRows>>
ShardSnapshotter::RowsWithLaterOwnChanges(int shard, uint64_t local_node,
                                          const std::vector<ShardSnapshot::Applied>& applied,
                                          const std::vector<sqlite::TableSchema>& tables,
                                          OwnChangesApplied own_applied) {
  std::map<std::string, PendingRows> pending;
  kept_keys_.clear();
  for (const sqlite::TableSchema& t : tables) {
    SnapshotTable facts{.local_node = local_node != 0};
    for (const ShardSnapshot::Applied& a : applied) {
      if (a.origin_node() == local_node && a.table() == t.name) {
        facts.own_held = std::max(facts.own_held, a.change_id());
      }
    }
    const std::optional<int64_t> above = KeepRowsWithOwnChangesAbove(facts);
    if (!above) continue;
    // Each shard's own changes above what it applied (this one: what the snapshot holds).
    std::vector<int64_t> applied_in(router_.shards());
    int64_t from = *above;
    for (int s = 0; s < router_.shards(); ++s) {
      if (s == shard) {
        applied_in[s] = *above;
        continue;
      }
      absl::StatusOr<int64_t> last = own_applied(s, t.name);
      if (!last.ok()) return last.status();
      applied_in[s] = *last;
      from = std::min(from, *last);
    }
    // An error means no log (the table is not captured here): no own changes of it. (Inside the
    // install's write transaction nothing else can fail a read.)
    (void)sqlite::ForEachChangeKey(db_, t, from, [&](const sqlite::ChangeRecord& r) {
      for (const std::vector<Value>* key : {&r.key, &r.old_key}) {
        if (key->empty()) continue;
        const int there = router_.ShardOf(t.name, *key);
        if (r.id <= applied_in[there]) continue;
        const std::string identity = EncodeRowIdentity("", *key);
        pending[t.name][identity] = {.change_id = r.id, .this_shard = there == shard};
        if (there == shard) kept_keys_[t.name][identity] = *key;
      }
    });
  }
  return pending;
}

absl::StatusOr<bool> ShardSnapshotter::KeptForPendingOwnChange(
    int shard, uint64_t snapshot_index, uint64_t local_node, const TableWriter& writer,
    const ShardSnapshot::Table& header, const SnapshotRow& row, const PendingRows& pending) {
  const change::v1::TableChanges t = SnapshotRowAsInsert(header, row, 0);
  const change::v1::Change& c = t.changes(0);
  // The rows its upsert replaces here, of those that have pending own changes (a trial write
  // for what only the index knows: a partial index holds only some rows).
  absl::StatusOr<std::vector<RowInTheWay>> replaced = std::vector<RowInTheWay>{};
  if (writer.unprobed_unique) {
    replaced = RowsATrialWriteReplaces(db_, writer, t, c);
  } else {
    absl::StatusOr<std::vector<RowInTheWay>> in_the_way = RowsInTheWay(db_, writer, t, c);
    if (!in_the_way.ok()) return in_the_way.status();
    std::vector<RowInTheWay> held;
    for (RowInTheWay& r : *in_the_way) {
      if (pending.contains(EncodeRowIdentity("", r.key))) held.push_back(std::move(r));
    }
    if (held.empty()) return false;
    replaced = RowsReplacedBy(db_, writer, t, c, std::move(held));
  }
  if (!replaced.ok()) return replaced.status();
  for (const RowInTheWay& r : *replaced) {
    auto holder = pending.find(EncodeRowIdentity("", r.key));
    if (holder == pending.end()) continue;
    // Kept as the change that is its row's version on the snapshot's maker (or as one of no
    // version's: UnversionedChangeId), at the snapshot's index.
    const std::vector<Value> key = KeysOf(t, KeyPositions(t), c).front();
    absl::StatusOr<std::string> version_key = versions_.KeyOf(key);
    if (!version_key.ok()) return version_key.status();
    absl::StatusOr<std::optional<RowVersion>> version = versions_.Get(header.table(), *version_key);
    if (!version.ok()) return version.status();
    change::v1::TableChanges as_kept = t;
    as_kept.mutable_changes(0)->set_change_id(
        version->has_value() ? (*version)->change_id
                             : UnversionedChangeId(router_, header.table(), key, snapshot_index));
    const DisplacingWrite at{.db = db_,
                             .versions = versions_,
                             .conflicts = conflicts_,
                             .router = router_,
                             .shard = shard,
                             .raft_index = snapshot_index,
                             .origin = version->has_value() ? (*version)->origin : 0};
    if (absl::Status s =
            KeepDisplacedNow(at, writer, as_kept, as_kept.changes(0), {*version_key}, local_node,
                             holder->second.change_id, holder->second.this_shard);
        !s.ok()) {
      return s;
    }
    return true;
  }
  return false;
}

absl::Status ShardSnapshotter::InstallTable(int shard, uint64_t snapshot_index, uint64_t local_node,
                                            const ShardSnapshot::Table& header,
                                            ShardSnapshotReader& in, const PendingRows* pending,
                                            InstallResult& result,
                                            std::map<std::string, SnapshotRow>* seen) {
  std::vector<std::string> columns(header.columns().begin(), header.columns().end());
  absl::StatusOr<TableWriter> writer = PlanWriter(
      db_, header.table(), columns, {header.key_columns().begin(), header.key_columns().end()});
  absl::Status refused = writer.status();
  absl::StatusOr<Statement> upsert = refused.ok() ? db_.Prepare(writer->upsert) : refused;
  if (IsDatabaseFailure(upsert.status())) return upsert.status();
  refused = upsert.status();
  absl::StatusOr<Statement> select_row = refused.ok() ? db_.Prepare(writer->select_row) : refused;
  if (IsDatabaseFailure(select_row.status())) return select_row.status();
  refused = select_row.status();
  if (refused.ok()) {
    // Inserted piece by piece inside a savepoint: a row that fails undoes the table's rows.
    const std::vector<int> key_index = SnapshotKeyIndex(header);
    const size_t width = columns.size() + (header.keyed_by_rowid() ? 1 : 0);
    const SnapshotRowTarget target{header.table(), shard, router_};
    int64_t row_number = 0;
    if (absl::Status s = db_.Exec("SAVEPOINT snapshot_rows"); !s.ok()) return s;
    while (refused.ok()) {
      absl::StatusOr<std::optional<change::v1::SnapshotRows>> rows = in.NextRows();
      if (!rows.ok()) return SnapshotUnreadable(rows.status());
      if (!rows->has_value()) break;
      for (const change::v1::SnapshotRow& row : (*rows)->rows()) {
        ++row_number;
        if (pending != nullptr && row.values_size() == static_cast<int>(width)) {
          std::vector<Value> key;
          for (int i : key_index) key.push_back(FromWire(row.values(i)));
          // Rows of other shards are refused below.
          if (router_.ShardOf(header.table(), key) == shard) {
            const std::string identity = EncodeRowIdentity("", key);
            if (auto own = pending->find(identity); own != pending->end()) {
              if (own->second.this_shard) {  // Left as this node's application wrote it.
                if (seen != nullptr) (*seen)[identity] = row;
                continue;
              }
            }
            if (writer->other_unique_constraints || writer->unprobed_unique) {
              absl::StatusOr<bool> kept = KeptForPendingOwnChange(shard, snapshot_index, local_node,
                                                                  *writer, header, row, *pending);
              if (IsDatabaseFailure(kept.status())) return kept.status();
              refused = kept.status();
              if (!refused.ok()) break;
              if (*kept) continue;
            }
          }
        }
        refused = UpsertSnapshotRow(*upsert, *select_row, target, row.values(), 0, width, key_index,
                                    row_number);
        if (!refused.ok()) break;
      }
    }
    if (IsDatabaseFailure(refused)) return refused;
    absl::Status end = db_.Exec(refused.ok() ? "RELEASE snapshot_rows"
                                             : "ROLLBACK TO snapshot_rows; RELEASE snapshot_rows");
    if (!end.ok()) return end;
    if (refused.ok()) return absl::OkStatus();
    in.RewindTable();
  }
  // The table's rows cannot be installed here (the table is missing or differs, a constraint
  // differs): they become a snapshot-rows dead letter that holds the table's later changes in
  // this shard back, and the install goes on. The dead letter holds them whole, so it is bounded
  // by what one value may hold here.
  const uint64_t limit = std::min<uint64_t>(kMaxPieceBytes - (uint64_t{1} << 20),
                                            sqlite3_limit(db_.raw(), SQLITE_LIMIT_LENGTH, -1));
  ShardSnapshot::Table whole = header;
  uint64_t bytes = whole.ByteSizeLong();
  for (;;) {
    absl::StatusOr<std::optional<change::v1::SnapshotRows>> rows = in.NextRows();
    if (!rows.ok()) return SnapshotUnreadable(rows.status());
    if (!rows->has_value()) break;
    bytes += (*rows)->ByteSizeLong();
    if (bytes > limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the rows of table ", QuoteIdentifier(header.table()), " cannot be installed here (",
          refused.message(), ") and are more than a dead letter can hold (", limit, " bytes)"));
    }
    for (change::v1::SnapshotRow& row : *(*rows)->mutable_rows()) {
      for (change::v1::Value& v : *row.mutable_values()) *whole.add_values() = std::move(v);
    }
  }
  if (whole.values_size() == 0) return absl::OkStatus();  // Nothing of that table in this shard.
  absl::Status s = dead_letters_.Insert(
      {Value::Integer(shard), Value::Integer(static_cast<int64_t>(snapshot_index)), Value::Null(),
       Value::Text(header.table()), Value::Null(),
       Value::Text(absl::StrCat("snapshot rows not installed: ", refused.message())),
       Value::Blob(whole.SerializeAsString())},
      {.shard = shard, .raft_index = snapshot_index, .table = header.table(), .whole_table = true});
  if (!s.ok() && !IsDatabaseFailure(s)) {
    return absl::Status(
        s.code(),
        absl::StrCat("the rows of table ", QuoteIdentifier(header.table()),
                     " cannot be installed here (", refused.message(), ") and ", s.message()));
  }
  if (!s.ok()) return s;
  ++result.rows_kept;
  LOG(WARNING) << "shard " << shard << ": snapshot rows of " << header.table()
               << " go to the dead letters: " << refused.message();
  return absl::OkStatus();
}

}  // namespace marmot::replicator
