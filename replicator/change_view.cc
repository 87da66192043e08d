#include "replicator/change_view.h"

#include <algorithm>

#include "replicator/table_writer.h"
#include "replicator/value_codec.h"

namespace marmot::replicator {

namespace {

using change::v1::Change;
using change::v1::TableChanges;
using sqlite::Statement;
using sqlite::Value;

// Whether the insert or update `c` of `t` (written by `w`) would leave its row exactly as it is
// (same storage classes and values in every column); false for other operations and missing
// rows.
absl::StatusOr<bool> RowAlreadyIs(sqlite::Database& db, const TableWriter& w, const TableChanges& t,
                                  const std::vector<int>& key_positions, const Change& c) {
  if (c.op() != change::v1::OP_INSERT && c.op() != change::v1::OP_UPDATE) return false;
  const size_t width = t.columns_size() + (w.keyed_by_rowid ? 1 : 0);
  if (c.row_size() != t.columns_size()) return false;  // Malformed: ApplyChange says why.
  bool same = false;
  absl::Status s =
      db.QueryKept(w.select_row, KeyOf(t, key_positions, c), [&](const Statement& row) {
        same = true;
        for (size_t i = 0; same && i < width; ++i) {
          const int column = static_cast<int>(i);
          const Value expected = w.keyed_by_rowid
                                     ? (i == 0 ? FromWire(c.rowid()) : FromWire(c.row(column - 1)))
                                     : FromWire(c.row(column));
          same = row.Column(column) == expected;
        }
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return same;
}

}  // namespace

ChangeView::Table::Table(const ApplierState& state, int shard, const TableChanges& t,
                         const TablePlan* plan)
    : state_(state), shard_(shard), t_(t), plan_(plan), key_positions_(KeyPositions(t)) {}

void ChangeView::Table::UseLocalRows(LocalChangeIndex::TableRows* rows) {
  rows_known_ = true;
  rows_ = rows;
}

LocalChangeIndex::TableRows* ChangeView::Table::LocalRows() {
  if (!rows_known_) {
    rows_known_ = true;
    if (catch_up_ != nullptr) {
      absl::StatusOr<LocalChangeIndex::TableRows*> rows = catch_up_->CatchUp(state_.db, t_.table());
      if (rows.ok()) rows_ = *rows;
    }
  }
  return rows_;
}

absl::StatusOr<int64_t> ChangeView::Table::OwnChangesApplied() {
  if (!own_applied_) {
    absl::StatusOr<int64_t> applied =
        state_.applied.LastChange(shard_, state_.local_node, t_.table());
    if (!applied.ok()) return applied.status();
    own_applied_ = *applied;
  }
  return *own_applied_;
}

const std::vector<std::vector<Value>>& ChangeView::Keys() {
  if (!keys_) keys_ = KeysOf(table_.t_, table_.key_positions_, c_);
  return *keys_;
}

absl::StatusOr<bool> ChangeView::NewerLocalChangeOfRow() {
  if (table_.state_.local_node == 0) return false;
  const LocalChangeIndex::TableRows* rows = table_.LocalRows();
  if (rows == nullptr) return false;
  return rows->Newest(Keys().front()) > c_.change_id();
}

absl::StatusOr<LocalOverwrite> ChangeView::LocalChangeNotYetApplied() {
  if (table_.state_.local_node == 0) return LocalOverwrite::kNothing;
  const LocalChangeIndex::TableRows* rows = table_.LocalRows();
  if (rows == nullptr || rows->size() == 0) return LocalOverwrite::kNothing;
  absl::StatusOr<int64_t> own_applied = table_.OwnChangesApplied();
  if (!own_applied.ok()) return own_applied.status();
  int64_t newest = 0;
  for (const std::vector<Value>& key : Keys()) newest = std::max(newest, rows->Newest(key));
  if (newest > *own_applied) return Overwrite(newest);
  // A row of another key that its upsert would replace here, whose local change not applied
  // yet keeps it (it took the value first here; it comes later in the shard).
  absl::StatusOr<std::vector<RowInTheWay>> in_the_way =
      RowsInTheWay(table_.state_.db, table_.plan_->writer, table_.t_, c_);
  if (!in_the_way.ok()) return in_the_way.status();
  // Only rows with such a change, and of those only the ones the upsert really replaces.
  std::vector<RowInTheWay> held;
  for (RowInTheWay& row : *in_the_way) {
    if (rows->Newest(row.key) != 0) held.push_back(std::move(row));
  }
  absl::StatusOr<std::vector<RowInTheWay>> replaced =
      table_.plan_->writer.unprobed_unique
          ? RowsATrialWriteReplaces(table_.state_.db, table_.plan_->writer, table_.t_, c_)
          : RowsReplacedBy(table_.state_.db, table_.plan_->writer, table_.t_, c_, std::move(held));
  if (!replaced.ok()) return replaced.status();
  for (const RowInTheWay& row : *replaced) {
    const int64_t local = rows->Newest(row.key);
    // That row may be in another shard, which applies this node's changes of it.
    int64_t applied_there = *own_applied;
    if (table_.state_.router != nullptr) {
      const int there = table_.state_.router->ShardOf(table_.t_.table(), row.key);
      if (there != table_.shard_) {
        absl::StatusOr<int64_t> last =
            table_.state_.applied.LastChange(there, table_.state_.local_node, table_.t_.table());
        if (!last.ok()) return last.status();
        applied_there = *last;
      }
    }
    if (local > applied_there) {
      displaced_by_ = local;
      displaced_by_key_ = row.key;
      return LocalOverwrite::kOtherRow;
    }
  }
  return LocalOverwrite::kNothing;
}

LocalOverwrite ChangeView::Overwrite(int64_t newest) {
  const TableChanges& t = table_.t_;
  if (table_.state_.shipped == nullptr) return LocalOverwrite::kAll;
  // Not read yet: it will carry every column the row has when it is read.
  const std::optional<ShippedColumns::Columns> carried =
      table_.state_.shipped->Carried(t.table(), newest);
  if (!carried) return LocalOverwrite::kAll;
  auto carries = [&](const std::string& column) {
    return std::find(carried->begin(), carried->end(), column) != carried->end();
  };
  auto is_key = [&](const std::string& column) {
    return std::find(t.key_columns().begin(), t.key_columns().end(), column) !=
           t.key_columns().end();
  };
  std::vector<std::string> uncarried;
  for (const std::string& column : t.columns()) {
    if (!is_key(column) && !carries(column)) uncarried.push_back(column);
  }
  if (uncarried.empty()) return LocalOverwrite::kAll;
  // A delete or a rekey of a row whose local change leaves some of its columns alone: written
  // whole (the local change writes its own columns back when it applies; the others end as the
  // local change leaves them on every node).
  if ((c_.op() != change::v1::OP_INSERT && c_.op() != change::v1::OP_UPDATE) ||
      Keys().size() != 1) {
    return LocalOverwrite::kNothing;
  }
  uncarried_ = std::move(uncarried);
  return LocalOverwrite::kSome;
}

absl::StatusOr<std::optional<int64_t>> ChangeView::BlockingDeadLetter() {
  DeadLetterStore& dead_letters = table_.state_.dead_letters;
  if (dead_letters.index().empty()) return std::nullopt;
  if (entry_ != nullptr) {
    return dead_letters.Blocker(entry_->shard, entry_->table, entry_->rows, entry_->whole_table,
                                before_);
  }
  return dead_letters.Blocker(table_.shard_, table_.t_.table(),
                              RowsOf(table_.t_, table_.key_positions_, c_),
                              /*whole_table=*/false);
}

absl::StatusOr<bool> ChangeView::RowAlreadyHolds() {
  const TableWriter& w = table_.plan_->writer;
  const LocalChangeIndex::TableRows* rows = table_.LocalRows();
  // An upsert into a table with another UNIQUE constraint may delete rows of other keys, which
  // the index does not see: such rows are always read.
  bool holds = rows != nullptr && !w.other_unique_constraints;
  for (const std::vector<Value>& key : Keys()) {
    holds = holds && rows->Holds(key, c_.change_id());
  }
  if (holds) return true;
  // Rows the index cannot vouch for (read by a log's first CatchUp, after a start, or written
  // here since) are read.
  return RowAlreadyIs(table_.state_.db, w, table_.t_, table_.key_positions_, c_);
}

absl::StatusOr<std::vector<std::string>> ChangeView::VersionKeys() {
  if (!version_keys_) {
    std::vector<std::string> keys;
    if (table_.state_.versions != nullptr) {
      for (const std::vector<Value>& key : Keys()) {
        absl::StatusOr<std::string> text = table_.state_.versions->KeyOf(key);
        if (!text.ok()) return text.status();
        keys.push_back(*std::move(text));
      }
    }
    version_keys_ = std::move(keys);
  }
  return *version_keys_;
}

absl::StatusOr<std::optional<RowVersion>> ChangeView::CurrentVersion() {
  if (!current_read_) {
    absl::StatusOr<std::vector<std::string>> keys = VersionKeys();
    if (!keys.ok()) return keys.status();
    if (!keys->empty()) {
      absl::StatusOr<std::optional<RowVersion>> current =
          table_.state_.versions->Get(table_.t_.table(), keys->front());
      if (!current.ok()) return current.status();
      current_ = *std::move(current);
    }
    current_read_ = true;
  }
  return current_;
}

absl::StatusOr<bool> ChangeView::MadeWithoutSeeingItsRow() {
  if (!c_.has_prev()) return false;
  absl::StatusOr<std::optional<RowVersion>> current = CurrentVersion();
  if (!current.ok()) return current.status();
  if (!current->has_value()) return false;
  const RowVersion& v = **current;
  if (v.origin == table_.origin_) return false;
  // A version read before its table had columns this change carries (its origin had not the
  // schema yet) left those columns to the rows' earlier versions, which the row of a node that
  // wrote it concurrently no longer holds: such a change applies over it, as a later change.
  if (v.columns > 0 && v.columns < table_.t_.columns_size()) return false;
  if (v.origin == c_.prev().origin() && v.change_id == c_.prev().change_id()) return false;
  // A version of this node's change not applied yet is one it gave the rows of another node's
  // change at once, keeping that change as a conflict (KeepDisplacedNow): every other node wrote
  // that change, so this one is judged against it as they judge it (made after it, or by its
  // origin). Found by every row it touches (a rekey's two), not by the one its conflict names,
  // and only as the change kept at the version's entry: conflicts this node kept otherwise
  // (KeepConflict) name its pending change as winner too.
  const uint64_t local = table_.state_.local_node;
  if (local == 0 || v.origin != local) return true;
  absl::StatusOr<int64_t> own_applied = table_.OwnChangesApplied();
  if (!own_applied.ok()) return own_applied.status();
  if (v.change_id <= *own_applied) return true;
  absl::StatusOr<std::vector<std::string>> keys = VersionKeys();
  if (!keys.ok()) return keys.status();
  struct Kept {
    int64_t id;
    uint64_t origin;
    int64_t change_id;
    std::string change;
  };
  std::vector<Kept> kept;
  absl::Status read = table_.state_.db.QueryKept(
      absl::StrCat(
          "SELECT id, origin, change_id, change FROM ", sqlite::QuoteIdentifier(kConflictsTable),
          " WHERE tbl = ?1 AND shard = ?2 AND winner_origin = ?3 AND winner_change_id = ?4 "
          "AND raft_index = ?5 ORDER BY id DESC"),
      {Value::Text(table_.t_.table()), Value::Integer(table_.shard_),
       Value::Integer(static_cast<int64_t>(local)), Value::Integer(v.change_id),
       Value::Integer(static_cast<int64_t>(v.raft_index))},
      [&](const Statement& row) {
        kept.push_back({row.Column(0).integer(), static_cast<uint64_t>(row.Column(1).integer()),
                        row.Column(2).integer(), row.Column(3).bytes()});
        return absl::OkStatus();
      });
  if (!read.ok()) return read;
  for (const Kept& k : kept) {
    change::v1::TableChanges t;
    if (!t.ParseFromString(k.change) || t.changes_size() != 1) continue;
    std::vector<std::string> its_keys;
    for (const std::vector<Value>& key : KeysOf(t, KeyPositions(t), t.changes(0))) {
      absl::StatusOr<std::string> text = table_.state_.versions->KeyOf(key);
      if (!text.ok()) return text.status();
      its_keys.push_back(*std::move(text));
    }
    if (std::find(its_keys.begin(), its_keys.end(), keys->front()) == its_keys.end()) continue;
    // The newest such change is the row's version on every other node.
    if (k.origin != table_.origin_ &&
        (k.origin != c_.prev().origin() || k.change_id != c_.prev().change_id())) {
      return true;
    }
    // Over the row it left behind, that change's conflict is no longer one (a change over the
    // key a rekey left is not over its row).
    if (its_keys.front() == keys->front()) kept_at_once_ = k.id;
    return false;
  }
  return true;
}

}  // namespace marmot::replicator
