#include "replicator/change_applier.h"

#include <glog/logging.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replicator/applier_database.h"
#include "replicator/apply_decider.h"
#include "replicator/capture_keeper.h"
#include "replicator/displaced_rows.h"
#include "replicator/schema_changes.h"
#include "replicator/schema_epochs.h"
#include "replicator/table_writer.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"
#include "sqlite/row_digest.h"

namespace marmot::replicator {

namespace {

using change::v1::Change;
using change::v1::ChangeBatch;
using change::v1::TableChanges;
using sqlite::Value;

// Counts in `result` a decision that writes nothing (WritesNothing).
void CountUnwritten(ApplyAction action, ApplyResult& result) {
  switch (action) {
    case ApplyAction::kSkipDuplicate:
      ++result.duplicates;
      break;
    case ApplyAction::kSkipSuperseded:
      ++result.superseded;
      break;
    case ApplyAction::kNothingToWrite:
      ++result.applied;
      ++result.unchanged;
      break;
    case ApplyAction::kQueueBehind:
    case ApplyAction::kDeadLetter:
    case ApplyAction::kWrite:
    case ApplyAction::kWriteUncarried:
    case ApplyAction::kKeepAsConflict:
    case ApplyAction::kHold:
    case ApplyAction::kKeepDisplaced:
      break;
  }
}

// For the life of one snapshot install (made before its transaction begins, so ended after it):
// the savepoint each table's rows are installed under keeps an undo copy of every page they
// change, most pages of the table (other shards' rows share them). With the connection's
// `temp_store = MEMORY` (applier_database.cc) that copy stayed in memory, as large as the table:
// ~120 MiB of a newcomer's 0.1 GiB database, the whole table for a large one. With FILE, SQLite
// keeps the first 64 KiB in memory and the rest in a deleted temporary file.
class StatementJournalOnDisk {
 public:
  explicit StatementJournalOnDisk(sqlite::Database& db) : db_(db) {
    // It cannot change inside a transaction, and there is none here: the install begins its own.
    if (absl::Status s = db_.Exec("PRAGMA temp_store = FILE"); !s.ok()) {
      LOG(WARNING) << "a snapshot install keeps its undo pages in memory: " << s;
    }
  }
  ~StatementJournalOnDisk() {
    if (absl::Status s = db_.Exec("PRAGMA temp_store = MEMORY"); !s.ok()) {
      LOG(WARNING) << "apply rounds keep their undo pages in a file from now on: " << s;
    }
  }

 private:
  sqlite::Database& db_;
};

// Change `c` of `t` alone, serialized (a held version).
std::string OneChange(const TableChanges& t, const Change& c) {
  TableChanges one;
  one.set_table(t.table());
  *one.mutable_columns() = t.columns();
  *one.mutable_key_columns() = t.key_columns();
  *one.add_changes() = c;
  return one.SerializeAsString();
}

// The digest (sqlite/row_digest.h) of the row change `c` of `t` leaves at the `i`th of its
// version keys (ChangeView::VersionKeys: its key, then a rekey's old key, where it leaves no row)
// on the nodes that write it: its values by column, none for a delete. Not known when it does
// not carry a value for each of its columns. `digester` is made for `t`'s columns when first
// needed.
std::optional<int64_t> DigestLeft(const TableChanges& t, const Change& c, size_t i,
                                  std::optional<sqlite::RowDigester>& digester) {
  if (c.op() == change::v1::OP_DELETE || i > 0) return sqlite::kNoRowDigest;
  if (c.row_size() != t.columns_size()) return std::nullopt;
  if (!digester.has_value()) {
    digester.emplace(std::vector<std::string>(t.columns().begin(), t.columns().end()));
  }
  return digester->Of([&](size_t k) { return FromWire(c.row(static_cast<int>(k))); });
}

// "type name, ..." of the objects schema changes `changes` name, for the log.
std::string ObjectsNamed(const std::vector<change::v1::SchemaChange>& changes) {
  std::vector<std::string> names;
  for (const change::v1::SchemaChange& c : changes) {
    names.push_back(absl::StrCat(c.type(), " ", c.name()));
  }
  return absl::StrJoin(names, ", ");
}

// The no-write path's questions about an entry of `shard`, read outside any transaction.
class UnwrittenEntryReads final : public UnwrittenEntryView {
 public:
  UnwrittenEntryReads(DeadLetterStore& dead_letters, AppliedState& applied, int shard)
      : dead_letters_(dead_letters), applied_(applied), shard_(shard) {}
  absl::StatusOr<bool> DeadLettersExist() override {
    if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
    return !dead_letters_.index().empty();
  }
  absl::StatusOr<uint64_t> AppliedIndex() override { return applied_.AppliedIndex(shard_); }

 private:
  DeadLetterStore& dead_letters_;
  AppliedState& applied_;
  const int shard_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChangeApplier>> ChangeApplier::Open(const std::string& db_path,
                                                                   const ShardRouter& router) {
  absl::StatusOr<sqlite::Database> db = OpenApplierDatabase(db_path);
  if (!db.ok()) return db.status();
  // The schema as it is at the first start is every node's own: changes from then on replicate.
  if (absl::Status s = EnsureSchemaBaseline(*db); !s.ok()) return s;
  std::unique_ptr<ChangeApplier> applier(new ChangeApplier(*std::move(db), router));
  // schema_version_seen_ stays unknown: the schema as this start finds it may hold this node's
  // own change, not proposed yet (a table renamed right before marmot was killed, or while it
  // was stopped). The first entry of another node held for it (HoldFor) compares the schema
  // with the baseline, as the shipper's first look does a round later: a rename found then
  // names the table that entry means (table_renames.h), instead of a dead letter for a table
  // of the old name.
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
      versions_(db_),
      conflicts_(db_),
      dead_letters_(db_),
      snapshotter_(db_, router_, dead_letters_, versions_, conflicts_),
      applied_(db_),
      state_{db_, dead_letters_, applied_},
      plans_(db_),
      retrier_(state_, plans_, local_changes_, snapshotter_) {
  state_.versions = &versions_;
  state_.conflicts = &conflicts_;
  state_.router = &router_;
}

ChangeApplier::~ChangeApplier() = default;

absl::Status ChangeApplier::CheckSchema() {
  absl::StatusOr<bool> changed = plans_.CheckSchema();
  if (!changed.ok()) return changed.status();
  if (*changed) local_changes_.Clear();
  return absl::OkStatus();
}

absl::Status ChangeApplier::HoldFor(const ChangeBatch& batch) {
  const bool own = state_.local_node != 0 && batch.origin_node() == state_.local_node;
  if (own || (own_schema_quiet_ <= absl::ZeroDuration() && own_schema_pending_ == nullptr)) {
    return absl::OkStatus();
  }
  return HoldWhileOwnSchemaMoves();
}

absl::Status ChangeApplier::HoldWhileOwnSchemaMoves() {
  absl::StatusOr<sqlite::Value> version = db_.QueryKeptValue("PRAGMA schema_version");
  if (!version.ok()) return version.status();
  if (version->integer() != schema_version_seen_) {
    // Moved by another connection (this applier's own schema changes record the version they
    // leave): a local process, or marmot's capture of a table. Only the first is held for.
    absl::StatusOr<SchemaDiff> diff = DiffSchema(db_);
    if (!diff.ok()) return diff.status();
    // A table renamed here: the entries held meanwhile that name its old name mean the new one
    // (as the shipper says too once it looks, ChangeShipper::CaptureSchemaChanges).
    if (TableRenames* renames = router_.renames(); renames != nullptr) {
      std::vector<std::pair<std::string, std::string>> pending;
      for (const change::v1::SchemaChange& c : diff->replicate) {
        if (c.kind() == change::v1::SchemaChange::RENAME_TABLE) {
          pending.emplace_back(c.name(), c.new_name());
        }
      }
      renames->SetPending(pending);
    }
    if (!diff->replicate.empty() || !diff->keep.empty() || !diff->forget.empty()) {
      const absl::Time now = absl::Now();
      if (now - own_schema_moved_ >= own_schema_quiet_) own_schema_moving_since_ = now;
      own_schema_moved_ = now;
    }
    schema_version_seen_ = version->integer();
  }
  const absl::Time now = absl::Now();
  // The shipper bounds its own wait (ShipperOptions::schema_quiet_at_most).
  if ((own_schema_pending_ != nullptr && own_schema_pending_->load()) ||
      (now - own_schema_moved_ < own_schema_quiet_ &&
       now - own_schema_moving_since_ < own_schema_quiet_at_most_)) {
    return HeldForOwnSchema();
  }
  return absl::OkStatus();
}

absl::Status ChangeApplier::Commit(sqlite::Transaction& txn) {
  absl::Status s = txn.Commit();
  if (s.ok()) dead_letters_.Committed();
  return s;
}

void ChangeApplier::TransactionRolledBack() {
  local_changes_.Clear();
  // Should the read fail, the index stays unsynced: the next writing transaction reads it.
  (void)dead_letters_.Load(/*fresh=*/true);
}

absl::StatusOr<uint64_t> ChangeApplier::AppliedIndex(int shard) {
  return applied_.AppliedIndex(shard);
}

absl::StatusOr<int64_t> ChangeApplier::DeadLetterCount() { return dead_letters_.Count(); }

absl::Status ChangeApplier::AdvanceAppliedIndex(int shard, uint64_t index) {
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  if (DecideEntry(index, *applied) == EntryAction::kSkipStale) return absl::OkStatus();
  if (absl::Status s = applied_.SetAppliedIndex(shard, index); !s.ok()) return s;
  return txn->Commit();
}

absl::Status ChangeApplier::RecordUndecodable(int shard, uint64_t index, const std::string& payload,
                                              absl::string_view error) {
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  if (DecideEntry(index, *applied) == EntryAction::kSkipStale) return absl::OkStatus();
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  LOG(ERROR) << "shard " << shard << " index " << index
             << ": entry cannot be decoded, kept as a dead letter: " << error;
  if (absl::Status s = dead_letters_.InsertUndecodable(shard, index, payload, error); !s.ok()) {
    return s;
  }
  if (absl::Status s = applied_.SetAppliedIndex(shard, index); !s.ok()) return s;
  return Commit(*txn);
}

absl::StatusOr<std::optional<ApplyResult>> ChangeApplier::ApplyWithoutWriting(
    int shard, uint64_t index, const ChangeBatch& batch) {
  // A schema change writes (the object, the baseline).
  if (batch.schema_changes_size() > 0) return std::nullopt;
  if (batch.resolved_conflicts_size() > 0) return std::nullopt;  // Deletes conflicts: a write.
  const uint64_t local_node = state_.local_node;
  UnwrittenEntryReads reads(dead_letters_, applied_, shard);
  absl::StatusOr<EntryAction> entry =
      DecideUnwrittenEntry({.index = index,
                            .own_origin = local_node != 0 && batch.origin_node() == local_node,
                            .transaction_open = sqlite3_get_autocommit(db_.raw()) == 0},
                           reads);
  if (!entry.ok()) return entry.status();
  if (*entry == EntryAction::kNeedsTransaction) return std::nullopt;
  ApplyResult result;
  if (*entry == EntryAction::kSkipStale) {
    result.stale_entry = true;
    return result;
  }
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  // First decide every change, changing nothing; then record.
  struct Table {
    LocalChangeIndex::TableRows* rows;
    int64_t last_id;
    int64_t newest;
    std::vector<std::vector<std::vector<Value>>> keys;  // Per change, the keys it touches.
  };
  std::vector<Table> tables;
  struct Version {
    std::string table, key;
    RowVersion version;
  };
  std::vector<Version> versions;  // Set (deferred) once every change is decided.
  for (const TableChanges& given : batch.tables()) {
    const TableChanges* as_here = &given;
    TableChanges renamed;
    absl::StatusOr<const TablePlan*> plan = plans_.PlanAsHere(as_here, renamed);
    const TableChanges& t = *as_here;
    if (!plan.ok()) return plan.status();
    if (!TableMayGoUnwritten(
            {.plan = (*plan)->status,
             .other_unique_constraints = (*plan)->writer.other_unique_constraints})) {
      return std::nullopt;
    }
    // Outside a transaction: rows read now were committed after every write of this applier,
    // as LocalChangeIndex requires of a CatchUp.
    absl::StatusOr<LocalChangeIndex::TableRows*> rows = local_changes_.CatchUp(db_, t.table());
    if (!rows.ok()) return std::nullopt;
    absl::StatusOr<int64_t> last = applied_.LastChange(shard, batch.origin_node(), t.table());
    if (!last.ok()) return last.status();
    Table& table = tables.emplace_back(Table{*rows, *last, *last, {}});
    ChangeView::Table views(state_, shard, t, *plan);
    views.UseLocalRows(*rows);
    views.set_origin(batch.origin_node());
    std::optional<sqlite::RowDigester> digester;
    for (const Change& c : t.changes()) {
      // Rows the index cannot vouch for are read (RowAlreadyHolds) without the write lock that
      // the application's writers need: only this applier writes rows besides the application,
      // and whatever the application writes after this read is a newer local change.
      ChangeView view(views, c);
      absl::StatusOr<ApplyDecision> decision = DecideBatchChange({.own = true,
                                                                  .change_id = c.change_id(),
                                                                  .last_applied = table.last_id,
                                                                  .plan = (*plan)->status,
                                                                  .local_log = true,
                                                                  .names_prev = c.has_prev()},
                                                                 view);
      if (!decision.ok()) return decision.status();
      if (!WritesNothing(decision->action)) return std::nullopt;
      CountUnwritten(decision->action, result);
      if (decision->action != ApplyAction::kSkipDuplicate) {
        absl::StatusOr<std::vector<std::string>> keys = view.VersionKeys();
        if (!keys.ok()) return keys.status();
        for (size_t k = 0; k < keys->size(); ++k) {
          versions.push_back({t.table(), (*keys)[k],
                              RowVersion{.shard = shard,
                                         .raft_index = index,
                                         .origin = batch.origin_node(),
                                         .change_id = c.change_id(),
                                         .columns = t.columns_size(),
                                         .digest = DigestLeft(t, c, k, digester)}});
        }
      }
      table.keys.push_back(view.TakeKeys());
      table.newest = std::max(table.newest, c.change_id());  // As Apply counts it.
    }
  }
  for (int i = 0; i < batch.tables_size(); ++i) {
    const TableChanges& t = batch.tables(i);
    const Table& table = tables[i];
    for (int j = 0; j < t.changes_size(); ++j) {
      for (const std::vector<Value>& key : table.keys[j]) {
        table.rows->Processed(key, t.changes(j).change_id());
      }
    }
    if (table.newest > table.last_id) {
      applied_.deferred().SetLastChange(shard, batch.origin_node(), t.table(), table.newest);
    }
  }
  for (const Version& v : versions) versions_.Defer(v.table, v.key, v.version);
  applied_.deferred().SetAppliedIndex(shard, index);
  return result;
}

absl::StatusOr<ApplyResult> ChangeApplier::Apply(int shard, uint64_t index,
                                                 const ChangeBatch& batch) {
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
  if (DecideEntry(index, *applied) == EntryAction::kSkipStale) {
    result.stale_entry = true;
    return result;
  }
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  const uint64_t origin = batch.origin_node();
  const bool own = state_.local_node != 0 && origin == state_.local_node;
  if (absl::Status s = HoldFor(batch); !s.ok()) return s;
  // Where rows a write displaces are kept (displaced_rows.h): made at the first write that may
  // displace one, so that entries of tables without other UNIQUE constraints read no epoch.
  std::optional<DisplacingWrite> displacing;
  auto displacing_write = [&]() -> absl::StatusOr<const DisplacingWrite*> {
    if (!displacing.has_value()) {
      absl::StatusOr<std::optional<uint64_t>> epoch_here = LoadSchemaEpoch(db_);
      if (!epoch_here.ok()) return epoch_here.status();
      displacing.emplace(Displacing(shard, index, origin));
      displacing->origin_had_schema = batch.schema_epoch() >= epoch_here->value_or(0);
    }
    return &*displacing;
  };
  if (batch.schema_changes_size() > 0) {
    const std::string from =
        absl::StrCat("node ", origin, " (shard ", shard, " index ", index, ")");
    if (absl::Status s = ApplySchemaChanges(batch.schema_changes(), from, own, result, index);
        !s.ok()) {
      return s;
    }
  }
  // Conflicts an operator resolved (the pane's ResolveConflict): cleared here as on every node.
  if (batch.resolved_conflicts_size() > 0) {
    absl::StatusOr<int64_t> resolved = conflicts_.Resolve(shard, batch.resolved_conflicts());
    if (!resolved.ok()) return resolved.status();
    LOG(INFO) << "shard " << shard << " index " << index << ": " << *resolved
              << " conflict(s) resolved by node " << origin;
  }
  TableRenames* renames = router_.renames();
  for (const TableChanges& sent : batch.tables()) {
    // A table renamed here since its rows were read on their origin is named as it is here
    // (table_renames.h): asked after the hold above, so that a rename of this node's own that
    // a local process just made counts.
    const TableChanges* named = &sent;
    TableChanges named_here;
    std::string here =
        renames != nullptr ? renames->NameHere(sent.table(), batch.schema_epoch()) : sent.table();
    // Spelled as here (another node's `Item` is this node's `item`): what marmot keeps by table
    // name is kept under one name.
    absl::StatusOr<std::string> spelled = plans_.TableNameHere(here);
    if (!spelled.ok()) return spelled.status();
    if (*spelled != sent.table()) {
      named_here = sent;
      named_here.set_table(*std::move(spelled));
      named = &named_here;
    }
    const TableChanges& given = *named;
    absl::StatusOr<int64_t> last = applied_.LastChange(shard, origin, given.table());
    if (!last.ok()) return last.status();
    int64_t newest = *last;
    // Columns renamed or dropped here since the changes were read take their place here.
    const TableChanges* as_here = &given;
    TableChanges renamed;
    absl::StatusOr<const TablePlan*> plan = plans_.PlanAsHere(as_here, renamed);
    const TableChanges& t = *as_here;
    if (!plan.ok()) return plan.status();
    // The local change index reads the table's new log rows before any of its rows is written
    // here (see LocalChangeIndex, "Rewritten rows"). No log (the table is gone or not captured
    // yet): the index cleared itself, and there is nothing to skip. The table's part of the
    // index stays valid for this table's changes (nothing below clears it).
    LocalChangeIndex::TableRows* indexed = nullptr;
    if (!t.changes().empty() && (*plan)->status.ok()) {
      absl::StatusOr<LocalChangeIndex::TableRows*> caught_up =
          local_changes_.CatchUp(db_, t.table());
      if (caught_up.ok()) indexed = *caught_up;
    }
    // Rows this transaction writes are noted when the index holds local changes to compare with.
    const bool note_writes = indexed != nullptr && indexed->size() > 0;
    ChangeView::Table views(state_, shard, t, *plan);
    views.UseLocalRows(indexed);
    views.set_origin(origin);
    // The versions of the changes' rows are read in a few statements, and written so at the end.
    std::vector<std::vector<std::vector<Value>>> keys(t.changes_size());
    std::vector<std::vector<std::string>> version_keys(t.changes_size());
    std::unique_ptr<RowVersions::Batch> versions_batch;
    if (t.changes_size() > 1) {
      std::vector<std::string> all;
      for (int i = 0; i < t.changes_size(); ++i) {
        keys[i] = KeysOf(t, views.key_positions(), t.changes(i));
        for (const std::vector<Value>& key : keys[i]) {
          absl::StatusOr<std::string> text = versions_.KeyOf(key);
          if (!text.ok()) return text.status();
          version_keys[i].push_back(*text);
          all.push_back(*std::move(text));
        }
      }
      absl::StatusOr<std::unique_ptr<RowVersions::Batch>> batch =
          versions_.BeginBatch(t.table(), all);
      if (!batch.ok()) return batch.status();
      versions_batch = *std::move(batch);
    }
    std::optional<sqlite::RowDigester> digester;
    for (int i = 0; i < t.changes_size(); ++i) {
      const Change& c = t.changes(i);
      ChangeView view(views, c);
      if (versions_batch != nullptr) view.UseKeys(std::move(keys[i]), std::move(version_keys[i]));
      absl::StatusOr<ApplyDecision> decision = DecideBatchChange({.own = own,
                                                                  .change_id = c.change_id(),
                                                                  .last_applied = *last,
                                                                  .plan = (*plan)->status,
                                                                  .local_log = indexed != nullptr,
                                                                  .names_prev = c.has_prev()},
                                                                 view);
      if (!decision.ok()) return decision.status();
      // Whatever became of it, an own change was processed: the index forgets the row when this
      // was its newest change.
      if (own && indexed != nullptr) {
        for (const std::vector<Value>& key : view.Keys()) indexed->Processed(key, c.change_id());
      }
      // Every change decided counts for dedupe, dead-lettered ones too (a duplicate is at or
      // below it already).
      newest = std::max(newest, c.change_id());
      if (view.kept_at_once() != 0 && (decision->action == ApplyAction::kWrite ||
                                       decision->action == ApplyAction::kWriteUncarried ||
                                       decision->action == ApplyAction::kKeepDisplaced)) {
        if (absl::Status s = ForgetKeptAtOnce(db_, view.kept_at_once()); !s.ok()) return s;
      }
      if (decision->action == ApplyAction::kKeepDisplaced) {
        absl::StatusOr<std::vector<std::string>> keys = view.VersionKeys();
        if (!keys.ok()) return keys.status();
        absl::StatusOr<const DisplacingWrite*> at = displacing_write();
        if (!at.ok()) return at.status();
        absl::Status s = KeepDisplacedNow(
            **at, (*plan)->writer, t, c, *keys, state_.local_node, view.displaced_by(),
            router_.ShardOf(t.table(), view.displaced_by_key()) == shard);
        if (!s.ok()) return s;
        ++result.conflicts;
        continue;
      }
      if (decision->action == ApplyAction::kKeepAsConflict) {
        if (absl::Status s = KeepConflict(shard, index, origin, own, t, c, view, result); !s.ok()) {
          return s;
        }
        continue;
      }
      // Every other change is its row's version now, on every node (row_versions.h).
      if (decision->action != ApplyAction::kSkipDuplicate) {
        absl::StatusOr<std::vector<std::string>> keys = view.VersionKeys();
        if (!keys.ok()) return keys.status();
        const bool held = decision->action == ApplyAction::kHold ||
                          decision->action == ApplyAction::kWriteUncarried;
        RowVersion version{.shard = shard,
                           .raft_index = index,
                           .origin = origin,
                           .change_id = c.change_id(),
                           .held = held ? OneChange(t, c) : std::string(),
                           .columns = t.columns_size()};
        for (size_t k = 0; k < keys->size(); ++k) {
          version.digest = DigestLeft(t, c, k, digester);
          if (absl::Status s = versions_.Set(t.table(), (*keys)[k], version); !s.ok()) return s;
        }
      }
      if (decision->action == ApplyAction::kHold) {
        ++result.applied;
        ++result.held;
        continue;
      }
      if (WritesNothing(decision->action)) {
        CountUnwritten(decision->action, result);
        continue;
      }
      absl::Status status;
      if (decision->action == ApplyAction::kQueueBehind) {
        status = dead_letters_.QueuedBehind(decision->blocker);
      } else if (decision->action == ApplyAction::kDeadLetter) {
        status = decision->error;
      } else {
        if (note_writes) {
          for (const std::vector<Value>& key : view.Keys()) indexed->Rewritten(key);
        }
        auto write = [&] {
          return decision->action == ApplyAction::kWriteUncarried
                     ? ApplyColumns(db_, t, c, view.uncarried())
                     : ApplyChange(db_, (*plan)->writer, t, c);
        };
        if (!(*plan)->writer.other_unique_constraints) {
          status = write();
        } else {
          absl::StatusOr<const DisplacingWrite*> at = displacing_write();
          if (!at.ok()) return at.status();
          absl::StatusOr<int64_t> kept = WriteKeepingDisplaced(**at, (*plan)->writer, t, c, write);
          status = kept.status();
          if (kept.ok()) result.conflicts += *kept;
        }
        // The database itself failed: retry the whole entry later.
        if (IsDatabaseFailure(status)) return status;
      }
      if (status.ok()) {
        ++result.applied;
        continue;
      }
      ++result.dead_lettered;
      LOG(WARNING) << "shard " << shard << " index " << index << ": change " << c.change_id()
                   << " of " << t.table() << " from node " << origin
                   << " goes to the dead letters: " << status.message();
      absl::Status s = dead_letters_.InsertChange(shard, index, origin, t, c, status);
      if (!s.ok()) return s;
    }
    if (versions_batch != nullptr) {
      if (absl::Status s = versions_batch->End(); !s.ok()) return s;
    }
    if (newest > *last) {
      if (absl::Status s = applied_.SetLastChange(shard, origin, t.table(), newest); !s.ok()) {
        return s;
      }
    }
  }
  if (absl::Status s = applied_.SetAppliedIndex(shard, index); !s.ok()) return s;
  if (absl::Status s = Commit(*txn); !s.ok()) return s;
  return result;
}

absl::Status ChangeApplier::KeepConflict(int shard, uint64_t index, uint64_t origin, bool own,
                                         const TableChanges& t, const Change& c, ChangeView& view,
                                         ApplyResult& result) {
  absl::StatusOr<std::vector<std::string>> keys = view.VersionKeys();
  if (!keys.ok()) return keys.status();
  absl::StatusOr<std::optional<RowVersion>> current = view.CurrentVersion();
  if (!current.ok()) return current.status();
  if (keys->empty() || !current->has_value()) {
    return absl::InternalError("a conflict without a row version");  // The decider's contract.
  }
  const RowVersion& winner = **current;
  ++result.conflicts;
  LOG(WARNING) << "shard " << shard << " index " << index << ": change " << c.change_id() << " of "
               << t.table() << " from node " << origin << " was made without seeing node "
               << winner.origin << "'s change " << winner.change_id
               << " of its row, which came first: it is kept as a conflict, not applied";
  absl::Status s = conflicts_.Insert({.shard = shard,
                                      .raft_index = index,
                                      .origin = origin,
                                      .key = keys->front(),
                                      .winner_origin = winner.origin,
                                      .winner_change_id = winner.change_id},
                                     t, c);
  if (!s.ok() || !own) return s;
  if (!winner.held.empty()) {
    // This node's row still holds what its application wrote; the winner waits in `held`. Once
    // no newer local change of the row is pending (it would lose too), the winner is written.
    absl::StatusOr<bool> newer = view.NewerLocalChangeOfRow();
    if (!newer.ok()) return newer.status();
    if (*newer) return absl::OkStatus();
    if (absl::Status held = WriteHeld(shard, t.table(), keys->front(), winner); !held.ok()) {
      return held;
    }
  }
  // Other nodes' changes of other rows this change was to replace, kept at once here
  // (KeepDisplacedNow): it replaces nothing anywhere, and they stand on every other node.
  absl::StatusOr<std::vector<KeptAtOnce>> kept =
      TakeKeptAtOnce(db_, versions_, shard, t.table(), state_.local_node, c.change_id());
  if (!kept.ok()) return kept.status();
  for (const KeptAtOnce& k : *kept) {
    const TableChanges* as_here = &k.change;
    TableChanges renamed;
    absl::StatusOr<const TablePlan*> plan = plans_.PlanAsHere(as_here, renamed);
    if (!plan.ok()) return plan.status();
    const Change& lost = as_here->changes(0);
    for (const std::vector<Value>& key : KeysOf(*as_here, KeyPositions(*as_here), lost)) {
      absl::StatusOr<std::string> version_key = versions_.KeyOf(key);
      if (!version_key.ok()) return version_key.status();
      absl::Status set = versions_.Set(as_here->table(), *version_key,
                                       {.shard = k.shard,
                                        .raft_index = k.raft_index,
                                        .origin = k.origin,
                                        .change_id = lost.change_id(),
                                        .columns = as_here->columns_size()});
      if (!set.ok()) return set;
    }
    absl::Status applied = (*plan)->status;
    if (applied.ok()) {
      absl::StatusOr<bool> kept_again = KeptAgainForAnotherOwnChange(k, *as_here, **plan);
      if (!kept_again.ok()) return kept_again.status();
      if (*kept_again) continue;
      const TableWriter& w = (*plan)->writer;
      applied = WriteKeepingDisplaced(Displacing(k.shard, k.raft_index, k.origin), w, *as_here,
                                      lost, [&] { return ApplyChange(db_, w, *as_here, lost); })
                    .status();
    }
    if (IsDatabaseFailure(applied)) return applied;
    if (!applied.ok()) {
      absl::Status dead =
          dead_letters_.InsertChange(k.shard, k.raft_index, k.origin, *as_here, lost, applied);
      if (!dead.ok()) return dead;
    }
    LOG(INFO) << "shard " << shard << ": change " << lost.change_id() << " of " << as_here->table()
              << " from node " << k.origin << ", kept for this node's change " << c.change_id()
              << " which lost, is written";
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> ChangeApplier::KeptAgainForAnotherOwnChange(const KeptAtOnce& k,
                                                                 const TableChanges& t,
                                                                 const TablePlan& plan) {
  const int shard = k.shard;
  absl::StatusOr<LocalChangeIndex::TableRows*> indexed = local_changes_.CatchUp(db_, t.table());
  if (!indexed.ok() || *indexed == nullptr || (*indexed)->size() == 0) return false;
  ChangeView::Table views(state_, shard, t, &plan);
  views.UseLocalRows(*indexed);
  views.set_origin(k.origin);
  const Change& c = t.changes(0);
  ChangeView view(views, c);
  absl::StatusOr<LocalOverwrite> later = view.LocalChangeNotYetApplied();
  if (!later.ok()) return later.status();
  if (*later != LocalOverwrite::kOtherRow) return false;
  absl::StatusOr<std::vector<std::string>> keys = view.VersionKeys();
  if (!keys.ok()) return keys.status();
  if (absl::Status s = KeepDisplacedNow(
          Displacing(shard, k.raft_index, k.origin), plan.writer, t, c, *keys, state_.local_node,
          view.displaced_by(), router_.ShardOf(t.table(), view.displaced_by_key()) == shard);
      !s.ok()) {
    return s;
  }
  return true;
}

DisplacingWrite ChangeApplier::Displacing(int shard, uint64_t index, uint64_t origin) {
  return {.db = db_,
          .versions = versions_,
          .conflicts = conflicts_,
          .router = router_,
          .shard = shard,
          .raft_index = index,
          .origin = origin,
          .write_held = [this](const TableChanges& held) -> absl::Status {
            const TableChanges* as_here = &held;
            TableChanges renamed;
            absl::StatusOr<const TablePlan*> plan = plans_.PlanAsHere(as_here, renamed);
            if (!plan.ok()) return plan.status();
            if (!(*plan)->status.ok()) return (*plan)->status;
            return ApplyChange(db_, (*plan)->writer, *as_here, as_here->changes(0));
          }};
}

absl::Status ChangeApplier::WriteHeld(int shard, const std::string& table, const std::string& key,
                                      RowVersion version) {
  TableChanges held;
  if (!held.ParseFromString(version.held) || held.changes_size() != 1) {
    return absl::DataLossError(
        absl::StrCat("the held version of a row of ", table, " cannot be read"));
  }
  version.held.clear();
  if (absl::Status s = versions_.Set(table, key, version); !s.ok()) return s;
  // A rekey is held at both its keys and written once: neither waits for it any more (the other
  // would keep it held, and this node's writes of that row would lose to it, for ever).
  for (const std::vector<Value>& other : KeysOf(held, KeyPositions(held), held.changes(0))) {
    absl::StatusOr<std::string> other_key = versions_.KeyOf(other);
    if (!other_key.ok()) return other_key.status();
    if (*other_key == key) continue;
    absl::StatusOr<std::optional<RowVersion>> there = versions_.Get(table, *other_key);
    if (!there.ok()) return there.status();
    if (!there->has_value() || (*there)->held.empty() || (*there)->origin != version.origin ||
        (*there)->change_id != version.change_id || (*there)->raft_index != version.raft_index) {
      continue;
    }
    if (absl::Status s = versions_.Set(table, *other_key, version); !s.ok()) return s;
  }
  const TableChanges* as_here = &held;
  TableChanges renamed;
  absl::StatusOr<const TablePlan*> plan = plans_.PlanAsHere(as_here, renamed);
  if (!plan.ok()) return plan.status();
  absl::Status applied = (*plan)->status;
  if (applied.ok()) {
    const TableWriter& w = (*plan)->writer;
    const Change& c = as_here->changes(0);
    applied = WriteKeepingDisplaced(Displacing(shard, version.raft_index, version.origin), w,
                                    *as_here, c, [&] { return ApplyChange(db_, w, *as_here, c); })
                  .status();
  }
  if (IsDatabaseFailure(applied) || applied.ok()) return applied;
  LOG(WARNING) << "shard " << shard << ": the held change " << held.changes(0).change_id() << " of "
               << table << " from node " << version.origin
               << " goes to the dead letters: " << applied.message();
  return dead_letters_.InsertChange(shard, version.raft_index, version.origin, *as_here,
                                    as_here->changes(0), applied);
}

absl::Status ChangeApplier::SettleHeldVersions(
    int shard, const std::vector<std::pair<std::string, std::string>>& held,
    const std::vector<KeptRow>& kept) {
  std::set<std::pair<std::string, std::string>> kept_keys;
  for (const KeptRow& row : kept) {
    absl::StatusOr<std::string> key = versions_.KeyOf(row.key);
    if (!key.ok()) return key.status();
    kept_keys.emplace(row.table, *key);
    // A row kept here whose version is another node's: this node's changes of it will lose to
    // that version, which the snapshot's row holds. It waits here until then.
    absl::StatusOr<std::optional<RowVersion>> version = versions_.Get(row.table, *key);
    if (!version.ok()) return version.status();
    if (!version->has_value() || (*version)->origin == state_.local_node ||
        !(*version)->held.empty()) {
      continue;
    }
    TableChanges t;
    if (row.snapshot_row.has_value()) {
      t = SnapshotRowAsInsert(row.header, *row.snapshot_row, (*version)->change_id);
    } else {
      t.set_table(row.table);
      *t.mutable_columns() = row.header.columns();
      *t.mutable_key_columns() = row.header.key_columns();
      Change* c = t.add_changes();
      c->set_change_id((*version)->change_id);
      c->set_op(change::v1::OP_DELETE);
      for (const Value& v : row.key) *c->add_old_key() = ToWire(v);
    }
    RowVersion waiting = **version;
    waiting.held = t.SerializeAsString();
    if (absl::Status s = versions_.Set(row.table, *key, waiting); !s.ok()) return s;
  }
  // Versions the maker's rows did not hold yet: written here, unless this node's own row waits.
  for (const auto& [table, key] : held) {
    if (kept_keys.count({table, key}) > 0) continue;
    absl::StatusOr<std::optional<RowVersion>> version = versions_.Get(table, key);
    if (!version.ok()) return version.status();
    if (!version->has_value() || (*version)->held.empty()) continue;
    if (absl::Status s = WriteHeld(shard, table, key, **version); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ChangeApplier::ApplySchemaChanges(
    const google::protobuf::RepeatedPtrField<change::v1::SchemaChange>& changes,
    const std::string& from, bool own, ApplyResult& result, uint64_t shard0_index) {
  bool table_changed = false;
  bool tables_named = false;  // A table created, dropped or renamed: its route may change.
  for (const change::v1::SchemaChange& c : changes) {
    tables_named = tables_named || c.type() == "table";
    absl::StatusOr<SchemaApplied> applied = ApplySchemaChange(db_, c, own, shard0_index);
    if (!applied.ok()) return applied.status();
    if (c.kind() == change::v1::SchemaChange::RENAME_TABLE &&
        (applied->outcome == SchemaApplied::kApplied ||
         applied->outcome == SchemaApplied::kConflict || own)) {
      // (A rename that lost to another of the same table moves the dead letters of its new
      // name to the winner's, schema_changes.cc RenameLost.)
      // Its dead letters are the renamed table's now (schema_changes.h; on its origin too): so
      // is what holds its rows back here. Read within this transaction: again at the next Sync
      // should it fail.
      if (absl::Status s = dead_letters_.Load(/*fresh=*/false); !s.ok()) return s;
    }
    const std::string what = absl::StrCat(DescribeSchemaChange(c), " from ", from);
    switch (applied->outcome) {
      case SchemaApplied::kApplied:
        ++result.schema_applied;
        table_changed = table_changed || applied->table_changed;
        LOG(INFO) << "schema change applied: " << what;
        break;
      case SchemaApplied::kAlreadySo:
        ++result.schema_applied;
        if (!applied->detail.empty()) {
          LOG(INFO) << "schema change already so here: " << what << ": " << applied->detail;
        }
        break;
      case SchemaApplied::kConflict:
        ++result.schema_conflicts;
        table_changed = table_changed || applied->table_changed;
        LOG(WARNING) << "schema change conflicts: " << what << ": " << applied->detail;
        break;
      case SchemaApplied::kRefused:
        ++result.schema_refused;
        LOG(ERROR) << "schema change refused: " << what << ": " << applied->detail;
        break;
    }
  }
  // A table made or given columns here gets its capture in the same transaction, before any
  // replicated row can be written to it (rows written without capture would be copied as this
  // node's changes; a column the triggers do not know would not be shipped).
  if (table_changed) {
    absl::StatusOr<sqlite::CaptureReport> captured =
        sqlite::InstallCapture(db_, {.log_ids_above = CaptureLogIdsAbove()});
    if (!captured.ok()) return captured.status();
  }
  // Routes as this transaction wrote them (table_renames.h); a transaction that rolls back
  // leaves at most the route of a table that does not exist, and is made again.
  if (TableRenames* renames = router_.renames(); tables_named && renames != nullptr) {
    if (absl::Status s = renames->Load(db_); !s.ok()) return s;
  }
  // What this applier changed is not a local process's schema change. Unless no other node's
  // entry compared the schema with the baseline since the start: what the start found may be
  // this node's own change, not proposed yet (see Open), which that entry is still to find.
  if (schema_version_seen_ >= 0) {
    absl::StatusOr<sqlite::Value> version = db_.QueryKeptValue("PRAGMA schema_version");
    if (!version.ok()) return version.status();
    schema_version_seen_ = version->integer();
  }
  return CheckSchema();
}

absl::Status ChangeApplier::RetryDeadLetters(DeadLetterRetry& retry,
                                             absl::FunctionRef<bool()> more) {
  if (retry.done()) return absl::OkStatus();
  // The table is the truth (an operator may have edited it): the first step starts from it, read
  // before the write lock is taken (only this connection writes dead letters besides an
  // operator's hand, whose edits a later step notices).
  if (!retry.progress_.started) {
    if (absl::Status s = dead_letters_.Load(/*fresh=*/true); !s.ok()) return s;
  }
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  absl::StatusOr<DeadLetterRetry::Progress> progress = retrier_.Step(retry, more);
  if (!progress.ok()) return progress.status();
  if (absl::Status s = Commit(*txn); !s.ok()) return s;
  retry.progress_ = *std::move(progress);
  return absl::OkStatus();
}

absl::StatusOr<RetryResult> ChangeApplier::RetryDeadLetters(const std::vector<int64_t>& ids) {
  DeadLetterRetry retry(ids);
  while (!retry.done()) {
    if (absl::Status s = RetryDeadLetters(retry, [] { return true; }); !s.ok()) return s;
  }
  return retry.result();
}

absl::Status ChangeApplier::CreateSnapshot(int shard, ShardSnapshotWriter& out) {
  absl::StatusOr<sqlite::Transaction> txn = sqlite::Transaction::Begin(db_);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<uint64_t> applied = AppliedIndex(shard);
  if (!applied.ok()) return applied.status();
  absl::StatusOr<std::vector<change::v1::SchemaChange>> schema = BaselineSchema(db_);
  if (!schema.ok()) return schema.status();
  std::vector<change::v1::TableRoute> routes;
  std::vector<change::v1::TableRename> renames;
  if (absl::Status s = ReadTableRenames(db_, &routes, &renames); !s.ok()) return s;
  out.set_table_renames(std::move(routes), std::move(renames));
  if (absl::Status s = out.Start(shard, *applied, *schema); !s.ok()) return s;
  if (absl::Status s = snapshotter_.Write(shard, out); !s.ok()) return s;
  if (absl::Status s = txn->Commit(); !s.ok()) return s;
  return out.Finish();
}

absl::StatusOr<DroppedSince> ChangeApplier::InstallSnapshotSchema(ShardSnapshotReader& in,
                                                                  int shard, uint64_t at) {
  if (in.schema().empty()) return DroppedSince();  // A maker of an older version.
  const std::string from = absl::StrCat("the snapshot of shard ", shard, " at index ", at);
  // What it would make that this node dropped after the snapshot's schema (read before any of
  // it is made).
  absl::StatusOr<DroppedSince> again = DroppedSinceSnapshot(db_, in.schema(), in.schema_epoch());
  if (!again.ok()) return again.status();
  ApplyResult schema;
  if (shard == 0) {
    // What the maker's schema no longer has was dropped in shard 0's order before the snapshot's
    // index: dropped here too, before the CREATEs (a name dropped may have been taken again).
    absl::StatusOr<SnapshotSchemaDrops> gone =
        DropsOfSnapshotSchema(db_, in.schema(), in.table_renames(), at);
    if (!gone.ok()) return gone.status();
    for (const std::string& kept : gone->kept) {
      LOG(INFO) << "shard 0: kept although " << from << " no longer has it: " << kept;
    }
    if (!gone->drops.empty()) {
      LOG(WARNING) << "shard 0: " << from << " no longer has what this node holds (dropped by "
                   << "other nodes while it was away); dropping it here: "
                   << ObjectsNamed(gone->drops);
      google::protobuf::RepeatedPtrField<change::v1::SchemaChange> drops(gone->drops.begin(),
                                                                         gone->drops.end());
      // Recorded as dropped at the snapshot's index (at or after the drop it missed).
      if (absl::Status s = ApplySchemaChanges(drops, from, /*own=*/false, schema, at); !s.ok()) {
        return s;
      }
    }
  }
  if (absl::Status s = ApplySchemaChanges(in.schema(), from, /*own=*/false, schema); !s.ok()) {
    return s;
  }
  return again;
}

absl::StatusOr<InstallResult> ChangeApplier::InstallSnapshot(ShardSnapshotReader& in,
                                                             std::optional<uint64_t> index) {
  if (absl::Status s = in.ReadHeader(); !s.ok()) return SnapshotUnreadable(s);
  InstallResult result;
  const int shard = static_cast<int>(in.shard());
  const uint64_t at = index.value_or(in.applied_index());
  StatementJournalOnDisk journal_on_disk(db_);
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  if (absl::Status s = CheckSchema(); !s.ok()) return s;
  if (absl::Status s = dead_letters_.Sync(); !s.ok()) return s;
  // The objects its rows need first (a node started from an empty file has none).
  absl::StatusOr<DroppedSince> dropped_since = InstallSnapshotSchema(in, shard, at);
  if (!dropped_since.ok()) return dropped_since.status();
  // Where renamed tables route, before any row of it is placed (table_renames.h); after its
  // schema: a table made here from it routes by its name, as a table created does, until this.
  if (in.table_routes().size() > 0 || in.table_renames().size() > 0) {
    if (absl::Status s = TakeTableRenames(db_, in.table_routes(), in.table_renames()); !s.ok()) {
      return s;
    }
    if (TableRenames* renames = router_.renames(); renames != nullptr) {
      if (absl::Status s = renames->Load(db_); !s.ok()) return s;
    }
  }
  // Own changes of the shard's rows that the snapshot covers are never applied one by one.
  local_changes_.Clear();
  // The snapshot's applied index and dedupe state replace the shard's, deferred ones included.
  applied_.deferred().Forget(shard);
  // So do its rows' versions; those its maker's rows did not hold yet are written below.
  versions_.ForgetDeferred(shard);
  if (absl::Status s = versions_.DeleteShard(shard); !s.ok()) return s;
  if (absl::Status s = conflicts_.DeleteShard(shard); !s.ok()) return s;
  std::vector<std::pair<std::string, std::string>> held;  // (table, key)
  // What the snapshot's maker keeps by table name is kept here under this node's name of the
  // table (it may spell it in another case: TablePlans::TableNameHere).
  for (;;) {
    absl::StatusOr<std::optional<change::v1::SnapshotVersions>> versions = in.NextVersions();
    if (!versions.ok()) return SnapshotUnreadable(versions.status());
    if (!versions->has_value()) break;
    for (change::v1::SnapshotVersions::Entry& e : *(*versions)->mutable_entries()) {
      absl::StatusOr<std::string> table = plans_.TableNameHere(e.table());
      if (!table.ok()) return table.status();
      e.set_table(*std::move(table));
      absl::Status s = versions_.Set(
          e.table(), e.key(),
          {.shard = shard,
           .raft_index = e.raft_index(),
           .origin = e.origin(),
           .change_id = e.change_id(),
           .held = e.held(),
           .columns = e.columns(),
           .digest = e.has_digest() ? std::optional<int64_t>(e.digest()) : std::nullopt});
      if (!s.ok()) return s;
      if (!e.held().empty()) held.emplace_back(e.table(), e.key());
    }
    for (change::v1::SnapshotVersions::Conflict& c : *(*versions)->mutable_conflicts()) {
      absl::StatusOr<std::string> table = plans_.TableNameHere(c.table());
      if (!table.ok()) return table.status();
      c.set_table(*std::move(table));
      if (absl::Status s = conflicts_.InsertCarried(shard, c); !s.ok()) return s;
    }
  }
  std::vector<KeptRow> kept;
  auto own_applied = [&](int other, const std::string& table) {
    return applied_.LastChange(other, state_.local_node, table);
  };
  if (absl::Status s =
          snapshotter_.ReplaceRows(shard, at, state_.local_node, own_applied, in, result, &kept);
      !s.ok()) {
    return s;
  }
  // Then the changes the rows lack: the snapshot's dead letters, in their order.
  if (absl::Status s = retrier_.ApplyCarried(shard, in, result); !s.ok()) return s;
  if (absl::Status s = SettleHeldVersions(shard, held, kept); !s.ok()) return s;
  // What this node dropped after the snapshot's schema goes again, its rows with it, as the
  // drop went after them here (the other shards' rows of a table went with it then).
  if (!dropped_since->applied.empty()) {
    LOG(INFO) << "shard " << shard << ": the snapshot at index " << at
              << " was taken before drops applied here since; dropped again after its rows: "
              << ObjectsNamed(dropped_since->applied);
    ApplyResult again;
    google::protobuf::RepeatedPtrField<change::v1::SchemaChange> drops(
        dropped_since->applied.begin(), dropped_since->applied.end());
    const std::string from =
        absl::StrCat("this node, after the snapshot of shard ", shard, " at index ", at);
    if (absl::Status s = ApplySchemaChanges(drops, from, /*own=*/false, again); !s.ok()) return s;
  }
  if (!dropped_since->not_proposed.empty()) {
    LOG(INFO) << "shard " << shard << ": the snapshot at index " << at
              << " has what this node dropped itself and did not propose yet; dropped again "
                 "after its rows (the drop goes as this node's schema change): "
              << ObjectsNamed(dropped_since->not_proposed);
    for (const change::v1::SchemaChange& c : dropped_since->not_proposed) {
      if (absl::Status s = DropAsHere(db_, c); !s.ok()) return s;
    }
  }
  // The shard's dedupe state and applied index become the snapshot's.
  std::vector<change::v1::ShardSnapshot::Applied> last_changes = in.applied();
  for (change::v1::ShardSnapshot::Applied& a : last_changes) {
    absl::StatusOr<std::string> table = plans_.TableNameHere(a.table());
    if (!table.ok()) return table.status();
    a.set_table(*std::move(table));
  }
  if (absl::Status s = applied_.ReplaceLastChanges(shard, last_changes); !s.ok()) return s;
  if (absl::Status s = applied_.SetAppliedIndex(shard, at); !s.ok()) return s;
  // The schema epoch its schema brings is kept with it (schema_epochs.h).
  if (const uint64_t epoch = in.schema_epoch(); epoch > 0) {
    if (absl::Status s = StoreSchemaEpoch(db_, epoch); !s.ok()) return s;
  }
  if (absl::Status s = Commit(*txn); !s.ok()) return s;
  return result;
}

}  // namespace marmot::replicator
