#include "replicator/change_applier.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <thread>

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replicator/apply_decider.h"
#include "replicator/dead_letter_store.h"
#include "replicator/shard_snapshotter.h"
#include "replicator/value_codec.h"
#include "replicator/snapshot_stream.h"
#include "replicator/table_writer.h"
#include "sqlite/schema.h"

namespace marmot::replicator {

namespace {

using change::v1::Change;
using change::v1::ChangeBatch;
using change::v1::ShardSnapshot;
using change::v1::TableChanges;
using sqlite::QuoteIdentifier;
using sqlite::Statement;
using sqlite::Value;

constexpr char kStateTables[] =
    "CREATE TABLE IF NOT EXISTS \"__marmot__shard_state\" ("
    "  shard INTEGER PRIMARY KEY, applied_index INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS \"__marmot__applied\" ("
    "  shard INTEGER NOT NULL, origin INTEGER NOT NULL, tbl TEXT NOT NULL,"
    "  change_id INTEGER NOT NULL, PRIMARY KEY (shard, origin, tbl)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS \"__marmot__dead_letters\" ("
    "  id INTEGER PRIMARY KEY, shard INTEGER, raft_index INTEGER, origin INTEGER, tbl TEXT,"
    "  change_id INTEGER, error TEXT, change BLOB,"
    "  at_ms INTEGER DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)));";

}  // namespace

struct ChangeApplier::TablePlan {
  absl::Status status;  // Not OK: the table is missing or differs; `writer` is unset.
  std::vector<std::string> columns, key_columns;  // What the plan was checked against.
  TableWriter writer;
};

namespace {

// An ApplyView that answers with three functions (each returning what its method returns).
template <typename LaterFn, typename BlockerFn, typename HoldsFn>
class ViewOf final : public ApplyView {
 public:
  ViewOf(LaterFn later, BlockerFn blocker, HoldsFn holds)
      : later_(std::move(later)), blocker_(std::move(blocker)), holds_(std::move(holds)) {}
  absl::StatusOr<bool> LaterLocalChange() override { return later_(); }
  absl::StatusOr<std::optional<int64_t>> BlockingDeadLetter() override { return blocker_(); }
  absl::StatusOr<bool> RowAlreadyHolds() override { return holds_(); }

 private:
  LaterFn later_;
  BlockerFn blocker_;
  HoldsFn holds_;
};

// Counts in `result` a decision that writes nothing (a duplicate, a superseded change, an own
// change its row already holds) and returns true; false for one that writes or dead-letters.
bool CountedWithoutWrite(ApplyAction action, ApplyResult& result) {
  switch (action) {
    case ApplyAction::kSkipDuplicate:
      ++result.duplicates;
      return true;
    case ApplyAction::kSkipSuperseded:
      ++result.superseded;
      return true;
    case ApplyAction::kNothingToWrite:
      ++result.applied;
      ++result.unchanged;
      return true;
    case ApplyAction::kQueueBehind:
    case ApplyAction::kDeadLetter:
    case ApplyAction::kWrite:
      return false;
  }
  return false;
}

// SQLite's own busy handler sleeps 1, 2, 5, 10, ... up to 100 ms between attempts, so a writer
// that holds the lock for a few milliseconds (the application's transaction, the shipper's
// marking) costs the applier tens of milliseconds per entry. Retry every 250 us instead, for the
// same 5 s in total.
int RetrySoon(void*, int attempt) {
  constexpr int kMaxAttempts = 5'000'000 / 250;
  if (attempt >= kMaxAttempts) return 0;
  std::this_thread::sleep_for(std::chrono::microseconds(250));
  return 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChangeApplier>> ChangeApplier::Open(const std::string& db_path,
                                                                   const ShardRouter& router) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(db_path);
  if (!db.ok()) return db.status();
  if (absl::Status s = db->SetTriggersEnabled(false); !s.ok()) return s;
  sqlite3_busy_handler(db->raw(), RetrySoon, nullptr);
  if (absl::Status s = db->Exec("PRAGMA foreign_keys = OFF"); !s.ok()) return s;
  if (absl::Status s = db->EnsureWal(); !s.ok()) return s;
  // See "Cost" in the header: commits need not wait for the disk; the Raft log is the durable
  // record of what is applied, and Open()'s applied index is what survived.
  if (absl::Status s = db->Exec("PRAGMA synchronous = NORMAL"); !s.ok()) return s;
  // Room for an apply round's dirty pages (SQLite's default is 2 MiB): a transaction that
  // outgrows its cache writes pages to the WAL before its commit, some of them twice.
  if (absl::Status s = db->Exec("PRAGMA cache_size = -32768"); !s.ok()) return s;
  // Each entry of an apply round is a savepoint: the first change of a page inside one copies
  // the page to the statement journal, which otherwise goes to a file in /var/tmp: a write() per
  // page, a fifth of a follower's apply thread under load. marmot's own queries need no large
  // temporary storage.
  if (absl::Status s = db->Exec("PRAGMA temp_store = MEMORY"); !s.ok()) return s;
  if (absl::Status s = db->Exec(kStateTables); !s.ok()) return s;
  std::unique_ptr<ChangeApplier> applier(new ChangeApplier(*std::move(db), router));
  if (absl::Status s = applier->dead_letters_.Load(/*fresh=*/true); !s.ok()) return s;
  if (!applier->dead_letters_.index().empty()) {
    LOG(WARNING) << applier->dead_letters_.index().size()
                 << " dead letter(s) on this node: later changes of their rows queue behind them "
                    "until they are retried (RetryDeadLetters)";
  }
  return applier;
}

ChangeApplier::ChangeApplier(sqlite::Database db, const ShardRouter& router)
    : db_(std::move(db)),
      router_(router),
      dead_letters_(db_),
      snapshotter_(db_, router_, dead_letters_),
      applied_(db_) {}

ChangeApplier::~ChangeApplier() = default;

absl::Status ChangeApplier::CheckSchema() {
  absl::StatusOr<Value> version = db_.QueryKeptValue("PRAGMA schema_version");
  if (!version.ok()) return version.status();
  if (version->integer() != schema_version_) {
    plans_.clear();
    local_changes_.Clear();
    // Statements of dropped or altered tables would only fail or be prepared again.
    db_.DropKept();
    schema_version_ = version->integer();
  }
  return absl::OkStatus();
}

absl::StatusOr<const ChangeApplier::TablePlan*> ChangeApplier::Plan(
    const std::string& table, const std::vector<std::string>& columns,
    const std::vector<std::string>& key_columns) {
  auto it = plans_.find(table);
  if (it == plans_.end() || it->second->columns != columns ||
      it->second->key_columns != key_columns) {
    auto plan = std::make_unique<TablePlan>();
    plan->columns = columns;
    plan->key_columns = key_columns;
    absl::StatusOr<TableWriter> writer = PlanWriter(db_, table, columns, key_columns);
    if (writer.ok()) {
      plan->writer = *std::move(writer);
    } else {
      plan->status = writer.status();
      if (plan->status.code() != absl::StatusCode::kFailedPrecondition) return plan->status;
    }
    it = plans_.insert_or_assign(table, std::move(plan)).first;
  }
  return it->second.get();
}

absl::StatusOr<bool> ChangeApplier::LocalChangeWaits(const TablePlan& plan, const LocalChangeIndex::TableRows& rows,
                                                     int64_t own_applied, const TableChanges& t,
                                                     const std::vector<int>& key_positions, const Change& c) {
  for (const std::vector<Value>& key : KeysOf(t, key_positions, c)) {
    if (rows.Newest(key) > own_applied) return true;
  }
  // An upsert may also replace rows of other keys through another UNIQUE index.
  const TableWriter& w = plan.writer;
  const bool has_row = c.op() == change::v1::OP_INSERT || c.op() == change::v1::OP_UPDATE ||
                       c.op() == change::v1::OP_REKEY;
  if (!has_row || c.row_size() != t.columns_size()) return false;
  for (const TableWriter::UniqueProbe& probe : w.unique_probes) {
    std::vector<Value> values;
    for (int i : probe.values) {
      values.push_back(w.keyed_by_rowid && i == 0 ? FromWire(c.rowid()) : FromWire(c.row(i - (w.keyed_by_rowid ? 1 : 0))));
    }
    absl::StatusOr<Statement*> stmt = db_.Kept(probe.sql);
    if (!stmt.ok()) return stmt.status();
    if (absl::Status s = (*stmt)->BindAll(values); !s.ok()) return s;
    absl::StatusOr<bool> found = (*stmt)->Step();
    if (!found.ok()) {
      (*stmt)->Reset();
      return found.status();
    }
    std::vector<Value> key;
    if (*found) {
      const int width = w.keyed_by_rowid ? 1 : t.key_columns_size();
      for (int i = 0; i < width; ++i) key.push_back((*stmt)->Column(i));
    }
    (*stmt)->Reset();
    if (!key.empty() && rows.Newest(key) > own_applied) return true;
  }
  return false;
}

absl::StatusOr<bool> ChangeApplier::RowAlreadyIs(const TablePlan& plan, const TableChanges& t,
                                                  const std::vector<int>& key_positions,
                                                  const Change& c) {
  const TableWriter& w = plan.writer;
  if (c.op() != change::v1::OP_INSERT && c.op() != change::v1::OP_UPDATE) return false;
  const size_t width = t.columns_size() + (w.keyed_by_rowid ? 1 : 0);
  if (c.row_size() != t.columns_size()) return false;  // malformed: ApplyChange says why
  absl::StatusOr<Statement*> stmt = db_.Kept(w.select_row);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = (*stmt)->BindAll(KeyOf(t, key_positions, c)); !s.ok()) return s;
  absl::StatusOr<bool> found = (*stmt)->Step();
  if (!found.ok()) return found.status();
  bool same = *found;
  for (size_t i = 0; same && i < width; ++i) {
    const Value expected =
        w.keyed_by_rowid ? (i == 0 ? FromWire(c.rowid()) : FromWire(c.row(static_cast<int>(i) - 1)))
                         : FromWire(c.row(static_cast<int>(i)));
    same = (*stmt)->Column(static_cast<int>(i)) == expected;
  }
  (*stmt)->Reset();
  return same;
}

absl::StatusOr<uint64_t> ChangeApplier::AppliedIndex(int shard) {
  return applied_.AppliedIndex(shard);
}

absl::Status ChangeApplier::AdvanceAppliedIndex(int shard, uint64_t index) {
  absl::StatusOr<sqlite::Transaction> txn = sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  if (index <= *applied) return absl::OkStatus();
  if (absl::Status s = applied_.SetAppliedIndex(shard, index); !s.ok()) return s;
  return txn->Commit();
}

absl::StatusOr<std::optional<ApplyResult>> ChangeApplier::ApplyWithoutWriting(int shard, uint64_t index,
                                                                              const ChangeBatch& batch) {
  if (local_node_ == 0 || batch.origin_node() != local_node_) return std::nullopt;
  // Inside a transaction the entry is written like any other (the transaction is there anyway);
  // deferring there would also add state after the transaction wrote what it had.
  if (sqlite3_get_autocommit(db_.raw()) == 0) return std::nullopt;
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  // Dead letters may hold rows back: Apply decides that.
  if (!dead_letters_.index().empty()) return std::nullopt;
  ApplyResult result;
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  if (index <= *applied) {
    result.stale_entry = true;
    return result;
  }
  // First decide, changing nothing; then record. The rules are Apply's (DecideBatchChange).
  struct Table {
    LocalChangeIndex::TableRows* rows;
    int64_t last_id;
    int64_t newest;
    std::vector<std::vector<std::vector<Value>>> keys;  // Per change, the keys it touches.
  };
  std::vector<Table> tables;
  for (const TableChanges& t : batch.tables()) {
    absl::StatusOr<const TablePlan*> plan =
        Plan(t.table(), {t.columns().begin(), t.columns().end()},
             {t.key_columns().begin(), t.key_columns().end()});
    if (!plan.ok()) return plan.status();
    // A table that differs (dead letters) or whose upserts may delete rows of other keys.
    if (!(*plan)->status.ok() || (*plan)->writer.other_unique_constraints) return std::nullopt;
    // Outside a transaction: rows read now were committed after every write of this applier,
    // as LocalChangeIndex requires of a CatchUp.
    absl::StatusOr<LocalChangeIndex::TableRows*> rows = local_changes_.CatchUp(db_, t.table());
    if (!rows.ok()) return std::nullopt;
    absl::StatusOr<int64_t> last = applied_.LastChange(shard, batch.origin_node(), t.table());
    if (!last.ok()) return last.status();
    Table table{*rows, *last, *last, {}};
    const std::vector<int> key_positions = KeyPositions(t);
    for (const Change& c : t.changes()) {
      const std::vector<std::vector<Value>>& keys = table.keys.emplace_back(KeysOf(t, key_positions, c));
      ViewOf view(
          [&]() -> absl::StatusOr<bool> {
            return table.rows->Newest(keys.front()) > c.change_id();
          },
          []() -> absl::StatusOr<std::optional<int64_t>> { return std::nullopt; },  // None exist.
          [&]() -> absl::StatusOr<bool> {
            bool holds = true;
            for (const std::vector<Value>& key : keys) {
              holds = holds && table.rows->Holds(key, c.change_id());
            }
            if (holds) return true;
            // Rows the index cannot vouch for (read by a log's first CatchUp, after a start, or
            // written here since) are read, as Apply would, but without the write lock that the
            // application's writers need: only this applier writes rows besides the application,
            // and whatever the application writes after this read is a newer local change.
            return RowAlreadyIs(**plan, t, key_positions, c);
          });
      absl::StatusOr<ApplyDecision> decision = DecideBatchChange(
          {.own = true, .change_id = c.change_id(), .last_applied = table.last_id,
           .local_log = true},
          view);
      if (!decision.ok()) return decision.status();
      if (!CountedWithoutWrite(decision->action, result)) return std::nullopt;  // It needs a write.
      if (decision->action == ApplyAction::kSkipDuplicate) continue;
      table.newest = std::max(table.newest, c.change_id());
    }
    tables.push_back(std::move(table));
  }
  for (int i = 0; i < batch.tables_size(); ++i) {
    const TableChanges& t = batch.tables(i);
    const Table& table = tables[i];
    for (int j = 0; j < t.changes_size(); ++j) {
      for (const std::vector<Value>& key : table.keys[j]) table.rows->Processed(key, t.changes(j).change_id());
    }
    if (table.newest > table.last_id) {
      applied_.deferred().SetLastChange(shard, batch.origin_node(), t.table(), table.newest);
    }
  }
  applied_.deferred().SetAppliedIndex(shard, index);
  return result;
}

absl::StatusOr<ApplyResult> ChangeApplier::Apply(int shard, uint64_t index, const ChangeBatch& batch) {
  absl::StatusOr<ApplyResult> result = ApplyInTransaction(shard, index, batch);
  // The local change index forgot rows as their changes were processed; a transaction that did
  // not commit processed nothing, so the index is read anew.
  if (!result.ok()) local_changes_.Clear();
  return result;
}

absl::StatusOr<ApplyResult> ChangeApplier::ApplyInTransaction(int shard, uint64_t index,
                                                              const ChangeBatch& batch) {
  ApplyResult result;
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  if (index <= *applied) {
    result.stale_entry = true;
    return result;
  }
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  for (const TableChanges& t : batch.tables()) {
    absl::StatusOr<int64_t> last = applied_.LastChange(shard, batch.origin_node(), t.table());
    if (!last.ok()) return last.status();
    const int64_t last_id = *last;
    int64_t newest = last_id;

    absl::StatusOr<const TablePlan*> plan =
        Plan(t.table(), {t.columns().begin(), t.columns().end()},
             {t.key_columns().begin(), t.key_columns().end()});
    if (!plan.ok()) return plan.status();
    const std::vector<int> key_positions = KeyPositions(t);
    // The local change index reads the table's new log rows before any of its rows is written
    // here (see LocalChangeIndex, "Rewritten rows"). No log (the table is gone or not captured
    // yet): the index cleared itself, and there is nothing to skip.
    // The table's part of the index, valid for this table's changes (nothing below clears it).
    LocalChangeIndex::TableRows* indexed = nullptr;
    if (!t.changes().empty() && (*plan)->status.ok()) {
      absl::StatusOr<LocalChangeIndex::TableRows*> caught_up = local_changes_.CatchUp(db_, t.table());
      if (caught_up.ok()) indexed = *caught_up;
    }
    // Own changes: a row with a newer change still in the local log is skipped (see
    // set_local_node).
    const bool own = local_node_ != 0 && batch.origin_node() == local_node_ && indexed != nullptr;
    // Rows this transaction writes are noted when the index holds local changes to compare with.
    const bool note_writes = indexed != nullptr && indexed->size() > 0;
    // Another node's change of a row with a local change not applied in this shard yet is
    // skipped (see set_local_node): that local change comes later in the shard's order.
    int64_t own_applied = 0;
    if (!own && note_writes && local_node_ != 0) {
      absl::StatusOr<int64_t> applied_here = applied_.LastChange(shard, local_node_, t.table());
      if (!applied_here.ok()) return applied_here.status();
      own_applied = *applied_here;
    }
    const bool origin_local = local_node_ != 0 && batch.origin_node() == local_node_;
    for (const Change& c : t.changes()) {
      std::optional<std::vector<std::vector<Value>>> keys;  // The keys it touches, when needed.
      auto keys_of = [&]() -> const std::vector<std::vector<Value>>& {
        if (!keys) keys = KeysOf(t, key_positions, c);
        return *keys;
      };
      ViewOf view(
          [&]() -> absl::StatusOr<bool> {
            if (own) return indexed->Newest(keys_of().front()) > c.change_id();
            if (!note_writes || local_node_ == 0) return false;
            return LocalChangeWaits(**plan, *indexed, own_applied, t, key_positions, c);
          },
          [&]() -> absl::StatusOr<std::optional<int64_t>> {
            if (dead_letters_.index().empty()) return std::nullopt;
            return dead_letters_.Blocker(shard, t.table(), RowsOf(t, key_positions, c),
                                         /*whole_table=*/false);
          },
          [&]() -> absl::StatusOr<bool> {
            // An upsert into a table with another UNIQUE constraint may delete rows of other
            // keys, which the index does not see: such rows are always read.
            bool holds = !(*plan)->writer.other_unique_constraints;
            for (const std::vector<Value>& key : keys_of()) {
              holds = holds && indexed->Holds(key, c.change_id());
            }
            if (holds) return true;
            return RowAlreadyIs(**plan, t, key_positions, c);
          });
      absl::StatusOr<ApplyDecision> decision = DecideBatchChange({.own = origin_local,
                                                                  .change_id = c.change_id(),
                                                                  .last_applied = last_id,
                                                                  .plan = (*plan)->status,
                                                                  .local_log = indexed != nullptr},
                                                                 view);
      if (!decision.ok()) return decision.status();
      // Whatever became of it, an own change was processed: the index forgets the row when this
      // was its newest change.
      if (own) {
        for (const std::vector<Value>& key : keys_of()) indexed->Processed(key, c.change_id());
      }
      if (decision->action != ApplyAction::kSkipDuplicate) newest = std::max(newest, c.change_id());
      if (CountedWithoutWrite(decision->action, result)) continue;
      absl::Status status;
      switch (decision->action) {
        case ApplyAction::kSkipDuplicate:
        case ApplyAction::kSkipSuperseded:
        case ApplyAction::kNothingToWrite:
          break;  // Counted above.
        case ApplyAction::kQueueBehind:
          status = dead_letters_.QueuedBehind(decision->blocker);
          break;
        case ApplyAction::kDeadLetter:
          status = decision->error;
          break;
        case ApplyAction::kWrite:
          if (note_writes) {
            for (const std::vector<Value>& key : keys_of()) indexed->Rewritten(key);
          }
          status = ApplyChange(db_, (*plan)->writer, t, c);
          // The database itself failed: retry the whole entry later.
          if (IsDatabaseFailure(status)) return status;
          break;
      }
      if (status.ok()) {
        ++result.applied;
        continue;
      }
      ++result.dead_lettered;
      LOG(WARNING) << "shard " << shard << " index " << index << ": change " << c.change_id()
                   << " of " << t.table() << " from node " << batch.origin_node()
                   << " goes to the dead letters: " << status.message();
      TableChanges one = t;
      one.clear_changes();
      *one.add_changes() = c;
      absl::Status s = dead_letters_.Insert(
          {Value::Integer(shard), Value::Integer(static_cast<int64_t>(index)),
           Value::Integer(static_cast<int64_t>(batch.origin_node())), Value::Text(t.table()),
           Value::Integer(c.change_id()), Value::Text(std::string(status.message())),
           Value::Blob(one.SerializeAsString())},
          {.shard = shard, .raft_index = index, .table = t.table(),
           .rows = RowsOf(t, key_positions, c)});
      if (!s.ok() && !IsDatabaseFailure(s)) {
        return absl::Status(
            s.code(), absl::StrCat("change ", c.change_id(), " of ", QuoteIdentifier(t.table()),
                                   " from node ", batch.origin_node(), " cannot apply here (",
                                   status.message(), ") and ", s.message()));
      }
      if (!s.ok()) return s;
    }
    if (newest > last_id) {
      absl::Status s = applied_.SetLastChange(shard, batch.origin_node(), t.table(), newest);
      if (!s.ok()) return s;
    }
  }
  if (absl::Status s = applied_.SetAppliedIndex(shard, index); !s.ok()) return s;
  if (absl::Status s = Commit(*txn); !s.ok()) return s;
  return result;
}

absl::StatusOr<RetryResult> ChangeApplier::RetryDeadLetters(const std::vector<int64_t>& ids) {
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  // The table is the truth (an operator may have edited it): start from it.
  if (absl::Status s = dead_letters_.Load(/*fresh=*/true); !s.ok()) return s;
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  std::vector<int64_t> selected = ids;
  if (selected.empty()) {
    selected = dead_letters_.index().Ids();
  } else {
    std::sort(selected.begin(), selected.end());
    selected.erase(std::unique(selected.begin(), selected.end()), selected.end());
    std::vector<std::string> missing;
    for (int64_t id : selected) {
      if (dead_letters_.index().Find(id) == nullptr) missing.push_back(absl::StrCat(id));
    }
    if (!missing.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no dead letter ", absl::StrJoin(missing, ", "), " on this node"));
    }
  }
  RetryResult result;
  for (int64_t id : selected) {
    // A copy: retrying changes the index.
    const DeadLetterIndex::Entry entry = *dead_letters_.index().Find(id);
    absl::StatusOr<std::pair<Value, Value>> stored = dead_letters_.OriginAndChange(id);
    if (!stored.ok()) return stored.status();
    absl::StatusOr<ApplyDecision> tried = TryDeadLetter(entry, stored->first, stored->second, id);
    if (!tried.ok()) return tried.status();
    if (tried->action == ApplyAction::kQueueBehind) {
      // Keeps its own error: it was not tried.
      ++result.still_failing;
      continue;
    }
    if (tried->action == ApplyAction::kDeadLetter) {
      ++result.still_failing;
      if (absl::Status s = dead_letters_.SetError(id, tried->error.message()); !s.ok()) return s;
      continue;
    }
    if (absl::Status s = dead_letters_.Delete(id); !s.ok()) return s;
    ++result.applied;
  }
  if (absl::Status s = Commit(*txn); !s.ok()) return s;
  LOG(INFO) << "retried " << selected.size() << " dead letter(s): " << result.applied
            << " applied, " << result.still_failing << " still failing";
  return result;
}

absl::StatusOr<ApplyDecision> ChangeApplier::TryDeadLetter(const DeadLetterIndex::Entry& entry,
                                                           const Value& origin, const Value& blob,
                                                           int64_t before) {
  // Writes rows without noting them in the local change index: it starts over.
  local_changes_.Clear();
  const std::string bytes =
      blob.storage_class() == sqlite::StorageClass::kBlob ? blob.bytes() : std::string();
  DeadLetterChange facts{
      .snapshot_rows = entry.whole_table,
      .own = local_node_ != 0 && origin.storage_class() == sqlite::StorageClass::kInteger &&
             static_cast<uint64_t>(origin.integer()) == local_node_};
  ShardSnapshot::Table rows;  // Snapshot rows.
  TableChanges t;             // A change.
  const TablePlan* plan = nullptr;
  std::vector<int> key_positions;
  if (entry.table.empty()) {
    facts.readable =
        absl::FailedPreconditionError("the entry cannot be decoded; it is kept as it came");
  } else if (entry.whole_table) {
    if (!rows.ParseFromString(bytes) || SnapshotRowWidth(rows) == 0) {
      facts.readable = absl::FailedPreconditionError("the snapshot rows cannot be decoded");
    }
  } else if (!t.ParseFromString(bytes) || t.changes_size() != 1) {
    facts.readable = absl::FailedPreconditionError("the dead letter does not hold one change");
  } else {
    absl::StatusOr<const TablePlan*> planned =
        Plan(t.table(), {t.columns().begin(), t.columns().end()},
             {t.key_columns().begin(), t.key_columns().end()});
    if (!planned.ok()) return planned.status();
    plan = *planned;
    facts.plan = plan->status;
    key_positions = KeyPositions(t);
  }
  ViewOf view(
      [&]() -> absl::StatusOr<bool> {
        if (local_node_ == 0) return false;
        absl::StatusOr<LocalChangeIndex::TableRows*> indexed =
            local_changes_.CatchUp(db_, t.table());
        if (!indexed.ok()) return false;
        const Change& c = t.changes(0);
        if (facts.own) return (*indexed)->Newest(KeyOf(t, key_positions, c)) > c.change_id();
        if ((*indexed)->size() == 0) return false;
        absl::StatusOr<int64_t> own_applied =
            applied_.LastChange(entry.shard, local_node_, t.table());
        if (!own_applied.ok()) return own_applied.status();
        return LocalChangeWaits(*plan, **indexed, *own_applied, t, key_positions, c);
      },
      [&]() {
        return dead_letters_.Blocker(entry.shard, entry.table, entry.rows, entry.whole_table,
                                     before);
      },
      []() -> absl::StatusOr<bool> { return false; });  // Not a question for a dead letter.
  absl::StatusOr<ApplyDecision> decision = DecideDeadLetter(facts, view);
  if (!decision.ok() || decision->action != ApplyAction::kWrite) return decision;
  absl::Status written;
  if (entry.whole_table) {
    written = snapshotter_.ReplaceWithSnapshotRows(entry.shard, rows);
  } else {
    written = ApplyChange(db_, plan->writer, t, t.changes(0));
  }
  if (IsDatabaseFailure(written)) return written;
  if (!written.ok()) return ApplyDecision::DeadLetter(written);
  return decision;
}

absl::Status ChangeApplier::CreateSnapshot(int shard, ShardSnapshotWriter& out) {
  absl::StatusOr<sqlite::Transaction> txn = sqlite::Transaction::Begin(db_);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  if (absl::Status s = out.Start(shard, *applied); !s.ok()) return s;
  if (absl::Status s = snapshotter_.Write(shard, out); !s.ok()) return s;
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  return out.Finish();
}

absl::StatusOr<int64_t> ChangeApplier::DeadLetterCount() { return dead_letters_.Count(); }

absl::Status ChangeApplier::Commit(sqlite::Transaction& txn) {
  absl::Status s = txn.Commit();
  if (s.ok()) dead_letters_.Committed();
  return s;
}

absl::Status ChangeApplier::RecordUndecodable(int shard, uint64_t index, const std::string& payload,
                                              absl::string_view error) {
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  if (index <= *applied) return absl::OkStatus();
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  LOG(ERROR) << "shard " << shard << " index " << index
             << ": entry cannot be decoded, kept as a dead letter: " << error;
  absl::Status s = dead_letters_.Insert({Value::Integer(shard), Value::Integer(static_cast<int64_t>(index)),
                                     Value::Null(), Value::Null(), Value::Null(),
                                     Value::Text(std::string(error)), Value::Blob(payload)},
                                    {.shard = shard, .raft_index = index});
  if (!s.ok()) return s;
  if (absl::Status s = applied_.SetAppliedIndex(shard, index); !s.ok()) return s;
  return Commit(*txn);
}

absl::StatusOr<InstallResult> ChangeApplier::InstallSnapshot(ShardSnapshotReader& in,
                                                             std::optional<uint64_t> index) {
  if (absl::Status s = in.ReadHeader(); !s.ok()) return SnapshotUnreadable(s);
  InstallResult result;
  const int shard = static_cast<int>(in.shard());
  const uint64_t at = index.value_or(in.applied_index());
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  // Own changes of the shard's rows that the snapshot covers are never applied one by one.
  local_changes_.Clear();
  // The snapshot's applied index and dedupe state replace the shard's, deferred ones included.
  applied_.deferred().Forget(shard);
  if (absl::Status s = snapshotter_.ReplaceRows(shard, at, local_node_, in, result); !s.ok()) {
    return s;
  }
  // Then the changes the rows lack: the snapshot's dead letters, in their order.
  if (absl::Status s = InstallCarriedDeadLetters(shard, in, result); !s.ok()) return s;
  // The shard's dedupe state and applied index become the snapshot's.
  if (absl::Status s = applied_.ReplaceLastChanges(shard, in.applied()); !s.ok()) return s;
  if (absl::Status s = applied_.SetAppliedIndex(shard, at); !s.ok()) return s;
  if (absl::Status s = Commit(*txn); !s.ok()) return s;
  return result;
}

absl::Status ChangeApplier::InstallCarriedDeadLetters(int shard, ShardSnapshotReader& in,
                                                      InstallResult& result) {
  int64_t carried = 0;
  for (;;) {
    absl::StatusOr<std::optional<ShardSnapshot::DeadLetter>> next = in.NextDeadLetter();
    if (!next.ok()) return SnapshotUnreadable(next.status());
    if (!next->has_value()) break;
    const ShardSnapshot::DeadLetter& d = **next;
    ++carried;
    const std::vector<Value> row = StoredDeadLetter(shard, d);
    bool holds_change = true;  // When not, TryDeadLetter says so.
    DeadLetterIndex::Entry entry =
        DeadLetterEntry(shard, d.raft_index(), row[2], row[3], row[6], &holds_change);
    absl::Status status;
    if (entry.table.empty()) {
      // Undecodable (or of a kind this version does not know): nothing to try, kept with the
      // error it came with.
      status = absl::FailedPreconditionError(row[5].bytes());
    } else {
      // Tried as a retry would try it: behind an earlier dead letter of its rows here (a carried
      // one that failed just now, or snapshot rows of its table that this node could not
      // install), it is recorded without being tried.
      absl::StatusOr<ApplyDecision> tried = TryDeadLetter(entry, row[2], row[6]);
      if (!tried.ok()) return tried.status();
      if (tried->action == ApplyAction::kQueueBehind) status = dead_letters_.QueuedBehind(tried->blocker);
      if (tried->action == ApplyAction::kDeadLetter) status = tried->error;
    }
    if (status.ok()) {
      ++result.carried_applied;
      continue;
    }
    ++result.carried_kept;
    std::vector<Value> local = row;
    local[5] = Value::Text(std::string(status.message()));
    if (absl::Status s = dead_letters_.Insert(local, std::move(entry)); !s.ok()) return s;
  }
  if (carried == 0) return absl::OkStatus();
  LOG(WARNING) << "shard " << shard << ": the snapshot at index " << in.applied_index()
               << " carries " << carried
               << " dead letter(s) of the node that made it: " << result.carried_applied
               << " applied here, " << result.carried_kept << " kept as dead letters";
  return absl::OkStatus();
}

}  // namespace marmot::replicator
