#include "replicator/change_shipper.h"

#include <glog/logging.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replicator/change_batch.h"
#include "replicator/change_encoder.h"
#include "sqlite/change_log.h"
#include "sqlite/database.h"

namespace marmot::replicator {
namespace {

// The integer a one-row query returns through a kept statement of `db` (0 for NULL).
absl::StatusOr<int64_t> QueryInt(sqlite::Database& db, const std::string& sql) {
  absl::StatusOr<sqlite::Value> v = db.QueryKeptValue(sql);
  if (!v.ok()) return v.status();
  return v->storage_class() == sqlite::StorageClass::kInteger ? v->integer() : 0;
}

// Marking waits for the application's write transactions; SQLite's own busy handler sleeps up
// to 100 ms at a time, which would hold the pump (and every shard's next proposal) that long.
// Retry every 250 us instead, for the same 5 s in total. `env` is the shipper's Env.
int RetrySoon(void* env, int attempt) {
  constexpr int kMaxAttempts = 5'000'000 / 250;
  if (attempt >= kMaxAttempts) return 0;
  static_cast<raft::host::Env*>(env)->SleepFor(absl::Microseconds(250));
  return 1;
}

// This node's CREATEs of tables that committed in shard 0 (name as here, their shard-0 index):
// their rows wait for shard 0 to apply them here (change_shipper.h, "Routes of new tables").
// A table made again replaces its row; rows whose index shard 0 passed here are merely stale.
constexpr char kOwnCreatesTable[] = "__marmot__own_creates";

}  // namespace

// A table as its changes were read: its name, and its TableChanges header (name, columns and
// key) serialized.
struct ChangeShipper::Header {
  std::string table;
  std::string bytes;
};

struct ChangeShipper::Pending {
  std::shared_ptr<const Header> header;
  int64_t change_id = 0;
  std::string change;         // The serialized Change (change_encoder).
  uint64_t schema_epoch = 0;  // When it was read (SchemaEpochs).
};

// A batch proposed and not committed yet: its payload, proposed again as it is when the proposal
// fails (the applier skips whatever of it did commit), and the changes it carries.
struct ChangeShipper::Inflight {
  std::string payload;
  std::vector<std::shared_ptr<const Header>> headers;  // Keep the tables' names below alive.
  std::vector<std::pair<const std::string*, int64_t>> changes;  // (table, change id)
  bool failed = false;                                          // to be proposed again
  std::vector<std::string> schema_keys;  // A batch of schema changes: their keys.
  absl::Time proposed_at;                // last proposal
};

absl::StatusOr<std::unique_ptr<ChangeShipper>> ChangeShipper::Open(const std::string& db_path,
                                                                   uint64_t node_id,
                                                                   const ShardRouter& router,
                                                                   Proposer* proposer,
                                                                   ShipperOptions options) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(db_path);
  if (!db.ok()) return db.status();
  // Marking rows done need not wait for the disk: rows whose marking a power loss undoes are
  // proposed again and skipped as duplicates (see "Crash safety" above).
  if (absl::Status s = db->Exec("PRAGMA synchronous = NORMAL"); !s.ok()) return s;
  // Its marking deletes log rows, which each log's guard trigger refuses to connections that run
  // triggers (sqlite/change_log.h).
  if (absl::Status s = db->SetTriggersEnabled(false); !s.ok()) return s;
  sqlite3_busy_handler(db->raw(), RetrySoon, options.env);
  std::unique_ptr<ChangeShipper> shipper(
      new ChangeShipper(*std::move(db), node_id, router, proposer, options));
  if (options.epochs != nullptr) {
    // This node's CREATEs that committed before a restart: shard 0 may not have applied them.
    // The table is made here, as marmot's other tables are at open: made later, inside the
    // write that records a CREATE, it would move the schema under the running replicator.
    if (absl::Status s = shipper->db_.Exec(
            absl::StrCat("CREATE TABLE IF NOT EXISTS ", sqlite::QuoteIdentifier(kOwnCreatesTable),
                         " (name TEXT PRIMARY KEY COLLATE NOCASE, shard0_index INTEGER NOT NULL) "
                         "WITHOUT ROWID"));
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> kept = shipper->db_.QueryRows(
        absl::StrCat("SELECT name, shard0_index FROM ", sqlite::QuoteIdentifier(kOwnCreatesTable)));
    if (!kept.ok()) return kept.status();
    const absl::Time now = options.env->MonotonicNow();
    for (const std::vector<sqlite::Value>& r : *kept) {
      shipper->created_at_[r[0].bytes()] = {
          .index = static_cast<uint64_t>(r[1].integer()), .kept = true, .since = now};
    }
  }
  return shipper;
}

ChangeShipper::ChangeShipper(sqlite::Database db, uint64_t node_id, const ShardRouter& router,
                             Proposer* proposer, ShipperOptions options)
    : db_(std::move(db)),
      node_id_(node_id),
      router_(router),
      proposer_(proposer),
      options_(options),
      queued_(router.shards()),
      inflight_(router.shards()),
      own_committed_(router.shards()) {}

ChangeShipper::~ChangeShipper() = default;

const std::string& ChangeShipper::MovedTo(const std::string& table, int64_t change_id) const {
  const std::string* name = &table;
  // Each log moves once per rename; a chain ends (a name renamed back starts a new entry). A
  // change of a table made again under the name since has a higher id than any that moved.
  for (size_t steps = 0; steps < moved_.size(); ++steps) {
    auto it = moved_.find(*name);
    if (it == moved_.end() || change_id > it->second.second) break;
    name = &it->second.first;
  }
  return *name;
}

bool ChangeShipper::RowsCommitted() const {
  for (int shard = 0; shard < router_.shards(); ++shard) {
    if (inflight_[shard] != nullptr || !queued_[shard].empty()) return false;
  }
  return true;
}

int ChangeShipper::in_flight() const {
  int n = 0;
  for (const auto& f : inflight_) n += f != nullptr;
  return n;
}

absl::Status ChangeShipper::RefreshSchema() {
  // Runs at every Pump, i.e. after every commit of any connection: cached statements only.
  absl::StatusOr<int64_t> version = QueryInt(db_, "PRAGMA schema_version");
  if (!version.ok()) return version.status();
  if (*version == schema_version_) return absl::OkStatus();
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(db_);
  if (!listing.ok()) return listing.status();
  std::map<std::string, sqlite::TableSchema> tables;
  for (sqlite::TableSchema& t : listing->tables) {
    // Only tables whose capture is installed have a log to read.
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> log = db_.QueryRows(
        absl::StrCat("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ",
                     sqlite::Value::Text(sqlite::ChangeLogTableName(t.name)).DebugString()));
    if (!log.ok()) return log.status();
    if (log->empty()) continue;
    std::string name = t.name;
    tables.emplace(std::move(name), std::move(t));
  }
  // A table renamed here takes its log along (sqlite/change_log.h): what was read of it under
  // its old name and not marked yet is this table's now, or its rows would be read and
  // proposed again under the new name. Its log holds the first of those ids still.
  // A table of the old name may be there again (renamed away and made again): its log is a new
  // one then, which does not hold those ids.
  auto log_holds = [&](const std::string& table, int64_t id) -> absl::StatusOr<bool> {
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> holds = db_.QueryRows(
        absl::StrCat("SELECT 1 FROM ", sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(table)),
                     " WHERE \"__marmot__id\" = ", id));
    if (!holds.ok()) return holds.status();
    return !holds->empty();
  };
  for (auto it = unmarked_.begin(); it != unmarked_.end();) {
    const std::string old_name = it->first;
    if (it->second.ids.empty()) {
      ++it;
      continue;
    }
    if (tables.count(old_name) > 0) {
      absl::StatusOr<bool> still = log_holds(old_name, it->second.ids.front().first);
      if (!still.ok()) return still.status();
      if (*still) {
        ++it;
        continue;
      }
    }
    std::string moved_to;
    for (const auto& [name, t] : tables) {
      if (name == old_name || tables_.count(name) > 0) continue;
      if (auto u = unmarked_.find(name); u != unmarked_.end() && !u->second.ids.empty()) continue;
      absl::StatusOr<bool> holds = log_holds(name, it->second.ids.front().first);
      if (!holds.ok()) return holds.status();
      if (*holds) {
        moved_to = name;
        break;
      }
    }
    if (moved_to.empty()) {
      ++it;
      continue;
    }
    LOG(INFO) << "change log of " << old_name << " moved to " << moved_to << " (renamed) with "
              << it->second.ids.size() << " change(s) read and not marked done";
    unmarked_[moved_to] = std::move(it->second);
    const int64_t read_up_to = read_up_to_[old_name];
    read_up_to_[moved_to] = std::max(read_up_to_[moved_to], read_up_to);
    read_up_to_.erase(old_name);
    moved_[old_name] = {moved_to, read_up_to};
    {
      absl::MutexLock lock(&committed_through_mu_);
      auto committed = committed_through_.find(old_name);
      if (committed != committed_through_.end()) {
        committed_through_[moved_to] = committed->second;
        committed_through_.erase(committed);
      }
    }
    it = unmarked_.erase(it);
  }
  tables_ = std::move(tables);
  schema_version_ = *version;
  schema_dirty_ = true;
  db_.DropKept();  // statements of logs that are gone
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ChangeShipper::ReadNewChanges() {
  int64_t read = 0;
  for (const auto& [name, table] : tables_) {
    int64_t& cursor = read_up_to_[name];
    // Most Pumps follow a commit of marmot's own applier, which never adds change-log rows:
    // one seek to the log's newest id answers whether there is anything to read. It also tells
    // whether the application is writing (MarkWhenDue), so it is asked even when reading waits.
    absl::StatusOr<int64_t> newest =
        QueryInt(db_, absl::StrCat("SELECT max(\"__marmot__id\") FROM ",
                                   sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(name))));
    if (newest.ok()) {
      if (options_.shipped != nullptr) options_.shipped->FirstLook(name, *newest);
      int64_t& seen = newest_[name];
      if (*newest != seen) logs_grew_ = options_.env->MonotonicNow();
      seen = *newest;
    }
    if (!created_at_.empty()) {
      if (auto created = created_at_.find(name); created != created_at_.end()) {
        // Its route is decided where shard 0 applies its CREATE: not bounded (change_shipper.h).
        OwnCreate& c = created->second;
        if (const uint64_t at = options_.epochs->applied(0); at < c.index) {
          ++waiting_for_route_;
          const absl::Time now = options_.env->MonotonicNow();
          if (now - c.since >= kEpochWaitBound && now - c.told >= absl::Minutes(1)) {
            c.told = now;
            LOG(WARNING) << "rows of " << name << " wait for shard 0 to apply this node's CREATE "
                         << "of it (index " << c.index << "; shard 0 applied " << at
                         << " here): the table routes by the first CREATE of it in shard 0's "
                            "order. Shard 0 is halted or behind on this node (GetStatus)";
          }
          continue;
        }
        created_at_.erase(created);
      }
    }
    if (buffered_ >= options_.max_buffered_changes) continue;
    if (newest.ok() && *newest <= cursor) continue;
    if (held_tables_.count(name) > 0) continue;  // Its CREATE or columns are not committed.
    // A schema change waits for the rows read before it to commit: rows read now follow it.
    if (schema_batch_.has_value()) continue;
    if (schema_settling_) continue;  // Rows follow the schema change they may need.
    // The schema moved and its difference is not taken yet (a schema change of this node is in
    // flight, or not yet in the baseline): rows read now could carry it under an older epoch.
    if (options_.replicate_schema && schema_dirty_) continue;
    int limit = static_cast<int>(
        std::min<int64_t>(options_.scan_limit, options_.max_buffered_changes - buffered_));
    absl::StatusOr<std::vector<sqlite::ChangeRecord>> records =
        sqlite::ReadChanges(db_, table, cursor, limit);
    if (!records.ok()) {
      // The table may have been dropped or altered since the schema was read; try next round.
      // Said once a minute per table at most, without the whole query (a wide table's is tens
      // of kilobytes): a failure that lasts (SQLite's 2,000 columns of a result exceeded by a
      // table of nearly as many) would fill the log otherwise.
      const absl::Time now = options_.env->MonotonicNow();
      if (auto [warned, first] = read_warned_.try_emplace(name, now);
          first || now - warned->second >= absl::Minutes(1)) {
        warned->second = now;
        std::string why(records.status().message());
        if (why.size() > 300) {
          why = absl::StrCat(why.substr(0, 150), " ... ", why.substr(why.size() - 150));
        }
        LOG(WARNING) << "cannot read changes of " << name << ": " << why;
      }
      schema_version_ = -1;
      continue;
    }
    // Nothing pending up to the newest id (read before): only rows marked done are there.
    if (records->empty() && newest.ok()) cursor = std::max(cursor, *newest);
    if (records->empty()) continue;
    {
      // What the application wrote, summed over a second at most per table (one line per
      // Pump would flood the log under load).
      CaptureLog& cl = capture_log_[name];
      cl.changes += static_cast<int64_t>(records->size());
      const absl::Time now = options_.env->MonotonicNow();
      if (now - cl.last >= absl::Seconds(1)) {
        LOG(INFO) << "captured " << cl.changes << " change(s) of " << name << " (newest id "
                  << records->back().id << ")";
        cl.changes = 0;
        cl.last = now;
      }
    }
    const change::v1::TableChanges table_header = TableHeader(table);
    if (options_.shipped != nullptr) {
      options_.shipped->Read(name, records->back().id,
                             {table_header.columns().begin(), table_header.columns().end()});
    }
    auto header = std::make_shared<const Header>(Header{name, table_header.SerializeAsString()});
    auto queue = [&](int shard, const sqlite::ChangeRecord& r, ChangePart part) {
      Pending& p = queued_[shard].emplace_back();
      p.header = header;
      p.schema_epoch = read_epoch_;
      p.change_id = r.id;
      AppendChange(table, r, part, &p.change);
    };
    Unmarked& unmarked = unmarked_[name];
    for (sqlite::ChangeRecord& r : *records) {
      // A write made over this node's own write (the row held that, not the version the shard
      // applied last): the version it saw is this node's.
      if (r.prev.has_value() && r.prev->origin < 0) {
        r.prev = sqlite::RowVersionSeen{.origin = static_cast<int64_t>(node_id_), .change_id = 0};
      }
      cursor = r.id;
      ++read;
      ++buffered_;
      unmarked.ids.emplace_back(r.id, false);
      if (r.op == sqlite::ChangeOp::kRekey &&
          router_.ShardOf(name, r.old_key) != router_.ShardOf(name, r.key)) {
        // Old and new identity live in different shards: split into a delete and an upsert.
        split_outstanding_[{name, r.id}] = 2;
        queue(router_.ShardOf(name, r.old_key), r, ChangePart::kOldKeyDelete);
        queue(router_.ShardOf(name, r.key), r, ChangePart::kNewRowInsert);
      } else if (r.op == sqlite::ChangeOp::kDelete && !r.key.empty() &&
                 router_.ShardOf(name, r.old_key) != router_.ShardOf(name, r.key)) {
        // A rekey whose row is gone: both keys are deleted, each in its shard (the new key's
        // shard must see this change too, or this node would take its later changes of that
        // key for pending and hold other nodes' changes of it back).
        split_outstanding_[{name, r.id}] = 2;
        queue(router_.ShardOf(name, r.old_key), r, ChangePart::kOldKeyDelete);
        queue(router_.ShardOf(name, r.key), r, ChangePart::kNewKeyDelete);
      } else {
        const std::vector<sqlite::Value>& key =
            r.op == sqlite::ChangeOp::kDelete ? r.old_key : r.key;
        queue(router_.ShardOf(name, key), r, ChangePart::kWhole);
      }
    }
  }
  return read;
}

void ChangeShipper::Propose(int shard, const std::string& payload) {
  std::shared_ptr<Outcomes> outcomes = outcomes_;
  proposer_->Propose(shard, payload, [outcomes, shard](absl::Status status, uint64_t index) {
    absl::MutexLock lock(&outcomes->mu);
    outcomes->done.push_back({.shard = shard, .status = std::move(status), .index = index});
  });
}

void ChangeShipper::SetSchemaSettling(bool settling) {
  schema_settling_ = settling;
  if (options_.schema_pending != nullptr) options_.schema_pending->store(settling);
}

absl::Status ChangeShipper::CaptureSchemaChanges() {
  if (!options_.replicate_schema || !(schema_dirty_ || schema_settling_) ||
      schema_batch_.has_value() || !sent_to_baseline_.empty()) {
    return absl::OkStatus();
  }
  if (inflight_[0] != nullptr && !inflight_[0]->schema_keys.empty()) return absl::OkStatus();
  const absl::Time now = options_.env->MonotonicNow();
  if (schema_settling_ && settling_version_ == schema_version_ &&
      now - schema_moved_at_ < options_.schema_quiet &&
      now - settling_since_ < options_.schema_quiet_at_most) {
    return absl::OkStatus();
  }
  absl::StatusOr<SchemaDiff> diff = DiffSchema(db_);
  if (!diff.ok()) return diff.status();
  schema_dirty_ = false;
  // A table renamed here routes as it did, and batches of other nodes that name its old name
  // mean the new one here, from now on (table_renames.h): before the other nodes' entries,
  // held while the schema settles (ChangeApplier::HoldFor), apply again.
  if (TableRenames* renames = router_.renames(); renames != nullptr) {
    std::vector<std::pair<std::string, std::string>> pending;
    for (const change::v1::SchemaChange& c : diff->replicate) {
      if (c.kind() == change::v1::SchemaChange::RENAME_TABLE) {
        pending.emplace_back(c.name(), c.new_name());
      }
    }
    renames->SetPending(pending);
  }
  // Not proposed until the schema stands still (ShipperOptions::schema_quiet).
  const bool was_settling = schema_settling_;
  SetSchemaSettling(false);
  if (options_.schema_quiet > absl::ZeroDuration() &&
      !(diff->replicate.empty() && diff->keep.empty() && diff->forget.empty())) {
    if (settling_version_ != schema_version_) {
      settling_version_ = schema_version_;
      schema_moved_at_ = now;
    }
    // A schema that moved again within `schema_quiet` of its last settling (a table made and
    // dropped over and over) settles on since then: the bound counts from its first move.
    if (!was_settling && now - settled_at_ >= options_.schema_quiet) settling_since_ = now;
    if (now - schema_moved_at_ < options_.schema_quiet &&
        now - settling_since_ < options_.schema_quiet_at_most) {
      SetSchemaSettling(true);
      return absl::OkStatus();
    }
  }
  if (was_settling) settled_at_ = now;
  if (!diff->not_replicated.empty()) {
    LOG(WARNING) << "schema changes that do not replicate yet (make them on every node): "
                 << absl::StrJoin(diff->not_replicated, ", ");
    if (options_.not_replicated) {
      options_.not_replicated(static_cast<int64_t>(diff->not_replicated.size()));
    }
  }
  if (!diff->keep.empty() || !diff->forget.empty() || !diff->places.empty()) {
    keep_in_baseline_ = std::make_unique<SchemaDiff>(*diff);
  }
  auto key_of = [](const change::v1::SchemaChange& c) {
    return absl::StrCat(c.kind(), "\n", c.type(), "\n", c.name(), "\n", c.sql());
  };
  // A committed change the diff no longer finds was recorded in the baseline: should the same
  // change be made again (an index dropped and made again), it is a new one.
  std::set<std::string> still_found;
  for (const change::v1::SchemaChange& c : diff->replicate) still_found.insert(key_of(c));
  for (auto it = schema_sent_.begin(); it != schema_sent_.end();) {
    it = still_found.count(*it) > 0 ? std::next(it) : schema_sent_.erase(it);
  }
  change::v1::ChangeBatch batch;
  batch.set_origin_node(node_id_);
  std::vector<std::string> names;
  for (change::v1::SchemaChange& c : diff->replicate) {
    std::string key = key_of(c);
    if (schema_sent_.count(key) > 0) continue;
    schema_keys_.push_back(std::move(key));
    if (c.type() == "table" && c.kind() != change::v1::SchemaChange::DROP) {
      held_tables_.insert(c.name());
    }
    if (c.kind() == change::v1::SchemaChange::RENAME_TABLE) {
      // Its rows are read under the new name once it committed.
      held_tables_.insert(c.new_name());
    }
    names.push_back(DescribeSchemaChange(c));
    *batch.add_schema_changes() = std::move(c);
  }
  if (batch.schema_changes().empty()) return absl::OkStatus();
  LOG(INFO) << "replicating " << names.size()
            << " schema change(s): " << absl::StrJoin(names, ", ");
  schema_batch_ = std::move(batch);
  schema_built_at_ = now;
  return absl::OkStatus();
}

int64_t ChangeShipper::ProposeReady() {
  int64_t proposed = 0;
  // Schema changes go to shard 0 once every row read before them committed (no row is read
  // while they wait), before the shard's next rows; they say where this node's rows committed in
  // the other shards, for the nodes that apply them (ChangeBatch.rows_committed_through). Rows
  // that do not commit within kEpochWaitBound (a shard without a leader) are not waited for
  // longer: they are not ordered before the change then, as other nodes do not wait longer.
  const bool rows_committed = schema_batch_.has_value() && RowsCommitted();
  if (schema_batch_.has_value() && inflight_[0] == nullptr &&
      (rows_committed || options_.env->MonotonicNow() - schema_built_at_ >= kEpochWaitBound)) {
    if (!rows_committed) {
      LOG(WARNING) << "proposing this node's schema change without waiting longer for the rows "
                      "read before it to commit ("
                   << kEpochWaitBound << " passed): they may apply after it elsewhere";
    }
    for (int shard = 1; shard < router_.shards(); ++shard) {
      // Besides this node's own rows, every row of other nodes it applied before the change: a
      // node where that shard lags must not get them after the change (a row of a table dropped
      // and made again, a value of a column dropped and added again). What the shard applied
      // also stands for this node's rows committed before its start (their commit indexes are
      // not kept; one not marked done is read and proposed again, under the schema of that
      // read). Every entry applied here by now carries an epoch below this change's index: the
      // two waits never wait on each other.
      uint64_t through = own_committed_[shard];
      if (options_.epochs != nullptr) through = std::max(through, options_.epochs->applied(shard));
      if (through > 0) (*schema_batch_->mutable_rows_committed_through())[shard] = through;
    }
    auto batch = std::make_unique<Inflight>();
    batch->payload = schema_batch_->SerializeAsString();
    schema_batch_.reset();
    batch->schema_keys = std::move(schema_keys_);
    schema_keys_.clear();
    batch->proposed_at = options_.env->MonotonicNow();
    Propose(0, batch->payload);
    inflight_[0] = std::move(batch);
  }
  for (int shard = 0; shard < router_.shards(); ++shard) {
    if (Inflight* again = inflight_[shard].get(); again != nullptr) {
      const absl::Time now = options_.env->MonotonicNow();
      if (again->failed && now - again->proposed_at >= options_.retry_delay) {
        again->failed = false;
        again->proposed_at = now;
        proposed += static_cast<int64_t>(again->changes.size());
        Propose(shard, again->payload);
      }
      continue;
    }
    auto& queue = queued_[shard];
    if (queue.empty()) continue;
    auto batch = std::make_unique<Inflight>();
    ChangeBatchWriter wire(node_id_);
    int64_t bytes = 0;
    size_t taken = 0;
    uint64_t schema_epoch = 0;
    while (taken < queue.size() && static_cast<int>(taken) < options_.max_batch_changes &&
           (taken == 0 ||
            bytes + static_cast<int64_t>(queue[taken].change.size()) <= options_.max_batch_bytes)) {
      const Pending& p = queue[taken];
      wire.Add(&p.header->bytes, p.change);
      if (batch->headers.empty() || batch->headers.back() != p.header)
        batch->headers.push_back(p.header);
      batch->changes.emplace_back(&p.header->table, p.change_id);
      schema_epoch = std::max(schema_epoch, p.schema_epoch);
      bytes += static_cast<int64_t>(p.change.size());
      ++taken;
    }
    queue.erase(queue.begin(), queue.begin() + static_cast<long>(taken));
    proposed += static_cast<int64_t>(taken);
    wire.set_schema_epoch(schema_epoch);
    batch->payload = wire.Finish();
    batch->proposed_at = options_.env->MonotonicNow();
    Propose(shard, batch->payload);
    inflight_[shard] = std::move(batch);
  }
  return proposed;
}

absl::Status ChangeShipper::MarkDone(int64_t max_rows) {
  // Per table, the committed prefix of what was read: every row up to its last id can go.
  std::map<std::string, std::pair<size_t, int64_t>> prefix;  // table -> (count, last id)
  bool more = false;                                         // committed rows beyond max_rows
  for (const auto& [table, unmarked] : unmarked_) {
    size_t n = unmarked.committed;
    if (static_cast<int64_t>(n) > max_rows) {
      n = static_cast<size_t>(max_rows);
      more = true;
    }
    if (n > 0) prefix[table] = {n, unmarked.ids[n - 1].first};
  }
  marks_due_ = more;
  if (prefix.empty()) return absl::OkStatus();
  auto write = [&prefix](sqlite::Database& db) { return DeleteMarked(db, prefix); };
  if (mark_transaction_) {
    if (absl::Status s = mark_transaction_(write); !s.ok()) return s;
  } else {
    absl::StatusOr<sqlite::Transaction> txn =
        sqlite::Transaction::Begin(db_, sqlite::Transaction::Mode::kImmediate);
    if (!txn.ok()) return txn.status();
    if (absl::Status s = write(db_); !s.ok()) return s;
    if (absl::Status s = txn->Commit(); !s.ok()) return s;
  }
  for (const auto& [table, count_and_last] : prefix) {
    Unmarked& unmarked = unmarked_[table];
    unmarked.ids.erase(unmarked.ids.begin(),
                       unmarked.ids.begin() + static_cast<long>(count_and_last.first));
    unmarked.committed -= count_and_last.first;
  }
  return absl::OkStatus();
}

absl::Status ChangeShipper::DeleteMarked(
    sqlite::Database& db, const std::map<std::string, std::pair<size_t, int64_t>>& prefix) {
  for (const auto& [table, count_and_last] : prefix) {
    const int64_t up_to = count_and_last.second;
    std::string log = sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(table));
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> exists = db.QueryRows(
        absl::StrCat("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ",
                     sqlite::Value::Text(sqlite::ChangeLogTableName(table)).DebugString()));
    if (!exists.ok()) return exists.status();
    if (exists->empty()) {
      // Moved with its table renamed, and this run did not see it move.
      LOG(WARNING) << "change log of " << table << " is gone; not marking it";
      continue;
    }
    absl::StatusOr<int64_t> newest_id =
        QueryInt(db, absl::StrCat("SELECT max(\"__marmot__id\") FROM ", log));
    if (!newest_id.ok()) return newest_id.status();
    const int64_t newest = *newest_id;
    if (newest < up_to) {
      // Ids went back: the log was dropped and made again under this shipper. Its rows are not
      // the ones that committed.
      LOG(WARNING) << "change log of " << table << " restarted below id " << up_to
                   << "; not marking it";
      continue;
    }
    // One range: every row up to `up_to` was read by this run and committed, or is a row kept
    // by an earlier marking. The log's newest row stays (marked done) so that SQLite never hands
    // its id out again; it goes once a newer row exists.
    absl::Status s = db.RunKept(
        absl::StrCat("DELETE FROM ", log, " WHERE \"__marmot__id\" <= ? AND \"__marmot__id\" < ?"),
        {sqlite::Value::Integer(up_to), sqlite::Value::Integer(newest)});
    if (!s.ok()) return s;
    if (newest <= up_to) {
      s = db.RunKept(
          absl::StrCat("UPDATE ", log, " SET \"__marmot__state\" = 1 WHERE \"__marmot__id\" = ?"),
          {sqlite::Value::Integer(newest)});
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int64_t, int64_t>> ChangeShipper::ProcessOutcomes() {
  std::vector<Outcomes::Done> done;
  {
    absl::MutexLock lock(&outcomes_->mu);
    done.swap(outcomes_->done);
  }
  int64_t committed = 0, failed = 0;
  for (auto& [shard, status, index] : done) {
    CHECK(inflight_[shard] != nullptr)
        << "outcome for shard " << shard << " without a batch in flight";
    if (!status.ok()) {
      // Proposed again, the same payload, before anything newer of the shard.
      Inflight& batch = *inflight_[shard];
      failed += static_cast<int64_t>(batch.changes.size());
      VLOG(1) << "shard " << shard << ": proposal of " << batch.changes.size()
              << " change(s) failed, retrying: " << status;
      batch.failed = true;
      continue;
    }
    std::unique_ptr<Inflight> batch = std::move(inflight_[shard]);
    committed += static_cast<int64_t>(batch->changes.size());
    if (batch->schema_keys.empty()) {
      own_committed_[shard] = std::max(own_committed_[shard], index);
    } else {
      // Rows of the tables it created may go now; the baseline takes what was sent (written by
      // the next Pump), and the schema is looked at again from there (it may have moved
      // meanwhile).
      schema_sent_.insert(batch->schema_keys.begin(), batch->schema_keys.end());
      held_tables_.clear();
      // The rows read from now on are read with it.
      if (options_.epochs != nullptr) options_.epochs->SchemaAt(index);
      sent_epoch_ = std::max(sent_epoch_, index);
      change::v1::ChangeBatch sent;
      if (sent.ParseFromString(batch->payload)) {
        sent_to_baseline_.insert(sent_to_baseline_.end(), sent.schema_changes().begin(),
                                 sent.schema_changes().end());
        for (const change::v1::SchemaChange& c : sent.schema_changes()) {
          if (options_.epochs != nullptr && c.kind() == change::v1::SchemaChange::CREATE &&
              c.type() == "table") {
            created_at_[c.name()] = {.index = index, .since = options_.env->MonotonicNow()};
          }
        }
      }
      schema_dirty_ = true;
    }
    std::deque<std::pair<int64_t, bool>>* ids = nullptr;  // of the table of the previous change
    const std::string* ids_table = nullptr;
    for (auto& [table, change_id] : batch->changes) {
      if (!split_outstanding_.empty()) {
        auto it = split_outstanding_.find({*table, change_id});
        if (it != split_outstanding_.end()) {
          if (--it->second > 0) continue;
          split_outstanding_.erase(it);
        }
      }
      if (ids_table != table) {
        ids = &unmarked_[MovedTo(*table, change_id)].ids;
        ids_table = table;
      }
      // Ids were read in increasing order.
      auto it = std::lower_bound(ids->begin(), ids->end(), std::make_pair(change_id, false));
      CHECK(it != ids->end() && it->first == change_id)
          << "committed change " << change_id << " of " << *table << " ("
          << MovedTo(*table, change_id) << ") was not read";
      it->second = true;
      --buffered_;
      if (!marks_due_) {
        marks_due_ = true;
        due_since_ = options_.env->MonotonicNow();
      }
    }
  }
  if (committed > 0) {
    absl::MutexLock lock(&committed_through_mu_);
    for (auto& [table, unmarked] : unmarked_) {
      const size_t before = unmarked.committed;
      while (unmarked.committed < unmarked.ids.size() && unmarked.ids[unmarked.committed].second) {
        ++unmarked.committed;
      }
      if (unmarked.committed > before)
        committed_through_[table] = unmarked.ids[unmarked.committed - 1].first;
    }
  }
  return std::make_pair(committed, failed);
}

int64_t ChangeShipper::CommittedThrough(const std::string& table) const {
  absl::MutexLock lock(&committed_through_mu_);
  auto it = committed_through_.find(table);
  return it == committed_through_.end() ? 0 : it->second;
}

void ChangeShipper::MarkWhenDue() {
  // Committed changes are marked done when all changes of their table read before them are
  // committed too; a failure (the application holds the write lock past the busy timeout) is
  // retried next round. Should marmot stop first, the rows are proposed again at restart and
  // skipped as duplicates.
  const absl::Time now = options_.env->MonotonicNow();
  if (!marks_due_ || now - last_mark_ < options_.mark_interval) return;
  if (now - logs_grew_ < options_.mark_quiet && now - due_since_ < options_.mark_delay) return;
  last_mark_ = now;
  if (absl::Status s = MarkDone(options_.mark_rows); !s.ok()) {
    // A full or failing disk fails every try until it mends: said every 10 s, not every 50 ms.
    if (sqlite::IsStorageFailure(s)) {
      LOG_EVERY_T(WARNING, 10) << "cannot mark committed changes done while the database's disk "
                                  "fails (retrying, logged every 10 s): "
                               << s.message();
    } else {
      LOG(WARNING) << "cannot mark committed changes done yet: " << s;
    }
    marks_due_ = true;
    return;
  }
  // Rows left by max_rows keep their place in line.
  if (!marks_due_) due_since_ = absl::InfiniteFuture();
}

absl::Status ChangeShipper::Finish() {
  absl::StatusOr<std::pair<int64_t, int64_t>> outcomes = ProcessOutcomes();
  if (!outcomes.ok()) return outcomes.status();
  if (!marks_due_) return absl::OkStatus();
  return MarkDone(std::numeric_limits<int64_t>::max());
}

absl::Status ChangeShipper::KeepOwnCreates(sqlite::Database& db) {
  const std::string table = sqlite::QuoteIdentifier(kOwnCreatesTable);
  // Those shard 0 applied here (durably: this reads its kept index) wait no more.
  absl::StatusOr<std::vector<std::vector<sqlite::Value>>> state = db.QueryRows(
      "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '__marmot__shard_state'");
  if (!state.ok()) return state.status();
  if (!state->empty()) {
    if (absl::Status s = db.Exec(absl::StrCat(
            "DELETE FROM ", table,
            " WHERE shard0_index <= (SELECT applied_index FROM \"__marmot__shard_state\""
            " WHERE shard = 0)"));
        !s.ok()) {
      return s;
    }
  }
  for (const auto& [name, c] : created_at_) {
    if (c.kept) continue;
    absl::StatusOr<sqlite::Statement> insert = db.Prepare(
        absl::StrCat("INSERT OR REPLACE INTO ", table, " (name, shard0_index) VALUES (?1, ?2)"));
    if (!insert.ok()) return insert.status();
    if (absl::Status s = insert->BindAll(
            {sqlite::Value::Text(name), sqlite::Value::Integer(static_cast<int64_t>(c.index))});
        !s.ok()) {
      return s;
    }
    if (absl::Status s = insert->Run(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<PumpStats> ChangeShipper::Pump() {
  PumpStats stats;
  absl::StatusOr<std::pair<int64_t, int64_t>> outcomes = ProcessOutcomes();
  if (!outcomes.ok()) return outcomes.status();
  stats.committed = outcomes->first;
  stats.failed = outcomes->second;
  // The baseline takes this node's committed schema changes before the schema is looked at again
  // (a write, so before the read transaction): what moved since is then a change of its own.
  if (!sent_to_baseline_.empty()) {
    auto write = [this](sqlite::Database& db) -> absl::Status {
      if (options_.epochs == nullptr) {
        return RecordSentInBaseline(db, sent_to_baseline_, sent_epoch_);
      }
      // With the schema epoch they moved (schema_epochs.h): a restart starts from it.
      absl::StatusOr<sqlite::Transaction> txn =
          sqlite::Transaction::Begin(db, sqlite::Transaction::Mode::kImmediate);
      if (!txn.ok()) return txn.status();
      if (absl::Status s = RecordSentInBaseline(db, sent_to_baseline_, sent_epoch_); !s.ok()) {
        return s;
      }
      if (absl::Status s = StoreSchemaEpoch(db, sent_epoch_); !s.ok()) return s;
      // With the tables it created: once in the baseline, no look finds them again, and their
      // rows must wait for their CREATEs to apply here after a restart too.
      if (absl::Status s = KeepOwnCreates(db); !s.ok()) return s;
      return txn->Commit();
    };
    absl::Status recorded = mark_transaction_ ? mark_transaction_(write) : write(db_);
    if (recorded.ok()) {
      sent_to_baseline_.clear();
      for (auto& [name, c] : created_at_) c.kept = true;
      // Tables renamed: their routes as recorded (they were noted pending until now).
      if (TableRenames* renames = router_.renames(); renames != nullptr) {
        if (absl::Status s = renames->Load(db_); !s.ok()) {
          LOG(WARNING) << "cannot read the routes of renamed tables: " << s;
        }
      }
    } else {
      LOG(WARNING) << "cannot record the schema changes sent in the baseline (retrying): "
                   << recorded;
    }
    schema_dirty_ = true;
  }
  {
    // One read transaction: the schema the changes' rows are read with is the schema they are in
    // (an application may alter a table at any moment; see sqlite::ReadChanges).
    absl::StatusOr<sqlite::Transaction> snapshot = sqlite::Transaction::Begin(db_);
    if (!snapshot.ok()) return snapshot.status();
    if (absl::Status s = RefreshSchema(); !s.ok()) return s;
    // After the transaction's first read: the schema it reads with is applied here no later
    // than the epoch (shard 0 moves the epoch before its transaction commits).
    if (options_.epochs != nullptr) read_epoch_ = options_.epochs->current();
    if (absl::Status s = CaptureSchemaChanges(); !s.ok()) return s;
    waiting_for_route_ = 0;
    absl::StatusOr<int64_t> read = ReadNewChanges();
    if (!read.ok()) return read.status();
    if (absl::Status s = snapshot->Commit(); !s.ok()) return s;
    stats.read = *read;
    stats.tables_waiting_for_route = waiting_for_route_;
  }
  if (keep_in_baseline_ != nullptr) {
    // This node's schema changes that do not replicate: the baseline takes them (a write, so
    // outside the read transaction above).
    auto write = [this](sqlite::Database& db) { return KeepInBaseline(db, *keep_in_baseline_); };
    absl::Status kept = mark_transaction_ ? mark_transaction_(write) : write(db_);
    if (!kept.ok()) {
      LOG(WARNING) << "cannot record schema changes that do not replicate yet (retrying): " << kept;
      schema_dirty_ = true;
    }
    keep_in_baseline_.reset();
  }
  stats.proposed = ProposeReady();
  MarkWhenDue();
  return stats;
}

}  // namespace marmot::replicator
