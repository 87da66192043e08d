#include "replicator/displaced_rows.h"

#include <glog/logging.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "replicator/value_codec.h"

namespace marmot::replicator {

using change::v1::Change;
using change::v1::TableChanges;

namespace {

// Runs `write` and lists the rows of other keys than `c`'s that it deleted, each as it was
// before: those in the way before (the writer's probes, or, when they do not cover every UNIQUE
// index of the table, a trial write of `write` rolled back) that are gone after it.
absl::StatusOr<std::vector<RowInTheWay>> WriteAndListReplaced(
    const DisplacingWrite& at, const TableWriter& w, const TableChanges& t, const Change& c,
    absl::FunctionRef<absl::Status()> write) {
  if (c.op() == change::v1::OP_DELETE) {  // A delete takes no value from another row.
    if (absl::Status s = write(); !s.ok()) return s;
    return std::vector<RowInTheWay>{};
  }
  absl::StatusOr<std::vector<RowInTheWay>> in_the_way =
      w.unprobed_unique ? RowsATrialWriteReplaces(at.db, w, t, c, write)
                        : RowsInTheWay(at.db, w, t, c);
  if (!in_the_way.ok()) return in_the_way.status();
  if (absl::Status s = write(); !s.ok()) return s;
  std::vector<RowInTheWay> gone;
  for (RowInTheWay& row : *in_the_way) {
    absl::StatusOr<bool> there = RowExists(at.db, w, row.key);
    if (!there.ok()) return there.status();
    if (!*there) gone.push_back(std::move(row));
  }
  return gone;
}

// Row `row` of `w`'s table ([rowid,] whole_columns) as every other node holds it, when its
// version here is held (`held`, row_versions.h): this node's row still holds what its
// application wrote, the others the held change (the columns it does not carry as here).
// Nullopt when that change leaves no row of this key there (a delete, a rekey away from it):
// the write replaced nothing there.
absl::StatusOr<std::optional<std::vector<sqlite::Value>>> AsOtherNodesHoldIt(
    const TableWriter& w, const RowInTheWay& row, const std::string& held) {
  TableChanges h;
  if (!h.ParseFromString(held) || h.changes_size() != 1) {
    return absl::DataLossError("a held version cannot be read");
  }
  const Change& hc = h.changes(0);
  if (hc.op() == change::v1::OP_DELETE || hc.row_size() != h.columns_size() ||
      KeyOf(h, KeyPositions(h), hc) != row.key) {
    return std::nullopt;
  }
  std::vector<sqlite::Value> values = row.row;
  const size_t offset = w.keyed_by_rowid ? 1 : 0;
  for (size_t i = 0; i < w.whole_columns.size(); ++i) {
    for (int j = 0; j < h.columns_size(); ++j) {
      if (h.columns(j) == w.whole_columns[i]) values[i + offset] = FromWire(hc.row(j));
    }
  }
  return values;
}

// A row of the table written whose version here is held, with a row at its key on the nodes
// that hold that version.
struct HeldRow {
  std::string version_key;
  RowVersion version;
  TableChanges held;
  std::vector<sqlite::Value> key;
  std::vector<sqlite::Value> there;  // [rowid,] whole_columns as those nodes hold it.
};

// The held rows of `t`'s table that `write` (of `c`) replaces on the nodes that hold them as
// their held changes wrote them: a trial in a savepoint rolled back, where the held changes are
// written first (at.write_held), then `write`. Nothing when the table has no held version, or
// when a write of the trial fails (the write itself will fail again, or the held change is
// dead-lettered when it is written).
absl::StatusOr<std::vector<HeldRow>> HeldRowsReplacedThere(
    const DisplacingWrite& at, const TableWriter& w, const TableChanges& t, const Change& c,
    absl::FunctionRef<absl::Status()> write) {
  std::vector<HeldRow> rows;
  if (!at.write_held || !w.other_unique_constraints || c.op() == change::v1::OP_DELETE) {
    return rows;
  }
  absl::StatusOr<std::vector<std::pair<std::string, RowVersion>>> held =
      at.versions.Held(t.table());
  if (!held.ok()) return held.status();
  const std::vector<std::vector<sqlite::Value>> own = KeysOf(t, KeyPositions(t), c);
  for (auto& [version_key, version] : *held) {
    // Only what came before the write in its shard: held rows of other shards meet it in no
    // single order (see above), and a held change of a later entry was not there when a late
    // write (a held change written once this node's own change lost) was first applied.
    if (version.shard != at.shard || version.raft_index >= at.raft_index) continue;
    HeldRow row{.version_key = version_key, .version = version};
    // One that cannot be read fails when it is written (WriteHeld), not every write here.
    if (!row.held.ParseFromString(version.held) || row.held.changes_size() != 1) continue;
    const Change& hc = row.held.changes(0);
    if (hc.op() == change::v1::OP_DELETE) continue;
    row.key = KeyOf(row.held, KeyPositions(row.held), hc);
    absl::StatusOr<std::string> at_key = at.versions.KeyOf(row.key);
    if (!at_key.ok()) return at_key.status();
    // A rekey is held at its old key too, where it leaves no row.
    if (*at_key != version_key || std::find(own.begin(), own.end(), row.key) != own.end()) {
      continue;
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) return rows;
  if (absl::Status s = BeginTrialWrite(at.db); !s.ok()) return s;
  absl::Status written;
  std::vector<HeldRow> replaced;
  for (const HeldRow& row : rows) {
    written = at.write_held(row.held);
    if (!written.ok()) break;
  }
  for (size_t i = 0; written.ok() && i < rows.size(); ++i) {
    absl::StatusOr<std::optional<RowInTheWay>> there = ReadWholeRow(at.db, w, rows[i].key);
    if (!there.ok()) {
      written = there.status();
    } else if (there->has_value()) {
      rows[i].there = std::move((*there)->row);
    }
  }
  if (written.ok()) written = write();
  for (HeldRow& row : rows) {
    if (!written.ok()) break;
    if (row.there.empty()) continue;
    absl::StatusOr<bool> still = RowExists(at.db, w, row.key);
    if (!still.ok()) {
      written = still.status();
    } else if (!*still) {
      replaced.push_back(std::move(row));
    }
  }
  if (absl::Status s = EndTrialWrite(at.db, written); !s.ok()) return s;
  if (!written.ok()) replaced.clear();
  return replaced;
}

// Keeps row `key` (`values`: [rowid,] whole_columns), which the write of `c` replaced on some
// node, as a conflict `c` won: as an insert by the change that was its version (`version`), or
// by origin 0 and an id of its own when it had none.
absl::Status KeepReplaced(const DisplacingWrite& at, const TableWriter& w, const TableChanges& t,
                          const Change& c, const std::string& key,
                          const std::vector<sqlite::Value>& row_key,
                          const std::optional<RowVersion>& version,
                          const std::vector<sqlite::Value>& values) {
  TableChanges lost;
  lost.set_table(t.table());
  for (const std::string& column : w.whole_columns) lost.add_columns(column);
  *lost.mutable_key_columns() = t.key_columns();
  Change* as_written = lost.add_changes();
  as_written->set_op(change::v1::OP_INSERT);
  as_written->set_at_ms(c.at_ms());
  const int64_t change_id = version.has_value()
                                ? version->change_id
                                : UnversionedChangeId(at.router, t.table(), row_key, at.raft_index);
  as_written->set_change_id(change_id);
  const size_t offset = w.keyed_by_rowid ? 1 : 0;
  if (w.keyed_by_rowid) *as_written->mutable_rowid() = ToWire(values[0]);
  for (size_t i = offset; i < values.size(); ++i) *as_written->add_row() = ToWire(values[i]);
  const uint64_t lost_origin = version.has_value() ? version->origin : 0;
  LOG(WARNING) << "shard " << at.shard << " index " << at.raft_index << ": change " << c.change_id()
               << " of " << t.table() << " from node " << at.origin
               << " took a UNIQUE value of the row " << key << " (node " << lost_origin
               << "'s), which it replaced: that row is kept as a conflict";
  return at.conflicts.Insert({.shard = at.shard,
                              .raft_index = at.raft_index,
                              .origin = lost_origin,
                              .key = key,
                              .winner_origin = at.origin,
                              .winner_change_id = c.change_id()},
                             lost, *as_written);
}

}  // namespace

int64_t UnversionedChangeId(const ShardRouter& router, const std::string& table,
                            const std::vector<sqlite::Value>& key, uint64_t raft_index) {
  // The table by its route when that is its name in another case (each node may spell it
  // otherwise: table_renames.h); by its name otherwise, as always.
  std::string named = table;
  if (const TableRenames* renames = router.renames(); renames != nullptr) {
    std::string route = renames->RouteOf(named);
    if (absl::EqualsIgnoreCase(route, named)) named = std::move(route);
  }
  return -static_cast<int64_t>((router.Hash(named, key) ^ (raft_index * 0x9E3779B97F4A7C15ULL)) >>
                               2) -
         1;
}

absl::StatusOr<int64_t> WriteKeepingDisplaced(const DisplacingWrite& at, const TableWriter& w,
                                              const TableChanges& t, const Change& c,
                                              absl::FunctionRef<absl::Status()> write) {
  absl::StatusOr<std::vector<HeldRow>> held_there = HeldRowsReplacedThere(at, w, t, c, write);
  if (!held_there.ok()) return held_there.status();
  absl::StatusOr<std::vector<RowInTheWay>> gone = WriteAndListReplaced(at, w, t, c, write);
  if (!gone.ok()) return gone.status();
  int64_t kept = 0;
  for (const RowInTheWay& row : *gone) {
    absl::StatusOr<std::string> key = at.versions.KeyOf(row.key);
    if (!key.ok()) return key.status();
    absl::StatusOr<std::optional<RowVersion>> version = at.versions.Get(t.table(), *key);
    if (!version.ok()) return version.status();
    if (at.origin_had_schema && version->has_value() && (*version)->origin == at.origin) continue;
    std::vector<sqlite::Value> values = row.row;
    if (version->has_value() && !(*version)->held.empty()) {
      absl::StatusOr<std::optional<std::vector<sqlite::Value>>> there =
          AsOtherNodesHoldIt(w, row, (*version)->held);
      if (!there.ok()) return there.status();
      if (!there->has_value()) continue;
      values = **there;
    }
    if (absl::Status s = KeepReplaced(at, w, t, c, *key, row.key, *version, values); !s.ok()) {
      return s;
    }
    if (version->has_value() && at.router.ShardOf(t.table(), row.key) == at.shard) {
      absl::Status s = at.versions.Set(t.table(), *key,
                                       {.shard = at.shard,
                                        .raft_index = at.raft_index,
                                        .origin = at.origin,
                                        .change_id = c.change_id(),
                                        .columns = t.columns_size()});
      if (!s.ok()) return s;
    }
    ++kept;
  }
  for (const HeldRow& row : *held_there) {
    if (std::any_of(gone->begin(), gone->end(),
                    [&](const RowInTheWay& r) { return r.key == row.key; })) {
      continue;  // Replaced here too: kept above.
    }
    if (at.origin_had_schema && row.version.origin == at.origin) continue;
    if (absl::Status s =
            KeepReplaced(at, w, t, c, row.version_key, row.key, row.version, row.there);
        !s.ok()) {
      return s;
    }
    // The row is gone on the nodes that hold its version: here it goes once this node's own
    // change of it lost (written as the held change then).
    RowVersion version = row.version;
    if (at.router.ShardOf(t.table(), row.key) == at.shard) {
      version = {.shard = at.shard,
                 .raft_index = at.raft_index,
                 .origin = at.origin,
                 .change_id = c.change_id(),
                 .columns = t.columns_size()};
    }
    TableChanges gone_there;
    gone_there.set_table(t.table());
    *gone_there.mutable_columns() = row.held.columns();
    *gone_there.mutable_key_columns() = row.held.key_columns();
    Change* deleted = gone_there.add_changes();
    deleted->set_op(change::v1::OP_DELETE);
    deleted->set_change_id(version.change_id);
    for (const sqlite::Value& v : row.key) *deleted->add_old_key() = ToWire(v);
    version.held = gone_there.SerializeAsString();
    if (absl::Status s = at.versions.Set(t.table(), row.version_key, version); !s.ok()) return s;
    ++kept;
  }
  return kept;
}

absl::Status KeepDisplacedNow(const DisplacingWrite& at, const TableWriter& w,
                              const TableChanges& t, const Change& c,
                              const std::vector<std::string>& version_keys, uint64_t local_node,
                              int64_t local_change, bool same_shard) {
  LOG(WARNING) << "shard " << at.shard << " index " << at.raft_index << ": change " << c.change_id()
               << " of " << t.table() << " from node " << at.origin
               << " takes a UNIQUE value that this node's change " << local_change
               << " of another row took first here: it is kept as a conflict";
  if (version_keys.empty()) return absl::InternalError("a displaced change without a key");
  if (absl::Status s = at.conflicts.Insert({.shard = at.shard,
                                            .raft_index = at.raft_index,
                                            .origin = at.origin,
                                            .key = version_keys.front(),
                                            .winner_origin = local_node,
                                            .winner_change_id = local_change},
                                           t, c);
      !s.ok()) {
    return s;
  }
  // Its row, as this node held it before the change: on a node that writes the change, that
  // row takes it and is then replaced by this node's; it ends gone there, so here too (its
  // values here were those the change was made over).
  for (const std::vector<sqlite::Value>& key : KeysOf(t, KeyPositions(t), c)) {
    if (absl::Status s = at.db.RunKept(w.delete_key, key); !s.ok()) return s;
  }
  for (const std::string& key : version_keys) {
    absl::Status s = at.versions.Set(t.table(), key,
                                     {.shard = at.shard,
                                      .raft_index = at.raft_index,
                                      .origin = same_shard ? local_node : at.origin,
                                      .change_id = same_shard ? local_change : c.change_id(),
                                      .columns = t.columns_size()});
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ForgetKeptAtOnce(sqlite::Database& db, int64_t id) {
  return db.RunKept(
      absl::StrCat("DELETE FROM ", sqlite::QuoteIdentifier(kConflictsTable), " WHERE id = ?1"),
      {sqlite::Value::Integer(id)});
}

absl::StatusOr<std::vector<KeptAtOnce>> TakeKeptAtOnce(sqlite::Database& db, RowVersions& versions,
                                                       int shard, const std::string& table,
                                                       uint64_t local_node, int64_t local_change) {
  std::vector<KeptAtOnce> kept;
  std::vector<int64_t> ids;
  std::vector<std::string> keys;
  absl::Status read = db.QueryKept(
      absl::StrCat("SELECT id, raft_index, origin, change, key, shard FROM ",
                   sqlite::QuoteIdentifier(kConflictsTable),
                   " WHERE winner_origin = ?1 AND winner_change_id = ?2 AND tbl = ?3 ORDER BY id"),
      {sqlite::Value::Integer(static_cast<int64_t>(local_node)),
       sqlite::Value::Integer(local_change), sqlite::Value::Text(table)},
      [&](const sqlite::Statement& row) {
        KeptAtOnce k;
        k.raft_index = static_cast<uint64_t>(row.Column(1).integer());
        k.origin = static_cast<uint64_t>(row.Column(2).integer());
        k.shard = static_cast<int>(row.Column(5).integer());
        if (!k.change.ParseFromString(row.Column(3).bytes()) || k.change.changes_size() != 1) {
          return absl::DataLossError("a conflict kept at once cannot be read");
        }
        // A row this node's change replaced through a UNIQUE value after it was written names
        // it too, but a change that lost was never written: all of them were kept at once.
        ids.push_back(row.Column(0).integer());
        keys.push_back(row.Column(4).bytes());
        kept.push_back(std::move(k));
        return absl::OkStatus();
      });
  if (!read.ok()) return read;
  std::vector<KeptAtOnce> taken;
  for (size_t i = 0; i < kept.size(); ++i) {
    absl::StatusOr<std::optional<RowVersion>> version =
        versions.Get(kept[i].change.table(), keys[i]);
    if (!version.ok()) return version.status();
    // The version KeepDisplacedNow gave the row, still: nothing made over it since.
    const bool same_shard = kept[i].shard == shard;
    const uint64_t origin = same_shard ? local_node : kept[i].origin;
    const int64_t change_id = same_shard ? local_change : kept[i].change.changes(0).change_id();
    if (!version->has_value() || (*version)->origin != origin ||
        (*version)->change_id != change_id || (*version)->raft_index != kept[i].raft_index) {
      continue;
    }
    if (absl::Status s = ForgetKeptAtOnce(db, ids[i]); !s.ok()) return s;
    taken.push_back(std::move(kept[i]));
  }
  return taken;
}

}  // namespace marmot::replicator
